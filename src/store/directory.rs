//! What the hot paths look up in memory: live consumer keys, apis and gateway key hashes.

use super::{StoreResult, Tx, from_json, on_tx};
use crate::domain::policy::RecordingPolicy;

/// A live consumer key and the subscription and api it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsumerRow {
    pub consumer_key: String,
    pub subscription_id: String,
    pub api_id: String,
    pub status: String,
    pub started_at: i64,
}

/// An api's id, slug and recording policy.
#[derive(Debug, Clone)]
pub struct ApiPolicyRow {
    pub id: String,
    pub slug: String,
    pub policy: RecordingPolicy,
    pub routes: super::apis::ApiRoutes,
    pub metering: super::apis::ApiMetering,
}

/// One change of the catalog: which object, by kind (`subscription`, `api`, `gateway`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CatalogChange {
    pub seq: i64,
    pub kind: String,
    pub object_id: String,
}

const LIVE_CONSUMERS: &str = "SELECT k.consumer_key, s.id AS subscription_id, t.api_id, s.status, s.started_at \
                   FROM consumer_keys k \
                   JOIN subscriptions s ON s.id = k.subscription_id \
                   JOIN tier_versions v ON v.id = s.tier_version_id \
                   JOIN tiers t ON t.id = v.tier_id \
                   WHERE k.released_at IS NULL";

impl Tx {
    /// The newest catalog change's `seq`: what a full read sees everything up to.
    pub async fn catalog_revision(&mut self) -> StoreResult<i64> {
        let sql = "SELECT value FROM catalog_revision WHERE id = 1";
        Ok(on_tx!(self, |conn| sqlx::query_scalar(sql)
            .fetch_one(conn)
            .await?))
    }

    /// Catalog changes after `after`, oldest first, at most `limit`.
    pub async fn catalog_changes(
        &mut self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<CatalogChange>> {
        let sql = "SELECT seq, kind, object_id FROM catalog_changes WHERE seq > $1 \
                   ORDER BY seq LIMIT $2";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?))
    }

    /// The oldest catalog change still kept, if any.
    pub async fn oldest_catalog_change(&mut self) -> StoreResult<Option<i64>> {
        let sql = "SELECT MIN(seq) FROM catalog_changes";
        Ok(on_tx!(self, |conn| sqlx::query_scalar(sql)
            .fetch_one(conn)
            .await?))
    }

    /// Forgets catalog changes made before `before` (Unix ms); answers how many.
    pub async fn purge_catalog_changes(&mut self, before: i64) -> StoreResult<u64> {
        let sql = "DELETE FROM catalog_changes WHERE changed_at < $1";
        Ok(on_tx!(self, |conn| sqlx::query(sql)
            .bind(before)
            .execute(conn)
            .await?
            .rows_affected()))
    }

    /// The live consumer keys of one subscription.
    pub async fn live_consumers_of(
        &mut self,
        subscription_id: &str,
    ) -> StoreResult<Vec<ConsumerRow>> {
        // By the key's own column: its index finds the subscription's keys, where `s.id` let
        // SQLite walk every live key.
        let sql = format!("{LIVE_CONSUMERS} AND k.subscription_id = $1");
        Ok(on_tx!(self, |conn| sqlx::query_as(sqlx::AssertSqlSafe(
            sql
        ))
        .bind(subscription_id)
        .fetch_all(conn)
        .await?))
    }

    pub async fn live_consumers(&mut self) -> StoreResult<Vec<ConsumerRow>> {
        Ok(on_tx!(self, |conn| sqlx::query_as(LIVE_CONSUMERS)
            .fetch_all(conn)
            .await?))
    }

    pub async fn api_policies(&mut self) -> StoreResult<Vec<ApiPolicyRow>> {
        // An archived api keeps its slug (records naming it are still read) but no routes.
        let sql = "SELECT id, slug, recording_policy, \
                   CASE WHEN archived_at IS NULL THEN routes ELSE '{}' END, metering FROM apis";
        let rows: Vec<(String, String, String, String, String)> =
            on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        rows.into_iter()
            .map(|(id, slug, policy, routes, metering)| {
                Ok(ApiPolicyRow {
                    id,
                    slug,
                    policy: from_json("apis.recording_policy", &policy)?,
                    routes: from_json("apis.routes", &routes)?,
                    metering: from_json("apis.metering", &metering)?,
                })
            })
            .collect()
    }

    /// Every gateway as its key hash, id, how it asks and how it sends.
    pub async fn gateway_key_hashes(&mut self) -> StoreResult<Vec<GatewayKeyRow>> {
        type Row = (String, Option<String>, Option<i64>, String, String, String);
        let sql = "SELECT key_hash, previous_key_hash, previous_key_expires_at, id, access, ingest \
                   FROM gateways WHERE revoked_at IS NULL";
        let rows: Vec<Row> = on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        let now = super::now_ms();
        let mut keys = Vec::with_capacity(rows.len());
        for (key_hash, previous, expires_at, id, access, ingest) in rows {
            let gateway = GatewayKeyRow {
                key_hash,
                expires_at: None,
                id,
                access: from_json("gateways.access", &access)?,
                ingest: from_json("gateways.ingest", &ingest)?,
            };
            if let (Some(previous), Some(expires_at)) = (previous, expires_at)
                && expires_at > now
            {
                keys.push(GatewayKeyRow {
                    key_hash: previous,
                    expires_at: Some(expires_at),
                    ..gateway.clone()
                });
            }
            keys.push(gateway);
        }
        Ok(keys)
    }
}

/// A gateway as the hot paths know it, with its key's hash.
#[derive(Debug, Clone)]
pub struct GatewayKeyRow {
    pub key_hash: String,
    /// When this key stops being taken: set for the key before a rotation.
    pub expires_at: Option<i64>,
    pub id: String,
    pub access: crate::domain::gateway::GatewayAccess,
    pub ingest: crate::domain::ingest::GatewayIngest,
}
