//! The schema registry: the Confluent Schema Registry's model (subjects with numbered
//! versions, globally unique schema ids, compatibility levels per subject and global), kept
//! in the key-value store and cached in memory so decoders resolve ids without I/O.
//!
//! Storage layout in table `schema_registry`:
//! - partition `schemas`: clustering key = id (u32 big-endian), value = schema text;
//! - partition `subjects`: clustering key = `subject \0 version (u32 big-endian)`, value = id;
//! - partition `config`: clustering key = subject, or empty for the global level.

use crate::compat::{CompatibilityLevel, incompatibilities};
use bytes::Bytes;
use kinfold_core::ErrorKind;
use kinfold_core::error::Fault;
use kinfold_core::ports::{KvError, KvMutation, KvStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::remote::{RemoteError, RemoteRegistry};

const TABLE: &str = "schema_registry";
const SCHEMAS: &[u8] = b"schemas";
const SUBJECTS: &[u8] = b"subjects";
const CONFIG: &[u8] = b"config";

/// The level a fresh registry enforces: every version readable by every later one.
pub const DEFAULT_COMPATIBILITY: CompatibilityLevel = CompatibilityLevel::BackwardTransitive;

/// A schema known to the registry, parsed once for every use.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    /// The schema as registered.
    pub text: String,
    /// The Avro full name of the top-level named type, if it has one.
    pub full_name: Option<String>,
    /// The event family whose record this schema writes, if any; resolved once here so decoders
    /// do not compare names per record.
    pub family: Option<kinfold_core::EventFamily>,
    /// For compatibility checks.
    pub avro: apache_avro::Schema,
    /// For decoding.
    pub fast: serde_avro_fast::Schema,
}

/// Errors of the registry, each with the Confluent error code its REST API answers.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("subject `{0}` not found")]
    SubjectNotFound(String),
    #[error("version {version} of subject `{subject}` not found")]
    VersionNotFound { subject: String, version: String },
    #[error("schema {0} not found")]
    SchemaNotFound(String),
    #[error("invalid avro schema: {0}")]
    InvalidSchema(String),
    #[error("only avro schemas are supported, not {0}")]
    UnsupportedSchemaType(String),
    #[error("schema is incompatible with subject `{subject}` at {level}: {}", reasons.join("; "))]
    Incompatible {
        subject: String,
        level: &'static str,
        reasons: Vec<String>,
    },
    #[error("invalid compatibility level `{0}`")]
    InvalidCompatibilityLevel(String),
    #[error("invalid version `{0}`: a positive number or `latest`")]
    InvalidVersion(String),
    #[error("subject `{0}` has no compatibility level of its own")]
    SubjectLevelNotFound(String),
    #[error("subject `{0}` is written by kinfold itself; its schemas change only with kinfold")]
    ReservedSubject(String),
    #[error(transparent)]
    Storage(#[from] KvError),
    #[error("schema registry at {url}: {reason}")]
    Remote { url: String, reason: String },
    #[error("this process uses the schema registry at {0}; change schemas there")]
    RemoteOnly(String),
}

impl RegistryError {
    /// The Confluent `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound { .. } => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::InvalidSchema(_) | Self::UnsupportedSchemaType(_) => 42201,
            Self::Incompatible { .. } => 409,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::InvalidVersion(_) => 42202,
            Self::SubjectLevelNotFound(_) => 40408,
            Self::ReservedSubject(_) => 40301,
            Self::Storage(_) => 50001,
            Self::Remote { .. } => 50003,
            Self::RemoteOnly(_) => 40301,
        }
    }

    /// The HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self.error_code() {
            409 => 409,
            code => (code / 100) as u16,
        }
    }
}

impl ErrorKind for RegistryError {
    fn fault(&self) -> Fault {
        match self {
            Self::Storage(error) => error.fault(),
            Self::Remote { .. } => Fault::External,
            _ => Fault::User,
        }
    }
}

