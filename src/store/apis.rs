//! Apis and their recording policies.

use super::{Page, PageRequest, StoreResult, Tx, from_json, now_ms, on_tx, taking, to_json};
use crate::domain::api::ApiSpec;
use crate::domain::meter::{DimensionSpec, MeterSpec};
use crate::domain::policy::RecordingPolicy;

/// A stored api.
#[derive(Debug, Clone)]
pub struct Api {
    pub id: String,
    pub spec: ApiSpec,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was archived; an archived api keeps its history and takes no new tiers or
    /// subscriptions.
    pub archived_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ApiRow {
    id: String,
    slug: String,
    name: String,
    recording_policy: String,
    stripe_account: Option<String>,
    routes: String,
    metering: String,
    created_at: i64,
    updated_at: i64,
    archived_at: Option<i64>,
}

/// `apis.routes`: where the gateway serves the api.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiRoutes {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

impl ApiRoutes {
    fn of(spec: &ApiSpec) -> Self {
        Self {
            hosts: spec.hosts.clone(),
            path_prefixes: spec.path_prefixes.clone(),
        }
    }
}

/// `apis.metering`: the api's declared meters and dimensions.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiMetering {
    #[serde(default)]
    pub meters: Vec<MeterSpec>,
    #[serde(default)]
    pub dimensions: Vec<DimensionSpec>,
}

impl ApiMetering {
    fn of(spec: &ApiSpec) -> Self {
        Self {
            meters: spec.meters.clone(),
            dimensions: spec.dimensions.clone(),
        }
    }
}

impl TryFrom<ApiRow> for Api {
    type Error = super::StoreError;

    fn try_from(row: ApiRow) -> StoreResult<Self> {
        let policy: RecordingPolicy = from_json("apis.recording_policy", &row.recording_policy)?;
        let routes: ApiRoutes = from_json("apis.routes", &row.routes)?;
        let metering: ApiMetering = from_json("apis.metering", &row.metering)?;
        let slug = row
            .slug
            .try_into()
            .map_err(|e| super::StoreError::Corrupt(format!("apis.slug: {e}")))?;
        Ok(Api {
            id: row.id,
            spec: ApiSpec {
                slug,
                name: crate::domain::text::Name::stored(row.name),
                recording_policy: policy,
                stripe_account: row
                    .stripe_account
                    .map(TryInto::try_into)
                    .transpose()
                    .map_err(|e| super::StoreError::Corrupt(format!("apis.stripe_account: {e}")))?,
                hosts: routes.hosts,
                path_prefixes: routes.path_prefixes,
                meters: metering.meters,
                dimensions: metering.dimensions,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            archived_at: row.archived_at,
        })
    }
}

const COLUMNS: &str = "id, slug, name, recording_policy, stripe_account, routes, metering, created_at, updated_at, \
     archived_at";

impl Tx {
    /// Finds an api by its id or its slug.
    pub async fn find_api(&mut self, id_or_slug: &str) -> StoreResult<Option<Api>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM apis WHERE id = $1 OR slug = $1 ORDER BY id = $1 DESC LIMIT 1"
        );
        let row: Option<ApiRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id_or_slug)
            .fetch_optional(conn)
            .await?);
        row.map(Api::try_from).transpose()
    }

    /// The apis not archived, or (`archived`) those archived.
    pub async fn list_apis(
        &mut self,
        page: &PageRequest,
        archived: bool,
    ) -> StoreResult<Page<Api>> {
        const LIVE: &str = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM apis WHERE id > $1 AND archived_at IS NULL ORDER BY id LIMIT $2"
        );
        const ARCHIVED: &str = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM apis WHERE id > $1 AND archived_at IS NOT NULL ORDER BY id LIMIT $2"
        );
        let sql = if archived { ARCHIVED } else { LIVE };
        let rows: Vec<ApiRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        let apis = rows
            .into_iter()
            .map(Api::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_rows(apis, page.limit))
    }

    pub async fn insert_api(&mut self, id: &str, spec: &ApiSpec) -> StoreResult<()> {
        let sql = "INSERT INTO apis (id, slug, name, recording_policy, stripe_account, routes, \
                   metering, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)";
        let policy = to_json(&spec.recording_policy)?;
        let routes = to_json(&ApiRoutes::of(spec))?;
        let metering = to_json(&ApiMetering::of(spec))?;
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(spec.slug.as_str())
            .bind(spec.name.as_str())
            .bind(&policy)
            .bind(spec.stripe_account.as_ref().map(|a| a.as_str()))
            .bind(&routes)
            .bind(now_ms())
            .bind(&metering)
            .execute(conn)
            .await
            .map_err(taking(spec.slug.as_str()))?
            .rows_affected());
        Ok(())
    }

    pub async fn update_api(&mut self, id: &str, spec: &ApiSpec) -> StoreResult<()> {
        let sql = "UPDATE apis SET name = $2, recording_policy = $3, stripe_account = $4, \
                   routes = $5, updated_at = $6, metering = $7 WHERE id = $1";
        let policy = to_json(&spec.recording_policy)?;
        let routes = to_json(&ApiRoutes::of(spec))?;
        let metering = to_json(&ApiMetering::of(spec))?;
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(spec.name.as_str())
            .bind(&policy)
            .bind(spec.stripe_account.as_ref().map(|a| a.as_str()))
            .bind(&routes)
            .bind(now_ms())
            .bind(&metering)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }
}

impl Tx {
    /// Every live api's slug and routes, for checking that two apis do not claim the same route
    /// (an archived api has given its routes up).
    pub async fn all_api_routes(&mut self) -> StoreResult<Vec<(String, ApiRoutes)>> {
        let sql = "SELECT slug, routes FROM apis WHERE archived_at IS NULL";
        let rows: Vec<(String, String)> =
            on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        rows.into_iter()
            .map(|(slug, routes)| Ok((slug, from_json("apis.routes", &routes)?)))
            .collect()
    }
}
