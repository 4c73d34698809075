//! Banded usage prices. Bands count the priced units, those after the free ones; descriptions
//! count from the first unit, so with 5,000 free the first band of 100,000 reads `5,001 to 105,000`.
//! A band is reached when at least one priced unit falls in it; only a reached band's flat fee is due.

use super::describe::{Span, text};
use super::usage::{Counted, Metered};
use super::{Line, PricingError};
use crate::domain::money::Amount;
use crate::domain::tier::Band;
use rust_decimal::Decimal;

/// Graduated: each band's units at that band's price, one line per band reached.
pub(super) fn graduated(
    metered: &Metered<'_>,
    bands: &[Band],
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let priced = metered.priced();
    if priced.is_zero() {
        return nothing_priced(metered, bands, lines);
    }
    let free = metered.free;
    if !free.is_zero() {
        let span = Span {
            after: Decimal::ZERO,
            up_to: Some(free),
        };
        let description = text!(metered.noun.heading, " ", span, ", included");
        lines.push(metered.line(description, free, Decimal::ZERO)?);
    }
    let mut lower = Decimal::ZERO;
    for band in bands {
        let upper = band.up_to.map(Decimal::from);
        let reached = upper.map_or(priced, |upper| priced.min(upper));
        if reached <= lower {
            break;
        }
        let span = Span {
            after: free + lower,
            up_to: Some(free + reached),
        };
        let description = text!(metered.noun.heading, " ", span);
        lines.push(metered.line(description, reached - lower, band.unit_price.value())?);
        flat_fee(metered, band, lower, lines)?;
        match upper {
            Some(upper) => lower = upper,
            None => break,
        }
    }
    Ok(())
}

/// Volume: every priced unit at the price of the band the priced total falls in.
pub(super) fn volume(
    metered: &Metered<'_>,
    bands: &[Band],
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let priced = metered.priced();
    if priced.is_zero() {
        return nothing_priced(metered, bands, lines);
    }
    let mut lower = Decimal::ZERO;
    for band in bands {
        let upper = band.up_to.map(Decimal::from);
        if let Some(upper) = upper
            && priced > upper
        {
            lower = upper;
            continue;
        }
        let span = Span {
            after: metered.free + lower,
            up_to: upper.map(|upper| metered.free + upper),
        };
        let description = text!(Counted(metered), ": volume price for ", span);
        lines.push(metered.line(description, priced, band.unit_price.value())?);
        return flat_fee(metered, band, lower, lines);
    }
    Ok(())
}

/// No unit beyond the free ones: one line at the first band's price says so, and no band is reached.
fn nothing_priced(
    metered: &Metered<'_>,
    bands: &[Band],
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let price = bands.first().map_or(Amount::ZERO, |band| band.unit_price);
    lines.push(metered.line(text!(Counted(metered)), Decimal::ZERO, price.value())?);
    Ok(())
}

fn flat_fee(
    metered: &Metered<'_>,
    band: &Band,
    lower: Decimal,
    lines: &mut Vec<Line>,
) -> Result<(), PricingError> {
    let Some(fee) = band.flat_fee.filter(|fee| !fee.is_zero()) else {
        return Ok(());
    };
    let span = Span {
        after: metered.free + lower,
        up_to: band.up_to.map(|upper| metered.free + Decimal::from(upper)),
    };
    let description = text!("Flat fee for the band of ", metered.noun.counted, " ", span);
    lines.push(metered.line(description, Decimal::ONE, fee.value())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::usage::charge;
    use crate::domain::tier::TierSpec;
    use crate::pricing::fixtures::{calls, shown, tier};
    use rust_decimal::dec;
    use serde_json::json;

    fn banded(model: &str, free: u64) -> TierSpec {
        tier(
            json!({"usage": {"model": model, "free_units": free, "bands": [
            {"up_to": 1000, "unit_price": "0.01"},
            {"up_to": 5000, "unit_price": "0.005", "flat_fee": "2"},
            {"up_to": null, "unit_price": "0.001", "flat_fee": "10"}]}}),
        )
    }

    fn rated(tier: &TierSpec, count: u64) -> Vec<String> {
        let mut lines = Vec::new();
        charge(tier, &calls(count), &mut lines).unwrap();
        shown(&lines)
    }

    #[test]
    fn graduated_prices_each_band_and_the_flat_fee_of_each_band_reached() {
        assert_eq!(
            rated(&banded("graduated", 0), 3000),
            [
                "API calls 1 to 1,000 = 10.00",
                "API calls 1,001 to 3,000 = 10.00",
                "Flat fee for the band of API calls 1,001 to 5,000 = 2.00",
            ]
        );
        assert_eq!(
            rated(&banded("graduated", 0), 1000),
            ["API calls 1 to 1,000 = 10.00"]
        );
    }

    #[test]
    fn graduated_bands_start_after_the_free_units() {
        assert_eq!(
            rated(&banded("graduated", 500), 2000),
            [
                "API calls 1 to 500, included = 0.00",
                "API calls 501 to 1,500 = 10.00",
                "API calls 1,501 to 2,000 = 2.50",
                "Flat fee for the band of API calls 1,501 to 5,500 = 2.00",
            ]
        );
        assert_eq!(
            rated(&banded("graduated", 500), 400),
            ["400 API calls, 500 included = 0.00"]
        );
    }

    #[test]
    fn volume_prices_every_unit_at_the_band_reached() {
        assert_eq!(
            rated(&banded("volume", 0), 7000),
            [
                "7,000 API calls: volume price for over 5,000 = 7.00",
                "Flat fee for the band of API calls over 5,000 = 10.00",
            ]
        );
        assert_eq!(
            rated(&banded("volume", 0), 1000),
            ["1,000 API calls: volume price for 1 to 1,000 = 10.00"]
        );
        // 1,001 priced calls × 0.005 = 5.005, rounded half to even.
        assert_eq!(
            rated(&banded("volume", 100), 1101),
            [
                "1,101 API calls, 100 included: volume price for 1,101 to 5,100 = 5.00",
                "Flat fee for the band of API calls 1,101 to 5,100 = 2.00",
            ]
        );
    }

    #[test]
    fn no_usage_reaches_no_band() {
        assert_eq!(rated(&banded("volume", 0), 0), ["0 API calls = 0.00"]);
        assert_eq!(rated(&banded("graduated", 0), 0), ["0 API calls = 0.00"]);
    }

    #[test]
    fn bands_report_their_quantities_and_prices() {
        let mut lines = Vec::new();
        charge(&banded("graduated", 0), &calls(1200), &mut lines).unwrap();
        assert_eq!(
            (lines[1].quantity, lines[1].unit_price),
            (dec!(200), Some(dec!(0.005)))
        );
    }
}
