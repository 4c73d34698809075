//! The provider console and the subscriber portal: HTML pages tollbooth serves itself, made
//! from askama templates built into the binary, with the stylesheet embedded too (no CDN, no
//! JavaScript: charts are SVG drawn here and every table is plain HTML).
//!
//! The console signs in with the admin token into a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind a TLS proxy, expiring after [`SESSION_TTL`]); only the
//! cookie's SHA-256 is stored. Every form carries the session's CSRF token, and a post without it
//! is refused. The portal is opened by a signed link (see [`super::portal`]) and reads one
//! subscription only.

// A page refused is the response that says so: it is returned as it is, not boxed.
#![allow(clippy::result_large_err)]

use super::AppState;
use super::portal::{self, OpenError, Refused};
use super::usage::{Bucket, buckets};
use crate::billing::revenue::{self, GroupBy, Revenue};
use crate::domain::money::Currency;
use crate::domain::time::{DAY_MS, HOUR_MS, from_ms};
use crate::store::{StoreError, Subscription};
use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Utc;
use rust_decimal::Decimal;
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// How long a console session lasts after sign-in.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
const SESSION_COOKIE: &str = "tb_session";
const SIGN_IN_COOKIE: &str = "tb_sign_in";
/// Subscriptions listed on one page of the console.
const LIST_LIMIT: usize = 200;
/// Past periods shown for one subscription.
const PAST_PERIODS: usize = 12;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(overview))
        .route("/console/", get(overview))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/subscriptions", get(subscriptions))
        .route("/console/subscriptions/{id}", get(subscription))
        .route(
            "/console/subscriptions/{id}/portal-links",
            post(make_portal_link),
        )
        .route(
            "/console/subscriptions/{id}/portal-links/{link}/revoke",
            post(revoke_portal_link),
        )
        .route("/console/billing-runs", get(billing_runs))
        .route("/console/gateways", get(gateways))
        .route("/console/assets/{file}", get(asset))
        .route("/portal/{token}", get(portal_page))
        .route("/portal/{token}/billing", post(billing_portal))
}

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = Assets::get(&file) else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "not_found",
            "No such file.",
        );
    };
    let kind = if file.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        found.data.into_owned(),
    )
        .into_response()
}

/// A page, with the headers every page has: no caching (figures and tokens), no framing.
fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https://billing.stripe.com; frame-ancestors 'none'",
                ),
            ],
            Html(html),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "a console page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    code: &'a str,
    message: &'a str,
}

fn message(status: StatusCode, title: &str, code: &str, text: &str) -> Response {
    page(
        status,
        &MessagePage {
            title,
            code,
            message: text,
        },
    )
}

fn fault(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "a console page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "internal",
        "tollbooth could not read what this page shows; its log says why.",
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A signed-in console session.
struct Session {
    id_hash: String,
    csrf: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let id_hash = crate::auth::hash_secret(id);
        let found = async {
            state
                .store
                .begin_read()
                .await?
                .console_session(&id_hash)
                .await
        }
        .await
        .map_err(fault)?;
        match found {
            Some(session) => Ok(Session {
                id_hash,
                csrf: session.csrf_token,
            }),
            None => Err(to_sign_in()),
        }
    }
}

impl Session {
    /// Refuses a form that does not carry this session's CSRF token.
    fn check(&self, form: &HashMap<String, String>) -> Result<(), Response> {
        match form.get("csrf") {
            Some(token) if same(token, &self.csrf) => Ok(()),
            _ => Err(csrf_refused()),
        }
    }
}

fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Refused",
        "csrf",
        "This form did not carry the page's security token. Open the page again and resend it.",
    )
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    csrf: String,
    error: Option<String>,
}

/// The sign-in form: its CSRF token goes in a short-lived cookie and in the form, and a post must
/// carry both.
async fn sign_in_page(headers: HeaderMap) -> Response {
    sign_in_form(&headers, StatusCode::OK, None)
}

