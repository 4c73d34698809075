//! Money: currencies, non-negative amounts and percentages, all exact decimals.
//! Rounding to a currency's minor unit happens in exactly one place: [`Currency::round`].

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Unit prices may carry up to this many decimal places (sub-cent prices such as `0.0005`).
pub const MAX_PRICE_SCALE: u32 = 12;

/// Digits an amount may have before its decimal point: with [`MAX_PRICE_SCALE`] after it, every
/// amount is exact in a `Decimal` (28 digits), so none is rounded as it is read.
pub const MAX_AMOUNT_DIGITS: u32 = 16;

/// An ISO 4217 currency that has a minor unit, written in lower case as Stripe writes it (`usd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Digits after the decimal point in the smallest unit: 2 for `usd`, 0 for `jpy`, 3 for `kwd`.
    pub fn minor_unit_digits(self) -> u32 {
        // Parsing refuses currencies without a minor unit, so this default is never taken.
        u32::from(self.0.exponent().unwrap_or(2))
    }

    /// Rounds an amount to this currency's minor unit, half to even. The only rounding tollbooth does.
    pub fn round(self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(
            self.minor_unit_digits(),
            RoundingStrategy::MidpointNearestEven,
        )
    }

    /// An amount in this currency's minor unit (cents for `usd`), rounded as [`Currency::round`]
    /// rounds; `None` when it does not fit in an `i64`.
    pub fn to_minor(self, amount: Decimal) -> Option<i64> {
        let scaled =
            self.round(amount) * Decimal::from(10_i64.checked_pow(self.minor_unit_digits())?);
        i64::try_from(scaled).ok()
    }

    /// An amount given in this currency's minor unit (as Stripe writes amounts), exactly.
    pub fn from_minor(self, minor: i64) -> Decimal {
        Decimal::new(minor, self.minor_unit_digits())
    }

    /// An amount as a person reads it: the currency's symbol, thousands grouped, rounded to the
    /// minor unit (`$1,234.50`, `-€3.00`, `¥120`).
    pub fn display(self, amount: Decimal) -> String {
        let digits = self.minor_unit_digits();
        let rounded = self.round(amount);
        let text = format!("{:.*}", digits as usize, rounded.abs());
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
            "-"
        } else {
            ""
        };
        let symbol = self.0.symbol().symbol;
        if fraction.is_empty() {
            format!("{sign}{symbol}{grouped}")
        } else {
            format!("{sign}{symbol}{grouped}.{fraction}")
        }
    }

    pub fn code(self) -> String {
        self.0.code().to_ascii_lowercase()
    }
}

impl TryFrom<String> for Currency {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let currency = iso_currency::Currency::from_code(&value.to_ascii_uppercase())
            .ok_or_else(|| format!("`{value}` is not an ISO 4217 currency code"))?;
        if currency.exponent().is_none() {
            return Err(format!("`{value}` has no minor unit and cannot be billed"));
        }
        Ok(Self(currency))
    }
}

impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let codes = billable_codes();
        let pattern = codes
            .iter()
            .map(|code| {
                code.chars()
                    .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("|");
        super::schema::string(
            &format!("^(?:{pattern})$"),
            Some((3, 3)),
            "An ISO 4217 currency code with a minor unit, in any case; answers write it in lower case.",
            "usd",
        )
        .into()
    }
}

impl utoipa::ToSchema for Currency {}

/// Every ISO 4217 code the parse takes (one with a minor unit), in upper case.
fn billable_codes() -> Vec<String> {
    let letters = || b'A'..=b'Z';
    letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
        .filter_map(|code| {
            let code = String::from_utf8(code.to_vec()).ok()?;
            iso_currency::Currency::from_code(&code)?.exponent()?;
            Some(code)
        })
        .collect()
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.code()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// A non-negative decimal amount with at most [`MAX_PRICE_SCALE`] decimal places, written as a
/// string (`"0.0005"`) so that no float ever touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl TryFrom<Decimal> for Amount {
    type Error = String;

    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(format!(
                "`{value}` is negative; amounts must be zero or more"
            ));
        }
        if value.scale() > MAX_PRICE_SCALE {
            return Err(format!(
                "`{value}` has more than {MAX_PRICE_SCALE} decimal places"
            ));
        }
        if value.trunc().abs() >= Decimal::from(10_i64.pow(MAX_AMOUNT_DIGITS)) {
            return Err(format!(
                "`{value}` has more than {MAX_AMOUNT_DIGITS} digits before the decimal point"
            ));
        }
        Ok(Self(value))
    }
}

impl TryFrom<String> for Amount {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let decimal = parse_decimal(&value)?;
        Self::try_from(decimal)
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let positive = r"\+?(?:0*[0-9]{1,16}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})";
        let zero = r"-(?:0+(?:\.0{0,12})?|\.0{1,12})";
        super::schema::string(
            &super::schema::trimmed(&format!("{positive}|{zero}")),
            None,
            "A non-negative decimal as a string: at most 16 digits before the point and 12 after.",
            "0.0005",
        )
        .into()
    }
}

impl utoipa::ToSchema for Amount {}

