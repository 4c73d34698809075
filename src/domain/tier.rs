//! A tier: the priced plan of one api. What a provider writes is a [`TierSpec`]; each accepted
//! change of a tier is stored as a new version of it, and rating reads that version.

use super::FieldError;
use super::alert::Alert;
use super::ids::Key;
use super::money::{Amount, Currency, Percent};
use super::text::Name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU64;

/// Everything a tier version says: which api it prices, its name, and how it prices usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub slug: Key,
    pub api: Key,
    pub name: Name,
    pub currency: Currency,
    /// How long a billing period is. Defaults to the recurring fixed fee's interval, else one month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_period: Option<BillingPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_fee: Option<FixedFee>,
    /// How its billable calls (or their units) are priced: the charge on the built-in `calls`
    /// or `units` meter. Optional when `charges` price the usage instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsagePricing>,
    /// Prices on the api's meters, each a line of its own (see `Charge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub charges: Vec<Charge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_discount: Option<VolumeDiscount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_credit: Option<SlaCredit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Usage and spend thresholds, each notified once per period when reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
    /// What a start, an end or a tier change in the middle of a period does to the fixed fee.
    #[serde(default)]
    pub proration: Proration,
}

impl TierSpec {
    /// Checks the rules that span several fields; field-level rules are enforced by the types.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let (Some(period), Some(fee)) = (&self.billing_period, &self.fixed_fee)
            && let FeeInterval::Every(interval) = fee.interval
            && (interval != period.interval || fee.interval_count != period.interval_count)
        {
            return Err(FieldError::new(
                "billing_period",
                "must match the fixed fee's interval and interval_count",
            ));
        }
        if let Some(quota) = &self.quota {
            quota.validate().map_err(|e| e.within("quota"))?;
        }
        super::alert::validate(&self.alerts, self.quota)?;
        if self.usage.is_none() && self.charges.is_empty() {
            return Err(FieldError::new(
                "usage",
                "is required unless `charges` price the tier's usage",
            ));
        }
        validate_charges(&self.charges)?;
        if self.usage.is_some()
            && let Some(at) = self
                .charges
                .iter()
                .position(|c| c.meter.as_str() == "units")
        {
            return Err(FieldError::new(
                format!("charges[{at}].meter"),
                "`usage` already prices the units; a charge on them would price them twice",
            ));
        }
        Ok(())
    }

    /// The length of one billing period.
    pub fn period(&self) -> BillingPeriod {
        if let Some(period) = self.billing_period {
            return period;
        }
        match self.fixed_fee {
            Some(FixedFee {
                interval: FeeInterval::Every(interval),
                interval_count,
                ..
            }) => BillingPeriod {
                interval,
                interval_count,
            },
            _ => BillingPeriod::default(),
        }
    }

    /// A free tier never charges anything, so it needs no Stripe objects at all.
    pub fn is_free(&self) -> bool {
        let no_fee = self.fixed_fee.is_none_or(|fee| fee.amount.is_zero());
        let no_overage = self
            .quota
            .and_then(|q| q.overage_unit_price)
            .is_none_or(Amount::is_zero);
        no_fee
            && no_overage
            && self.usage.as_ref().is_none_or(UsagePricing::is_free)
            && self.charges.iter().all(|c| {
                c.usage.is_free()
                    && c.quota
                        .and_then(|q| q.overage_unit_price)
                        .is_none_or(Amount::is_zero)
            })
    }
}

/// A price on one meter of the tier's api: its built-in `calls` or `units`, or one it declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    pub meter: Key,
    /// Only the usage with these dimension values (`{"model": "large"}`); unset: all of it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub dimensions: BTreeMap<String, String>,
    /// What its line calls the quantity (`input tokens, large`); default: the meter's key and
    /// the dimension values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Dimensions to split the charge by: one line per value (per set of values), each priced
    /// on its own by `usage`, free units and bands included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 4)]
    pub group_by: Vec<Key>,
    /// Any of the usage models, with free units.
    pub usage: UsagePricing,
    /// A quota on the charge's quantity: `soft_limit` with `overage_unit_price` prices what is
    /// beyond it instead of the model; `hard_limit` is enforced by the access decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl Charge {
    /// What its lines call the quantity.
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        use std::fmt::Write as _;
        if let Some(name) = &self.name {
            return name.as_str().into();
        }
        if self.dimensions.is_empty() {
            return self.meter.as_str().into();
        }
        let mut label = String::with_capacity(64);
        label.push_str(self.meter.as_str());
        for (i, (key, value)) in self.dimensions.iter().enumerate() {
            let _ = write!(label, "{}{key} {value}", if i == 0 { " (" } else { ", " });
        }
        label.push(')');
        label.into()
    }
}

