//! `/v1/billing/runs`: what each day's billing run did.

use super::AppState;
use super::error::ApiError;
use super::extract::Admin;
use crate::billing::{JOB, RunReport};
use crate::store::JobRun;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/billing/runs", get(list))
        .route("/v1/billing/runs/{day}", get(show))
}

#[derive(Serialize)]
struct RunView {
    day: String,
    state: String,
    started_at: String,
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<RunReport>,
}

impl From<JobRun> for RunView {
    fn from(run: JobRun) -> Self {
        Self {
            day: run.day,
            state: run.state,
            started_at: super::timestamp(run.started_at),
            finished_at: run.finished_at.map(super::timestamp),
            report: run.report.and_then(|text| serde_json::from_str(&text).ok()),
        }
    }
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let runs = state
        .store
        .begin_read()
        .await?
        .job_runs(JOB, None, 100)
        .await?;
    let data: Vec<RunView> = runs.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "data": data })))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(day): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let mut runs = state
        .store
        .begin_read()
        .await?
        .job_runs(JOB, Some(&day), 1)
        .await?;
    runs.pop()
        .map(|run| Json(run.into()))
        .ok_or_else(|| ApiError::not_found("billing run", &day))
}