fn sign_in_form(headers: &HeaderMap, status: StatusCode, error: Option<String>) -> Response {
    let csrf = random_hex();
    let mut response = page(
        status,
        &SignInPage {
            csrf: csrf.clone(),
            error,
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SIGN_IN_COOKIE,
            &csrf,
            "/console",
            900,
            portal::is_tls(headers),
        ),
    );
    response
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    match form.get("csrf") {
        Some(token) if !expected.is_empty() && same(token, expected) => {}
        _ => return csrf_refused(),
    }
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    match state.admin_token.verify(token).await {
        Ok(true) => {}
        Ok(false) => {
            return sign_in_form(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("That is not the admin token.".into()),
            );
        }
        Err(error) => return fault(error),
    }
    let id = random_hex();
    let ttl_ms = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let saved = async {
        let mut tx = state.store.begin().await?;
        tx.insert_console_session(
            &crate::auth::hash_secret(&id),
            &random_hex(),
            crate::store::now_ms() + ttl_ms,
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = saved {
        return fault(error);
    }
    let tls = portal::is_tls(&headers);
    let mut response = Redirect::to("/console").into_response();
    let headers_out = response.headers_mut();
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, "/", SESSION_TTL.as_secs(), tls),
    );
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", "/console", 0, tls),
    );
    response
}

async fn sign_out(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = session.check(&form) {
        return refused;
    }
    let deleted = async {
        let mut tx = state.store.begin().await?;
        tx.delete_console_session(&session.id_hash).await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = deleted {
        return fault(error);
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, portal::is_tls(&headers)),
    );
    response
}

fn day(ms: i64) -> String {
    from_ms(ms).format("%Y-%m-%d").to_string()
}

fn minute(ms: i64) -> String {
    from_ms(ms).format("%Y-%m-%d %H:%M UTC").to_string()
}

// ---- overview ----

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    csrf: String,
    months: Vec<MonthView>,
    trend: String,
}

struct MonthView {
    label: String,
    from: String,
    currencies: Vec<CurrencyView>,
    tables: Vec<TableView>,
}

struct CurrencyView {
    code: String,
    billed: String,
    billed_raw: String,
    open: String,
    open_raw: String,
    rated_closed_raw: String,
    paid: String,
    failed: String,
    has_failed: bool,
    recurring: String,
}

struct TableView {
    by: &'static str,
    rows: Vec<RowView>,
}

struct RowView {
    key: String,
    currency: String,
    billed: String,
    open: String,
    periods: u64,
    live: u64,
}

fn month_view(label: String, by_api: &Revenue, by_tier: &Revenue) -> MonthView {
    let currencies = by_api
        .currencies
        .iter()
        .map(|c| {
            let f = &c.figures;
            CurrencyView {
                code: c.currency.code(),
                billed: c.currency.display(f.billed.total),
                billed_raw: f.billed.total.normalize().to_string(),
                open: c.currency.display(f.open.total),
                open_raw: f.open.total.normalize().to_string(),
                rated_closed_raw: f.rated_closed.normalize().to_string(),
                paid: c.currency.display(f.invoices.paid),
                failed: c.currency.display(f.invoices.failed),
                has_failed: !f.invoices.failed.is_zero(),
                recurring: c.currency.display(f.monthly_recurring),
            }
        })
        .collect();
    let table = |by, report: &Revenue| TableView {
        by,
        rows: report
            .currencies
            .iter()
            .flat_map(|c| {
                c.groups.iter().map(move |g| RowView {
                    key: g.key.clone(),
                    currency: c.currency.code(),
                    billed: c.currency.display(g.figures.billed.total),
                    open: c.currency.display(g.figures.open.total),
                    periods: g.figures.closed_periods + g.figures.open_periods,
                    live: g.figures.live_subscriptions,
                })
            })
            .collect(),
    };
    MonthView {
        label,
        from: by_api.from.date_naive().to_string(),
        currencies,
        tables: vec![table("api", by_api), table("tier", by_tier)],
    }
}