/// At most this many charges on one tier.
pub const MAX_CHARGES: usize = 16;

fn validate_charges(charges: &[Charge]) -> Result<(), FieldError> {
    if charges.len() > MAX_CHARGES {
        return Err(FieldError::new(
            "charges",
            format!("at most {MAX_CHARGES} charges"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, charge) in charges.iter().enumerate() {
        for (key, value) in &charge.dimensions {
            if Key::try_from(key.clone()).is_err() || !super::meter::is_value(value) {
                return Err(FieldError::new(
                    format!("charges[{i}].dimensions.{key}"),
                    "a dimension's key and a value of 1 to 200 characters",
                ));
            }
        }
        if super::meter::BUILT_IN_METERS.contains(&charge.meter.as_str())
            && !(charge.dimensions.is_empty() && charge.group_by.is_empty())
        {
            return Err(FieldError::new(
                format!("charges[{i}].dimensions"),
                format!("the built-in `{}` meter has no dimensions", charge.meter),
            ));
        }
        if charge.group_by.len() > super::meter::MAX_DIMENSIONS {
            return Err(FieldError::new(
                format!("charges[{i}].group_by"),
                format!("at most {} dimensions", super::meter::MAX_DIMENSIONS),
            ));
        }
        if charge
            .quota
            .is_some_and(|q| q.hard_limit.is_some() || q.soft_limit.is_some())
            && !charge.group_by.is_empty()
        {
            return Err(FieldError::new(
                format!("charges[{i}].quota"),
                "a quota limits the whole charge; write one charge per value to limit each",
            ));
        }
        if let Some(quota) = &charge.quota {
            if super::meter::BUILT_IN_METERS.contains(&charge.meter.as_str()) {
                return Err(FieldError::new(
                    format!("charges[{i}].quota"),
                    "the tier's own `quota` limits the built-in calls and units",
                ));
            }
            quota
                .validate()
                .map_err(|e| e.within(&format!("charges[{i}].quota")))?;
        }
        if !seen.insert((charge.meter.as_str(), &charge.dimensions, &charge.group_by)) {
            return Err(FieldError::new(
                format!("charges[{i}]"),
                "prices the same meter and dimension values, split alike, as an earlier charge",
            ));
        }
    }
    Ok(())
}

/// The calendar unit of a period or fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

/// A billing period: `interval_count` × `interval`, e.g. one month or two weeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingPeriod {
    pub interval: Interval,
    #[serde(default = "one")]
    #[schema(value_type = u64, minimum = 1)]
    pub interval_count: NonZeroU64,
}

impl Default for BillingPeriod {
    fn default() -> Self {
        Self {
            interval: Interval::Month,
            interval_count: NonZeroU64::MIN,
        }
    }
}

/// How often a fixed fee is charged: every period, or once with the first invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FeeInterval {
    Every(Interval),
    OneTime,
}

impl TryFrom<String> for FeeInterval {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Ok(match value.as_str() {
            "day" => Self::Every(Interval::Day),
            "week" => Self::Every(Interval::Week),
            "month" => Self::Every(Interval::Month),
            "year" => Self::Every(Interval::Year),
            "one_time" => Self::OneTime,
            other => {
                return Err(format!(
                    "`{other}` is not one of day, week, month, year, one_time"
                ));
            }
        })
    }
}

impl utoipa::PartialSchema for FeeInterval {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::one_of_strings(
            &["day", "week", "month", "year", "one_time"],
            "How often a fixed fee is charged: every interval, or once (`one_time`).",
        )
    }
}

impl utoipa::ToSchema for FeeInterval {}