impl From<Amount> for String {
    fn from(amount: Amount) -> Self {
        amount.0.to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A percentage from 0 to 100 inclusive, written as a decimal string (`"12.5"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Percent(Decimal);

impl Percent {
    pub fn value(self) -> Decimal {
        self.0
    }

    /// The fraction this percentage is of a whole: `"10"` gives `0.10`.
    pub fn fraction(self) -> Decimal {
        self.0 / Decimal::ONE_HUNDRED
    }
}

impl TryFrom<String> for Percent {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let decimal = parse_decimal(&value)?;
        if decimal < Decimal::ZERO || decimal > Decimal::ONE_HUNDRED {
            return Err(format!("`{value}` is not a percentage from 0 to 100"));
        }
        Ok(Self(decimal))
    }
}

impl utoipa::PartialSchema for Percent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let positive = r"\+?(?:0*(?:[0-9]{1,2}(?:\.[0-9]*)?|100(?:\.0*)?)|\.[0-9]+)";
        let zero = r"-(?:0+(?:\.0*)?|\.0+)";
        super::schema::string(
            &super::schema::trimmed(&format!("{positive}|{zero}")),
            None,
            "A percentage from 0 to 100 as a decimal string.",
            "12.5",
        )
        .into()
    }
}

impl utoipa::ToSchema for Percent {}

impl From<Percent> for String {
    fn from(percent: Percent) -> Self {
        percent.0.to_string()
    }
}

fn parse_decimal(value: &str) -> Result<Decimal, String> {
    let trimmed = value.trim();
    if trimmed.contains(['e', 'E']) {
        return Err(format!(
            "`{value}` must be a plain decimal, not scientific notation"
        ));
    }
    // The decimal parser skips `_` between digits; a plain decimal has none.
    if trimmed.contains('_') {
        return Err(format!("`{value}` is not a decimal number"));
    }
    Decimal::from_str(trimmed).map_err(|_| format!("`{value}` is not a decimal number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn currency(code: &str) -> Currency {
        Currency::try_from(code.to_owned()).unwrap()
    }

    #[test]
    fn currencies_parse_case_insensitively_and_print_lower_case() {
        assert_eq!(currency("USD").to_string(), "usd");
        assert_eq!(currency("jpy").minor_unit_digits(), 0);
        assert_eq!(currency("kwd").minor_unit_digits(), 3);
        assert!(Currency::try_from("zzz".to_owned()).is_err());
        assert!(Currency::try_from("xau".to_owned()).is_err());
    }

    #[test]
    fn rounding_is_half_even_to_the_minor_unit() {
        assert_eq!(currency("usd").round(dec!(617.2835)), dec!(617.28));
        assert_eq!(currency("usd").round(dec!(0.125)), dec!(0.12));
        assert_eq!(currency("usd").round(dec!(0.135)), dec!(0.14));
        assert_eq!(currency("jpy").round(dec!(102.5)), dec!(102));
        assert_eq!(currency("jpy").round(dec!(103.5)), dec!(104));
    }

    #[test]
    fn amounts_refuse_negatives_floats_and_excess_precision() {
        assert_eq!(
            Amount::try_from("0.0005".to_owned()).unwrap().value(),
            dec!(0.0005)
        );
        assert_eq!(
            Amount::try_from("25.00".to_owned()).unwrap().to_string(),
            "25.00"
        );
        assert!(Amount::try_from("-1".to_owned()).is_err());
        assert!(Amount::try_from("1e3".to_owned()).is_err());
        assert!(Amount::try_from("abc".to_owned()).is_err());
        assert!(Amount::try_from("0.0000000000001".to_owned()).is_err());
    }

    #[test]
    fn percentages_stay_between_zero_and_one_hundred() {
        assert_eq!(
            Percent::try_from("10".to_owned()).unwrap().fraction(),
            dec!(0.10)
        );
        assert!(Percent::try_from("100.5".to_owned()).is_err());
        assert!(Percent::try_from("-1".to_owned()).is_err());
    }

    #[test]
    fn amounts_that_a_decimal_cannot_hold_exactly_are_refused() {
        assert!(Amount::try_from("9999999999999999.999999999999".to_owned()).is_ok());
        assert!(Amount::try_from("10000000000000000".to_owned()).is_err());
        assert!(Amount::try_from("99999999999999999.999999999999".to_owned()).is_err());
        assert!(Amount::try_from("1_000".to_owned()).is_err());
    }

    const DECIMALS: &[&str] = &[
        "0",
        "1",
        "+1",
        "-0",
        "-0.0",
        "-0.",
        "-.0",
        "1.",
        ".5",
        "+.5",
        "-.5",
        "-1",
        "1_000",
        "",
        ".",
        "+",
        "-",
        " 5 ",
        "\u{3000}5",
        "\u{FEFF}5",
        "5\n",
        "1e3",
        "1E3",
        "0x10",
        "1,5",
        "00012.50",
        "0.000000000001",
        "0.0000000000001",
        "1.000000000000",
        "1.0000000000000",
        "9999999999999999.999999999999",
        "10000000000000000",
        "0000000000000000000001",
        "100",
        "100.0",
        "100.000",
        "100.5",
        "101",
        "99.99",
        "12.5",
        "50.123456789012345",
        "000100",
        "1.2.3",
        "--1",
        "+-1",
        "abc",
    ];

    #[test]
    fn the_amount_schema_takes_what_the_parse_takes() {
        use utoipa::PartialSchema;
        super::super::schema::testing::assert_agrees(
            &Amount::schema(),
            |text| Amount::try_from(text.to_owned()).is_ok(),
            DECIMALS,
        );
    }

    #[test]
    fn the_percent_schema_takes_what_the_parse_takes() {
        use utoipa::PartialSchema;
        super::super::schema::testing::assert_agrees(
            &Percent::schema(),
            |text| Percent::try_from(text.to_owned()).is_ok(),
            DECIMALS,
        );
    }

    #[test]
    fn the_currency_schema_takes_what_the_parse_takes() {
        use utoipa::PartialSchema;
        super::super::schema::testing::assert_agrees(
            &Currency::schema(),
            |text| Currency::try_from(text.to_owned()).is_ok(),
            &[
                "usd", "USD", "Usd", "jpy", "kwd", "xau", "zzz", "us", "usdd", " usd", "eur\n",
            ],
        );
    }
}
