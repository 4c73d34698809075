//! `/v1/billing/runs`: what each day's billing run did.

use super::error::ApiError;
use super::extract::{Admin, DayCursor, Pagination, Path, Query};
use super::{AppState, ListBody};
use crate::billing::{CLOSE_JOB, JOB, RunReport};
use crate::domain::FieldError;
use crate::store::JobRun;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

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

/// `?job=billing` (the daily runs, by day) or `?job=close_period` (periods closed at once on a
/// renewal's `invoice.created`, by subscription and period end).
#[derive(serde::Deserialize)]
struct JobQuery {
    job: Option<String>,
}

fn job_of(query: &JobQuery) -> Result<&'static str, ApiError> {
    match query.job.as_deref() {
        None | Some("billing") => Ok(JOB),
        Some("close_period") => Ok(CLOSE_JOB),
        Some(other) => Err(ApiError::invalid_field(FieldError::new(
            "job",
            format!("`{other}` is not `billing` or `close_period`"),
        ))),
    }
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    Pagination(page, _): Pagination<DayCursor>,
    Query(query): Query<JobQuery>,
) -> Result<Json<ListBody<RunView>>, ApiError> {
    let job = job_of(&query)?;
    let page = state.store.begin_read().await?.job_runs(job, &page).await?;
    Ok(Json(ListBody::from_page(page, |run| &run.day, Into::into)))
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(day): Path<String>,
    Query(query): Query<JobQuery>,
) -> Result<Json<RunView>, ApiError> {
    let job = job_of(&query)?;
    let run = state.store.begin_read().await?.job_run(job, &day).await?;
    run.map(|run| Json(run.into()))
        .ok_or_else(|| ApiError::not_found("billing run", &day))
}
