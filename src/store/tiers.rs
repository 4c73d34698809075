//! Tiers and their versions. A version, once written, never changes.

use super::{Page, PageRequest, StoreResult, Tx, from_json, now_ms, on_tx, taking, to_json};
use crate::domain::tier::TierSpec;

/// A tier with its newest version.
#[derive(Debug, Clone)]
pub struct Tier {
    pub id: String,
    pub api_id: String,
    pub created_at: i64,
    pub latest: TierVersion,
    /// When it was archived; an archived tier takes no new subscriptions.
    pub archived_at: Option<i64>,
}

/// One immutable version of a tier's definition.
#[derive(Debug, Clone)]
pub struct TierVersion {
    pub id: String,
    pub tier_id: String,
    pub version: i64,
    pub spec: TierSpec,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct TierRow {
    id: String,
    api_id: String,
    created_at: i64,
    version_id: String,
    version: i64,
    spec: String,
    version_created_at: i64,
    archived_at: Option<i64>,
}

impl TryFrom<TierRow> for Tier {
    type Error = super::StoreError;

    fn try_from(row: TierRow) -> StoreResult<Self> {
        Ok(Tier {
            latest: TierVersion {
                id: row.version_id,
                tier_id: row.id.clone(),
                version: row.version,
                spec: from_json("tier_versions.spec", &row.spec)?,
                created_at: row.version_created_at,
            },
            id: row.id,
            api_id: row.api_id,
            created_at: row.created_at,
            archived_at: row.archived_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: String,
    tier_id: String,
    version: i64,
    spec: String,
    created_at: i64,
}

impl TryFrom<VersionRow> for TierVersion {
    type Error = super::StoreError;

    fn try_from(row: VersionRow) -> StoreResult<Self> {
        Ok(TierVersion {
            spec: from_json("tier_versions.spec", &row.spec)?,
            id: row.id,
            tier_id: row.tier_id,
            version: row.version,
            created_at: row.created_at,
        })
    }
}

const TIER_SELECT: &str = "SELECT t.id, t.api_id, t.created_at, v.id AS version_id, v.version, \
     v.spec, v.created_at AS version_created_at, t.archived_at \
     FROM tiers t JOIN tier_versions v ON v.tier_id = t.id AND v.version = t.latest_version";

impl Tx {
    /// Finds a tier, with its newest version, by its id or its slug.
    pub async fn find_tier(&mut self, id_or_slug: &str) -> StoreResult<Option<Tier>> {
        let sql = const_format::concatcp!(
            TIER_SELECT,
            " WHERE t.id = $1 OR t.slug = $1 ORDER BY t.id = $1 DESC LIMIT 1"
        );
        let row: Option<TierRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id_or_slug)
            .fetch_optional(conn)
            .await?);
        row.map(Tier::try_from).transpose()
    }

    /// The tiers not archived, or (`archived`) those archived.
    pub async fn list_tiers(
        &mut self,
        page: &PageRequest,
        archived: bool,
    ) -> StoreResult<Page<Tier>> {
        const LIVE: &str = const_format::concatcp!(
            TIER_SELECT,
            " WHERE t.id > $1 AND t.archived_at IS NULL ORDER BY t.id LIMIT $2"
        );
        const ARCHIVED: &str = const_format::concatcp!(
            TIER_SELECT,
            " WHERE t.id > $1 AND t.archived_at IS NOT NULL ORDER BY t.id LIMIT $2"
        );
        let sql = if archived { ARCHIVED } else { LIVE };
        let rows: Vec<TierRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        let tiers = rows
            .into_iter()
            .map(Tier::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_rows(tiers, page.limit))
    }

    pub async fn find_tier_version(&mut self, id: &str) -> StoreResult<Option<TierVersion>> {
        let sql = "SELECT id, tier_id, version, spec, created_at FROM tier_versions WHERE id = $1";
        let row: Option<VersionRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(conn)
            .await?);
        row.map(TierVersion::try_from).transpose()
    }

    /// Every version of every tier.
    pub async fn all_tier_versions(&mut self) -> StoreResult<Vec<TierVersion>> {
        let sql = "SELECT id, tier_id, version, spec, created_at FROM tier_versions ORDER BY id";
        let rows: Vec<VersionRow> =
            on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        rows.into_iter().map(TierVersion::try_from).collect()
    }

    /// Every version of a tier, oldest first.
    pub async fn list_tier_versions(&mut self, tier_id: &str) -> StoreResult<Vec<TierVersion>> {
        let sql = "SELECT id, tier_id, version, spec, created_at FROM tier_versions \
                   WHERE tier_id = $1 ORDER BY version";
        let rows: Vec<VersionRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(tier_id)
            .fetch_all(conn)
            .await?);
        rows.into_iter().map(TierVersion::try_from).collect()
    }

    /// Creates a tier with its first version.
    pub async fn insert_tier(
        &mut self,
        tier_id: &str,
        api_id: &str,
        version_id: &str,
        spec: &TierSpec,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO tiers (id, slug, api_id, latest_version, created_at) \
                   VALUES ($1, $2, $3, 1, $4)";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(tier_id)
            .bind(spec.slug.as_str())
            .bind(api_id)
            .bind(now_ms())
            .execute(conn)
            .await
            .map_err(taking(spec.slug.as_str()))?
            .rows_affected());
        self.insert_tier_version(tier_id, version_id, 1, spec).await
    }

    /// Adds `version` to a tier and makes it the one new subscriptions get.
    pub async fn add_tier_version(
        &mut self,
        tier_id: &str,
        version_id: &str,
        version: i64,
        spec: &TierSpec,
    ) -> StoreResult<()> {
        self.insert_tier_version(tier_id, version_id, version, spec)
            .await?;
        let sql = "UPDATE tiers SET latest_version = $2 WHERE id = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(tier_id)
            .bind(version)
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }

    async fn insert_tier_version(
        &mut self,
        tier_id: &str,
        version_id: &str,
        version: i64,
        spec: &TierSpec,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO tier_versions (id, tier_id, version, spec, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        let json = to_json(spec)?;
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(version_id)
            .bind(tier_id)
            .bind(version)
            .bind(&json)
            .bind(now_ms())
            .execute(conn)
            .await
            .map_err(taking(spec.slug.as_str()))?
            .rows_affected());
        Ok(())
    }
}