async fn overview(session: Session, State(state): State<AppState>) -> Response {
    let now = Utc::now();
    let (this_month, next_month) = super::revenue::month_around(now);
    let (last_month, _) = super::revenue::month_around(from_ms(this_month - DAY_MS));
    let live = state.stripe.is_live();
    let months_asked = [
        ("This month", this_month, next_month),
        ("Last month", last_month, this_month),
    ];
    let spans: Vec<_> = months_asked
        .iter()
        .map(|(_, from, to)| (from_ms(*from), from_ms(*to)))
        .collect();
    let groupings = [Some(GroupBy::Api), Some(GroupBy::Tier)];
    let to = crate::domain::time::floor_to(now.timestamp_millis(), DAY_MS) + DAY_MS;
    let from = to - 30 * DAY_MS;
    // The trend is its own reading, on a connection of its own, side by side with the revenue.
    let trend = async { state.store.begin_read().await?.usage_by_day(from, to).await };
    let (reports, totals) = tokio::join!(
        revenue::revenue_by(&state.store, &spans, &groupings, now, live),
        trend
    );
    let reports = match reports {
        Ok(reports) => reports,
        Err(error) => return fault(error),
    };
    let totals = match totals {
        Ok(totals) => totals,
        Err(error) => return fault(error),
    };
    let mut reports = reports.into_iter();
    let mut months = Vec::new();
    for (label, month_from, month_to) in months_asked {
        let (Some(by_api), Some(by_tier)) = (reports.next(), reports.next()) else {
            return fault("a revenue report is missing");
        };
        let label = format!(
            "{label}: periods starting {} to {}",
            day(month_from),
            day(month_to - DAY_MS)
        );
        months.push(month_view(label, &by_api, &by_tier));
    }
    let points: Vec<(i64, i64)> = totals.into_iter().collect();
    page(
        StatusCode::OK,
        &OverviewPage {
            csrf: session.csrf,
            months,
            trend: chart(&points, from, to, DAY_MS, "billable calls"),
        },
    )
}

/// A bar chart as inline SVG: one `rect.point` per bucket that had calls, placed by its start
/// within `from..to`, each with its figures in `data-` attributes and a tooltip.
fn chart(points: &[(i64, i64)], from: i64, to: i64, step: i64, what: &str) -> String {
    use std::fmt::Write;
    const WIDTH: i64 = 800;
    const HEIGHT: i64 = 180;
    const TOP: i64 = 10;
    let span = (to - from).max(1);
    let most = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let bar = (WIDTH * step / span).max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {}\" role=\"img\" aria-label=\"{what} from {} to {}\" data-points=\"{}\">",
        HEIGHT + 24,
        day(from),
        day(to),
        points.len()
    );
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\"/>"
    );
    for (start, value) in points {
        let x = (start - from) * WIDTH / span;
        let height = (value * (HEIGHT - TOP) / most).max(1);
        let _ = write!(
            svg,
            "<rect class=\"point\" data-start=\"{}\" data-value=\"{value}\" x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{height}\"><title>{}: {value} {what}</title></rect>",
            super::timestamp(*start),
            HEIGHT - height,
            minute(*start),
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\">{}</text><text x=\"{WIDTH}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"0\" y=\"{}\" dominant-baseline=\"hanging\">{most}</text></svg>",
        HEIGHT + 18,
        day(from),
        HEIGHT + 18,
        day(to),
        0
    );
    svg
}

// ---- subscriptions ----

#[derive(Template)]
#[template(path = "console/subscriptions.html")]
struct SubscriptionsPage {
    csrf: String,
    q: String,
    statuses: Vec<(&'static str, bool, &'static str)>,
    rows: Vec<SubscriptionRow>,
    matched: usize,
    shown: usize,
}

struct Gauge {
    used: u64,
    limit: u64,
    left: u64,
    resets: String,
}