impl From<FeeInterval> for String {
    fn from(interval: FeeInterval) -> Self {
        match interval {
            FeeInterval::Every(Interval::Day) => "day",
            FeeInterval::Every(Interval::Week) => "week",
            FeeInterval::Every(Interval::Month) => "month",
            FeeInterval::Every(Interval::Year) => "year",
            FeeInterval::OneTime => "one_time",
        }
        .to_owned()
    }
}

/// A flat fee: recurring every `interval_count` × `interval`, or charged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedFee {
    pub amount: Amount,
    pub interval: FeeInterval,
    #[serde(default = "one")]
    #[schema(value_type = u64, minimum = 1)]
    pub interval_count: NonZeroU64,
}

/// Whether fixed fees are charged by the day for partial periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Proration {
    /// A partial period pays its share of the fee by whole days (a started day counts).
    #[default]
    ByDay,
    /// A partial period pays the whole fee.
    None,
}

/// How billable units are priced. Units beyond `free_units` are the ones priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UsageInput", into = "UsageInput")]
pub enum UsagePricing {
    /// Every unit after the free ones at `unit_price`.
    PerUnit { unit_price: Amount, free_units: u64 },
    /// Each band's units at that band's price, plus each reached band's flat fee.
    Graduated { bands: Vec<Band>, free_units: u64 },
    /// All units at the price of the band the total reaches, plus that band's flat fee.
    Volume { bands: Vec<Band>, free_units: u64 },
    /// `package_price` per started block of `package_size` units.
    Package {
        package_size: NonZeroU64,
        package_price: Amount,
        free_units: u64,
    },
}

impl UsagePricing {
    pub fn free_units(&self) -> u64 {
        match self {
            Self::PerUnit { free_units, .. }
            | Self::Graduated { free_units, .. }
            | Self::Volume { free_units, .. }
            | Self::Package { free_units, .. } => *free_units,
        }
    }

    pub fn is_free(&self) -> bool {
        match self {
            Self::PerUnit { unit_price, .. } => unit_price.is_zero(),
            Self::Graduated { bands, .. } | Self::Volume { bands, .. } => bands
                .iter()
                .all(|b| b.unit_price.is_zero() && b.flat_fee.is_none_or(Amount::is_zero)),
            Self::Package { package_price, .. } => package_price.is_zero(),
        }
    }
}

/// One price band: units up to `up_to` (inclusive; `null` on the last, open band).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub up_to: Option<u64>,
    pub unit_price: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_fee: Option<Amount>,
}

impl utoipa::PartialSchema for UsagePricing {
    /// One object per model, told apart by `model`: each takes its own fields, and a field of
    /// another model only as `null`.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{Ref, RefOr, Schema};
        let null = || RefOr::from(Schema::from(ObjectBuilder::new().schema_type(Type::Null)));
        let amount = || RefOr::<Schema>::from(Ref::from_schema_name("Amount"));
        let count = |minimum: u64| {
            RefOr::from(Schema::from(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(minimum))
                    .maximum(Some(u64::MAX)),
            ))
        };
        let bands = || {
            RefOr::from(Schema::from(
                ArrayBuilder::new()
                    .items(RefOr::<Schema>::from(Ref::from_schema_name("Band")))
                    .min_items(Some(1))
                    .description(Some(
                        "Ascending by `up_to`; only the last band is open (`up_to: null`).",
                    )),
            ))
        };
        let model = |name: &str,
                     description: &str,
                     own: Vec<(&str, RefOr<Schema>, bool)>,
                     foreign: &[&str]| {
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .property(
                    "model",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .required("model")
                .property("free_units", count(0))
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ));
            for (field, schema, required) in own {
                object = object.property(field, schema);
                if required {
                    object = object.required(field);
                }
            }
            for field in foreign {
                object = object.property(*field, null());
            }
            object
        };
        OneOfBuilder::new()
            .item(model(
                "per_unit",
                "Every unit after the free ones at `unit_price`.",
                vec![("unit_price", amount(), true)],
                &["bands", "package_size", "package_price"],
            ))
            .item(model(
                "graduated",
                "Each band's units at that band's price, plus each reached band's flat fee.",
                vec![("bands", bands(), true)],
                &["unit_price", "package_size", "package_price"],
            ))
            .item(model(
                "volume",
                "All units at the price of the band the total reaches, plus its flat fee.",
                vec![("bands", bands(), true)],
                &["unit_price", "package_size", "package_price"],
            ))
            .item(model(
                "package",
                "`package_price` per started block of `package_size` units.",
                vec![
                    ("package_size", count(1), true),
                    ("package_price", amount(), true),
                ],
                &["unit_price", "bands"],
            ))
            .into()
    }
}

