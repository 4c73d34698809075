//! The invoice preview: a subscription's billing period rated on the usage recorded so far.

use super::BillingError;
use crate::domain::FieldError;
use crate::domain::meter::Aggregation;
use crate::domain::time::from_ms;
use crate::pricing::{
    self, DailyUsage, Invoice, MeterQuantity, Period, PeriodUsage, RatedPart, RatedPeriod,
};
use crate::store::{MeterRow, Store, Subscription, UniqueValue, UsageRow};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// A rated period of one subscription, with the usage it was rated on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoicePreview {
    pub subscription: String,
    pub external_id: String,
    pub tier: String,
    pub tier_version: i64,
    pub active_from: DateTime<Utc>,
    pub active_to: DateTime<Utc>,
    pub usage: UsageFigures,
    #[serde(flatten)]
    #[schema(inline)]
    pub invoice: Invoice,
}

/// The period's usage totals, as rated.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageFigures {
    pub billable_calls: u64,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub billable_units: Decimal,
    pub failed_calls: u64,
    pub total_calls: u64,
    /// The api's declared meters, one entry per meter and set of dimension values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterFigure>,
}

/// What one declared meter measured over the period, for one set of dimension values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeterFigure {
    pub meter: String,
    pub aggregation: crate::domain::meter::Aggregation,
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub dimensions: BTreeMap<String, String>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
}

impl From<MeterQuantity> for MeterFigure {
    fn from(m: MeterQuantity) -> Self {
        Self {
            meter: m.meter,
            aggregation: m.aggregation,
            dimensions: m.dimensions.into_iter().collect(),
            quantity: m.quantity.normalize(),
        }
    }
}

/// The usage recorded in a span: hourly calls, declared meters' hours, and the values of
/// unique_count meters with the first hour each was seen in.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    pub(super) hours: Vec<UsageRow>,
    pub(super) meters: Vec<MeterRow>,
    pub(super) uniques: Vec<UniqueValue>,
}

impl Recorded {
    /// Reads a subscription's usage with `from <= hour < to`.
    pub(super) async fn read(
        tx: &mut crate::store::Tx,
        subscription_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Self, crate::store::StoreError> {
        Ok(Self {
            hours: tx.usage_hours(subscription_id, from, to).await?,
            meters: tx.meter_hours(subscription_id, from, to).await?,
            uniques: tx.meter_unique_values(subscription_id, from, to).await?,
        })
    }

    /// The usage of hours `from <= hour < to`.
    fn usage(&self, from: i64, to: i64) -> Result<PeriodUsage, BillingError> {
        let within = |hour: i64| hour >= from && hour < to;
        let mut usage =
            PeriodUsage::from_days(daily(self.hours.iter().filter(|row| within(row.hour))))?;
        let metered = usage_of_meters(
            self.meters.iter().filter(|row| within(row.hour)),
            self.uniques.iter().filter(|value| within(value.first_hour)),
        );
        usage.meters = metered.meters;
        usage.unique_values = metered.unique_values;
        Ok(usage)
    }
}

/// The declared meters' part of a period's usage: each meter's quantity by dimension values,
/// and the unique_count meters' values.
pub fn usage_of_meters<'a>(
    rows: impl Iterator<Item = &'a MeterRow>,
    uniques: impl Iterator<Item = &'a UniqueValue> + Clone,
) -> PeriodUsage {
    PeriodUsage {
        meters: meter_quantities(rows, uniques.clone()),
        unique_values: uniques
            .map(|u| {
                (
                    u.meter.clone(),
                    crate::domain::meter::dimension_values(&u.dimensions),
                    u.value.clone(),
                )
            })
            .collect(),
        ..PeriodUsage::default()
    }
}

/// Folds declared meters' hourly rows (and unique values) into one quantity per meter and set of
/// dimension values.
pub fn meter_quantities<'a>(
    rows: impl Iterator<Item = &'a MeterRow>,
    uniques: impl Iterator<Item = &'a UniqueValue>,
) -> Vec<MeterQuantity> {
    let mut folded: BTreeMap<(&str, &str), MeterQuantity> = BTreeMap::new();
    fn entry<'m, 'k>(
        folded: &'m mut BTreeMap<(&'k str, &'k str), MeterQuantity>,
        key: (&'k str, &'k str),
        aggregation: Aggregation,
    ) -> &'m mut MeterQuantity {
        folded.entry(key).or_insert_with(|| MeterQuantity {
            meter: key.0.to_owned(),
            dimensions: crate::domain::meter::dimension_values(key.1),
            aggregation,
            quantity: Decimal::ZERO,
            at: i64::MIN,
        })
    }
    for row in rows {
        let aggregation = row.aggregation();
        if aggregation == Aggregation::UniqueCount {
            continue;
        }
        let found = entry(
            &mut folded,
            (row.meter.as_str(), row.dimensions.as_str()),
            aggregation,
        );
        let hour = row.quantity();
        match aggregation {
            Aggregation::Count | Aggregation::Sum => {
                found.quantity = found.quantity.checked_add(hour).unwrap_or(Decimal::MAX);
            }
            Aggregation::Max => found.quantity = found.quantity.max(hour),
            Aggregation::Latest => {
                if row.latest_at >= found.at {
                    found.at = row.latest_at;
                    found.quantity = hour;
                }
            }
            Aggregation::UniqueCount => {}
        }
    }
    for value in uniques {
        let found = entry(
            &mut folded,
            (value.meter.as_str(), value.dimensions.as_str()),
            Aggregation::UniqueCount,
        );
        found.quantity += Decimal::ONE;
    }
    folded.into_values().collect()
}