struct SubscriptionRow {
    id: String,
    external_id: String,
    subscriber: String,
    tier: String,
    status: &'static str,
    payment: String,
    quota: Option<Gauge>,
    started: String,
}

fn gauge(state: &AppState, subscription_id: &str) -> Option<Gauge> {
    let (used, limit, resets) = state
        .access
        .quota_of(subscription_id, crate::store::now_ms())?;
    Some(Gauge {
        used,
        limit,
        left: limit.saturating_sub(used),
        resets: minute(resets),
    })
}

async fn subscriptions(
    session: Session,
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let q = query
        .get("q")
        .map(|q| q.trim().to_lowercase())
        .unwrap_or_default();
    let status = query.get("status").map(String::as_str).unwrap_or("");
    let loaded = async {
        let mut tx = state.store.begin_read().await?;
        let all = tx.all_subscriptions().await?;
        let latest = tx.latest_invoice_states().await?;
        Ok::<_, StoreError>((all, latest))
    }
    .await;
    let (all, latest) = match loaded {
        Ok(found) => found,
        Err(error) => return fault(error),
    };
    let latest: HashMap<String, String> = latest.into_iter().collect();
    let matching: Vec<&Subscription> = all
        .iter()
        .filter(|s| status.is_empty() || s.status.as_str() == status)
        .filter(|s| {
            q.is_empty()
                || s.external_id.to_lowercase().contains(&q)
                || s.subscriber.to_lowercase().contains(&q)
                || s.tier.to_lowercase().contains(&q)
                || s.id == q
        })
        .collect();
    let rows: Vec<SubscriptionRow> = matching
        .iter()
        .take(LIST_LIMIT)
        .map(|s| SubscriptionRow {
            id: s.id.clone(),
            external_id: s.external_id.clone(),
            subscriber: s.subscriber.clone(),
            tier: s.tier.clone(),
            status: s.status.as_str(),
            payment: latest.get(&s.id).cloned().unwrap_or_else(|| "none".into()),
            quota: gauge(&state, &s.id),
            started: day(s.started_at),
        })
        .collect();
    let statuses = [
        ("", "Any status"),
        ("active", "Active"),
        ("past_due", "Past due"),
        ("unpaid", "Unpaid"),
        ("canceled", "Canceled"),
    ]
    .into_iter()
    .map(|(value, label)| (value, value == status, label))
    .collect();
    page(
        StatusCode::OK,
        &SubscriptionsPage {
            csrf: session.csrf,
            q,
            statuses,
            shown: rows.len(),
            matched: matching.len(),
            rows,
        },
    )
}

// ---- one subscription, and the portal ----

/// What the console's subscription page and the portal both show.
struct UsageView {
    granularity: &'static str,
    from: String,
    to: String,
    buckets: Vec<Bucket>,
    chart: String,
    quota: Option<Gauge>,
    preview: Option<PreviewView>,
    past: Vec<PastPeriod>,
}

struct PreviewView {
    period: String,
    lines: Vec<LineView>,
    total: String,
    total_raw: String,
    /// The api's declared meters over the period so far, by dimension values.
    meters: Vec<MeterView>,
}

struct MeterView {
    meter: String,
    dimensions: String,
    quantity: String,
}

struct LineView {
    description: String,
    quantity: String,
    amount: String,
}

struct PastPeriod {
    label: String,
    calls: u64,
    rated: String,
    billed: String,
    differs: bool,
    invoice: String,
    invoice_url: Option<String>,
}

