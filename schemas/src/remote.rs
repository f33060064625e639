//! A Confluent-compatible schema registry elsewhere, reached over its REST API: Confluent
//! Schema Registry, Karapace, Apicurio's `ccompat/v7` API, or another Kinfold's `/registry`.
//!
//! Only what a stage needs: registering Kinfold's own schemas (so the ids it frames canonical
//! events and dead letters with are the registry's) and fetching a writer schema by id.

use serde::Deserialize;
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why a call to the remote registry failed.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// The registry answered that the schema id does not exist.
    NotFound,
    /// The registry refused the request (its message), or could not be reached.
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct RemoteRegistry {
    base: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct ById {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    error_code: u32,
    #[serde(default)]
    message: String,
}

impl RemoteRegistry {
    pub(crate) fn new(base: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    async fn refusal(response: reqwest::Response) -> RemoteError {
        let status = response.status();
        match response.json::<Refusal>().await {
            Ok(refusal) if refusal.error_code == 40403 => RemoteError::NotFound,
            Ok(refusal) => RemoteError::Failed(format!(
                "{status}: {} (error code {})",
                refusal.message, refusal.error_code
            )),
            Err(_) if status == reqwest::StatusCode::NOT_FOUND => RemoteError::NotFound,
            Err(_) => RemoteError::Failed(status.to_string()),
        }
    }

    /// Registers `text` under `subject` (or finds it there); returns its id.
    pub(crate) async fn register(&self, subject: &str, text: &str) -> Result<u32, RemoteError> {
        let response = self
            .client
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": text }))
            .send()
            .await
            .map_err(|error| RemoteError::Failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(match Self::refusal(response).await {
                RemoteError::NotFound => RemoteError::Failed(format!("no subject `{subject}`")),
                failed => failed,
            });
        }
        let registered: Registered = response
            .json()
            .await
            .map_err(|error| RemoteError::Failed(error.to_string()))?;
        Ok(registered.id)
    }

    /// The text of the schema with `id`.
    pub(crate) async fn schema(&self, id: u32) -> Result<String, RemoteError> {
        let response = self
            .client
            .get(format!("{}/schemas/ids/{id}", self.base))
            .send()
            .await
            .map_err(|error| RemoteError::Failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(Self::refusal(response).await);
        }
        let found: ById = response
            .json()
            .await
            .map_err(|error| RemoteError::Failed(error.to_string()))?;
        match found.schema_type.as_deref() {
            None | Some("AVRO") => Ok(found.schema),
            // A JSON or Protobuf schema: not one records here can be written with.
            Some(_) => Err(RemoteError::NotFound),
        }
    }
}
