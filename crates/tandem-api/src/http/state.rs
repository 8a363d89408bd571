//! The HTTP state API: `/v1.0/state/{store}...`.
//!
//! Values travel as JSON: a saved `value` is stored exactly as its JSON text, so what
//! HTTP writes reads back identically through HTTP, gRPC and the SDKs.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tandem_runtime::{Consistency, StateItem, StateOperation};

use super::Api;
use super::extract::{Body, Path, Query};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/v1.0/state/{store}", post(save).put(save))
        .route("/v1.0/state/{store}/bulk", post(bulk_get).put(bulk_get))
        .route(
            "/v1.0/state/{store}/transaction",
            post(transaction).put(transaction),
        )
        .route("/v1.0/state/{store}/{key}", get(get_one).delete(delete_one))
        .route(
            "/v1.0-alpha1/state/{store}/query",
            post(query_state).put(query_state),
        )
}

/// `POST|PUT /v1.0-alpha1/state/{store}/query`: `{"results": [{"key", "data", "etag"}],
/// "token"}` (the token only when another page follows), `204` when nothing matched.
async fn query_state(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let page = api.runtime.state().query(&store, &body).await?;
    if page.results.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    /// One result as daprd writes it; `data` is the stored JSON text, passed through
    /// as it is (a re-encoding could round large numbers).
    #[derive(serde::Serialize)]
    struct Found {
        key: String,
        data: Box<RawValue>,
        #[serde(skip_serializing_if = "String::is_empty")]
        etag: String,
    }
    #[derive(serde::Serialize)]
    struct Answer {
        results: Vec<Found>,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    }
    let results = page
        .results
        .into_iter()
        .map(|result| {
            let data = String::from_utf8(result.data.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON"));
            Found {
                key: result.key,
                data,
                etag: result.etag,
            }
        })
        .collect();
    let answer = Answer {
        results,
        token: page.token,
    };
    let body =
        serde_json::to_vec(&answer).map_err(|error| ApiError::malformed(error.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    concurrency: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    key: String,
    #[serde(default)]
    value: Option<Box<RawValue>>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, Value>>,
    #[serde(default)]
    options: Option<Options>,
}

impl Item {
    fn into_state_item(self) -> Result<StateItem, ApiError> {
        let first_write = first_write(
            self.options
                .and_then(|options| options.concurrency)
                .as_deref(),
        )?;
        Ok(StateItem {
            key: self.key,
            value: Bytes::from(
                self.value
                    .map(|value| value.get().to_owned())
                    .unwrap_or_default(),
            ),
            etag: self.etag,
            metadata: self
                .metadata
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (key, value)
                })
                .collect(),
            first_write,
        })
    }
}

fn first_write(concurrency: Option<&str>) -> Result<bool, ApiError> {
    match concurrency.unwrap_or_default() {
        "" | "last-write" => Ok(false),
        "first-write" => Ok(true),
        other => Err(ApiError::malformed(format!(
            "options.concurrency must be first-write or last-write, not '{other}'"
        ))),
    }
}

fn consistency(text: Option<&str>) -> Result<Consistency, ApiError> {
    match text.unwrap_or_default() {
        "" | "eventual" => Ok(Consistency::Eventual),
        "strong" => Ok(Consistency::Strong),
        other => Err(ApiError::malformed(format!(
            "consistency must be eventual or strong, not '{other}'"
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::malformed(format!("failed deserializing HTTP body: {error}")))
}

/// The stored bytes as a JSON value for bulk answers: JSON as it is, else text, else base64.
fn as_json(data: &[u8]) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        return value;
    }
    match std::str::from_utf8(data) {
        Ok(text) => json!(text),
        Err(_) => json!(BASE64.encode(data)),
    }
}

/// A runtime failure as the HTTP door answers it: daprd names the app in a missing
/// store's details here.
fn named(api: &Api) -> impl Fn(tandem_runtime::Error) -> ApiError + '_ {
    |error| ApiError::from(error).with_app_id(api.runtime.app_id())
}

async fn get_one(
    State(api): State<Api>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let consistency = consistency(query.get("consistency").map(String::as_str))?;
    let Some(value) = api
        .runtime
        .state()
        .get(&store, &key, consistency)
        .await
        .map_err(named(&api))?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&value.data).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut response = (StatusCode::OK, value.data).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(etag) = HeaderValue::from_str(&value.etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn save(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let items: Vec<Item> = parse(&body)?;
    let items = items
        .into_iter()
        .map(Item::into_state_item)
        .collect::<Result<Vec<_>, _>>()?;
    api.runtime
        .state()
        .save(&store, items)
        .await
        .map_err(named(&api))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_one(
    State(api): State<Api>,
    Path((store, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let etag = headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(|etag| etag.trim_matches('"').to_owned());
    let first_write = first_write(query.get("concurrency").map(String::as_str))?;
    api.runtime
        .state()
        .delete(&store, &key, etag, first_write)
        .await
        .map_err(named(&api))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BulkRequest {
    keys: Vec<String>,
    #[serde(default)]
    parallelism: Option<usize>,
}

async fn bulk_get(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: BulkRequest = parse(&body)?;
    let items = api
        .runtime
        .state()
        .bulk_get(&store, request.keys, request.parallelism.unwrap_or(10))
        .await
        .map_err(named(&api))?;
    let answer: Vec<Value> = items
        .into_iter()
        .map(|item| {
            let mut entry = json!({ "key": item.key });
            if let Some(value) = item.value {
                entry["data"] = as_json(&value.data);
                entry["etag"] = json!(value.etag);
            }
            if let Some(error) = item.error {
                entry["error"] = json!(error);
            }
            entry
        })
        .collect();
    Ok(axum::Json(answer).into_response())
}

#[derive(Deserialize)]
struct TransactionRequest {
    operations: Vec<TransactionOperation>,
}

#[derive(Deserialize)]
struct TransactionOperation {
    operation: String,
    request: Item,
}

async fn transaction(
    State(api): State<Api>,
    Path(store): Path<String>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let request: TransactionRequest = parse(&body)?;
    let mut operations = Vec::with_capacity(request.operations.len());
    for operation in request.operations {
        let item = operation.request.into_state_item()?;
        operations.push(match operation.operation.as_str() {
            "upsert" => StateOperation::Upsert(item),
            "delete" => StateOperation::Delete(item),
            other => {
                return Err(ApiError::malformed(format!(
                    "operation type {other} not supported (upsert or delete)"
                )));
            }
        });
    }
    api.runtime
        .state()
        .transact(&store, operations)
        .await
        .map_err(named(&api))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_values_are_json_text_or_base64() {
        assert_eq!(as_json(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(as_json(b"plain"), json!("plain"));
        assert_eq!(as_json(&[0xff, 0x00]), json!("/wA="));
    }
}