/// The usage series as `GET /v1/usage` answers it by default (30 days to an hour from now),
/// hourly or daily, with the open period's preview and the past periods.
async fn usage_view(
    state: &AppState,
    subscription: &Subscription,
    granularity: Option<&str>,
) -> Result<UsageView, Response> {
    let (granularity, step) = match granularity {
        Some("day") => ("day", DAY_MS),
        _ => ("hour", HOUR_MS),
    };
    let now = Utc::now();
    let to = now.timestamp_millis() + HOUR_MS;
    let from = to - 30 * DAY_MS;
    let mut tx = state.store.begin_read().await.map_err(fault)?;
    let rows = tx
        .usage_hours(&subscription.id, from, to)
        .await
        .map_err(fault)?;
    let invoices = tx.invoices_of(&subscription.id).await.map_err(fault)?;
    let closed_until = tx.closed_until(&subscription.id).await.map_err(fault)?;
    drop(tx);
    let buckets = buckets(rows, step);
    let points: Vec<(i64, i64)> = buckets
        .iter()
        .map(|b| (b.start_ms, b.billable_calls))
        .collect();
    let chart = chart(&points, from, to, step, "billable calls");
    let rated_at = |at| crate::billing::preview(&state.store, &subscription.id, None, at);
    let open = match rated_at(now).await {
        Ok(preview) => Some(preview),
        Err(crate::billing::BillingError::NotActive { .. }) => None,
        Err(error) => return Err(fault(error)),
    };
    let preview = open.as_ref().map(|p| {
        let mut view = preview_view(&p.invoice);
        view.meters = p
            .usage
            .meters
            .iter()
            .map(|m| MeterView {
                meter: m.meter.clone(),
                dimensions: m
                    .dimensions
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                quantity: m.quantity.normalize().to_string(),
            })
            .collect();
        view
    });
    // Back from the open period, one period at a time, to the first.
    let mut past = Vec::new();
    let mut period = open;
    for _ in 0..PAST_PERIODS {
        let Some(rated) = period else {
            break;
        };
        if rated.invoice.period_end <= now {
            past.push(past_period(state, subscription, &rated, closed_until, &invoices).await?);
        }
        let at = rated.invoice.period_start - chrono::Duration::milliseconds(1);
        if at.timestamp_millis() < subscription.started_at {
            break;
        }
        period = match rated_at(at).await {
            Ok(found) => Some(found),
            Err(
                crate::billing::BillingError::NotActive { .. }
                | crate::billing::BillingError::Pricing(_),
            ) => None,
            Err(error) => return Err(fault(error)),
        };
    }
    Ok(UsageView {
        granularity,
        from: minute(from),
        to: minute(to),
        buckets,
        chart,
        quota: gauge(state, &subscription.id),
        preview,
        past,
    })
}

fn preview_view(invoice: &crate::pricing::Invoice) -> PreviewView {
    PreviewView {
        period: format!(
            "The period from {} to {}, rated on the usage recorded so far.",
            invoice.period_start.date_naive(),
            invoice.period_end.date_naive()
        ),
        lines: invoice
            .lines
            .iter()
            .map(|line| LineView {
                description: line.description.clone(),
                quantity: line.quantity.normalize().to_string(),
                amount: invoice.currency.display(line.amount),
            })
            .collect(),
        total: invoice.currency.display(invoice.total),
        total_raw: invoice.total.normalize().to_string(),
        meters: Vec::new(),
    }
}