/// Rates the period of `subscription` that holds `now`, or the one starting on `period_start`.
pub async fn preview(
    store: &Store,
    subscription: &str,
    period_start: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<InvoicePreview, BillingError> {
    let mut tx = store.begin_read().await?;
    let subscription = tx
        .find_subscription(subscription)
        .await?
        .ok_or_else(|| BillingError::UnknownSubscription(subscription.to_owned()))?;
    let version = tx
        .find_tier_version(&subscription.tier_version_id)
        .await?
        .ok_or_else(|| {
            crate::store::StoreError::Corrupt("subscription without its tier version".into())
        })?;
    let period = period_of(&subscription, version.spec.period(), period_start, now)?;
    let recorded = Recorded::read(
        &mut tx,
        &subscription.id,
        period.start().timestamp_millis(),
        period.end().timestamp_millis(),
    )
    .await?;
    let mut history = tx.tier_history(&subscription.id).await?;
    if history.is_empty() {
        // A row written without its history: on its current version since it started.
        history.push((version.id.clone(), subscription.started_at));
    }
    let mut versions = Vec::with_capacity(history.len());
    for (version_id, from_ms) in history {
        let spec = if version_id == version.id {
            version.spec.clone()
        } else {
            let found = tx.find_tier_version(&version_id).await?.ok_or_else(|| {
                crate::store::StoreError::Corrupt(format!("tier version {version_id} is gone"))
            })?;
            found.spec
        };
        versions.push((spec, from_ms));
    }
    rate(&subscription, &versions, period, &recorded)
}

/// The period of `subscription` that holds `now`, or the one starting on `period_start`; `length`
/// is its current tier's period.
pub(super) fn period_of(
    subscription: &Subscription,
    length: crate::domain::tier::BillingPeriod,
    period_start: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Period, BillingError> {
    let anchor = from_ms(subscription.started_at).date_naive();
    match period_start {
        None => Ok(pricing::period_containing(anchor, length, now)?),
        Some(start) => chosen_period(anchor, length, start, now),
    }
}

/// Rates one period of a subscription: `versions` are the tier versions it has been on with
/// when it moved to each, oldest first; `recorded` its usage within the period.
pub(super) fn rate(
    subscription: &Subscription,
    versions: &[(crate::domain::tier::TierSpec, i64)],
    period: Period,
    recorded: &Recorded,
) -> Result<InvoicePreview, BillingError> {
    let started_at = from_ms(subscription.started_at);
    let rated = rated_period(subscription, period, started_at)?;
    let spans = tier_spans(versions, &rated, period)?;
    let mut parts = Vec::with_capacity(spans.len());
    for (index, span) in spans.iter().enumerate() {
        // An hour's calls go with the tier the subscription was on when the hour began; hours
        // before the first change are the first tier's, hours after the last the last one's.
        let from = if index == 0 {
            i64::MIN
        } else {
            span.from.timestamp_millis()
        };
        let to = if index + 1 == spans.len() {
            i64::MAX
        } else {
            span.to.timestamp_millis()
        };
        parts.push(RatedPart {
            tier: &versions[span.version].0,
            period: span.rated,
            usage: recorded.usage(from, to)?,
        });
    }
    let invoice = pricing::rate_parts(&parts)?;
    let usage = recorded.usage(i64::MIN, i64::MAX)?;
    Ok(InvoicePreview {
        subscription: subscription.id.clone(),
        external_id: subscription.external_id.clone(),
        tier: subscription.tier.clone(),
        tier_version: subscription.tier_version,
        active_from: rated.active_from(),
        active_to: rated.active_to(),
        usage: UsageFigures {
            billable_calls: usage.billable_calls,
            billable_units: usage.billable_units.normalize(),
            failed_calls: usage.failed_calls,
            total_calls: usage.total_calls,
            meters: usage.meters.into_iter().map(MeterFigure::from).collect(),
        },
        invoice,
    })
}

/// Rates one period from its usage totals, when they are all the rating needs: the subscription
/// was on one tier version for the whole period and that tier gives no SLA credit (which reads
/// the usage day by day), and it prices no declared meter. `None` otherwise: rate it from its
/// hours with [`rate`].
pub(super) fn rate_totals(
    subscription: &Subscription,
    versions: &[(crate::domain::tier::TierSpec, i64)],
    period: Period,
    totals: PeriodUsage,
) -> Result<Option<crate::pricing::Invoice>, BillingError> {
    let rated = rated_period(subscription, period, from_ms(subscription.started_at))?;
    let spans = tier_spans(versions, &rated, period)?;
    let [span] = spans.as_slice() else {
        return Ok(None);
    };
    let tier = &versions[span.version].0;
    let meters = tier
        .charges
        .iter()
        .any(|c| !crate::domain::meter::BUILT_IN_METERS.contains(&c.meter.as_str()));
    if tier.sla_credit.is_some() || meters {
        return Ok(None);
    }
    let part = RatedPart {
        tier,
        period: span.rated,
        usage: totals,
    };
    Ok(Some(pricing::rate_parts(&[part])?))
}

/// The part of the rated span the subscription spent on one tier version.
struct TierSpan {
    /// Index into the versions.
    version: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rated: RatedPeriod,
}

/// Splits the rated span of a period where the subscription changed tier. `versions` are
/// `(tier, on it from)`, oldest first; with no history the current tier covers it all.
fn tier_spans(
    versions: &[(crate::domain::tier::TierSpec, i64)],
    rated: &RatedPeriod,
    period: Period,
) -> Result<Vec<TierSpan>, BillingError> {
    let (active_from, active_to) = (rated.active_from(), rated.active_to());
    let mut spans = Vec::new();
    for (index, (_, since)) in versions.iter().enumerate() {
        let until = versions
            .get(index + 1)
            .map_or(active_to, |(_, next)| from_ms(*next));
        // The first part begins with the active span, whatever its version's recorded start.
        let from = if spans.is_empty() {
            active_from
        } else {
            from_ms(*since).max(active_from)
        };
        let to = until.min(active_to);
        if from >= to {
            continue;
        }
        let part = if from == active_from && to == active_to {
            *rated
        } else {
            let part = RatedPeriod::partial(period, from, to)?;
            if rated.is_first_period() && from == active_from {
                part.as_first_period()
            } else {
                part
            }
        };
        spans.push(TierSpan {
            version: index,
            from,
            to,
            rated: part,
        });
    }
    if spans.is_empty() {
        return Err(BillingError::Store(crate::store::StoreError::Corrupt(
            "a subscription without its tier history".into(),
        )));
    }
    Ok(spans)
}

/// The period starting on `start`, which must be one of the subscription's period starts and begun.
fn chosen_period(
    anchor: NaiveDate,
    length: crate::domain::tier::BillingPeriod,
    start: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Period, BillingError> {
    let invalid = |message: String| BillingError::Invalid(FieldError::new("period_start", message));
    let at = start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    if at > now {
        return Err(invalid(format!(
            "the period starting {start} has not begun"
        )));
    }
    let period = pricing::period_containing(anchor, length, at).map_err(|_| {
        invalid(format!(
            "the subscription's first period starts on {anchor}"
        ))
    })?;
    if period.start() != at {
        return Err(invalid(format!(
            "{start} is not the start of a billing period; the period holding it starts on {}",
            period.start().date_naive()
        )));
    }
    Ok(period)
}

/// The part of `period` the subscription was on its tier: from its start, up to its cancellation.
fn rated_period(
    subscription: &Subscription,
    period: Period,
    started_at: DateTime<Utc>,
) -> Result<RatedPeriod, BillingError> {
    let active_from = started_at.max(period.start());
    let active_to = subscription
        .canceled_at
        .map(from_ms)
        .map_or(period.end(), |canceled| canceled.min(period.end()));
    if active_to <= active_from {
        return Err(BillingError::NotActive {
            subscription: subscription.external_id.clone(),
            period_start: period.start().date_naive(),
        });
    }
    let rated = if active_from == period.start() && active_to == period.end() {
        RatedPeriod::whole(period)
    } else {
        RatedPeriod::partial(period, active_from, active_to)?
    };
    // The period the subscription started in is its first: a one-time fee is charged there.
    Ok(if period.start().date_naive() == started_at.date_naive() {
        rated.as_first_period()
    } else {
        rated
    })
}

/// Hourly rows summed by UTC day.
fn daily<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> Vec<DailyUsage> {
    let mut days: BTreeMap<NaiveDate, DailyUsage> = BTreeMap::new();
    for row in rows {
        let day = from_ms(row.hour).date_naive();
        let entry = days.entry(day).or_insert_with(|| DailyUsage {
            day,
            billable_calls: 0,
            billable_units: Decimal::ZERO,
            failed_calls: 0,
            total_calls: 0,
        });
        entry.billable_calls += u64::try_from(row.billable_calls).unwrap_or(0);
        entry.billable_units += row.billable_units();
        entry.failed_calls += u64::try_from(row.failed_calls).unwrap_or(0);
        entry.total_calls += u64::try_from(row.total_calls).unwrap_or(0);
    }
    days.into_values().collect()
}
