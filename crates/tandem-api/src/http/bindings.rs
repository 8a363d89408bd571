//! `POST|PUT /v1.0/bindings/{name}`: one operation of an output binding, answered as
//! daprd answers it — `200` with the binding's data (`204` when it has no answer at
//! all), its metadata as `metadata.{key}` headers, and `500 ERR_INVOKE_OUTPUT_BINDING`
//! when it fails.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::Value;
use tandem_runtime::BindingRequest;

use super::Api;
use super::extract::{Body, Path};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new().route(
        "/v1.0/bindings/{name}",
        post(invoke_binding).put(invoke_binding),
    )
}

/// The request body, as daprd reads it.
#[derive(Deserialize)]
struct OutputBindingRequest {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    operation: String,
}

async fn invoke_binding(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let request: OutputBindingRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::malformed(format!("failed deserializing HTTP body: {error}")))?;
    let mut metadata = request.metadata.unwrap_or_default();
    // The trace context travels to the binding in its metadata, as daprd passes it.
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = headers.get(name).and_then(|value| value.to_str().ok()) {
            metadata.insert(name.to_owned(), value.to_owned());
        }
    }
    let answer = api
        .runtime
        .bindings()
        .invoke(BindingRequest {
            name,
            operation: request.operation,
            data: go_json(&request.data).into(),
            metadata,
        })
        .await?;
    let Some(answer) = answer else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.data,
    )
        .into_response();
    for (key, value) in answer.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("metadata.{key}")),
            HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

/// `data` as the bytes daprd hands the binding: the JSON value re-encoded compactly, as
/// Go's `json.Marshal` writes it — object keys sorted, and `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (they can only occur inside strings, so replacing them is safe). A
/// string is therefore passed with its quotes, and no `data` at all as `null`, exactly
/// as daprd does.
fn go_json(data: &Value) -> Vec<u8> {
    let text = sorted(data).to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text.into_bytes();
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    escaped.into_bytes()
}

/// `value` with every object's keys in sorted order, as Go writes a map — built here,
/// since serde_json's map keeps the order keys were given in when its
/// `preserve_order` feature is on (a dependency turns it on for the whole build).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            Value::Object(
                names
                    .into_iter()
                    .map(|name| (name.clone(), sorted(&fields[name])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_is_re_encoded_as_go_encodes_it() {
        let text = |value: Value| String::from_utf8(go_json(&value)).unwrap();
        assert_eq!(text(json!("hello")), "\"hello\"");
        assert_eq!(text(Value::Null), "null");
        assert_eq!(
            text(json!({"b": 1, "a": [true, {"z": 1, "y": 2}]})),
            r#"{"a":[true,{"y":2,"z":1}],"b":1}"#
        );
        assert_eq!(text(json!("<a&b>")), r#""\u003ca\u0026b\u003e""#);
    }
}
