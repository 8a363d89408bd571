//! `POST|PUT /v1.0(-alpha1)/publish/bulk/{pubsub}/{topic}`: many events to one topic in
//! one call. The body is a JSON list of entries (`entryId`, `event`, `contentType`,
//! `metadata`); each `event` is turned into bytes by its content type as daprd does
//! (JSON as written, text as the string, `application/octet-stream` from base64).
//! All published: `204`; some failed: `500` with the failed entries, in daprd's shape.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tandem_runtime::{BulkEntry, BulkPublishRequest};

use super::extract::{Body, Path, Query};
use super::{Api, header_text, request_metadata};
use crate::error::{ApiError, EventsStep};

/// One entry of the request body.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "entryId", default)]
    entry_id: String,
    #[serde(default)]
    event: Value,
    #[serde(rename = "contentType", default)]
    content_type: String,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

/// Is `content_type` (parameters aside, any case) `expected`?
fn is_type(content_type: &str, expected: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case(expected)
}

/// An entry's event as the bytes to publish, read by its content type as daprd reads it.
fn event_bytes(event: &Value, content_type: &str) -> Result<Bytes, String> {
    const MISMATCH: &str = "mismatch between contentType and event";
    if is_type(content_type, "application/octet-stream") {
        let Value::String(text) = event else {
            return Err(MISMATCH.into());
        };
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|error| {
                format!("unable to decode base64 application/octet-stream data: {error}")
            })
    } else if content_type.to_ascii_lowercase().starts_with("text/")
        || is_type(content_type, "application/xml")
    {
        match event {
            Value::String(text) => Ok(Bytes::from(text.clone())),
            _ => Err(MISMATCH.into()),
        }
    } else if is_type(content_type, "application/json")
        || is_type(content_type, "application/cloudevents+json")
    {
        serde_json::to_vec(event)
            .map(Bytes::from)
            .map_err(|error| format!("{MISMATCH}: {error}"))
    } else {
        Err(MISMATCH.into())
    }
}

pub(super) async fn bulk_publish(
    State(api): State<Api>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let topic = if topic.trim_matches('/').is_empty() {
        String::new()
    } else {
        topic
    };
    let request_metadata = request_metadata(query);
    let app_id = api.runtime.app_id();
    let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(|error| {
        ApiError::pubsub_events(
            EventsStep::Unmarshal,
            &pubsub,
            app_id,
            None,
            format!(
                "error when unmarshaling the request for topic {topic} pubsub {pubsub}: {error}"
            ),
        )
    })?;
    let mut seen = HashSet::new();
    let mut bulk = Vec::with_capacity(entries.len());
    for entry in entries {
        let data = event_bytes(&entry.event, &entry.content_type).map_err(|error| {
            ApiError::pubsub_events(
                EventsStep::MarshalEnvelope,
                &pubsub,
                app_id,
                Some(&error),
                format!(
                    "error when marshalling cloud event envelope for topic {topic} pubsub {pubsub}: {error}"
                ),
            )
        })?;
        if entry.entry_id.is_empty() || !seen.insert(entry.entry_id.clone()) {
            const DUPLICATE: &str = "entryId is duplicated or not present for entry";
            return Err(ApiError::pubsub_events(
                EventsStep::MarshalEvents,
                &pubsub,
                app_id,
                Some(DUPLICATE),
                format!(
                    "error marshaling events to bytes for topic {topic} pubsub {pubsub}. error: {DUPLICATE}"
                ),
            ));
        }
        bulk.push(BulkEntry {
            entry_id: entry.entry_id,
            data,
            content_type: Some(entry.content_type).filter(|text| !text.is_empty()),
            metadata: entry.metadata.unwrap_or_default(),
        });
    }
    let failed = api
        .runtime
        .publisher()
        .publish_bulk(BulkPublishRequest {
            pubsub,
            topic,
            entries: bulk,
            metadata: request_metadata,
            traceparent: header_text(&headers, "traceparent"),
            tracestate: header_text(&headers, "tracestate"),
        })
        .await?;
    if failed.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let failed: Vec<Value> = failed
        .iter()
        .map(|entry| json!({ "entryId": entry.entry_id, "error": entry.error }))
        .collect();
    Ok((
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({
            "failedEntries": failed,
            "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_by_their_content_type() {
        let json = json!({"a": 1});
        assert_eq!(
            event_bytes(&json, "application/json").unwrap(),
            Bytes::from_static(br#"{"a":1}"#)
        );
        assert_eq!(
            event_bytes(&json!("hi"), "text/plain; charset=utf-8").unwrap(),
            Bytes::from_static(b"hi")
        );
        assert_eq!(
            event_bytes(&json!("aGk="), "application/octet-stream").unwrap(),
            Bytes::from_static(b"hi")
        );
        assert!(event_bytes(&json, "text/plain").is_err());
        assert!(event_bytes(&json!("%%"), "application/octet-stream").is_err());
        assert!(event_bytes(&json, "").is_err());
        assert!(event_bytes(&json, "image/png").is_err());
    }
}
