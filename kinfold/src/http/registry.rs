//! The Confluent Schema Registry REST subset under `/registry`, so stock clients can register
//! and fetch schemas: subjects and versions, schemas by id, lookups, compatibility checks and
//! configuration. Only AVRO schemas.

use super::HttpState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kinfold_schemas::registry::SubjectVersion;
use kinfold_schemas::{CompatibilityLevel, RegistryError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What `/registry` answers when this process uses a registry elsewhere: where it is.
pub fn elsewhere(url: &str) -> Router<HttpState> {
    let message = format!("this process uses the schema registry at {url}");
    Router::new().fallback(move || {
        let message = message.clone();
        async move {
            reply(
                StatusCode::NOT_FOUND,
                json!({"error_code": 40401, "message": message}),
            )
        }
    })
}

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(|| async { reply(StatusCode::OK, json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(get_schema))
        .route("/schemas/ids/{id}/schema", get(get_schema_text))
        .route("/schemas/ids/{id}/versions", get(get_schema_versions))
        .route(
            "/schemas/types",
            get(|| async { reply(StatusCode::OK, json!(["AVRO"])) }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error(error: &RegistryError) -> Response {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(
        status,
        json!({"error_code": error.error_code(), "message": error.to_string()}),
    )
}

fn unprocessable(message: String) -> Response {
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"error_code": 42201, "message": message}),
    )
}

#[derive(Debug, Deserialize)]
struct SchemaRequest {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

fn parse_request(body: &[u8]) -> Result<SchemaRequest, Response> {
    let request: SchemaRequest = serde_json::from_slice(body)
        .map_err(|e| unprocessable(format!("request body is not a schema request: {e}")))?;
    match request.schema_type.as_deref() {
        None | Some("AVRO") => Ok(request),
        Some(other) => Err(error(&RegistryError::UnsupportedSchemaType(
            other.to_owned(),
        ))),
    }
}

fn version_json(version: &SubjectVersion) -> Value {
    json!({
        "subject": version.subject,
        "version": version.version,
        "id": version.schema.id,
        "schema": version.schema.text,
    })
}

async fn list_subjects(State(state): State<HttpState>) -> Response {
    reply(StatusCode::OK, json!(state.app.registry.subjects()))
}

async fn list_versions(State(state): State<HttpState>, Path(subject): Path<String>) -> Response {
    match state.app.registry.versions(&subject) {
        Ok(versions) => reply(StatusCode::OK, json!(versions)),
        Err(e) => error(&e),
    }
}

/// Subjects whose records Kinfold itself writes: their schemas change only with Kinfold.
const RESERVED_SUBJECTS: [&str; 2] = [
    kinfold_schemas::catalog::CANONICAL_SUBJECT,
    kinfold_schemas::catalog::DLQ_SUBJECT,
];

async fn register(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    // Registering a version the subject already has only finds it, reserved subjects too
    // (another Kinfold using this registry registers its catalog so).
    if let Ok(version) = state.app.registry.lookup(&subject, &request.schema) {
        return reply(StatusCode::OK, version_json(&version));
    }
    if RESERVED_SUBJECTS.contains(&subject.as_str()) {
        return error(&RegistryError::ReservedSubject(subject));
    }
    match state.app.registry.register(&subject, &request.schema).await {
        Ok(id) => {
            let version = state.app.registry.lookup(&subject, &request.schema).ok();
            let mut body = json!({"id": id});
            if let Some(version) = version {
                body = version_json(&version);
            }
            reply(StatusCode::OK, body)
        }
        Err(e) => error(&e),
    }
}

async fn lookup(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match state.app.registry.lookup(&subject, &request.schema) {
        Ok(version) => reply(StatusCode::OK, version_json(&version)),
        Err(e) => error(&e),
    }
}

async fn get_version(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    match state.app.registry.version(&subject, &version) {
        Ok(version) => reply(StatusCode::OK, version_json(&version)),
        Err(e) => error(&e),
    }
}

async fn get_version_schema(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    match state.app.registry.version(&subject, &version) {
        Ok(version) => raw_schema(&version.schema.text),
        Err(e) => error(&e),
    }
}

fn raw_schema(text: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        text.to_owned(),
    )
        .into_response()
}

fn parse_id(text: &str) -> Result<u32, Response> {
    text.parse().map_err(|_| {
        error(&RegistryError::SchemaNotFound(format!(
            "`{text}` (not a schema id)"
        )))
    })
}

fn schema_not_found(id: u32) -> Response {
    error(&RegistryError::SchemaNotFound(id.to_string()))
}

async fn get_schema(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state.app.registry.schema_by_id(id) {
        Some(schema) => reply(StatusCode::OK, json!({"schema": schema.text})),
        None => schema_not_found(id),
    }
}

async fn get_schema_text(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state.app.registry.schema_by_id(id) {
        Some(schema) => raw_schema(&schema.text),
        None => schema_not_found(id),
    }
}

async fn get_schema_versions(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return response,
    };
    if state.app.registry.schema_by_id(id).is_none() {
        return schema_not_found(id);
    }
    let versions: Vec<Value> = state
        .app
        .registry
        .subject_versions_of(id)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    reply(StatusCode::OK, json!(versions))
}

fn compatibility_reply(result: Result<Vec<String>, RegistryError>, verbose: bool) -> Response {
    match result {
        Ok(reasons) => {
            let mut body = json!({"is_compatible": reasons.is_empty()});
            if verbose {
                body["messages"] = json!(reasons);
            }
            reply(StatusCode::OK, body)
        }
        Err(e) => error(&e),
    }
}

fn is_verbose(query: &HashMap<String, String>) -> bool {
    query.get("verbose").is_some_and(|value| value == "true")
}

async fn check_version(
    State(state): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let result = state
        .app
        .registry
        .check_compatibility(&subject, &request.schema, Some(&version));
    compatibility_reply(result, is_verbose(&query))
}

async fn check_all(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let result = state
        .app
        .registry
        .check_compatibility(&subject, &request.schema, None);
    compatibility_reply(result, is_verbose(&query))
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

async fn get_global_config(State(state): State<HttpState>) -> Response {
    let level = state.app.registry.compatibility(None);
    reply(
        StatusCode::OK,
        json!({"compatibilityLevel": level.as_str()}),
    )
}

async fn get_subject_config(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
) -> Response {
    match state.app.registry.own_compatibility(&subject) {
        Some(level) => reply(
            StatusCode::OK,
            json!({"compatibilityLevel": level.as_str()}),
        ),
        None => error(&RegistryError::SubjectLevelNotFound(subject)),
    }
}

async fn put_config(state: &HttpState, subject: Option<&str>, body: &[u8]) -> Response {
    let request: ConfigRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return unprocessable(format!("request body is not a config request: {e}")),
    };
    let level: CompatibilityLevel = match request.compatibility.parse() {
        Ok(level) => level,
        Err(_) => {
            return error(&RegistryError::InvalidCompatibilityLevel(
                request.compatibility,
            ));
        }
    };
    match state.app.registry.set_compatibility(subject, level).await {
        Ok(()) => reply(StatusCode::OK, json!({"compatibility": level.as_str()})),
        Err(e) => error(&e),
    }
}

async fn put_global_config(State(state): State<HttpState>, body: Bytes) -> Response {
    put_config(&state, None, &body).await
}

async fn put_subject_config(
    State(state): State<HttpState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    put_config(&state, Some(&subject), &body).await
}
