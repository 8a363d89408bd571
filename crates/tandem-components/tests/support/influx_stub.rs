//! A stand-in for an InfluxDB 2 server: no InfluxDB 2 is installable here (Debian has
//! only 1.6, without `/api/v2/write` or Flux), so the tests talk to this instead.
//!
//! It speaks the two endpoints `bindings.influx` uses as InfluxDB 2 does:
//! - `POST /api/v2/write?org=&bucket=&precision=`: checks `Authorization: Token ..`
//!   (401 `unauthorized access`), the org and bucket (404 `... not found`), parses the
//!   line protocol (measurement, tags, fields of every type, optional timestamp; 400
//!   `unable to parse '<line>': <why>` for a malformed line, nothing stored) and stores
//!   the points; answers 204.
//! - `POST /api/v2/query?org=`: the JSON body `{"query", "type", "dialect"}`. The stub
//!   understands ONLY the query `from(bucket:"<b>") |> range(start: 0)` (spaces free),
//!   answering every stored point of that bucket as annotated CSV (one table per series
//!   and field, the three annotations of the default dialect); any other query is a 400.
//!
//! Its clock is fixed at [`NOW`] (2026-01-01T00:00:00Z): points written without a
//! timestamp get it, and it is every query's `_stop`, so answers are exact.
//!
//! Shared by `tandem-components`' binding tests and `tandem`'s end-to-end test.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;

/// The stub's fixed clock, in nanoseconds since the epoch (2026-01-01T00:00:00Z).
pub const NOW: i64 = 1_767_225_600_000_000_000;

/// One request the stub was sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The query string, as sent.
    pub query: String,
    pub content_type: String,
    pub authorization: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Text(String),
    Boolean(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: Vec<(String, FieldValue)>,
    pub time: i64,
}

#[derive(Default)]
struct Server {
    token: String,
    org: String,
    /// Bucket name → its points, in write order.
    buckets: BTreeMap<String, Vec<Point>>,
    writes: Vec<Recorded>,
    queries: Vec<Recorded>,
}

type Shared = Arc<Mutex<Server>>;

pub struct InfluxStub {
    pub url: String,
    server: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InfluxStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InfluxStub {
    /// A server with one org holding one (empty) bucket, accepting one token.
    pub async fn start(token: &str, org: &str, bucket: &str) -> Self {
        let server: Shared = Arc::new(Mutex::new(Server {
            token: token.into(),
            org: org.into(),
            buckets: [(bucket.to_owned(), Vec::new())].into(),
            ..Server::default()
        }));
        let app = Router::new()
            .route("/api/v2/write", post(write))
            .route("/api/v2/query", post(query))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, server, task }
    }

    /// Every write request, in order.
    pub fn writes(&self) -> Vec<Recorded> {
        self.server.lock().writes.clone()
    }

    /// Every query request, in order.
    pub fn queries(&self) -> Vec<Recorded> {
        self.server.lock().queries.clone()
    }

    /// The points stored in `bucket`.
    pub fn points(&self, bucket: &str) -> Vec<Point> {
        self.server.lock().buckets[bucket].clone()
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn record(headers: &HeaderMap, query: &HashMap<String, String>, body: &Bytes) -> Recorded {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    Recorded {
        query: pairs.join("&"),
        content_type: header(header::CONTENT_TYPE),
        authorization: header(header::AUTHORIZATION),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// InfluxDB's checks before anything else: the token, then the org. `Some`: the
/// refusal to answer.
fn refuse(server: &Server, headers: &HeaderMap, org: Option<&String>) -> Option<Response> {
    let expected = format!("Token {}", server.token);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if given != Some(expected.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
        ));
    }
    match org {
        Some(org) if *org == server.org => None,
        Some(org) => Some(error(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("organization name \"{org}\" not found"),
        )),
        None => Some(error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Please provide either orgID or org",
        )),
    }
}

async fn write(
    State(server): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut server = server.lock();
    let recorded = record(&headers, &params, &body);
    server.writes.push(recorded);
    if let Some(answer) = refuse(&server, &headers, params.get("org")) {
        return answer;
    }
    let bucket = params.get("bucket").cloned().unwrap_or_default();
    if !server.buckets.contains_key(&bucket) {
        return error(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("bucket \"{bucket}\" not found"),
        );
    }
    let text = String::from_utf8_lossy(&body);
    let mut points = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(point) => points.push(point),
            Err(why) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("unable to parse '{line}': {why}"),
                );
            }
        }
    }
    server.buckets.get_mut(&bucket).unwrap().extend(points);
    StatusCode::NO_CONTENT.into_response()
}