async fn past_period(
    state: &AppState,
    subscription: &Subscription,
    rated: &crate::billing::InvoicePreview,
    closed_until: Option<i64>,
    invoices: &[crate::store::StoredInvoice],
) -> Result<PastPeriod, Response> {
    let invoice = &rated.invoice;
    let currency: Currency = invoice.currency;
    let start = invoice.period_start.timestamp_millis();
    let end = invoice.period_end.timestamp_millis();
    let billed = if state.stripe.is_live() {
        if closed_until.is_some_and(|until| until >= end) {
            let lines = state
                .store
                .begin_read()
                .await
                .map_err(fault)?
                .billed_lines_of(&subscription.id, start)
                .await
                .map_err(fault)?;
            let fees: Decimal = invoice
                .lines
                .iter()
                .filter(|l| {
                    matches!(
                        l.kind,
                        crate::pricing::LineKind::FixedFee | crate::pricing::LineKind::OneTimeFee
                    )
                })
                .map(|l| l.amount)
                .sum();
            let usage: Decimal = lines
                .iter()
                .map(|(_, line)| currency.from_minor(line.amount_minor))
                .sum();
            Some(fees + usage)
        } else {
            None
        }
    } else {
        Some(invoice.total)
    };
    let stripe = invoices
        .iter()
        .find(|i| i.period_start == Some(start) || i.period_end == Some(end));
    Ok(PastPeriod {
        label: format!(
            "{} to {}",
            invoice.period_start.date_naive(),
            invoice.period_end.date_naive()
        ),
        calls: rated.usage.billable_calls,
        rated: currency.display(invoice.total),
        billed: billed.map_or_else(|| "not closed yet".into(), |b| currency.display(b)),
        differs: billed.is_some_and(|b| b != invoice.total),
        invoice: stripe.map_or_else(
            || "none".into(),
            |i| {
                format!(
                    "{} {}",
                    i.number.clone().unwrap_or_else(|| i.stripe_id.clone()),
                    i.status
                )
            },
        ),
        invoice_url: stripe.and_then(|i| i.hosted_invoice_url.clone()),
    })
}

#[derive(Template)]
#[template(path = "console/subscription.html")]
struct SubscriptionPage {
    csrf: String,
    id: String,
    external_id: String,
    subscriber: String,
    tier: String,
    tier_version: i64,
    status: &'static str,
    started: String,
    canceled: Option<String>,
    stripe_links: Vec<(String, String)>,
    usage: UsageView,
    new_link: Option<String>,
    links: Vec<LinkRow>,
}

struct LinkRow {
    id: String,
    created: String,
    expires: String,
    state: &'static str,
}

async fn find(state: &AppState, id: &str) -> Result<Subscription, Response> {
    let found = state
        .store
        .begin_read()
        .await
        .map_err(fault)?
        .find_subscription(id)
        .await
        .map_err(fault)?;
    found.ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "not_found",
            "There is no such subscription.",
        )
    })
}

async fn subscription_page(
    state: &AppState,
    session: Session,
    id: &str,
    granularity: Option<&str>,
    new_link: Option<String>,
) -> Result<Response, Response> {
    let subscription = find(state, id).await?;
    let usage = usage_view(state, &subscription, granularity).await?;
    let mut tx = state.store.begin_read().await.map_err(fault)?;
    let mirror = tx
        .stripe_subscription(&subscription.id)
        .await
        .map_err(fault)?;
    let mut stripe_links = Vec::new();
    if let Some(mirror) = mirror {
        let dashboard = "https://dashboard.stripe.com";
        let account = if mirror.account.is_empty() {
            String::new()
        } else {
            format!("/{}", mirror.account)
        };
        if let Some(customer) = tx
            .stripe_object("customer", &subscription.subscriber_id, &mirror.account)
            .await
            .map_err(fault)?
        {
            stripe_links.push((
                customer.clone(),
                format!("{dashboard}{account}/customers/{customer}"),
            ));
        }
        stripe_links.push((
            mirror.stripe_id.clone(),
            format!("{dashboard}{account}/subscriptions/{}", mirror.stripe_id),
        ));
    }
    let now = crate::store::now_ms();
    let links = tx
        .portal_links_of(&subscription.id)
        .await
        .map_err(fault)?
        .into_iter()
        .map(|link| LinkRow {
            state: portal::state_of(&link, now),
            created: minute(link.created_at),
            expires: minute(link.expires_at),
            id: link.id,
        })
        .collect();
    drop(tx);
    Ok(page(
        StatusCode::OK,
        &SubscriptionPage {
            csrf: session.csrf,
            id: subscription.id,
            external_id: subscription.external_id,
            subscriber: subscription.subscriber,
            tier: subscription.tier,
            tier_version: subscription.tier_version,
            status: subscription.status.as_str(),
            started: minute(subscription.started_at),
            canceled: subscription.canceled_at.map(minute),
            stripe_links,
            usage,
            new_link,
            links,
        },
    ))
}