#[derive(Debug, Default)]
struct RegistryState {
    schemas: HashMap<u32, Arc<RegisteredSchema>>,
    id_by_normalised: HashMap<String, u32>,
    subjects: BTreeMap<String, Vec<u32>>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: HashMap<String, CompatibilityLevel>,
    /// Per subject, the schema Kinfold's code reads records with: a new version must be
    /// readable by it as well as compatible with the earlier versions.
    readers: HashMap<String, apache_avro::Schema>,
}

/// The registry. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SchemaRegistry {
    /// Where the registry is kept; `None` when it lives at `remote`.
    store: Option<Arc<dyn KvStore>>,
    /// A registry elsewhere that this one caches.
    remote: Option<RemoteRegistry>,
    /// Ids the remote registry said it does not have, and when, so poison records do not
    /// send a request each.
    missing: std::sync::Mutex<HashMap<u32, std::time::Instant>>,
    state: RwLock<RegistryState>,
    writes: tokio::sync::Mutex<()>,
}

/// How long an id the remote registry did not know stays unknown before it is asked again.
const MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A subject's version as the REST API shows it.
#[derive(Debug, Clone)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub schema: Arc<RegisteredSchema>,
}

/// Whitespace and key order do not make a schema different.
fn normalise(text: &str) -> Result<String, RegistryError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
    Ok(value.to_string())
}

fn parse_schema(id: u32, text: &str) -> Result<RegisteredSchema, RegistryError> {
    let avro = apache_avro::Schema::parse_str(text)
        .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
    let fast = text
        .parse::<serde_avro_fast::Schema>()
        .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
    let full_name = avro.name().map(|name| name.fullname(None));
    let family = full_name
        .as_deref()
        .and_then(crate::codec::family_of_record);
    Ok(RegisteredSchema {
        id,
        text: text.to_owned(),
        full_name,
        family,
        avro,
        fast,
    })
}

