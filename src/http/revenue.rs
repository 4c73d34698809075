//! `/v1/revenue`: what the provider's subscriptions were billed and come to, by currency.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, Query};
use super::usage::{parse_time, time_or_day};
use crate::billing::revenue::{self, GroupBy, MAX_SPAN_DAYS, Revenue};
use crate::domain::FieldError;
use crate::domain::time::DAY_MS;
use axum::Json;
use axum::extract::State;
use chrono::{Datelike, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RevenueQuery {
    /// RFC 3339 or `YYYY-MM-DD`; the first day of this month (UTC) when absent. A period counts
    /// when it starts at or after `from`.
    #[param(schema_with = time_or_day)]
    from: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD`; the first day of next month when absent. After `from`, at most
    /// 400 days after it; a period counts when it starts before `to`.
    #[param(schema_with = time_or_day)]
    to: Option<String>,
    /// `api`, `tier`, `subscriber` or `subscription`: figures per group besides the totals.
    #[param(value_type = Option<GroupBy>)]
    group_by: Option<String>,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::invalid_field(FieldError::new(field, message))
}

/// The start of the month holding `at` and of the month after it, in Unix milliseconds.
pub(crate) fn month_around(at: chrono::DateTime<Utc>) -> (i64, i64) {
    let first = at.date_naive().with_day(1).unwrap_or_default();
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let ms = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
    };
    (ms(first), ms(next))
}

/// Revenue of the billing periods that start in `from..to`, per currency: what closed periods
/// were billed (the ledger of Stripe's items; in ledger mode the rating), what the periods not
/// closed yet come to so far, Stripe's invoices of those periods by payment state, and the
/// monthly recurring fixed fees of the subscriptions live now.
#[utoipa::path(get, path = "/v1/revenue", tag = "billing", operation_id = "revenue",
    params(RevenueQuery),
    responses(
        (status = 200, description = "The revenue", body = Revenue),
        (status = 422, description = "`invalid_field`: a bad `from`, `to` or `group_by`", body = ErrorBody),
    ),
    security(("admin_token" = [])))]
async fn report(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<RevenueQuery>,
) -> Result<Json<Revenue>, ApiError> {
    let now = Utc::now();
    let (month, next_month) = month_around(now);
    let from = match query.from.as_deref() {
        Some(text) => parse_time("from", text)?,
        None => month,
    };
    let to = match query.to.as_deref() {
        Some(text) => parse_time("to", text)?,
        None => next_month.max(from + DAY_MS),
    };
    if from >= to {
        return Err(bad("from", "must be before `to`".into()));
    }
    if to - from > MAX_SPAN_DAYS * DAY_MS {
        return Err(bad(
            "to",
            format!("must be at most {MAX_SPAN_DAYS} days after `from`"),
        ));
    }
    let group_by = match query.group_by.as_deref() {
        None => None,
        Some(text) => Some(GroupBy::parse(text).ok_or_else(|| {
            bad(
                "group_by",
                format!("`{text}` is not api, tier, subscriber or subscription"),
            )
        })?),
    };
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let report = revenue::revenue(
        &state.store,
        at(from),
        at(to),
        group_by,
        now,
        state.stripe.is_live(),
    )
    .await?;
    Ok(Json(report))
}
