//! Thresholds notified from the ingestion commit that reaches them: a hard quota reached
//! (`quota.reached`), a tier's usage alerts (`usage.threshold_reached`) and spend alerts
//! (`spend.threshold_reached`). The notification is written in the batch's own transaction, so a
//! crash loses neither the usage nor its notification, and a `threshold_crossings` row makes each
//! threshold fire once per subscription and period, whichever writer or replica reaches it.

use crate::domain::alert::{Alert, QuotaLimit};
use crate::domain::tier::TierSpec;
use crate::domain::time::{DAY_MS, floor_to, from_ms};
use crate::notify::Notifier;
use crate::pricing::{self, Period, PeriodUsage, RatedPeriod};
use crate::store::{MeterIncrement, PeriodUsageSum, StoreError, StoreResult, Tx, UsageIncrement};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a subscription's thresholds are measured against: its tier version and its start.
#[derive(Debug)]
pub struct Watch {
    pub tier: TierSpec,
    /// Unix ms.
    pub started_at: i64,
}

impl Watch {
    /// Whether the tier has anything to notify: a hard quota (its own or a charge's) or an alert.
    pub fn wanted(tier: &TierSpec) -> bool {
        tier.quota.and_then(|q| q.hard_limit).is_some()
            || !tier.alerts.is_empty()
            || tier
                .charges
                .iter()
                .any(|c| c.quota.and_then(|q| q.hard_limit).is_some())
    }

    /// Whether its thresholds need the period's declared meters: a spend alert on a tier whose
    /// charges price them, or a charge's hard limit.
    fn reads_meters(&self) -> bool {
        let tier = &self.tier;
        let priced = tier
            .charges
            .iter()
            .any(|c| !crate::domain::meter::BUILT_IN_METERS.contains(&c.meter.as_str()));
        let spend = tier.alerts.iter().any(|a| matches!(a, Alert::Spend { .. }));
        (priced && spend)
            || tier
                .charges
                .iter()
                .any(|c| c.quota.and_then(|q| q.hard_limit).is_some())
    }

    /// The billing period holding `at` (Unix ms), if the subscription had begun.
    fn period_at(&self, at: i64) -> Option<Period> {
        let anchor = from_ms(floor_to(self.started_at, DAY_MS)).date_naive();
        pricing::period_containing(anchor, self.tier.period(), from_ms(at)).ok()
    }
}

/// What the access book knows of a subscription's watch.
#[derive(Debug, Clone)]
pub enum Watched {
    Yes(Arc<Watch>),
    /// Its tier has neither a hard quota nor alerts.
    No,
    /// Not in the book yet (made on another replica since its last catch-up): read from the
    /// database in the batch's transaction, so that its first records are measured too.
    Unknown,
}

/// The watch of a subscription as the access book holds it.
pub type WatchOf = Arc<dyn Fn(&str) -> Watched + Send + Sync>;

/// Notifies thresholds from the ingestion commit.
#[derive(Clone)]
pub struct Thresholds {
    pub notifier: Notifier,
    pub watch_of: WatchOf,
}

/// One threshold reached: its key (fires once per period), and the notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Reached {
    pub key: String,
    pub kind: &'static str,
    pub data: Value,
}