/// Splits `text` at the first unescaped `stop` character outside a quoted string
/// (`quotes`: field values may be quoted).
fn split_at(text: &str, stop: char, quotes: bool) -> (&str, Option<&str>) {
    let mut escaped = false;
    let mut quoted = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if quotes && c == '"' {
            quoted = !quoted;
        } else if c == stop && !quoted {
            return (&text[..index], Some(&text[index + 1..]));
        }
    }
    (text, None)
}

fn split_all(mut text: &str, stop: char, quotes: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    loop {
        let (part, rest) = split_at(text, stop, quotes);
        parts.push(part);
        match rest {
            Some(rest) => text = rest,
            None => return parts,
        }
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ (',' | ' ' | '=' | '"' | '\\')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_line(line: &str) -> Result<Point, &'static str> {
    // `measurement[,tags] fields [timestamp]`.
    let (series, rest) = split_at(line, ' ', false);
    let rest = rest.ok_or("missing fields")?.trim_start_matches(' ');
    let (fields, timestamp) = split_at(rest, ' ', true);
    let mut series = split_all(series, ',', false).into_iter();
    let measurement = unescape(series.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err("missing measurement");
    }
    let mut tags = BTreeMap::new();
    for tag in series {
        let (key, value) = split_at(tag, '=', false);
        let value = value.ok_or("missing tag value")?;
        if key.is_empty() {
            return Err("missing tag key");
        }
        if value.is_empty() {
            return Err("missing tag value");
        }
        tags.insert(unescape(key), unescape(value));
    }
    if fields.is_empty() {
        return Err("missing fields");
    }
    let mut parsed = Vec::new();
    for field in split_all(fields, ',', true) {
        let (key, value) = split_at(field, '=', false);
        let value = value.ok_or("missing field value")?;
        if key.is_empty() {
            return Err("missing field key");
        }
        if value.is_empty() {
            return Err("missing field value");
        }
        parsed.push((unescape(key), field_value(value)?));
    }
    let time = match timestamp.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => text.parse().map_err(|_| "bad timestamp")?,
        None => NOW,
    };
    Ok(Point {
        measurement,
        tags,
        fields: parsed,
        time,
    })
}

fn field_value(text: &str) -> Result<FieldValue, &'static str> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or("unbalanced quotes")?;
        return Ok(FieldValue::Text(
            inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
    }
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    if let Some(number) = text.strip_suffix('i') {
        return number
            .parse()
            .map(FieldValue::Integer)
            .map_err(|_| "invalid integer");
    }
    if let Some(number) = text.strip_suffix('u') {
        return number
            .parse()
            .map(FieldValue::Unsigned)
            .map_err(|_| "invalid unsigned integer");
    }
    let starts_like_a_number = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
    match text.parse::<f64>() {
        Ok(number) if starts_like_a_number && number.is_finite() => Ok(FieldValue::Float(number)),
        _ if starts_like_a_number => Err("invalid number"),
        _ => Err("invalid boolean"),
    }
}

