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
pub fn is_text(content_type: &str) -> bool {
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

/// The envelope of a new event, serialised in one pass: the hot path of publishing,
/// so the payload is embedded as it is (JSON checked, not parsed into a tree).
#[derive(serde::Serialize)]
struct Envelope<'a> {
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    specversion: &'static str,
    datacontenttype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    topic: &'a str,
    pubsubname: &'a str,
    traceid: &'a str,
    traceparent: &'a str,
    tracestate: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

/// Attributes a publisher sets on a new envelope with `cloudevent.*` metadata
/// (`metadata.cloudevent.id=...`), as daprd takes them: `id`, `source`, `type`,
/// `subject`, `traceid`, `traceparent` (which wins over `traceid`) and `tracestate`.
/// Names match without regard to case; `data`, `topic`, `pubsubname` and
/// `datacontenttype` cannot be overridden.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Overrides<'a> {
    pub id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub traceid: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

impl<'a> Overrides<'a> {
    /// The overrides among a publish's metadata.
    pub fn from_metadata<'m: 'a>(
        metadata: impl IntoIterator<Item = (&'m String, &'m String)>,
    ) -> Self {
        let mut overrides = Self::default();
        for (name, value) in metadata {
            let Some(attribute) = name
                .get(..11)
                .filter(|prefix| prefix.eq_ignore_ascii_case("cloudevent."))
                .map(|_| name[11..].to_ascii_lowercase())
            else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let slot = match attribute.as_str() {
                "id" => &mut overrides.id,
                "source" => &mut overrides.source,
                "type" => &mut overrides.kind,
                "subject" => &mut overrides.subject,
                "traceid" => &mut overrides.traceid,
                "traceparent" => &mut overrides.traceparent,
                "tracestate" => &mut overrides.tracestate,
                _ => continue,
            };
            *slot = Some(value.as_str());
        }
        overrides
    }
}

/// Wraps a payload in a new envelope, expiring `expires_in` seconds from now if given.
pub fn wrap(
    origin: &Origin<'_>,
    data: &[u8],
    content_type: Option<&str>,
    expires_in: Option<std::time::Duration>,
) -> Vec<u8> {
    wrap_with(
        origin,
        data,
        content_type,
        expires_in,
        &Overrides::default(),
    )
}

/// [`wrap`], with the publisher's `cloudevent.*` overrides.
pub fn wrap_with(
    origin: &Origin<'_>,
    data: &[u8],
    content_type: Option<&str>,
    expires_in: Option<std::time::Duration>,
    overrides: &Overrides<'_>,
) -> Vec<u8> {
    let content_type = content_type
        .filter(|content_type| !content_type.is_empty())
        .unwrap_or(DEFAULT_DATA_CONTENT_TYPE);
    let json = is_json(content_type);
    let text = std::str::from_utf8(data).ok();
    let raw_json = text
        .filter(|_| json)
        .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok());
    let (payload, data_base64) = match (raw_json, text) {
        (Some(raw), _) => (Some(Payload::Json(raw)), None),
        (None, Some(text)) if json || is_text(content_type) => (Some(Payload::Text(text)), None),
        _ => (None, Some(BASE64.encode(data))),
    };
    let generated;
    // As daprd: an overriding `traceparent` wins, then `traceid`, then the request's.
    let traceparent = match overrides
        .traceparent
        .or(overrides.traceid)
        .or(origin.traceparent)
    {
        Some(traceparent) => traceparent,
        None => {
            generated = new_traceparent();
            &generated
        }
    };
    let envelope = Envelope {
        id: overrides
            .id
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
        source: overrides.source.unwrap_or(origin.app_id),
        kind: overrides.kind.unwrap_or("com.dapr.event.sent"),
        specversion: "1.0",
        datacontenttype: content_type,
        subject: overrides.subject,
        data: payload,
        data_base64,
        topic: origin.topic,
        pubsubname: origin.pubsub,
        traceid: traceparent,
        traceparent,
        tracestate: overrides.tracestate.or(origin.tracestate).unwrap_or(""),
        time: now_rfc3339(),
        expiration: expires_in.map(expiration),
    };
    serde_json::to_vec(&envelope).expect("an envelope serialises")
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

fn fill(event: &mut Map<String, Value>, origin: &Origin<'_>) {
    let traceparent = origin
        .traceparent
        .map_or_else(new_traceparent, str::to_owned);
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

/// `ttl` from now, as Dapr writes an event's `expiration` for
/// `metadata.ttlInSeconds`: subscribers drop the event once that time has passed. A
/// time past what a timestamp can hold is the last one it can (the event then never
/// expires, which is what so long a TTL means).
fn expiration(ttl: std::time::Duration) -> String {
    // The last instant RFC 3339 can write (year 9999). Not `PrimitiveDateTime::MAX`:
    // with the `time` crate's `large-dates` (which a dependency may turn on) that is
    // year 999 999, which RFC 3339 cannot write.
    let last = time::Date::from_calendar_date(9999, time::Month::December, 31)
        .and_then(|day| day.with_hms_nano(23, 59, 59, 999_999_999))
        .map_or(
            time::OffsetDateTime::UNIX_EPOCH,
            time::PrimitiveDateTime::assume_utc,
        );
    let now = time::OffsetDateTime::now_utc();
    let at = time::Duration::try_from(ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .map_or(last, |at| at.min(last));
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Sets `expiration` on an event the publisher sent whole.
pub fn expire_after(event: &mut Map<String, Value>, ttl: std::time::Duration) {
    event.insert("expiration".into(), json!(expiration(ttl)));
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

    fn wrapped(data: &[u8], content_type: Option<&str>) -> Map<String, Value> {
        serde_json::from_slice(&wrap(&origin(), data, content_type, None)).unwrap()
    }

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
    fn cloudevent_metadata_overrides_the_envelope_as_daprd_does() {
        let metadata: std::collections::HashMap<String, String> = [
            ("cloudevent.id", "my-id"),
            ("CloudEvent.Source", "billing"),
            ("cloudevent.type", "order.placed"),
            ("cloudevent.subject", "orders/1"),
            ("cloudevent.traceid", "00-aa-bb-01"),
            ("cloudevent.traceparent", "00-cc-dd-01"),
            ("cloudevent.tracestate", "k=v"),
            ("cloudevent.topic", "not-this"),
            ("ttlInSeconds", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let overrides = Overrides::from_metadata(&metadata);
        let event: Map<String, Value> = serde_json::from_slice(&wrap_with(
            &origin(),
            b"{}",
            Some("application/json"),
            None,
            &overrides,
        ))
        .unwrap();
        assert_eq!(event["id"], "my-id");
        assert_eq!(event["source"], "billing");
        assert_eq!(event["type"], "order.placed");
        assert_eq!(event["subject"], "orders/1");
        assert_eq!(event["traceparent"], "00-cc-dd-01");
        assert_eq!(event["traceid"], "00-cc-dd-01");
        assert_eq!(event["tracestate"], "k=v");
        assert_eq!(event["topic"], "orders", "the topic cannot be overridden");
        let plain = wrapped(b"{}", Some("application/json"));
        assert!(!plain.contains_key("subject"));
    }

    #[test]
    fn json_payloads_are_embedded_as_json() {
        let event = wrapped(br#"{"product": "falafel"}"#, Some("application/json"));
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
        let event = wrapped(b"hello", None);
        assert_eq!(event["data"], "hello");
        assert_eq!(event["datacontenttype"], "text/plain");
        // JSON content that does not parse still arrives, as a string.
        let event = wrapped(b"{not json", Some("application/json"));
        assert_eq!(event["data"], "{not json");
    }

    #[test]
    fn binary_payloads_travel_as_base64() {
        let event = wrapped(&[0, 159, 146, 150], Some("application/octet-stream"));
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
        let event = wrapped(b"x", None);
        assert!(!has_expired(&event));
        let event: Map<String, Value> = serde_json::from_slice(&wrap(
            &origin(),
            b"x",
            None,
            Some(std::time::Duration::from_secs(60)),
        ))
        .unwrap();
        assert!(event.contains_key("expiration"));
        assert!(!has_expired(&event));
        let mut event = event;
        event.insert("expiration".into(), json!("2020-01-01T00:00:00Z"));
        assert!(has_expired(&event));
        // The longest TTL daprd accepts still makes a valid, far-away expiration.
        let mut event = wrapped(b"x", None);
        expire_after(
            &mut event,
            std::time::Duration::from_secs(i64::MAX as u64 / 1_000_000_000),
        );
        assert!(event["expiration"].as_str().unwrap().starts_with("23"));
        expire_after(&mut event, std::time::Duration::MAX);
        assert_eq!(event["expiration"], "9999-12-31T23:59:59.999999999Z");
        assert!(!has_expired(&event));
    }

    #[test]
    fn deliveries_pass_envelopes_through_and_wrap_raw_bytes() {
        let envelope = wrap(&origin(), b"{}", Some("application/json"), None);
        let event = for_delivery(&origin(), &envelope, false);
        assert_eq!(event["data"], json!({}));
        let raw = for_delivery(&origin(), b"raw bytes", false);
        assert_eq!(raw["data_base64"], BASE64.encode(b"raw bytes"));
        assert_eq!(raw["topic"], "orders");
        let forced = for_delivery(&origin(), &envelope, true);
        assert_eq!(forced["data_base64"], BASE64.encode(&envelope));
    }
}
