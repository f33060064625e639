//! The catalog of Kinfold's own schemas: every frozen version of every subject.

use crate::compat::{CompatibilityLevel, incompatibilities};
use crate::compose::canonical_schema;
use std::path::Path;

/// The subject of the canonical log's values.
pub const CANONICAL_SUBJECT: &str = "events.canonical-value";
/// The subject of the dead-letter log's values.
pub const DLQ_SUBJECT: &str = "events.dlq-value";
/// The subjects of the family records, in the order of the canonical body union.
pub const FAMILY_SUBJECTS: [&str; 5] = [
    "pos.transactions-value",
    "ecom.orders-value",
    "ecom.refunds-value",
    "wechat.events-value",
    "membership.events-value",
];

/// One subject's versions, oldest first; the last is current.
#[derive(Debug, Clone)]
pub struct SubjectSchemas {
    pub subject: String,
    pub versions: Vec<String>,
}

impl SubjectSchemas {
    /// The current (newest) version's text.
    pub fn current(&self) -> &str {
        self.versions.last().map_or("", String::as_str)
    }
}

/// Every subject Kinfold defines.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub subjects: Vec<SubjectSchemas>,
}

macro_rules! embedded_versions {
    ($subject:literal: $($version:literal),+) => {
        SubjectSchemas {
            subject: $subject.to_owned(),
            versions: vec![$(include_str!(concat!("../avro/", $subject, "/", $version, ".avsc")).to_owned()),+],
        }
    };
}

impl Catalog {
    /// The schemas compiled into this binary.
    pub fn embedded() -> Self {
        Self {
            subjects: vec![
                embedded_versions!("pos.transactions-value": "v1", "v2"),
                embedded_versions!("ecom.orders-value": "v1"),
                embedded_versions!("ecom.refunds-value": "v1"),
                embedded_versions!("wechat.events-value": "v1"),
                embedded_versions!("membership.events-value": "v1"),
                embedded_versions!("events.canonical-value": "v1"),
                embedded_versions!("events.dlq-value": "v1"),
            ],
        }
    }

    /// The schemas in a directory laid out as `DIR/<subject>/v<N>.avsc`, for checking a working
    /// tree before it is compiled in.
    pub fn load_dir(dir: &Path) -> std::io::Result<Self> {
        let mut subjects = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let mut numbered = Vec::new();
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let number = name
                    .strip_prefix('v')
                    .and_then(|rest| rest.strip_suffix(".avsc"))
                    .and_then(|digits| digits.parse::<u32>().ok());
                if let Some(number) = number {
                    numbered.push((number, std::fs::read_to_string(file.path())?));
                }
            }
            numbered.sort_by_key(|(number, _)| *number);
            subjects.push(SubjectSchemas {
                subject: entry.file_name().to_string_lossy().into_owned(),
                versions: numbered.into_iter().map(|(_, text)| text).collect(),
            });
        }
        Ok(Self { subjects })
    }

    /// A subject's versions.
    pub fn subject(&self, subject: &str) -> Option<&SubjectSchemas> {
        self.subjects.iter().find(|entry| entry.subject == subject)
    }

    /// The canonical schema composed from the current family schemas.
    pub fn composed_canonical(&self) -> Result<serde_json::Value, String> {
        let mut families = Vec::new();
        for subject in FAMILY_SUBJECTS {
            let entry = self
                .subject(subject)
                .ok_or_else(|| format!("subject {subject} is missing"))?;
            let value: serde_json::Value = serde_json::from_str(entry.current())
                .map_err(|error| format!("{subject}: not json: {error}"))?;
            families.push(value);
        }
        Ok(canonical_schema(&families))
    }

    /// Every problem with the catalog: unparsable versions, a current version that cannot read
    /// an older one (BACKWARD_TRANSITIVE), a canonical schema that no longer matches the family
    /// schemas. Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for entry in &self.subjects {
            let mut parsed = Vec::new();
            for (index, text) in entry.versions.iter().enumerate() {
                match apache_avro::Schema::parse_str(text) {
                    Ok(schema) => parsed.push(schema),
                    Err(error) => problems.push(format!(
                        "{} v{}: not a valid avro schema: {error}",
                        entry.subject,
                        index + 1
                    )),
                }
            }
            if parsed.len() != entry.versions.len() || parsed.is_empty() {
                continue;
            }
            for (index, candidate) in parsed.iter().enumerate().skip(1) {
                let previous: Vec<&apache_avro::Schema> = parsed[..index].iter().collect();
                for reason in
                    incompatibilities(CompatibilityLevel::BackwardTransitive, candidate, &previous)
                {
                    problems.push(format!("{} v{}: {reason}", entry.subject, index + 1));
                }
            }
        }
        match (self.composed_canonical(), self.subject(CANONICAL_SUBJECT)) {
            (Ok(composed), Some(frozen)) => {
                let current: Result<serde_json::Value, _> = serde_json::from_str(frozen.current());
                if current.ok().as_ref() != Some(&composed) {
                    problems.push(format!(
                        "{CANONICAL_SUBJECT}: the family schemas changed; freeze the composed \
                         canonical schema as version {} (`kinfold schemas compose`)",
                        frozen.versions.len() + 1
                    ));
                }
            }
            (Err(error), _) => problems.push(error),
            (_, None) => problems.push(format!("subject {CANONICAL_SUBJECT} is missing")),
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_has_no_problems() {
        assert_eq!(Catalog::embedded().problems(), Vec::<String>::new());
    }

    #[test]
    fn the_directory_matches_what_is_compiled_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
        let on_disk = Catalog::load_dir(&dir).expect("schemas/avro is readable");
        let embedded = Catalog::embedded();
        assert_eq!(on_disk.subjects.len(), embedded.subjects.len());
        for entry in &embedded.subjects {
            let disk = on_disk.subject(&entry.subject).expect("subject on disk");
            assert_eq!(disk.versions, entry.versions, "{}", entry.subject);
        }
    }

    #[test]
    fn an_incompatible_change_is_refused() {
        let mut catalog = Catalog::embedded();
        let pos = catalog
            .subjects
            .iter_mut()
            .find(|entry| entry.subject == "pos.transactions-value")
            .expect("pos subject");
        let mut v3: serde_json::Value = serde_json::from_str(pos.current()).expect("json");
        let fields = v3["fields"].as_array_mut().expect("fields");
        fields.push(serde_json::json!({"name": "loyalty_tier", "type": "string"}));
        pos.versions.push(v3.to_string());
        let problems = catalog.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("pos.transactions-value v3")),
            "{problems:?}"
        );
    }
}

#[cfg(test)]
mod freeze {
    use super::*;

    /// Writes the composed canonical schema as its first version when `KINFOLD_BLESS=1` and
    /// the frozen file is the empty placeholder; otherwise checks nothing (the catalog test
    /// does).
    #[test]
    fn freeze_canonical_when_blessing() {
        if std::env::var("KINFOLD_BLESS").as_deref() != Ok("1") {
            return;
        }
        let composed = Catalog::embedded().composed_canonical().expect("composes");
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/events.canonical-value/v1.avsc");
        let text = serde_json::to_string_pretty(&composed).expect("json") + "\n";
        std::fs::write(path, text).expect("writes the frozen canonical schema");
    }
}
