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
}

impl Tx {
    pub async fn live_consumers(&mut self) -> StoreResult<Vec<ConsumerRow>> {
        let sql = "SELECT k.consumer_key, s.id AS subscription_id, t.api_id, s.status, s.started_at \
                   FROM consumer_keys k \
                   JOIN subscriptions s ON s.id = k.subscription_id \
                   JOIN tier_versions v ON v.id = s.tier_version_id \
                   JOIN tiers t ON t.id = v.tier_id \
                   WHERE k.released_at IS NULL";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }

    pub async fn api_policies(&mut self) -> StoreResult<Vec<ApiPolicyRow>> {
        let sql = "SELECT id, slug, recording_policy FROM apis";
        let rows: Vec<(String, String, String)> =
            on_tx!(self, |conn| sqlx::query_as(sql).fetch_all(conn).await?);
        rows.into_iter()
            .map(|(id, slug, policy)| {
                Ok(ApiPolicyRow {
                    id,
                    slug,
                    policy: from_json("apis.recording_policy", &policy)?,
                })
            })
            .collect()
    }

    pub async fn gateway_key_hashes(&mut self) -> StoreResult<Vec<(String, String)>> {
        let sql = "SELECT key_hash, id FROM gateways";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .fetch_all(conn)
            .await?))
    }
}