impl Thresholds {
    /// In the batch's transaction, after its usage is added: writes a notification for every
    /// threshold the batch reached; answers whether it wrote one (wake the notifier after the
    /// commit).
    pub async fn notify_reached(
        &self,
        tx: &mut Tx,
        increments: &[UsageIncrement],
        meters: &[MeterIncrement],
        now: i64,
    ) -> StoreResult<bool> {
        if !self.notifier.is_enabled() {
            return Ok(false);
        }
        // The batch's own usage by watched subscription and period; a declared meter's usage
        // (of a call or a usage event) touches its period too.
        let mut touched: BTreeMap<(&str, i64), Touched> = BTreeMap::new();
        let mut last: Option<(&str, Option<Arc<Watch>>)> = None;
        let touches = increments
            .iter()
            .map(|i| (i.subscription_id.as_str(), i.hour, Some(i)))
            .chain(
                meters
                    .iter()
                    .map(|m| (m.subscription_id.as_str(), m.hour, None)),
            );
        for (id, hour, increment) in touches {
            let watch = match &last {
                Some((seen, watch)) if *seen == id => watch.clone(),
                _ => {
                    let watch = match (self.watch_of)(id) {
                        Watched::Yes(watch) => Some(watch),
                        Watched::No => None,
                        Watched::Unknown => watch_from_database(tx, id).await?,
                    };
                    last = Some((id, watch.clone()));
                    watch
                }
            };
            let Some(watch) = watch else { continue };
            let Some(period) = watch.period_at(hour) else {
                continue;
            };
            let start = period.start().timestamp_millis();
            let entry = touched.entry((id, start)).or_insert_with(|| Touched {
                watch: watch.clone(),
                period,
                calls: 0,
                units_micros: 0,
            });
            if let Some(increment) = increment {
                entry.calls = entry.calls.saturating_add(increment.billable_calls);
                entry.units_micros = entry
                    .units_micros
                    .saturating_add(increment.billable_units_micros);
            }
        }
        if touched.is_empty() {
            return Ok(false);
        }
        let periods: Vec<(&str, i64, i64)> = touched
            .iter()
            .map(|((id, start), t)| (*id, *start, t.period.end().timestamp_millis()))
            .collect();
        let sums = tx.period_usage_sums(&periods).await?;
        let mut wrote = false;
        for (((id, start), batch), after) in touched.iter().zip(sums) {
            let units = Decimal::try_from_i128_with_scale(batch.units_micros, 6).map_err(|_| {
                StoreError::Corrupt(format!("a batch's units for subscription {id} do not fit"))
            })?;
            let before = PeriodUsageSum {
                billable_calls: after.billable_calls.saturating_sub(batch.calls),
                billable_units: after.billable_units - units,
            };
            let metered = match batch.watch.reads_meters() {
                true => {
                    let end = batch.period.end().timestamp_millis();
                    let rows = tx.meter_hours(id, *start, end).await?;
                    let uniques = tx.meter_unique_values(id, *start, end).await?;
                    Some(crate::billing::usage_of_meters(rows.iter(), uniques.iter()))
                }
                false => None,
            };
            let found = reached_with_meters(
                &batch.watch,
                batch.period,
                &before,
                &after,
                metered.as_ref(),
            );
            for reached in found {
                if tx
                    .mark_threshold_reached(id, *start, &reached.key, now)
                    .await?
                {
                    self.notifier
                        .write(tx, reached.kind, id, with_subscription(id, reached.data))
                        .await?;
                    wrote = true;
                }
            }
        }
        Ok(wrote)
    }
}

/// The watch of a subscription the access book does not hold yet, as the database has it (none
/// for a canceled one, which the book leaves out on purpose).
async fn watch_from_database(tx: &mut Tx, id: &str) -> StoreResult<Option<Arc<Watch>>> {
    Ok(tx
        .access_row_of(id)
        .await?
        .filter(|row| row.status != "canceled" && Watch::wanted(&row.tier))
        .map(|row| {
            Arc::new(Watch {
                tier: row.tier,
                started_at: row.started_at,
            })
        }))
}

/// A batch's own usage of one watched subscription's period.
struct Touched {
    watch: Arc<Watch>,
    period: Period,
    calls: i64,
    units_micros: i128,
}

fn with_subscription(id: &str, mut data: Value) -> Value {
    if let Value::Object(fields) = &mut data {
        fields.insert("subscription".to_owned(), Value::from(id));
    }
    data
}

/// The thresholds usage reached going from `before` to `after` within `period`: each one that
/// `before` was under and `after` is at or over.
pub fn reached(
    watch: &Watch,
    period: Period,
    before: &PeriodUsageSum,
    after: &PeriodUsageSum,
) -> Vec<Reached> {
    reached_with_meters(watch, period, before, after, None)
}

