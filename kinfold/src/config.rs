//! Layered configuration: the embedded `default.toml` < a TOML file < `KINFOLD__SECTION__KEY`
//! environment variables < command-line flags.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use kinfold_ingest::{IngestLimits, Sources, Topics};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The defaults, documented in place.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub storage: StorageConfig,
    pub http: AddrConfig,
    pub grpc: AddrConfig,
    pub log: LogConfig,
    pub topics: Topics,
    pub ingest: IngestLimits,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub profile: ProfileConfig,
    #[serde(default)]
    pub segments: SegmentsConfig,
}

/// Segments and triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentsConfig {
    /// A trigger file (TOML, like `segments/triggers.example.toml`); empty: no triggers.
    pub triggers: String,
    /// A store list (TOML, like `segments/stores.example.toml`) for `distance(store = ...)`;
    /// empty: no stores.
    pub stores: String,
    /// How often the population that `percentile` ranks customers among is gathered again
    /// (and every customer evaluated under it), in seconds.
    pub population_refresh_secs: u64,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        Self {
            triggers: String::new(),
            stores: String::new(),
            population_refresh_secs: 3_600,
        }
    }
}

/// Profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// A rule file (TOML, like `profile/rules.default.toml`); empty: the compiled-in rules.
    pub rules: String,
    /// How many journal events of recently written customers the stages of this process
    /// keep in memory, so that the profile and segment stages need not read a customer back
    /// (about a kilobyte and a half each); 0: none. Used on the embedded log only.
    pub cache_events: u64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            rules: String::new(),
            cache_events: 250_000,
        }
    }
}

/// Identity resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// A rule file (TOML, like `identity/rules.default.toml`); empty: the compiled-in rules.
    pub rules: String,
}

/// Where schemas live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Empty: this process keeps the registry in its store and serves it at `/registry`.
    /// Otherwise the URL of a Confluent-compatible registry (Confluent Schema Registry,
    /// Karapace, Apicurio's `/apis/ccompat/v7`, or another Kinfold's `/registry`), which every
    /// process of a deployment then shares.
    pub url: String,
}

/// The stages a process runs.
pub const STAGES: &[&str] = &["ingest", "identity", "profile", "segments"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Stages this process runs: any of `ingest`, `identity`, `profile`, `segments`,
    /// or `all`, or none (`[]`): then the process serves HTTP only.
    pub stages: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            stages: vec!["all".to_owned()],
        }
    }
}

impl ServeConfig {
    /// Whether `stage` runs; an unknown name in the list is an error.
    pub fn runs(&self, stage: &str) -> anyhow::Result<bool> {
        for name in &self.stages {
            if name != "all" && name != "none" && !STAGES.contains(&name.as_str()) {
                anyhow::bail!(
                    "unknown stage `{name}` in serve.stages: expected {} or all",
                    STAGES.join(", ")
                );
            }
        }
        Ok(self
            .stages
            .iter()
            .any(|name| name == "all" || name == stage))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Tables (and the event log, unless `log` is set).
    pub url: String,
    /// The event log somewhere else, such as `kafka://HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Storage values given as flags.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrConfig {
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub json: bool,
}

/// Values given as flags; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<AddrConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<AddrConfig>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "log")]
    pub log_json: Option<LogJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogJson {
    pub json: bool,
}

impl Config {
    /// Loads the layers; `file` is the `--config` file, if any.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, figment::Error> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("KINFOLD__").split("__"))
            .merge(Serialized::defaults(flags))
            .extract()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let config = Config::load(None, &FlagOverrides::default()).expect("defaults load");
        assert_eq!(config.http.addr, "127.0.0.1:8080");
        assert_eq!(config.topics.canonical, "events.canonical");
        assert_eq!(config.ingest, IngestLimits::default());
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("kinfold.toml");
        std::fs::write(
            &file,
            "[http]\naddr = \"0.0.0.0:9000\"\n[grpc]\naddr = \"0.0.0.0:9001\"\n",
        )
        .expect("write config");
        let flags = FlagOverrides {
            grpc: Some(AddrConfig {
                addr: "127.0.0.1:7000".into(),
            }),
            ..FlagOverrides::default()
        };
        let config = Config::load(Some(&file), &flags).expect("loads");
        assert_eq!(config.http.addr, "0.0.0.0:9000");
        assert_eq!(config.grpc.addr, "127.0.0.1:7000");
    }
}