async fn subscription(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let granularity = query.get("granularity").map(String::as_str);
    subscription_page(&state, session, &id, granularity, None)
        .await
        .unwrap_or_else(|refused| refused)
}

async fn make_portal_link(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = session.check(&form) {
        return refused;
    }
    let result = async {
        let subscription = find(&state, &id).await?;
        let valid_for = portal::validity(form.get("valid_for").map(String::as_str), "valid_for")
            .map_err(IntoResponse::into_response)?;
        let (_, token) = portal::make_link(&state, &subscription.id, valid_for)
            .await
            .map_err(IntoResponse::into_response)?;
        let url = format!("{}/portal/{token}", portal::origin(&headers));
        subscription_page(&state, session, &subscription.id, None, Some(url)).await
    }
    .await;
    result.unwrap_or_else(|refused| refused)
}

async fn revoke_portal_link(
    session: Session,
    State(state): State<AppState>,
    Path((id, link)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = session.check(&form) {
        return refused;
    }
    match portal::revoke_link(&state, &id, &link).await {
        Ok(_) => Redirect::to(&format!("/console/subscriptions/{id}")).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/portal.html")]
struct PortalPage {
    token: String,
    external_id: String,
    tier: String,
    status: &'static str,
    expires: String,
    usage: UsageView,
    billing_portal: bool,
}

fn refused_link(error: OpenError) -> Response {
    match error {
        OpenError::Refused(Refused::Invalid) => message(
            StatusCode::NOT_FOUND,
            "No such page",
            "invalid_link",
            "This link is not one tollbooth made. Ask your provider for a new one.",
        ),
        OpenError::Refused(Refused::Expired) => message(
            StatusCode::FORBIDDEN,
            "This link has expired",
            "link_expired",
            "This link has expired. Ask your provider for a new one.",
        ),
        OpenError::Refused(Refused::Revoked) => message(
            StatusCode::FORBIDDEN,
            "This link was revoked",
            "link_revoked",
            "This link was revoked. Ask your provider for a new one.",
        ),
        OpenError::Store(error) => fault(error),
    }
}

async fn portal_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let link = match portal::open_link(&state, &token).await {
        Ok(link) => link,
        Err(error) => return refused_link(error),
    };
    let result = async {
        let subscription = find(&state, &link.subscription_id).await?;
        let granularity = query.get("granularity").map(String::as_str);
        let usage = usage_view(&state, &subscription, granularity).await?;
        Ok::<_, Response>(page(
            StatusCode::OK,
            &PortalPage {
                token,
                external_id: subscription.external_id,
                tier: subscription.tier,
                status: subscription.status.as_str(),
                expires: minute(link.expires_at),
                usage,
                billing_portal: state.stripe.is_live(),
            },
        ))
    }
    .await;
    let mut response = result.unwrap_or_else(|refused| refused);
    // The token is in the address: it must not leave in a Referer.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Opens Stripe's customer portal for the link's subscription.
async fn billing_portal(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let link = match portal::open_link(&state, &token).await {
        Ok(link) => link,
        Err(error) => return refused_link(error),
    };
    let return_url = format!("{}/portal/{token}", portal::origin(&headers));
    // One session a minute per link: a second click in the same minute gets the same session.
    let key = format!(
        "tb-billing-portal-{}-{}",
        link.id,
        crate::store::now_ms() / 60_000
    );
    match state
        .stripe
        .billing_portal_url(&state.store, &link.subscription_id, &return_url, &key)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => {
            tracing::warn!(%error, link = %link.id, "Stripe's customer portal could not be opened");
            message(
                StatusCode::BAD_GATEWAY,
                "Stripe could not be reached",
                "stripe_unavailable",
                "Stripe's customer portal could not be opened just now. Try again in a minute.",
            )
        }
    }
}

// ---- billing runs and gateways ----

#[derive(Template)]
#[template(path = "console/runs.html")]
struct RunsPage {
    csrf: String,
    runs: Vec<RunView>,
}

struct RunView {
    day: String,
    state: String,
    summary: String,
    troubled: bool,
    failures: Vec<(String, String)>,
    reconciliation: Vec<ReconciliationRow>,
}

struct ReconciliationRow {
    subscription: String,
    period: String,
    rated: String,
    billed: String,
    difference: String,
    differs: bool,
}

async fn billing_runs(session: Session, State(state): State<AppState>) -> Response {
    let page_request = crate::store::PageRequest::first(30);
    let runs = async {
        state
            .store
            .begin_read()
            .await?
            .job_runs(crate::billing::JOB, &page_request)
            .await
    }
    .await;
    let runs = match runs {
        Ok(runs) => runs.items,
        Err(error) => return fault(error),
    };
    let runs = runs
        .into_iter()
        .map(|run| {
            let report: Option<crate::billing::RunReport> = run
                .report
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok());
            let (summary, failures, reconciliation) = match report {
                Some(report) => (
                    format!(
                        "{} subscriptions reported, {} periods closed, {} items created, {} updated, {} late.",
                        report.subscriptions_reported,
                        report.cycles_closed,
                        report.items_created,
                        report.items_updated,
                        report.late_items
                    ),
                    report
                        .failures
                        .into_iter()
                        .map(|f| (f.subscription, f.error))
                        .collect::<Vec<_>>(),
                    report
                        .reconciliation
                        .into_iter()
                        .map(|line| ReconciliationRow {
                            differs: !line.difference.is_zero(),
                            subscription: line.subscription,
                            period: line.period_start.date_naive().to_string(),
                            rated: format!("{} {}", line.rated, line.currency),
                            billed: format!("{} {}", line.billed, line.currency),
                            difference: format!("{} {}", line.difference, line.currency),
                        })
                        .collect::<Vec<_>>(),
                ),
                None => ("No report yet.".into(), Vec::new(), Vec::new()),
            };
            RunView {
                troubled: run.state == "failed"
                    || !failures.is_empty()
                    || reconciliation.iter().any(|r| r.differs),
                day: run.day,
                state: run.state,
                summary,
                failures,
                reconciliation,
            }
        })
        .collect();
    page(
        StatusCode::OK,
        &RunsPage {
            csrf: session.csrf,
            runs,
        },
    )
}

#[derive(Template)]
#[template(path = "console/gateways.html")]
struct GatewaysPage {
    csrf: String,
    gateways: Vec<GatewayRow>,
}

struct GatewayRow {
    name: String,
    state: &'static str,
    last: String,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    recent: Vec<(String, String)>,
}

async fn gateways(session: Session, State(state): State<AppState>) -> Response {
    let loaded = async {
        let mut tx = state.store.begin_read().await?;
        let gateways = tx
            .list_gateways(&crate::store::PageRequest::first(200))
            .await?
            .items;
        let mut rows = Vec::with_capacity(gateways.len());
        for gateway in gateways {
            let others = tx
                .ingest_stats(&gateway.id, state.ingest_stats.replica())
                .await?;
            let mine = state.ingest_stats.of(&gateway.id);
            let stats = crate::metering::stats::GatewayStats::merge(others.into_iter().chain(mine));
            rows.push(GatewayRow {
                state: if gateway.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                },
                name: gateway.name,
                last: stats.last_sent_at.map_or_else(|| "never".into(), minute),
                accepted: stats.accepted,
                duplicates: stats.duplicates,
                rejected: stats.rejected.values().sum(),
                recent: stats
                    .recent_rejections
                    .into_iter()
                    .take(3)
                    .map(|r| (r.code, r.message))
                    .collect(),
            });
        }
        Ok::<_, StoreError>(rows)
    }
    .await;
    match loaded {
        Ok(gateways) => page(
            StatusCode::OK,
            &GatewaysPage {
                csrf: session.csrf,
                gateways,
            },
        ),
        Err(error) => fault(error),
    }
}