fn subject_key(subject: &str, version: u32) -> Vec<u8> {
    let mut key = subject.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn storage_error(what: &str) -> RegistryError {
    RegistryError::Storage(KvError::Storage(format!("corrupt registry entry: {what}")))
}

impl SchemaRegistry {
    /// Opens the registry stored in `store`, loading every schema into memory.
    pub async fn open(store: Arc<dyn KvStore>) -> Result<Self, RegistryError> {
        let mut state = RegistryState::default();
        for row in store
            .scan_partition(TABLE, SCHEMAS, &[], usize::MAX)
            .await?
        {
            let id_bytes: [u8; 4] = row.clustering_key[..]
                .try_into()
                .map_err(|_| storage_error("schema id"))?;
            let id = u32::from_be_bytes(id_bytes);
            let text =
                String::from_utf8(row.value.to_vec()).map_err(|_| storage_error("schema text"))?;
            state.id_by_normalised.insert(normalise(&text)?, id);
            state.schemas.insert(id, Arc::new(parse_schema(id, &text)?));
        }
        for row in store
            .scan_partition(TABLE, SUBJECTS, &[], usize::MAX)
            .await?
        {
            let key = &row.clustering_key[..];
            let split = key
                .len()
                .checked_sub(5)
                .ok_or_else(|| storage_error("subject key"))?;
            let subject =
                std::str::from_utf8(&key[..split]).map_err(|_| storage_error("subject"))?;
            let id_bytes: [u8; 4] = row.value[..]
                .try_into()
                .map_err(|_| storage_error("subject id"))?;
            state
                .subjects
                .entry(subject.to_owned())
                .or_default()
                .push(u32::from_be_bytes(id_bytes));
        }
        for row in store.scan_partition(TABLE, CONFIG, &[], usize::MAX).await? {
            let level_text = std::str::from_utf8(&row.value).map_err(|_| storage_error("level"))?;
            let level = level_text.parse().map_err(|_| storage_error("level"))?;
            if row.clustering_key.is_empty() {
                state.global_level = Some(level);
            } else {
                let subject = String::from_utf8(row.clustering_key.to_vec())
                    .map_err(|_| storage_error("config subject"))?;
                state.subject_levels.insert(subject, level);
            }
        }
        Ok(Self {
            store: Some(store),
            remote: None,
            missing: std::sync::Mutex::default(),
            state: RwLock::new(state),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// A registry that caches the Confluent-compatible registry at `url` (Confluent Schema
    /// Registry, Karapace, Apicurio's ccompat API, another Kinfold's `/registry`): schemas are
    /// registered there and fetched from there by id ([`Self::resolve_ids`]).
    pub fn open_remote(url: &str) -> Result<Self, RegistryError> {
        let remote = RemoteRegistry::new(url).map_err(|reason| RegistryError::Remote {
            url: url.to_owned(),
            reason,
        })?;
        Ok(Self {
            store: None,
            remote: Some(remote),
            missing: std::sync::Mutex::default(),
            state: RwLock::new(RegistryState::default()),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The URL of the registry this one caches, if it is remote.
    pub fn remote_url(&self) -> Option<&str> {
        self.remote.as_ref().map(RemoteRegistry::url)
    }

    fn local_store(&self) -> Result<&Arc<dyn KvStore>, RegistryError> {
        match (&self.store, &self.remote) {
            (Some(store), _) => Ok(store),
            (None, Some(remote)) => Err(RegistryError::RemoteOnly(remote.url().to_owned())),
            (None, None) => unreachable!("a registry is local or remote"),
        }
    }

    fn remote_error(&self, reason: String) -> RegistryError {
        RegistryError::Remote {
            url: self.remote_url().unwrap_or_default().to_owned(),
            reason,
        }
    }

    /// Makes sure the schemas with `ids` are known, fetching the unknown ones from the remote
    /// registry; nothing to do for a local registry. An id the remote registry does not have
    /// stays unknown (its records are dead-lettered); an unreachable registry is an error, so
    /// that the records wait instead.
    pub async fn resolve_ids(
        &self,
        ids: impl IntoIterator<Item = u32>,
    ) -> Result<(), RegistryError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let mut wanted: Vec<u32> = {
            let state = self.read();
            ids.into_iter()
                .filter(|id| !state.schemas.contains_key(id))
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            {
                let mut missing = self
                    .missing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if missing
                    .get(&id)
                    .is_some_and(|since| since.elapsed() < MISSING_FOR)
                {
                    continue;
                }
                missing.remove(&id);
            }
            match remote.schema(id).await {
                Ok(text) => {
                    let parsed = parse_schema(id, &text)?;
                    let mut state = self.write();
                    state
                        .id_by_normalised
                        .entry(normalise(&text)?)
                        .or_insert(id);
                    state.schemas.insert(id, Arc::new(parsed));
                }
                Err(RemoteError::NotFound) => {
                    self.missing
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id, std::time::Instant::now());
                }
                Err(RemoteError::Failed(reason)) => return Err(self.remote_error(reason)),
            }
        }
        Ok(())
    }

    async fn register_remote(
        &self,
        remote: &RemoteRegistry,
        subject: &str,
        text: &str,
    ) -> Result<u32, RegistryError> {
        let id = match remote.register(subject, text).await {
            Ok(id) => id,
            Err(RemoteError::NotFound) => {
                return Err(self.remote_error(format!("cannot register under `{subject}`")));
            }
            Err(RemoteError::Failed(reason)) => return Err(self.remote_error(reason)),
        };
        let parsed = parse_schema(id, text)?;
        let mut state = self.write();
        state.id_by_normalised.insert(normalise(text)?, id);
        state.schemas.insert(id, Arc::new(parsed));
        let versions = state.subjects.entry(subject.to_owned()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The schema with `id`, without I/O.
    pub fn schema_by_id(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.read().schemas.get(&id).cloned()
    }

    /// Every subject, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.read().subjects.keys().cloned().collect()
    }

    /// The version numbers of `subject`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let state = self.read();
        let ids = state
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_owned()))?;
        Ok((1..=ids.len() as u32).collect())
    }

    /// A version of `subject`: a number, or `latest` / `-1`.
    pub fn version(&self, subject: &str, version: &str) -> Result<SubjectVersion, RegistryError> {
        let state = self.read();
        let ids = state
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_owned()))?;
        let not_found = || RegistryError::VersionNotFound {
            subject: subject.to_owned(),
            version: version.to_owned(),
        };
        let number = match version {
            "latest" | "-1" => ids.len() as u32,
            other => match other.parse::<u32>() {
                Ok(number) if number > 0 => number,
                _ => return Err(RegistryError::InvalidVersion(other.to_owned())),
            },
        };
        let id = number
            .checked_sub(1)
            .and_then(|index| ids.get(index as usize))
            .ok_or_else(not_found)?;
        let schema = state.schemas.get(id).cloned().ok_or_else(not_found)?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version: number,
            schema,
        })
    }

    /// The (subject, version) pairs that use schema `id`.
    pub fn subject_versions_of(&self, id: u32) -> Vec<(String, u32)> {
        let state = self.read();
        let mut found = Vec::new();
        for (subject, ids) in &state.subjects {
            for (index, candidate) in ids.iter().enumerate() {
                if *candidate == id {
                    found.push((subject.clone(), index as u32 + 1));
                }
            }
        }
        found
    }

    /// The version of `subject` whose schema is `text`, if registered there.
    pub fn lookup(&self, subject: &str, text: &str) -> Result<SubjectVersion, RegistryError> {
        let normalised = normalise(text)?;
        let id = {
            let state = self.read();
            let ids = state
                .subjects
                .get(subject)
                .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_owned()))?;
            let id = *state
                .id_by_normalised
                .get(&normalised)
                .ok_or_else(|| RegistryError::SchemaNotFound("under this subject".to_owned()))?;
            if !ids.contains(&id) {
                return Err(RegistryError::SchemaNotFound(
                    "under this subject".to_owned(),
                ));
            }
            ids.iter()
                .position(|candidate| *candidate == id)
                .unwrap_or_default() as u32
                + 1
        };
        self.version(subject, &id.to_string())
    }

    /// The level enforced for `subject`.
    pub fn compatibility(&self, subject: Option<&str>) -> CompatibilityLevel {
        let state = self.read();
        subject
            .and_then(|subject| state.subject_levels.get(subject).copied())
            .or(state.global_level)
            .unwrap_or(DEFAULT_COMPATIBILITY)
    }

    /// The level set for `subject` itself (not inherited), if any.
    pub fn own_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.read().subject_levels.get(subject).copied()
    }

    /// Sets the level of `subject`, or the global level.
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        let _serialised = self.writes.lock().await;
        let key = subject.unwrap_or_default().as_bytes().to_vec();
        self.local_store()?
            .apply(
                TABLE,
                CONFIG,
                vec![KvMutation::Put {
                    clustering_key: Bytes::from(key),
                    value: Bytes::from(level.as_str()),
                }],
                true,
            )
            .await?;
        let mut state = self.write();
        match subject {
            Some(subject) => {
                state.subject_levels.insert(subject.to_owned(), level);
            }
            None => state.global_level = Some(level),
        }
        Ok(())
    }

    /// Reasons `text` cannot be registered under `subject` against `version` (all versions when
    /// the level is transitive and `version` is `None`); empty when compatible.
    pub fn check_compatibility(
        &self,
        subject: &str,
        text: &str,
        version: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let candidate = parse_schema(0, text)?;
        let level = self.compatibility(Some(subject));
        let previous: Vec<Arc<RegisteredSchema>> = match version {
            Some(version) => vec![self.version(subject, version)?.schema],
            None => {
                let state = self.read();
                state
                    .subjects
                    .get(subject)
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|id| state.schemas.get(id).cloned())
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        let previous: Vec<&apache_avro::Schema> =
            previous.iter().map(|schema| &schema.avro).collect();
        let mut reasons = incompatibilities(level, &candidate.avro, &previous);
        if level != CompatibilityLevel::None
            && let Some(reader) = self.read().readers.get(subject)
            && let Err(error) = apache_avro::schema_compatibility::SchemaCompatibility::can_read(
                &candidate.avro,
                reader,
            )
        {
            reasons.push(format!(
                "kinfold cannot read data written with the new schema: {error}"
            ));
        }
        Ok(reasons)
    }

    /// Registers `text` under `subject`; returns its id. Registering a schema the subject
    /// already has returns the existing id; the same schema under another subject shares the id.
    pub async fn register(&self, subject: &str, text: &str) -> Result<u32, RegistryError> {
        let _serialised = self.writes.lock().await;
        if let Some(remote) = &self.remote {
            return self.register_remote(remote, subject, text).await;
        }
        let normalised = normalise(text)?;
        let existing_id = self.read().id_by_normalised.get(&normalised).copied();
        if let Some(id) = existing_id
            && self
                .read()
                .subjects
                .get(subject)
                .is_some_and(|ids| ids.contains(&id))
        {
            return Ok(id);
        }
        let reasons = self.check_compatibility(subject, text, None)?;
        if !reasons.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                level: self.compatibility(Some(subject)).as_str(),
                reasons,
            });
        }
        let id = match existing_id {
            Some(id) => id,
            None => {
                let id = self.read().schemas.keys().max().map_or(1, |max| max + 1);
                let parsed = parse_schema(id, text)?;
                self.local_store()?
                    .apply(
                        TABLE,
                        SCHEMAS,
                        vec![KvMutation::Put {
                            clustering_key: Bytes::copy_from_slice(&id.to_be_bytes()),
                            value: Bytes::from(text.to_owned()),
                        }],
                        true,
                    )
                    .await?;
                let mut state = self.write();
                state.schemas.insert(id, Arc::new(parsed));
                state.id_by_normalised.insert(normalised, id);
                id
            }
        };
        let version = self.read().subjects.get(subject).map_or(0, Vec::len) as u32 + 1;
        self.local_store()?
            .apply(
                TABLE,
                SUBJECTS,
                vec![KvMutation::Put {
                    clustering_key: Bytes::from(subject_key(subject, version)),
                    value: Bytes::copy_from_slice(&id.to_be_bytes()),
                }],
                true,
            )
            .await?;
        self.write()
            .subjects
            .entry(subject.to_owned())
            .or_default()
            .push(id);
        Ok(id)
    }

    /// Registers every version of Kinfold's own catalog, oldest first, so the ids exist before
    /// any record is written, and remembers each subject's current schema as the one Kinfold
    /// reads with. Idempotent.
    pub async fn register_catalog(&self, catalog: &crate::Catalog) -> Result<(), RegistryError> {
        for entry in &catalog.subjects {
            for text in &entry.versions {
                self.register(&entry.subject, text).await?;
            }
            let reader = apache_avro::Schema::parse_str(entry.current())
                .map_err(|error| RegistryError::InvalidSchema(error.to_string()))?;
            self.write().readers.insert(entry.subject.clone(), reader);
        }
        Ok(())
    }

    /// The id of exactly `text` under `subject`: what a writer that encodes with `text` must
    /// frame its records with (not merely the subject's latest version).
    pub fn id_of(&self, subject: &str, text: &str) -> Result<u32, RegistryError> {
        Ok(self.lookup(subject, text)?.schema.id)
    }

    /// The id of the current version of `subject`.
    pub fn latest_id(&self, subject: &str) -> Result<u32, RegistryError> {
        Ok(self.version(subject, "latest")?.schema.id)
    }
}