impl utoipa::ToSchema for UsagePricing {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("Amount".into(), Amount::schema()));
        schemas.push(("Band".into(), Band::schema()));
        <Band as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The usage object as written: one flat shape for every model, checked into [`UsagePricing`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageInput {
    model: UsageModel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_price: Option<Amount>,
    #[serde(default, skip_serializing_if = "is_zero")]
    free_units: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bands: Option<Vec<Band>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package_size: Option<NonZeroU64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package_price: Option<Amount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum UsageModel {
    PerUnit,
    Graduated,
    Volume,
    Package,
}

impl TryFrom<UsageInput> for UsagePricing {
    type Error = FieldError;

    fn try_from(input: UsageInput) -> Result<Self, Self::Error> {
        let model = input.model;
        let refuse = |field: &str, present: bool| {
            if present {
                Err(FieldError::new(
                    field,
                    format!("does not apply to the {model:?} model"),
                ))
            } else {
                Ok(())
            }
        };
        let free_units = input.free_units;
        match model {
            UsageModel::PerUnit => {
                refuse("bands", input.bands.is_some())?;
                refuse("package_size", input.package_size.is_some())?;
                refuse("package_price", input.package_price.is_some())?;
                let unit_price = input
                    .unit_price
                    .ok_or_else(|| FieldError::new("unit_price", "is required for per_unit"))?;
                Ok(Self::PerUnit {
                    unit_price,
                    free_units,
                })
            }
            UsageModel::Graduated | UsageModel::Volume => {
                refuse("unit_price", input.unit_price.is_some())?;
                refuse("package_size", input.package_size.is_some())?;
                refuse("package_price", input.package_price.is_some())?;
                let bands = input
                    .bands
                    .ok_or_else(|| FieldError::new("bands", "is required for this model"))?;
                check_bands(&bands)?;
                Ok(if model == UsageModel::Graduated {
                    Self::Graduated { bands, free_units }
                } else {
                    Self::Volume { bands, free_units }
                })
            }
            UsageModel::Package => {
                refuse("unit_price", input.unit_price.is_some())?;
                refuse("bands", input.bands.is_some())?;
                let package_size = input
                    .package_size
                    .ok_or_else(|| FieldError::new("package_size", "is required for package"))?;
                let package_price = input
                    .package_price
                    .ok_or_else(|| FieldError::new("package_price", "is required for package"))?;
                Ok(Self::Package {
                    package_size,
                    package_price,
                    free_units,
                })
            }
        }
    }
}

fn check_bands(bands: &[Band]) -> Result<(), FieldError> {
    let Some((last, bounded)) = bands.split_last() else {
        return Err(FieldError::new("bands", "needs at least one band"));
    };
    let mut previous = 0u64;
    for (index, band) in bounded.iter().enumerate() {
        let Some(up_to) = band.up_to else {
            return Err(FieldError::new(
                format!("bands[{index}].up_to"),
                "only the last band may be open (null)",
            ));
        };
        if up_to <= previous {
            return Err(FieldError::new(
                format!("bands[{index}].up_to"),
                format!("must be greater than {previous}: bands ascend"),
            ));
        }
        previous = up_to;
    }
    if last.up_to.is_some() {
        return Err(FieldError::new(
            format!("bands[{}].up_to", bounded.len()),
            "the last band must be open (null) so every unit has a price",
        ));
    }
    Ok(())
}

impl From<UsagePricing> for UsageInput {
    fn from(pricing: UsagePricing) -> Self {
        let blank = |model| UsageInput {
            model,
            unit_price: None,
            free_units: 0,
            bands: None,
            package_size: None,
            package_price: None,
        };
        match pricing {
            UsagePricing::PerUnit {
                unit_price,
                free_units,
            } => UsageInput {
                unit_price: Some(unit_price),
                free_units,
                ..blank(UsageModel::PerUnit)
            },
            UsagePricing::Graduated { bands, free_units } => UsageInput {
                bands: Some(bands),
                free_units,
                ..blank(UsageModel::Graduated)
            },
            UsagePricing::Volume { bands, free_units } => UsageInput {
                bands: Some(bands),
                free_units,
                ..blank(UsageModel::Volume)
            },
            UsagePricing::Package {
                package_size,
                package_price,
                free_units,
            } => UsageInput {
                package_size: Some(package_size),
                package_price: Some(package_price),
                free_units,
                ..blank(UsageModel::Package)
            },
        }
    }
}

/// After `after_calls` billable calls in a period, `percent` off the usage amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDiscount {
    pub after_calls: u64,
    pub percent: Percent,
}

/// On each day whose failure rate is over `failure_rate_over` %, `credit_percent` % of that day's
/// share of the fixed fee is credited back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaCredit {
    pub failure_rate_over: Percent,
    pub credit_percent: Percent,
}

