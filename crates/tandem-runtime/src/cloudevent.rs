//! The CloudEvents 1.0 envelope Dapr wraps around every published message.
//!
//! Fields, as Dapr writes them: `id`, `source` (the publishing app id), `type`
//! (`com.dapr.event.sent`), `specversion` (`1.0`), `datacontenttype`, `topic`,
//! `pubsubname`, `traceid`, `traceparent`, `tracestate`, `time`, and the payload as
//! `data` — embedded JSON for JSON content, a string for text — or as `data_base64` for
//! anything binary.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// The content type of a CloudEvent sent as a whole.
pub const CLOUDEVENT_CONTENT_TYPE: &str = "application/cloudevents+json";
/// What an event's payload is taken to be when the publisher says nothing.
pub const DEFAULT_DATA_CONTENT_TYPE: &str = "text/plain";

/// Where an envelope comes from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub app_id: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The W3C `traceparent` of the publishing request, if any.
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

/// Whether `content_type` is JSON (`application/json`, `application/*+json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence == "application/json" || essence.ends_with("+json")
}

/// Whether a payload of `content_type` is text and can travel as a JSON string.
fn is_text(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.starts_with("text/") || essence.ends_with("/xml") || essence.ends_with("+xml")
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Wraps a payload in a new envelope.
pub fn wrap(origin: &Origin<'_>, data: &[u8], content_type: Option<&str>) -> Map<String, Value> {
    let content_type = content_type
        .filter(|content_type| !content_type.is_empty())
        .unwrap_or(DEFAULT_DATA_CONTENT_TYPE);
    let mut event = Map::new();
    event.insert("datacontenttype".into(), json!(content_type));
    put_payload(&mut event, data, content_type);
    fill(&mut event, origin);
    event
}

/// Completes an event the publisher sent as `application/cloudevents+json`: fields it
/// left out are filled in; `topic` and `pubsubname` always say where it went.
pub fn complete(origin: &Origin<'_>, body: &[u8]) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not a JSON CloudEvent: {error}"))?;
    let Value::Object(mut event) = value else {
        return Err("the body is not a JSON object".into());
    };
    if !event.contains_key("datacontenttype")
        && event.get("data").is_some_and(|data| !data.is_string())
    {
        event.insert("datacontenttype".into(), json!("application/json"));
    }
    fill(&mut event, origin);
    Ok(event)
}

fn put_payload(event: &mut Map<String, Value>, data: &[u8], content_type: &str) {
    if is_json(content_type)
        && let Ok(value) = serde_json::from_slice::<Value>(data)
    {
        event.insert("data".into(), value);
        return;
    }
    match std::str::from_utf8(data) {
        Ok(text) if is_text(content_type) || is_json(content_type) => {
            event.insert("data".into(), json!(text));
        }
        _ => {
            event.insert("data_base64".into(), json!(BASE64.encode(data)));
        }
    }
}

fn fill(event: &mut Map<String, Value>, origin: &Origin<'_>) {
    let traceparent = origin
        .traceparent
        .map(str::to_owned)
        .unwrap_or_else(new_traceparent);
    let defaults = [
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("source", json!(origin.app_id)),
        ("type", json!("com.dapr.event.sent")),
        ("specversion", json!("1.0")),
        ("traceid", json!(traceparent)),
        ("traceparent", json!(traceparent)),
        ("tracestate", json!(origin.tracestate.unwrap_or(""))),
        ("time", json!(now_rfc3339())),
    ];
    for (field, value) in defaults {
        event.entry(field).or_insert(value);
    }
    event.insert("topic".into(), json!(origin.topic));
    event.insert("pubsubname".into(), json!(origin.pubsub));
}

/// A fresh W3C trace context: version 00, random trace and span ids, sampled.
fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Sets `expiration` to `ttl_seconds` from now, as Dapr does for `metadata.ttlInSeconds`:
/// subscribers drop the event once that time has passed.
pub fn expire_after(event: &mut Map<String, Value>, ttl_seconds: u64) {
    let at = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(ttl_seconds.min(i64::MAX as u64) as i64);
    if let Ok(text) = at.format(&time::format_description::well_known::Rfc3339) {
        event.insert("expiration".into(), json!(text));
    }
}

/// Whether the event carries an `expiration` that has passed.
pub fn has_expired(event: &Map<String, Value>) -> bool {
    event
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
        })
        .is_some_and(|at| at < time::OffsetDateTime::now_utc())
}

