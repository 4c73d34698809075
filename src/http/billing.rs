//! `/v1/billing/runs`: what each day's billing run did.

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, DayCursor, DayPageParams, KeyOrId, Pagination, Path, Query};
use super::{AppState, ListBody};
use crate::billing::{CLOSE_JOB, JOB, RunReport};
use crate::domain::FieldError;
use crate::store::JobRun;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

/// One billing run (or one close on `invoice.created`).
#[derive(Serialize, utoipa::ToSchema)]
struct RunView {
    /// The day run (`YYYY-MM-DD`), or the subscription and period end of a close.
    day: String,
    /// `running`, `done` or `failed`.
    state: String,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
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
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// `billing` (the default) or `close_period`.
    #[param(value_type = Option<Job>, inline)]
    job: Option<String>,
}

/// Which runs.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Job {
    Billing,
    ClosePeriod,
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

/// The runs, newest first.
#[utoipa::path(get, path = "/v1/billing/runs", tag = "billing", operation_id = "list_billing_runs",
    params(DayPageParams, JobQuery),
    responses((status = 200, description = "A page of runs", body = ListBody<RunView>)),
    security(("admin_token" = [])))]
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

/// One run, by its day.
#[utoipa::path(get, path = "/v1/billing/runs/{day}", tag = "billing", operation_id = "show_billing_run",
    params(("day" = KeyOrId, Path, description = "The day (`YYYY-MM-DD`), or a close's key"), JobQuery),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
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
