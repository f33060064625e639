//! Money as integer minor units (fen, pence, cents) with an ISO 4217 currency.

use serde::{Deserialize, Serialize};

/// An amount in minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units: 1999 fen is 19.99 CNY.
    pub minor: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
}

/// Whether `code` looks like an ISO 4217 currency code (three upper-case ASCII letters).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Converts a decimal string such as `"12.5"` or `"-0.85"` to minor units with `exponent`
/// fractional digits, exactly (no floating point).
pub fn parse_decimal_minor(text: &str, exponent: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (digits, ""),
    };
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let exponent = exponent as usize;
    let (kept, dropped) = fraction.split_at(fraction.len().min(exponent));
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let mut minor: i64 = 0;
    for byte in whole.bytes().chain(kept.bytes()) {
        minor = minor.checked_mul(10)?.checked_add(i64::from(byte - b'0'))?;
    }
    for _ in kept.len()..exponent {
        minor = minor.checked_mul(10)?;
    }
    Some(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(parse_decimal_minor("12.5", 2), Some(1250));
        assert_eq!(parse_decimal_minor("-0.85", 2), Some(-85));
        assert_eq!(parse_decimal_minor("3", 2), Some(300));
        assert_eq!(parse_decimal_minor("0.001", 2), None);
        assert_eq!(parse_decimal_minor("1.230", 2), Some(123));
        assert_eq!(parse_decimal_minor("abc", 2), None);
        assert_eq!(parse_decimal_minor("", 2), None);
    }

    #[test]
    fn currency_codes() {
        assert!(is_currency_code("CNY"));
        assert!(!is_currency_code("cny"));
        assert!(!is_currency_code("YUAN"));
    }
}