/// As [`reached`], with the period's declared meters as they are after the batch, when the
/// tier's charges price them or limit them. A max, latest or unique count has no "before" to
/// compare with, so what depends on meters is reached when `after` is at or over it, and
/// `threshold_crossings` (which the caller marks) makes it fire once per period.
fn reached_with_meters(
    watch: &Watch,
    period: Period,
    before: &PeriodUsageSum,
    after: &PeriodUsageSum,
    meters: Option<&PeriodUsage>,
) -> Vec<Reached> {
    let tier = &watch.tier;
    let crossed = |threshold: Decimal, before: Decimal, after: Decimal| {
        before < threshold && threshold <= after
    };
    let calls = |sum: &PeriodUsageSum| Decimal::from(sum.billable_calls);
    let mut reached = Vec::new();
    if let Some(limit) = tier.quota.and_then(|q| q.hard_limit)
        && crossed(Decimal::from(limit), calls(before), calls(after))
    {
        reached.push(Reached {
            key: "quota.reached".to_owned(),
            kind: "quota.reached",
            data: json!({"limit": limit, "resets_at": period.end()}),
        });
    }
    let mut amounts = None;
    for alert in &tier.alerts {
        match alert {
            Alert::Quota { quota, percent } => {
                let Some(threshold) = alert.usage_threshold(tier.quota) else {
                    continue;
                };
                let (was, is, used) = match quota {
                    QuotaLimit::HardLimit => (
                        calls(before),
                        calls(after),
                        Value::from(after.billable_calls),
                    ),
                    QuotaLimit::SoftLimit => (
                        before.billable_units,
                        after.billable_units,
                        Value::from(after.billable_units.normalize().to_string()),
                    ),
                };
                if crossed(threshold, was, is) {
                    reached.push(Reached {
                        key: alert.key(),
                        kind: "usage.threshold_reached",
                        data: json!({
                            "quota": quota.as_str(),
                            "percent": percent.value().normalize().to_string(),
                            "limit": quota.of(tier.quota),
                            "threshold": threshold.normalize().to_string(),
                            "used": used,
                            "period_start": period.start(),
                            "period_end": period.end(),
                        }),
                    });
                }
            }
            Alert::Spend { amount } => {
                let Some((was, is)) = *amounts.get_or_insert_with(|| {
                    let is = spend(watch, period, after, meters)?;
                    // With meters priced, reached once at or over (see above).
                    if meters.is_some() {
                        return Some((Decimal::ZERO, is));
                    }
                    // Before the period's first usage it has come to nothing yet: a threshold
                    // its fixed fee alone reaches is reached with that first usage.
                    let was = if before.billable_calls == 0 && before.billable_units.is_zero() {
                        Decimal::ZERO
                    } else {
                        spend(watch, period, before, None)?
                    };
                    Some((was, is))
                }) else {
                    continue;
                };
                if crossed(amount.value(), was, is) {
                    reached.push(Reached {
                        key: alert.key(),
                        kind: "spend.threshold_reached",
                        data: json!({
                            "spend": amount.value().to_string(),
                            "amount": is.to_string(),
                            "currency": tier.currency,
                            "period_start": period.start(),
                            "period_end": period.end(),
                        }),
                    });
                }
            }
        }
    }
    // A charge's hard limit on a declared meter, reached by what is committed.
    for charge in tier
        .charges
        .iter()
        .filter(|c| c.quota.and_then(|q| q.hard_limit).is_some())
    {
        let (Some(meters), Some(limit)) = (meters, charge.quota.and_then(|q| q.hard_limit)) else {
            continue;
        };
        let Ok(used) = pricing::charge_quantity(charge, meters) else {
            continue;
        };
        if used >= Decimal::from(limit) {
            let dimensions: Vec<String> = charge
                .dimensions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            reached.push(Reached {
                key: format!("quota.reached:{}:{}", charge.meter, dimensions.join(",")),
                kind: "quota.reached",
                data: json!({
                    "meter": charge.meter.as_str(),
                    "dimensions": charge.dimensions,
                    "limit": limit,
                    "used": used.normalize().to_string(),
                    "resets_at": period.end(),
                }),
            });
        }
    }
    reached
}