/// Turns what a broker delivered into the event given to the app. Envelopes pass as
/// they are; anything else (a `rawPayload` publish, or another producer writing to the
/// topic) is wrapped in a fresh envelope with the bytes in `data_base64`, so it still
/// reaches the app instead of being dropped.
pub fn for_delivery(origin: &Origin<'_>, data: &[u8], raw_payload: bool) -> Map<String, Value> {
    if !raw_payload
        && let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data)
        && event.contains_key("specversion")
    {
        return event;
    }
    let mut event = Map::new();
    event.insert("datacontenttype".into(), json!("application/octet-stream"));
    event.insert("data_base64".into(), json!(BASE64.encode(data)));
    fill(&mut event, origin);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin<'static> {
        Origin {
            app_id: "publisher",
            pubsub: "order_pub_sub",
            topic: "orders",
            traceparent: None,
            tracestate: None,
        }
    }

    #[test]
    fn json_payloads_are_embedded_as_json() {
        let event = wrap(
            &origin(),
            br#"{"product": "falafel"}"#,
            Some("application/json"),
        );
        assert_eq!(event["data"], json!({"product": "falafel"}));
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["source"], "publisher");
        assert_eq!(event["type"], "com.dapr.event.sent");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "order_pub_sub");
        assert_eq!(event["tracestate"], "");
        assert_eq!(event["traceid"], event["traceparent"]);
        assert!(event["traceparent"].as_str().unwrap().starts_with("00-"));
        assert_eq!(event["id"].as_str().unwrap().len(), 36);
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        assert!(!event.contains_key("data_base64"));
    }

    #[test]
    fn text_is_a_string_and_the_default_content_type_is_text_plain() {
        let event = wrap(&origin(), b"hello", None);
        assert_eq!(event["data"], "hello");
        assert_eq!(event["datacontenttype"], "text/plain");
        // JSON content that does not parse still arrives, as a string.
        let event = wrap(&origin(), b"{not json", Some("application/json"));
        assert_eq!(event["data"], "{not json");
    }

    #[test]
    fn binary_payloads_travel_as_base64() {
        let event = wrap(
            &origin(),
            &[0, 159, 146, 150],
            Some("application/octet-stream"),
        );
        assert_eq!(event["data_base64"], BASE64.encode([0, 159, 146, 150]));
        assert!(!event.contains_key("data"));
    }

    #[test]
    fn a_published_cloudevent_keeps_its_fields_and_gets_the_missing_ones() {
        let body = br#"{"id": "mine", "source": "elsewhere", "type": "order.placed", "specversion": "1.0", "data": {"a": 1}, "topic": "wrong"}"#;
        let mut with_trace = origin();
        with_trace.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let event = complete(&with_trace, body).unwrap();
        assert_eq!(event["id"], "mine");
        assert_eq!(event["source"], "elsewhere");
        assert_eq!(event["type"], "order.placed");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "order_pub_sub");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(
            event["traceid"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert!(complete(&origin(), b"[1, 2]").is_err());
        assert!(complete(&origin(), b"nope").is_err());
    }

    #[test]
    fn expiration_follows_the_ttl() {
        let mut event = wrap(&origin(), b"x", None);
        assert!(!has_expired(&event));
        expire_after(&mut event, 60);
        assert!(!has_expired(&event));
        event.insert("expiration".into(), json!("2020-01-01T00:00:00Z"));
        assert!(has_expired(&event));
    }

    #[test]
    fn deliveries_pass_envelopes_through_and_wrap_raw_bytes() {
        let envelope =
            serde_json::to_vec(&wrap(&origin(), b"{}", Some("application/json"))).unwrap();
        let event = for_delivery(&origin(), &envelope, false);
        assert_eq!(event["data"], json!({}));
        let raw = for_delivery(&origin(), b"raw bytes", false);
        assert_eq!(raw["data_base64"], BASE64.encode(b"raw bytes"));
        assert_eq!(raw["topic"], "orders");
        let forced = for_delivery(&origin(), &envelope, true);
        assert_eq!(forced["data_base64"], BASE64.encode(&envelope));
    }
}
