//! Usage and spend alerts of a tier: thresholds that, once reached in a billing period, tell the
//! provider (`usage.threshold_reached`, `spend.threshold_reached`), once per period each.

use super::FieldError;
use super::money::{Amount, Percent};
use super::tier::Quota;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One threshold of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AlertInput", into = "AlertInput")]
pub enum Alert {
    /// `percent` of one of the tier's quotas is used.
    Quota { quota: QuotaLimit, percent: Percent },
    /// The open period's amount so far reaches `amount`.
    Spend { amount: Amount },
}

/// Which quota a usage alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    /// Billable calls.
    HardLimit,
    /// Billable units.
    SoftLimit,
}

impl QuotaLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardLimit => "hard_limit",
            Self::SoftLimit => "soft_limit",
        }
    }

    /// The limit a tier's quota sets for this measure, if it sets one.
    pub fn of(self, quota: Option<Quota>) -> Option<u64> {
        let quota = quota?;
        match self {
            Self::HardLimit => quota.hard_limit,
            Self::SoftLimit => quota.soft_limit,
        }
    }
}

impl Alert {
    /// A name for the threshold, unique within a tier and stable across its versions: what makes
    /// it fire once per period.
    pub fn key(&self) -> String {
        match self {
            Self::Quota { quota, percent } => {
                format!("{}:{}", quota.as_str(), percent.value().normalize())
            }
            Self::Spend { amount } => format!("spend:{}", amount.value().normalize()),
        }
    }

    /// The usage at which the alert is reached, for a quota alert under `quota`: `percent` of the
    /// limit.
    pub fn usage_threshold(&self, quota: Option<Quota>) -> Option<Decimal> {
        match self {
            Self::Quota {
                quota: limit,
                percent,
            } => {
                let limit = Decimal::from(limit.of(quota)?);
                limit.checked_mul(percent.fraction())
            }
            Self::Spend { .. } => None,
        }
    }
}

/// Checks a tier's alerts against its quota: each quota named is set, and none is given twice.
pub fn validate(alerts: &[Alert], quota: Option<Quota>) -> Result<(), FieldError> {
    let mut seen = std::collections::HashSet::new();
    for (index, alert) in alerts.iter().enumerate() {
        let field = |name: &str| format!("alerts[{index}].{name}");
        match alert {
            Alert::Quota {
                quota: limit,
                percent,
            } => {
                if limit.of(quota).is_none() {
                    return Err(FieldError::new(
                        field("quota"),
                        format!("the tier sets no quota.{}", limit.as_str()),
                    ));
                }
                if percent.value().is_zero() {
                    return Err(FieldError::new(field("percent"), "must be more than 0"));
                }
            }
            Alert::Spend { amount } => {
                if amount.is_zero() {
                    return Err(FieldError::new(field("spend"), "must be more than 0"));
                }
            }
        }
        if !seen.insert(alert.key()) {
            return Err(FieldError::new(
                format!("alerts[{index}]"),
                "is the same threshold as an earlier one",
            ));
        }
    }
    Ok(())
}

/// An alert as written: `{"quota": "hard_limit", "percent": "80"}` or `{"spend": "100.00"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percent: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spend: Option<Amount>,
}

impl TryFrom<AlertInput> for Alert {
    type Error = FieldError;

    fn try_from(input: AlertInput) -> Result<Self, Self::Error> {
        match (input.quota, input.percent, input.spend) {
            (Some(quota), Some(percent), None) => Ok(Self::Quota { quota, percent }),
            (None, None, Some(amount)) => Ok(Self::Spend { amount }),
            (Some(_), None, None) => Err(FieldError::new("percent", "is required with quota")),
            (None, Some(_), None) => Err(FieldError::new("quota", "is required with percent")),
            (None, None, None) => Err(FieldError::new(
                "quota",
                "an alert takes quota and percent, or spend",
            )),
            (_, _, Some(_)) => Err(FieldError::new(
                "spend",
                "an alert takes quota and percent, or spend, not both",
            )),
        }
    }
}

impl From<Alert> for AlertInput {
    fn from(alert: Alert) -> Self {
        match alert {
            Alert::Quota { quota, percent } => Self {
                quota: Some(quota),
                percent: Some(percent),
                spend: None,
            },
            Alert::Spend { amount } => Self {
                quota: None,
                percent: None,
                spend: Some(amount),
            },
        }
    }
}

impl utoipa::PartialSchema for Alert {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{Ref, RefOr, Schema};
        let object = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let reference = |name: &str| RefOr::<Schema>::from(Ref::from_schema_name(name));
        OneOfBuilder::new()
            .item(
                object("Reached when `percent` of the quota is used in a period (more than 0).")
                    .property("quota", reference("QuotaLimit"))
                    .required("quota")
                    .property("percent", reference("Percent"))
                    .required("percent"),
            )
            .item(
                object("Reached when the open period comes to `spend` (more than 0).")
                    .property("spend", reference("Amount"))
                    .required("spend"),
            )
            .into()
    }
}

impl utoipa::ToSchema for Alert {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("QuotaLimit".into(), QuotaLimit::schema()));
        schemas.push(("Percent".into(), Percent::schema()));
        schemas.push(("Amount".into(), Amount::schema()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(hard: Option<u64>, soft: Option<u64>) -> Option<Quota> {
        Some(Quota {
            hard_limit: hard,
            soft_limit: soft,
            overage_unit_price: soft.map(|_| Amount::ZERO),
        })
    }

    #[test]
    fn an_alert_is_a_quota_share_or_a_spend() {
        let alert: Alert =
            serde_json::from_value(json!({"quota": "hard_limit", "percent": "80"})).unwrap();
        assert_eq!(alert.key(), "hard_limit:80");
        assert_eq!(
            alert.usage_threshold(quota(Some(1000), None)),
            Some(Decimal::from(800))
        );
        let spend: Alert = serde_json::from_value(json!({"spend": "100.00"})).unwrap();
        assert_eq!(spend.key(), "spend:100");
        assert_eq!(
            serde_json::to_value(spend).unwrap(),
            json!({"spend": "100.00"})
        );
        for (bad, field) in [
            (json!({"quota": "hard_limit"}), "percent"),
            (json!({"percent": "5"}), "quota"),
            (json!({}), "quota"),
            (
                json!({"quota": "hard_limit", "percent": "5", "spend": "1"}),
                "spend",
            ),
        ] {
            let err = serde_json::from_value::<Alert>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn alerts_name_a_quota_the_tier_sets_and_differ() {
        let parse = |v| serde_json::from_value::<Vec<Alert>>(v).unwrap();
        let alerts = parse(json!([{"quota": "soft_limit", "percent": "50"}]));
        let err = validate(&alerts, quota(Some(10), None)).unwrap_err();
        assert_eq!(err.field, "alerts[0].quota");
        assert!(validate(&alerts, quota(None, Some(10))).is_ok());
        let twice = parse(json!([{"spend": "5"}, {"spend": "5.00"}]));
        assert_eq!(validate(&twice, None).unwrap_err().field, "alerts[1]");
        let zero = parse(json!([{"spend": "0"}]));
        assert_eq!(validate(&zero, None).unwrap_err().field, "alerts[0].spend");
    }
}
