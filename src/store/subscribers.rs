//! Subscribers: who pays.

use super::{Page, PageRequest, StoreError, StoreResult, Tx, now_ms, on_tx, taking};
use crate::domain::subscriber::SubscriberSpec;

/// A stored subscriber.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: String,
    pub spec: SubscriberSpec,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was archived; an archived subscriber takes no new subscriptions.
    pub archived_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SubscriberRow {
    id: String,
    external_id: String,
    name: String,
    email: String,
    created_at: i64,
    updated_at: i64,
    archived_at: Option<i64>,
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = StoreError;

    fn try_from(row: SubscriberRow) -> StoreResult<Self> {
        let corrupt =
            |column: &str, e: String| StoreError::Corrupt(format!("subscribers.{column}: {e}"));
        Ok(Subscriber {
            id: row.id,
            spec: SubscriberSpec {
                external_id: row
                    .external_id
                    .try_into()
                    .map_err(|e| corrupt("external_id", e))?,
                name: crate::domain::text::Name::stored(row.name),
                email: row.email.try_into().map_err(|e| corrupt("email", e))?,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
            archived_at: row.archived_at,
        })
    }
}

const COLUMNS: &str = "id, external_id, name, email, created_at, updated_at, archived_at";

impl Tx {
    /// Finds a subscriber by its id or its external id.
    pub async fn find_subscriber(&mut self, id_or_key: &str) -> StoreResult<Option<Subscriber>> {
        let sql = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM subscribers WHERE id = $1 OR external_id = $1 ORDER BY id = $1 DESC LIMIT 1"
        );
        let row: Option<SubscriberRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(id_or_key)
            .fetch_optional(conn)
            .await?);
        row.map(Subscriber::try_from).transpose()
    }

    /// The subscribers not archived, or (`archived`) those archived.
    pub async fn list_subscribers(
        &mut self,
        page: &PageRequest,
        archived: bool,
    ) -> StoreResult<Page<Subscriber>> {
        const LIVE: &str = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM subscribers WHERE id > $1 AND archived_at IS NULL ORDER BY id LIMIT $2"
        );
        const ARCHIVED: &str = const_format::concatcp!(
            "SELECT ",
            COLUMNS,
            " FROM subscribers WHERE id > $1 AND archived_at IS NOT NULL ORDER BY id LIMIT $2"
        );
        let sql = if archived { ARCHIVED } else { LIVE };
        let rows: Vec<SubscriberRow> = on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(page.after())
            .bind(page.fetch_limit())
            .fetch_all(conn)
            .await?);
        let items = rows
            .into_iter()
            .map(Subscriber::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Page::from_rows(items, page.limit))
    }

    pub async fn insert_subscriber(&mut self, id: &str, spec: &SubscriberSpec) -> StoreResult<()> {
        let sql = "INSERT INTO subscribers (id, external_id, name, email, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $5)";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(spec.external_id.as_str())
            .bind(spec.name.as_str())
            .bind(String::from(spec.email.clone()))
            .bind(now_ms())
            .execute(conn)
            .await
            .map_err(taking(spec.external_id.as_str()))?
            .rows_affected());
        Ok(())
    }

    pub async fn update_subscriber(&mut self, id: &str, spec: &SubscriberSpec) -> StoreResult<()> {
        let sql = "UPDATE subscribers SET name = $2, email = $3, updated_at = $4 WHERE id = $1";
        on_tx!(self, |conn| sqlx::query(sql)
            .bind(id)
            .bind(spec.name.as_str())
            .bind(String::from(spec.email.clone()))
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(())
    }
}