/// Limits per billing period. `hard_limit` counts billable calls and is enforced by the access
/// decision; `soft_limit` counts billable units (the calls, unless the api records units), and
/// units beyond it are priced at `overage_unit_price` instead of the usage model's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage_unit_price: Option<Amount>,
}

impl Quota {
    fn validate(&self) -> Result<(), FieldError> {
        if self.soft_limit.is_some() != self.overage_unit_price.is_some() {
            return Err(FieldError::new(
                "overage_unit_price",
                "soft_limit and overage_unit_price go together",
            ));
        }
        if let (Some(hard), Some(soft)) = (self.hard_limit, self.soft_limit)
            && soft > hard
        {
            return Err(FieldError::new(
                "soft_limit",
                "must not be above hard_limit",
            ));
        }
        Ok(())
    }
}

fn one() -> NonZeroU64 {
    NonZeroU64::MIN
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<TierSpec, String> {
        let spec: TierSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    fn graduated(bands: serde_json::Value) -> serde_json::Value {
        json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
               "usage": {"model": "graduated", "bands": bands}})
    }

    #[test]
    fn bands_must_ascend_and_end_open() {
        assert!(
            parse(graduated(
                json!([{"up_to": 10, "unit_price": "1"}, {"up_to": null, "unit_price": "0.5"}])
            ))
            .is_ok()
        );
        let err = parse(graduated(json!([{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"}, {"up_to": null, "unit_price": "1"}]))).unwrap_err();
        assert!(err.contains("bands[1].up_to"), "{err}");
        let err = parse(graduated(json!([{"up_to": 10, "unit_price": "1"}]))).unwrap_err();
        assert!(err.contains("bands[0].up_to"), "{err}");
        let err = parse(graduated(json!([]))).unwrap_err();
        assert!(err.contains("bands"), "{err}");
    }

    #[test]
    fn a_model_refuses_fields_of_another_model() {
        let err = parse(
            json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "1", "package_size": 10}}),
        )
        .unwrap_err();
        assert!(err.contains("package_size"), "{err}");
    }

    #[test]
    fn the_period_follows_the_recurring_fee_else_a_month() {
        let spec = parse(
            json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
            "fixed_fee": {"amount": "5", "interval": "week", "interval_count": 2},
            "usage": {"model": "per_unit", "unit_price": "0"}}),
        )
        .unwrap();
        assert_eq!(spec.period().interval, Interval::Week);
        assert_eq!(spec.period().interval_count.get(), 2);
        let free = parse(
            json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "0"}}),
        )
        .unwrap();
        assert_eq!(free.period(), BillingPeriod::default());
        assert!(free.is_free());
        assert!(!spec.is_free());
    }

    #[test]
    fn a_soft_limit_needs_its_overage_price() {
        let err = parse(
            json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
            "usage": {"model": "per_unit", "unit_price": "0"}, "quota": {"soft_limit": 10}}),
        )
        .unwrap_err();
        assert!(err.contains("quota.overage_unit_price"), "{err}");
    }

    #[test]
    fn the_spec_reads_back_as_written() {
        let written = json!({"slug": "s", "api": "a", "name": "S", "currency": "usd",
            "usage": {"model": "package", "free_units": 5000, "package_size": 1000, "package_price": "5.00"}});
        let spec = parse(written.clone()).unwrap();
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["usage"], written["usage"]);
    }
}
