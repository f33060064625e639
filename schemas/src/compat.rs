//! Schema compatibility levels, as the Confluent Schema Registry defines them, checked with
//! apache-avro's schema resolution rules.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde::{Deserialize, Serialize};

/// A compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    /// The level's name as the registry API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl std::str::FromStr for CompatibilityLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase()))
            .map_err(|_| format!("unknown compatibility level `{s}`"))
    }
}

/// Checks `candidate` against `previous` versions (oldest first) at `level`; returns the
/// reasons it is incompatible, empty when it is compatible.
pub fn incompatibilities(
    level: CompatibilityLevel,
    candidate: &Schema,
    previous: &[&Schema],
) -> Vec<String> {
    let checked: &[&Schema] = if level.is_transitive() {
        previous
    } else {
        previous.last().map_or(&[], std::slice::from_ref)
    };
    let mut reasons = Vec::new();
    for (index, old) in checked.iter().enumerate() {
        let position = previous.len() - checked.len() + index + 1;
        if level.checks_backward()
            && let Err(error) = SchemaCompatibility::can_read(old, candidate)
        {
            reasons.push(format!(
                "the new schema cannot read data written with version {position}: {error}"
            ));
        }
        if level.checks_forward()
            && let Err(error) = SchemaCompatibility::can_read(candidate, old)
        {
            reasons.push(format!(
                "version {position} cannot read data written with the new schema: {error}"
            ));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        let text = format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#);
        Schema::parse_str(&text).expect("test schema parses")
    }

    #[test]
    fn adding_an_optional_field_is_backward_compatible() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(
            r#"{"name":"a","type":"string"},{"name":"b","type":["null","long"],"default":null}"#,
        );
        assert!(incompatibilities(CompatibilityLevel::BackwardTransitive, &v2, &[&v1]).is_empty());
    }

    #[test]
    fn adding_a_required_field_is_not() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"long"}"#);
        let reasons = incompatibilities(CompatibilityLevel::Backward, &v2, &[&v1]);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(incompatibilities(CompatibilityLevel::None, &v2, &[&v1]).is_empty());
    }

    #[test]
    fn transitive_checks_every_version() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"long","default":0}"#);
        // v3 drops the default of b: it can read v2 data but not v1 data.
        let v3 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"long"}"#);
        assert!(incompatibilities(CompatibilityLevel::Backward, &v3, &[&v1, &v2]).is_empty());
        assert_eq!(
            incompatibilities(CompatibilityLevel::BackwardTransitive, &v3, &[&v1, &v2]).len(),
            1
        );
    }

    #[test]
    fn levels_parse_from_registry_names() {
        assert_eq!(
            "full_transitive".parse(),
            Ok(CompatibilityLevel::FullTransitive)
        );
        assert!("sideways".parse::<CompatibilityLevel>().is_err());
    }
}