/// What the period comes to on `usage`: its fixed fee (from the subscription's start within the
/// period; a one-time fee in its first period), usage charges and volume discount, on the
/// subscription's current tier. SLA credits, which are reckoned by day at the period's end, are
/// not taken off.
fn spend(
    watch: &Watch,
    period: Period,
    usage: &PeriodUsageSum,
    meters: Option<&PeriodUsage>,
) -> Option<Decimal> {
    let started = from_ms(watch.started_at);
    let active_from = started.max(period.start());
    let rated = if active_from == period.start() {
        RatedPeriod::whole(period)
    } else {
        RatedPeriod::partial(period, active_from, period.end()).ok()?
    };
    let rated = if period.start().date_naive() == started.date_naive() {
        rated.as_first_period()
    } else {
        rated
    };
    let usage = PeriodUsage {
        billable_calls: u64::try_from(usage.billable_calls).ok()?,
        billable_units: usage.billable_units,
        failed_calls: 0,
        total_calls: u64::try_from(usage.billable_calls).ok()?,
        days: Vec::new(),
        meters: meters.map(|m| m.meters.clone()).unwrap_or_default(),
        unique_values: meters.map(|m| m.unique_values.clone()).unwrap_or_default(),
    };
    match pricing::rate(&watch.tier, &rated, &usage) {
        Ok(invoice) => Some(invoice.total),
        Err(error) => {
            tracing::warn!(%error, "a spend alert could not price the open period");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn watch(tier: Value) -> Watch {
        let mut fields = json!({"slug": "t", "api": "a", "name": "T", "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "0.01"}});
        fields
            .as_object_mut()
            .unwrap()
            .extend(tier.as_object().unwrap().clone());
        let tier: TierSpec = serde_json::from_value(fields).unwrap();
        tier.validate().unwrap();
        Watch {
            tier,
            // 2026-12-01T00:00:00Z
            started_at: 1_796_083_200_000,
        }
    }

    fn sum(calls: i64) -> PeriodUsageSum {
        PeriodUsageSum {
            billable_calls: calls,
            billable_units: Decimal::from(calls),
        }
    }

    fn kinds(watch: &Watch, before: i64, after: i64) -> Vec<String> {
        let period = watch.period_at(watch.started_at).unwrap();
        reached(watch, period, &sum(before), &sum(after))
            .into_iter()
            .map(|r| r.key)
            .collect()
    }

    #[test]
    fn a_threshold_is_reached_by_the_usage_that_crosses_it() {
        let watch = watch(json!({
            "quota": {"hard_limit": 1000},
            "alerts": [{"quota": "hard_limit", "percent": "50"},
                       {"quota": "hard_limit", "percent": "100"},
                       {"spend": "5"}]
        }));
        assert!(kinds(&watch, 0, 499).is_empty());
        assert_eq!(kinds(&watch, 499, 500), ["hard_limit:50", "spend:5"]);
        assert!(kinds(&watch, 500, 999).is_empty(), "each once");
        assert_eq!(
            kinds(&watch, 990, 1000),
            ["quota.reached", "hard_limit:100"]
        );
        assert_eq!(
            kinds(&watch, 0, 2000),
            [
                "quota.reached",
                "hard_limit:50",
                "hard_limit:100",
                "spend:5"
            ],
            "one batch may cross several"
        );
        assert!(kinds(&watch, 1000, 1500).is_empty());
    }

    #[test]
    fn the_notification_says_what_was_reached() {
        let watch = watch(json!({
            "fixed_fee": {"amount": "10.00", "interval": "month"},
            "quota": {"soft_limit": 3, "overage_unit_price": "1"},
            "alerts": [{"quota": "soft_limit", "percent": "50"}, {"spend": "11.00"}]
        }));
        let period = watch.period_at(watch.started_at).unwrap();
        let before = PeriodUsageSum {
            billable_calls: 1,
            billable_units: Decimal::new(14, 1),
        };
        let after = PeriodUsageSum {
            billable_calls: 2,
            billable_units: Decimal::new(15, 1),
        };
        let got = reached(&watch, period, &before, &after);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].kind, "usage.threshold_reached");
        assert_eq!(
            got[0].data,
            json!({"quota": "soft_limit", "percent": "50", "limit": 3, "threshold": "1.5",
                   "used": "1.5", "period_start": "2026-12-01T00:00:00Z",
                   "period_end": "2027-01-01T00:00:00Z"})
        );
        // $10 fee + 3 units at $0.01 under the soft limit + 97 units over it at $1.
        let spent = reached(&watch, period, &after, &sum(100));
        assert_eq!(spent.len(), 1, "{spent:?}");
        assert_eq!(spent[0].kind, "spend.threshold_reached");
        assert_eq!(spent[0].data["spend"], "11.00");
        assert_eq!(spent[0].data["amount"], "107.03");
        assert_eq!(spent[0].data["currency"], "usd");
    }

    #[test]
    fn a_spend_the_fixed_fee_reaches_is_reached_with_the_period_s_first_usage() {
        let watch = watch(json!({
            "fixed_fee": {"amount": "25.00", "interval": "month"},
            "alerts": [{"spend": "20.00"}, {"spend": "25.03"}]
        }));
        let period = watch.period_at(watch.started_at).unwrap();
        let first = reached(&watch, period, &sum(0), &sum(1));
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].data["spend"], "20.00");
        assert_eq!(first[0].data["amount"], "25.01");
        assert!(reached(&watch, period, &sum(1), &sum(2)).is_empty());
        let more = reached(&watch, period, &sum(2), &sum(3));
        assert_eq!(more.len(), 1, "{more:?}");
        assert_eq!(more[0].data["amount"], "25.03");
    }

    #[test]
    fn periods_run_from_the_day_the_subscription_started() {
        let mut watch = watch(json!({
            "fixed_fee": {"amount": "31.00", "interval": "month"},
            "alerts": [{"spend": "31.00"}, {"spend": "32.00"}]
        }));
        // Started on 2026-12-17 at 10:00: its periods run from the 17th to the 17th, the
        // started day counting whole, so the first one charges the whole fee.
        watch.started_at += 16 * DAY_MS + 10 * 3_600_000;
        let period = watch.period_at(watch.started_at).unwrap();
        assert_eq!(period.start().to_rfc3339(), "2026-12-17T00:00:00+00:00");
        assert_eq!(period.end().to_rfc3339(), "2027-01-17T00:00:00+00:00");
        let first = reached(&watch, period, &sum(0), &sum(1));
        let keys: Vec<&str> = first.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["spend:31"], "{first:?}");
        assert_eq!(first[0].data["amount"], "31.01");
    }
}