async fn query(
    State(server): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut server = server.lock();
    let recorded = record(&headers, &params, &body);
    server.queries.push(recorded);
    if let Some(answer) = refuse(&server, &headers, params.get("org")) {
        return answer;
    }
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid", &why.to_string()),
    };
    let flux = request["query"].as_str().unwrap_or_default();
    let compact: String = flux.chars().filter(|c| !c.is_whitespace()).collect();
    let bucket = compact
        .strip_prefix("from(bucket:\"")
        .and_then(|rest| rest.strip_suffix("\")|>range(start:0)"));
    let Some(bucket) = bucket else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the stub understands only from(bucket:\"<b>\") |> range(start: 0)",
        );
    };
    let Some(points) = server.buckets.get(bucket) else {
        return error(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("failed to initialize execute state: could not find bucket \"{bucket}\""),
        );
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        annotated_csv(points),
    )
        .into_response()
}

/// What InfluxDB answers for `range(start: 0)` over `points` with the default dialect:
/// one table per series and field, ordered by group key, a new annotation block
/// whenever the columns or their types change, CRLF line ends, a blank line after each
/// block.
fn annotated_csv(points: &[Point]) -> String {
    // (measurement, tags, field) → (time, value) rows.
    type Key = (String, BTreeMap<String, String>, String);
    let mut tables: BTreeMap<Key, Vec<(i64, FieldValue)>> = BTreeMap::new();
    for point in points {
        for (field, value) in &point.fields {
            let key = (point.measurement.clone(), point.tags.clone(), field.clone());
            tables
                .entry(key)
                .or_default()
                .push((point.time, value.clone()));
        }
    }
    let mut out = String::new();
    let mut last_schema: Option<(Vec<String>, &str)> = None;
    for (table, ((measurement, tags, field), rows)) in tables.iter_mut().enumerate() {
        rows.sort_by_key(|(time, _)| *time);
        let datatype = match rows[0].1 {
            FieldValue::Float(_) => "double",
            FieldValue::Integer(_) => "long",
            FieldValue::Unsigned(_) => "unsignedLong",
            FieldValue::Text(_) => "string",
            FieldValue::Boolean(_) => "boolean",
        };
        let tag_keys: Vec<String> = tags.keys().cloned().collect();
        let schema = (tag_keys.clone(), datatype);
        if last_schema.as_ref() != Some(&schema) {
            if last_schema.is_some() {
                out.push_str("\r\n");
            }
            let n = tag_keys.len();
            let mut datatypes = vec![
                "#datatype",
                "string",
                "long",
                "dateTime:RFC3339",
                "dateTime:RFC3339",
                "dateTime:RFC3339",
                datatype,
                "string",
                "string",
            ];
            datatypes.extend(std::iter::repeat_n("string", n));
            let mut group = vec![
                "#group", "false", "false", "true", "true", "false", "false", "true", "true",
            ];
            group.extend(std::iter::repeat_n("true", n));
            let mut default = vec!["#default", "_result"];
            default.extend(std::iter::repeat_n("", 7 + n));
            let mut names = vec![
                "",
                "result",
                "table",
                "_start",
                "_stop",
                "_time",
                "_value",
                "_field",
                "_measurement",
            ];
            names.extend(tag_keys.iter().map(String::as_str));
            for row in [datatypes, group, default, names] {
                out.push_str(&row.join(","));
                out.push_str("\r\n");
            }
            last_schema = Some(schema);
        }
        for (time, value) in rows.iter() {
            let value = match value {
                FieldValue::Float(number) => format!("{number}"),
                FieldValue::Integer(number) => number.to_string(),
                FieldValue::Unsigned(number) => number.to_string(),
                FieldValue::Text(text) => csv_cell(text),
                FieldValue::Boolean(flag) => flag.to_string(),
            };
            let mut cells = vec![
                String::new(),
                String::new(),
                table.to_string(),
                rfc3339(0),
                rfc3339(NOW),
                rfc3339(*time),
                value,
                csv_cell(field),
                csv_cell(measurement),
            ];
            cells.extend(tags.values().map(|tag| csv_cell(tag)));
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `nanos` since the epoch as InfluxDB writes `dateTime:RFC3339`: UTC, `Z`, the
/// fraction only as long as it needs to be.
pub fn rfc3339(nanos: i64) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push('Z');
    text
}
