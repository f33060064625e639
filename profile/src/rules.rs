//! The profile rules: RFM score thresholds, the lifetime value's horizon, how many top SKUs and
//! categories to list. From a TOML file (`profile/rules.default.toml` is compiled in as the
//! default); they shape what a reader gets, never the stored projection, so changing them
//! needs no re-fold.

use serde::{Deserialize, Serialize};

/// The rules compiled in, used when no rule file is configured.
pub const DEFAULT_PROFILE_RULES: &str = include_str!("../rules.default.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRules {
    pub top: usize,
    pub rfm: RfmRules,
    pub clv: ClvRules,
}

/// Four ascending bounds per measure give scores 5 to 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfmRules {
    pub recency_days: [i64; 4],
    pub frequency: [u64; 4],
    pub monetary_minor: [i64; 4],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClvRules {
    pub horizon_years: u32,
}

/// Why a rule file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileRulesError {
    #[error("profile rules: {0}")]
    Syntax(String),
    #[error("profile rules: the bounds of rfm.{0} must be strictly ascending")]
    NotAscending(&'static str),
}

fn ascending<T: PartialOrd>(bounds: &[T]) -> bool {
    bounds.windows(2).all(|pair| pair[0] < pair[1])
}

impl ProfileRules {
    /// The compiled-in default rules.
    pub fn default_rules() -> Self {
        Self::from_toml(DEFAULT_PROFILE_RULES).expect("the default profile rules are valid")
    }

    /// Parses and checks a rule file.
    pub fn from_toml(text: &str) -> Result<Self, ProfileRulesError> {
        let rules: Self =
            toml::from_str(text).map_err(|error| ProfileRulesError::Syntax(error.to_string()))?;
        if !ascending(&rules.rfm.recency_days) {
            return Err(ProfileRulesError::NotAscending("recency_days"));
        }
        if !ascending(&rules.rfm.frequency) {
            return Err(ProfileRulesError::NotAscending("frequency"));
        }
        if !ascending(&rules.rfm.monetary_minor) {
            return Err(ProfileRulesError::NotAscending("monetary_minor"));
        }
        Ok(rules)
    }
}

impl RfmRules {
    /// 5 within the first bound, 1 beyond the last.
    pub fn recency_score(&self, days: i64) -> u8 {
        5 - self
            .recency_days
            .iter()
            .filter(|bound| days > **bound)
            .count() as u8
    }

    /// 1 below the first bound, 5 at or above the last.
    pub fn frequency_score(&self, orders: u64) -> u8 {
        1 + self
            .frequency
            .iter()
            .filter(|bound| orders >= **bound)
            .count() as u8
    }

    /// As for frequency.
    pub fn monetary_score(&self, net_minor: i64) -> u8 {
        1 + self
            .monetary_minor
            .iter()
            .filter(|bound| net_minor >= **bound)
            .count() as u8
    }
}

impl ClvRules {
    /// Net spend so far plus, for a repeat buyer, the average order value at the mean
    /// purchase interval over the horizon.
    pub fn value(
        &self,
        net_minor: i64,
        average_order_value_minor: Option<i64>,
        mean_purchase_interval_days: Option<f64>,
    ) -> i64 {
        let expected = match (average_order_value_minor, mean_purchase_interval_days) {
            (Some(value), Some(interval)) if interval > 0.0 => {
                let orders = f64::from(self.horizon_years) * 365.25 / interval;
                (value as f64 * orders).round() as i64
            }
            _ => 0,
        };
        net_minor.saturating_add(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_bounds() {
        let rules = ProfileRules::default_rules().rfm;
        assert_eq!(
            [0, 30, 31, 90, 91, 365, 366].map(|days| rules.recency_score(days)),
            [5, 5, 4, 4, 3, 2, 1]
        );
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 9, 10, 50].map(|orders| rules.frequency_score(orders)),
            [1, 1, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(
            [-5, 49_999, 50_000, 1_000_000].map(|net| rules.monetary_score(net)),
            [1, 1, 2, 5]
        );
    }

    #[test]
    fn bounds_out_of_order_are_refused() {
        let text = DEFAULT_PROFILE_RULES.replace("[30, 90, 180, 365]", "[30, 20, 180, 365]");
        assert_eq!(
            ProfileRules::from_toml(&text),
            Err(ProfileRulesError::NotAscending("recency_days"))
        );
    }

    #[test]
    fn a_one_off_buyer_is_worth_what_they_spent() {
        let clv = ClvRules { horizon_years: 3 };
        assert_eq!(clv.value(1_000, Some(1_000), None), 1_000);
        // Every 30 days, 1,000 a time, over three years: 36.525 more orders.
        assert_eq!(clv.value(5_000, Some(1_000), Some(30.0)), 5_000 + 36_525);
    }
}
