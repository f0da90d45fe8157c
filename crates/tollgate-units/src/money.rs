//! Money as an integer count of nano-dollars, printed with exactly 9 decimals.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_USD: i64 = 1_000_000_000;

/// An amount of US dollars, held as an integer number of nano-dollars
/// (1e-9 USD). Never a float: sums are exact and the ledger stores the integer.
///
/// It crosses every API as a decimal string with exactly 9 decimal places
/// (`"0.001234500"`), which is what `Display` and `Serialize` produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// A decimal string that is not a valid amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount of money {input:?}: {reason}")]
pub struct MoneyParseError {
    input: String,
    reason: &'static str,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_nanos(nanos: i64) -> Money {
        Money(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Whole dollars (for configuration defaults and tests).
    pub const fn from_usd(usd: i64) -> Money {
        Money(usd.saturating_mul(NANOS_PER_USD))
    }

    pub fn saturating_add(self, o: Money) -> Money {
        Money(self.0.saturating_add(o.0))
    }

    pub fn saturating_sub(self, o: Money) -> Money {
        Money(self.0.saturating_sub(o.0))
    }

    pub fn checked_add(self, o: Money) -> Option<Money> {
        self.0.checked_add(o.0).map(Money)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        self.saturating_add(o)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        *self = self.saturating_add(o);
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = NANOS_PER_USD as u64;
        write!(f, "{sign}{}.{:09}", abs / per, abs % per)
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Accepts `12`, `12.5`, `-0.000000001`, `$3.20`; at most 9 decimals.
    fn from_str(input: &str) -> Result<Money, MoneyParseError> {
        let err = |reason| MoneyParseError { input: input.to_owned(), reason };
        let s = input.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let s = s.strip_prefix('$').unwrap_or(s);
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("no digits"));
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("only digits and one decimal point are allowed"));
        }
        if frac.len() > 9 {
            return Err(err("more than 9 decimal places"));
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err("too large"))? };
        let mut nanos_frac: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            nanos_frac += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        let total =
            whole.checked_mul(NANOS_PER_USD).and_then(|w| w.checked_add(nanos_frac)).ok_or_else(|| err("too large"))?;
        Ok(Money(if neg { -total } else { total }))
    }
}

impl Money {
    /// A JSON number of US dollars (`0.0001234`, `1.5e-05`, `2`) to the
    /// nearest nano-dollar (half away from zero), read from its text so no
    /// float rounding takes part. `None` when it is not a number or too large.
    pub fn from_json_number(text: &str) -> Option<Money> {
        let t = text.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (mantissa, exp) = match t.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.strip_prefix('+').unwrap_or(e).parse::<i32>().ok()?),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        // value = digits × 10^(exp − frac.len()); nanos = value × 10^9.
        let digits: String = int.chars().chain(frac.chars()).collect();
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let n: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let shift = exp.checked_sub(i32::try_from(frac.len()).ok()?)?.checked_add(9)?;
        let nanos: i128 = if shift >= 0 {
            n.checked_mul(10i128.checked_pow(shift as u32)?)?
        } else {
            let div = 10i128.checked_pow(shift.unsigned_abs()).unwrap_or(i128::MAX);
            let (q, r) = (n / div, n % div);
            if r * 2 >= div {
                q + 1
            } else {
                q
            }
        };
        let nanos = i64::try_from(nanos).ok()?;
        Some(Money(if neg { -nanos } else { nanos }))
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_of_dollars_become_exact_nanos() {
        for (text, nanos) in [
            ("0", 0),
            ("2", 2_000_000_000),
            ("0.0001234", 123_400),
            ("1.5e-05", 15_000),
            ("1.5E-5", 15_000),
            ("2.5e+00", 2_500_000_000),
            ("0.0000000004", 0),
            ("0.0000000005", 1),
            ("0.00000000149", 1),
            ("0.0000000015", 2),
            ("-0.0000000015", -2),
            ("1e-12", 0),
            ("12.345678901", 12_345_678_901),
        ] {
            assert_eq!(Money::from_json_number(text), Some(Money(nanos)), "{text}");
        }
        for bad in [
            "",
            "-",
            ".",
            "abc",
            "1.2.3",
            "\"1\"",
            "1e",
            "1e999",
            "99999999999999999999",
            "1e2147483647",
            "1.5e-2147483648",
        ] {
            assert_eq!(Money::from_json_number(bad), None, "{bad}");
        }
    }
    use proptest::prelude::*;

    #[test]
    fn display_has_nine_decimals() {
        assert_eq!(Money::from_nanos(1_234_500).to_string(), "0.001234500");
        assert_eq!(Money::from_nanos(0).to_string(), "0.000000000");
        assert_eq!(Money::from_nanos(-1).to_string(), "-0.000000001");
        assert_eq!(Money::from_usd(500).to_string(), "500.000000000");
    }

    /// Every API, header and report prints money this way: the expected
    /// strings are written out by hand (1 USD = 1_000_000_000 nanos; no
    /// rounding, no grouping, always 9 decimals, a leading `-` when negative).
    #[test]
    fn display_writes_the_hand_written_strings() {
        for (nanos, want) in [
            (0, "0.000000000"),
            (1, "0.000000001"),
            (999, "0.000000999"),
            (1_000, "0.000001000"),
            // just under a cent, a cent, just over
            (9_999_999, "0.009999999"),
            (10_000_000, "0.010000000"),
            (10_000_001, "0.010000001"),
            // just under a dollar, a dollar, just over
            (999_999_999, "0.999999999"),
            (1_000_000_000, "1.000000000"),
            (1_000_000_001, "1.000000001"),
            // $1M, and more than $1M with every digit used
            (1_000_000_000_000_000, "1000000.000000000"),
            (1_234_567_890_123_456_789, "1234567890.123456789"),
            (i64::MAX, "9223372036.854775807"),
            // negative amounts (e.g. a difference between two figures)
            (-1, "-0.000000001"),
            (-1_234_500, "-0.001234500"),
            (-999_999_999, "-0.999999999"),
            (-1_000_000_000, "-1.000000000"),
            (-1_000_000_000_000_000, "-1000000.000000000"),
            (i64::MIN, "-9223372036.854775808"),
        ] {
            let m = Money::from_nanos(nanos);
            assert_eq!(m.to_string(), want, "{nanos} nanos");
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{want}\""), "{nanos} nanos");
            if nanos != i64::MIN {
                assert_eq!(want.parse::<Money>().unwrap(), m, "{want}");
            }
        }
        // The smallest amount (i64::MIN) prints but does not read back: the
        // parser reads the magnitude, one more than i64::MAX, then negates it.
        assert!("-9223372036.854775808".parse::<Money>().is_err());
    }

    #[test]
    fn parses_decimal_strings() {
        for (s, n) in [
            ("500", 500_000_000_000),
            ("0.5", 500_000_000),
            (".25", 250_000_000),
            ("$3.20", 3_200_000_000),
            ("-0.000000001", -1),
            ("12.345678900", 12_345_678_900),
        ] {
            assert_eq!(s.parse::<Money>().unwrap().nanos(), n, "{s}");
        }
        for bad in ["", ".", "1.2.3", "1e5", "0.0000000001", "abc", "99999999999999999999"] {
            assert!(bad.parse::<Money>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn serde_is_a_string() {
        let m = Money::from_nanos(42);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0.000000042\"");
        let back: Money = serde_json::from_str("\"0.000000042\"").unwrap();
        assert_eq!(back, m);
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(n in any::<i64>().prop_filter("not min", |n| *n != i64::MIN)) {
            let m = Money::from_nanos(n);
            prop_assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
    }
}
