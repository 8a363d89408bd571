//! Cases for the HTTP API (written byte by byte, so anything can be sent) and for the
//! internal port.

use bytes::Bytes;
use rand::RngExt;
use rand::rngs::StdRng;

use super::pick;
use crate::case::{Allow, Case, HttpRequest, InternalRequest, Request, escape};
use crate::json::Json;
use crate::values::{
    self, Name, NameKind, OVER_LIMIT, UNDER_LIMIT, content_type, etag, name, nasty, number,
    percent_encode, random_bytes,
};
use crate::world::{self, World};

/// A request being put together, with what was done to it.
struct Draft {
    route: &'static str,
    method: Vec<u8>,
    path: Vec<u8>,
    query: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    mutations: Vec<String>,
    allow: Allow,
    not_http: bool,
    reads_secrets: bool,
    /// Every verb is valid here: the endpoint's label does not name the method.
    any_method: bool,
}

impl Draft {
    fn new(route: &'static str, method: &str, path: Vec<u8>) -> Self {
        Self {
            route,
            method: method.as_bytes().to_vec(),
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            mutations: Vec::new(),
            allow: Allow::Nothing,
            not_http: false,
            reads_secrets: false,
            any_method: false,
        }
    }

    fn note(&mut self, what: impl Into<String>) {
        note(&mut self.mutations, what.into());
    }

    fn param(&mut self, key: &[u8], value: &[u8]) {
        if !self.query.is_empty() {
            self.query.push(b'&');
        }
        self.query.extend(percent_encode(key, true));
        self.query.push(b'=');
        self.query.extend(percent_encode(value, true));
    }

    fn header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        // A control character in a field value is not HTTP any more.
        if value
            .iter()
            .any(|&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
        {
            self.not_http = true;
        }
        self.headers.push((name.as_bytes().to_vec(), value));
    }

    fn into_case(self) -> Case {
        let method = if self.any_method {
            "*".to_owned()
        } else {
            escape(&self.method, 40)
        };
        let mut target = self.path;
        if !self.query.is_empty() {
            target.push(b'?');
            target.extend(self.query);
        }
        Case {
            index: 0,
            endpoint: format!("{method} {}", self.route),
            mutation: if self.mutations.is_empty() {
                "valid".into()
            } else {
                self.mutations.join(", ")
            },
            request: Request::Http(HttpRequest {
                method: self.method,
                target,
                headers: self.headers,
                body: Bytes::from(self.body),
            }),
            allow: self.allow,
            not_http: self.not_http,
            reads_secrets: self.reads_secrets,
        }
    }
}

/// Adds a description of what was done to a case, once, and only the first few: a case
/// with 2000 items does not need 2000 words.
pub(super) fn note(notes: &mut Vec<String>, what: String) {
    const MAX_NOTES: usize = 12;
    if notes.len() < MAX_NOTES && !notes.contains(&what) {
        notes.push(what);
    }
}

fn path(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[derive(Clone, Copy)]
enum Endpoint {
    Publish,
    Save,
    Get,
    Delete,
    Bulk,
    Transaction,
    Secret,
    BulkSecrets,
    Metadata,
    SetMetadata,
    Invoke,
    InvokeByHeader,
    Binding,
    Lock,
    Conversation,
    Query,
    Crypto,
    Health,
    Unknown,
}

pub(super) fn case(rng: &mut StdRng, world: &World) -> Case {
    use Endpoint::*;
    let endpoint = pick(
        rng,
        &[
            (12, Publish),
            (14, Save),
            (10, Get),
            (7, Delete),
            (7, Bulk),
            (9, Transaction),
            (7, Secret),
            (3, BulkSecrets),
            (3, Metadata),
            (4, SetMetadata),
            (12, Invoke),
            (6, InvokeByHeader),
            (7, Binding),
            (5, Lock),
            (5, Conversation),
            (4, Query),
            (4, Crypto),
            (2, Health),
            (4, Unknown),
        ],
    );
    let mut draft = match endpoint {
        Publish => publish(rng),
        Save => save(rng),
        Get => get(rng),
        Delete => delete(rng),
        Bulk => bulk(rng),
        Transaction => transaction(rng),
        Secret => secret(rng),
        BulkSecrets => bulk_secrets(rng),
        Metadata => Draft::new("/v1.0/metadata", "GET", b"/v1.0/metadata".to_vec()),
        SetMetadata => set_metadata(rng),
        Invoke => invoke(rng, world),
        InvokeByHeader => invoke_by_header(rng, world),
        Binding => binding(rng),
        Lock => lock(rng),
        Conversation => conversation(rng),
        Query => query(rng),
        Crypto => crypto(rng),
        Health => health(rng),
        Unknown => unknown_route(rng),
    };
    if rng.random_bool(0.2) {
        http_mutation(rng, &mut draft);
    }
    draft.into_case()
}

// ---- bodies ----------------------------------------------------------------------

/// A JSON body for an endpoint: `tree` as it is, or broken in one way. `big` makes a
/// valid body of about the given size for that endpoint.
fn json_body(rng: &mut StdRng, tree: Json, big: fn(usize) -> Json, draft: &mut Draft) -> Vec<u8> {
    let roll = rng.random_range(0..100);
    let (bytes, what) = match roll {
        0..45 => (tree.to_bytes(), None),
        45..60 => {
            let mut tree = tree;
            tree.swap_a_type(rng);
            (tree.to_bytes(), Some("a JSON value of the wrong type"))
        }
        60..68 => {
            let mut bytes = tree.to_bytes();
            let cut = rng.random_range(0..bytes.len().max(1));
            bytes.truncate(cut);
            (bytes, Some("truncated JSON"))
        }
        68..72 => {
            let mut bytes = tree.to_bytes();
            let at = rng.random_range(0..=bytes.len());
            let junk: &[u8] =
                [&b"}"[..], b",", b"]]", b":", b"\"", b"nul", b"\\"][rng.random_range(0..7usize)];
            bytes.splice(at..at, junk.iter().copied());
            (bytes, Some("JSON with a stray token"))
        }
        72..76 => {
            let mut bytes = tree.to_bytes();
            let at = rng.random_range(0..=bytes.len());
            bytes.splice(at..at, [0xff, 0xfe]);
            (bytes, Some("body not UTF-8"))
        }
        76..80 => (Vec::new(), Some("empty body")),
        80..83 => {
            let len = rng.random_range(1..300);
            (random_bytes(rng, len), Some("random bytes"))
        }
        83..85 => {
            let depth = 5000;
            let mut bytes = vec![b'['; depth];
            bytes.extend(std::iter::repeat_n(b']', depth));
            (bytes, Some("JSON nested 5000 deep"))
        }
        85..89 => {
            let other = [
                Json::Null,
                Json::num(7),
                Json::str("text"),
                Json::object([]),
                Json::Array(Vec::new()),
            ];
            (
                other[rng.random_range(0..other.len())].to_bytes(),
                Some("another JSON type at the top"),
            )
        }
        89..92 => {
            let mut bytes = b"{\"key\":\"a\",\"key\":\"b\",".to_vec();
            bytes.extend(tree.to_bytes());
            (bytes, Some("JSON with garbage before"))
        }
        92..96 => (
            b"\xef\xbb\xbf"
                .iter()
                .copied()
                .chain(tree.to_bytes())
                .collect(),
            Some("JSON after a byte order mark"),
        ),
        96..98 => (
            big(OVER_LIMIT).to_bytes(),
            Some("body over the 4 MiB limit (10 MiB)"),
        ),
        _ => (
            big(UNDER_LIMIT).to_bytes(),
            Some("body just under the 4 MiB limit"),
        ),
    };
    if let Some(what) = what {
        draft.note(what);
    }
    if draft
        .headers
        .iter()
        .all(|(name, _)| name != b"content-type")
        && rng.random_bool(0.7)
    {
        draft.header("content-type", "application/json");
    }
    bytes
}

/// A body that is not JSON-shaped on purpose (publish, invoke, metadata values).
fn any_body(rng: &mut StdRng, draft: &mut Draft) -> Vec<u8> {
    match rng.random_range(0..100) {
        0..30 => Json::object([
            ("orderId", Json::num(rng.random_range(0..1000))),
            ("note", Json::str(nasty(rng).bytes)),
        ])
        .to_bytes(),
        30..45 => {
            draft.note("text body");
            nasty(rng).bytes
        }
        45..60 => {
            draft.note("random bytes");
            let len = rng.random_range(1..2000);
            random_bytes(rng, len)
        }
        60..76 => {
            draft.note("empty body");
            Vec::new()
        }
        76..82 => {
            draft.note("body not UTF-8");
            b"caf\xe9 \xff\xfe\x00".to_vec()
        }
        82..96 => {
            draft.note("cloud event with odd fields");
            let mut event = Json::object([
                ("specversion", Json::str("1.0")),
                ("id", Json::str("e-1")),
                ("source", Json::str("fuzz")),
                ("type", Json::str("t")),
                ("datacontenttype", Json::str("application/json")),
                ("data", Json::object([("a", Json::num(1))])),
                ("traceparent", Json::str("garbage")),
            ]);
            if rng.random_bool(0.6) {
                event.swap_a_type(rng);
            }
            event.to_bytes()
        }
        96..98 => {
            draft.note("body over the 4 MiB limit (10 MiB)");
            vec![b'x'; OVER_LIMIT]
        }
        _ => {
            draft.note("body just under the 4 MiB limit");
            vec![b'x'; UNDER_LIMIT]
        }
    }
}

/// A JSON string for a name (its bytes as they are: a name that is not UTF-8 makes the
/// body invalid).
fn json_name(name: &Name) -> Json {
    Json::Str(name.bytes.clone())
}

/// A number-ish field: a JSON number when it is one in JSON's grammar (and half of
/// the time then), else a string.
fn json_number(rng: &mut StdRng, draft: &mut Draft, role: &str) -> Json {
    let (text, label) = number(rng);
    draft.note(format!("{role} {label}"));
    if values::is_json_number(&text) && rng.random_bool(0.5) {
        Json::Number(text)
    } else {
        Json::str(text)
    }
}

fn state_value(rng: &mut StdRng) -> Json {
    match rng.random_range(0..8) {
        0 => Json::num(rng.random_range(-5..1000)),
        1 => Json::str("plain text"),
        2 => Json::object([
            ("a", Json::num(1)),
            ("b", Json::Array(vec![Json::Null, Json::Bool(true)])),
        ]),
        3 => Json::Null,
        4 => Json::str(nasty(rng).bytes),
        5 => Json::Array(Vec::new()),
        6 => Json::Number("1e400".into()),
        _ => Json::str("x".repeat(rng.random_range(0..5000))),
    }
}

/// One state item as the save and transaction bodies carry it.
fn state_item(rng: &mut StdRng, draft: &mut Draft) -> Json {
    let key = name(rng, world::STATE_KEYS);
    if !key.is_known() {
        draft.note(key.describe("key"));
    }
    let mut fields = vec![("key".to_owned(), json_name(&key))];
    if rng.random_bool(0.9) {
        fields.push(("value".into(), state_value(rng)));
    }
    if rng.random_bool(0.3) {
        let (tag, label) = etag(rng);
        draft.note(format!("etag {label}"));
        fields.push(("etag".into(), Json::Str(tag)));
    }
    if rng.random_bool(0.5) {
        let mut metadata = Vec::new();
        if rng.random_bool(0.8) {
            metadata.push((
                "ttlInSeconds".into(),
                json_number(rng, draft, "ttlInSeconds"),
            ));
        }
        if rng.random_bool(0.3) {
            metadata.push(("contentType".into(), Json::str("application/json")));
        }
        if rng.random_bool(0.2) {
            let odd = nasty(rng);
            draft.note(format!("metadata name {}", odd.describe("")));
            metadata.push((
                String::from_utf8_lossy(&odd.bytes).into_owned(),
                Json::str("v"),
            ));
        }
        fields.push(("metadata".into(), Json::Object(metadata)));
    }
    if rng.random_bool(0.25) {
        let concurrency = [
            "first-write",
            "last-write",
            "",
            "second-write",
            "FIRST-WRITE",
        ][rng.random_range(0..5usize)];
        let consistency = ["strong", "eventual", "", "linearizable"][rng.random_range(0..4usize)];
        draft.note(format!(
            "options concurrency '{concurrency}' consistency '{consistency}'"
        ));
        fields.push((
            "options".into(),
            Json::object([
                ("concurrency", Json::str(concurrency)),
                ("consistency", Json::str(consistency)),
            ]),
        ));
    }
    Json::Object(fields)
}

fn item_count(rng: &mut StdRng, draft: &mut Draft) -> usize {
    match rng.random_range(0..100) {
        0..5 => {
            draft.note("no items");
            0
        }
        5..8 => {
            draft.note("2000 items");
            2000
        }
        _ => rng.random_range(1..4),
    }
}

fn big_save(size: usize) -> Json {
    Json::Array(vec![Json::Object(vec![
        ("key".into(), Json::str("big")),
        ("value".into(), Json::long_string(size)),
    ])])
}

fn big_keys(size: usize) -> Json {
    Json::Object(vec![
        ("keys".into(), Json::Array(vec![Json::str("k1")])),
        ("padding".into(), Json::long_string(size)),
    ])
}

fn big_transaction(size: usize) -> Json {
    Json::Object(vec![(
        "operations".into(),
        Json::Array(vec![Json::Object(vec![
            ("operation".into(), Json::str("upsert")),
            ("request".into(), big_save(size).first_item()),
        ])]),
    )])
}

impl Json {
    fn first_item(self) -> Json {
        match self {
            Json::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            other => other,
        }
    }
}

fn store(rng: &mut StdRng, draft: &mut Draft) -> Name {
    let store = name(rng, world::STATE_STORES);
    if !store.is_known() {
        draft.note(store.describe("store"));
    }
    store
}

// ---- endpoints -------------------------------------------------------------------

fn publish(rng: &mut StdRng) -> Draft {
    let pubsub = name(rng, &[world::PUBSUB]);
    let topic = name(rng, world::TOPICS);
    let method = if rng.random_bool(0.85) { "POST" } else { "PUT" };
    let mut draft = Draft::new(
        "/v1.0/publish/{pubsub}/{topic}",
        method,
        path(&[b"/v1.0/publish/", &pubsub.segment(), b"/", &topic.segment()]),
    );
    for (name, role) in [(&pubsub, "pubsub"), (&topic, "topic")] {
        if !name.is_known() {
            draft.note(name.describe(role));
        }
    }
    if rng.random_bool(0.3) {
        let raw = ["true", "false", "maybe", "", "TRUE", "1"][rng.random_range(0..6usize)];
        draft.note(format!("rawPayload '{raw}'"));
        draft.param(b"metadata.rawPayload", raw.as_bytes());
    }
    if rng.random_bool(0.3) {
        let (ttl, label) = number(rng);
        draft.note(format!("ttlInSeconds {label}"));
        draft.param(b"metadata.ttlInSeconds", ttl.as_bytes());
    }
    if rng.random_bool(0.1) {
        let odd = nasty(rng);
        draft.note(format!("metadata {}", odd.describe("value")));
        draft.param(b"metadata.custom", &odd.bytes);
    }
    if let Some(content_type) = content_type(rng) {
        draft.note(format!("content-type '{}'", escape(content_type, 60)));
        draft.header("content-type", content_type);
    }
    if rng.random_bool(0.15) {
        draft.note("traceparent garbage");
        draft.header("traceparent", "00-zz-yy-01");
    }
    draft.body = any_body(rng, &mut draft);
    draft
}

fn save(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/state/{store}", "POST", Vec::new());
    if rng.random_bool(0.1) {
        draft.method = b"PUT".to_vec();
    }
    let store = store(rng, &mut draft);
    draft.path = path(&[b"/v1.0/state/", &store.segment()]);
    let count = item_count(rng, &mut draft);
    let items = (0..count).map(|_| state_item(rng, &mut draft)).collect();
    draft.body = json_body(rng, Json::Array(items), big_save, &mut draft);
    draft
}

fn key_path(rng: &mut StdRng, draft: &mut Draft, route_method: &str) -> Vec<u8> {
    let store = store(rng, draft);
    let key = name(rng, world::STATE_KEYS);
    if !key.is_known() {
        draft.note(key.describe("key"));
    }
    draft.method = route_method.as_bytes().to_vec();
    path(&[b"/v1.0/state/", &store.segment(), b"/", &key.segment()])
}

fn get(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/state/{store}/{key}", "GET", Vec::new());
    draft.path = key_path(rng, &mut draft, "GET");
    if rng.random_bool(0.3) {
        let consistency = ["strong", "eventual", "", "wrong", "%FF"][rng.random_range(0..5usize)];
        draft.note(format!("consistency '{consistency}'"));
        draft.param(b"consistency", consistency.as_bytes());
    }
    if rng.random_bool(0.15) {
        let (text, label) = number(rng);
        draft.note(format!("metadata.ttlInSeconds {label}"));
        draft.param(b"metadata.ttlInSeconds", text.as_bytes());
    }
    draft
}

fn delete(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/state/{store}/{key}", "DELETE", Vec::new());
    draft.path = key_path(rng, &mut draft, "DELETE");
    if rng.random_bool(0.5) {
        let (tag, label) = etag(rng);
        draft.note(format!("If-Match {label}"));
        draft.header("if-match", tag);
    }
    if rng.random_bool(0.3) {
        let concurrency = ["first-write", "last-write", "", "none"][rng.random_range(0..4usize)];
        draft.note(format!("concurrency '{concurrency}'"));
        draft.param(b"concurrency", concurrency.as_bytes());
    }
    draft
}

fn bulk(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/state/{store}/bulk", "POST", Vec::new());
    let store = store(rng, &mut draft);
    draft.path = path(&[b"/v1.0/state/", &store.segment(), b"/bulk"]);
    let count = item_count(rng, &mut draft);
    let keys = (0..count)
        .map(|_| json_name(&name(rng, world::STATE_KEYS)))
        .collect();
    let mut fields = vec![("keys".to_owned(), Json::Array(keys))];
    if rng.random_bool(0.6) {
        fields.push((
            "parallelism".into(),
            json_number(rng, &mut draft, "parallelism"),
        ));
    }
    if rng.random_bool(0.2) {
        fields.push((
            "metadata".into(),
            Json::object([("ttlInSeconds", Json::str("x"))]),
        ));
    }
    draft.body = json_body(rng, Json::Object(fields), big_keys, &mut draft);
    draft
}

fn transaction(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/state/{store}/transaction", "POST", Vec::new());
    let store = store(rng, &mut draft);
    draft.path = path(&[b"/v1.0/state/", &store.segment(), b"/transaction"]);
    let count = item_count(rng, &mut draft).min(300);
    let operations = (0..count)
        .map(|_| {
            let operation = pick(
                rng,
                &[
                    (6, "upsert"),
                    (3, "delete"),
                    (1, "merge"),
                    (1, ""),
                    (1, "UPSERT"),
                ],
            );
            if !matches!(operation, "upsert" | "delete") {
                draft.note(format!("operation '{operation}'"));
            }
            Json::Object(vec![
                ("operation".into(), Json::str(operation)),
                ("request".into(), state_item(rng, &mut draft)),
            ])
        })
        .collect();
    let mut fields = vec![("operations".to_owned(), Json::Array(operations))];
    if rng.random_bool(0.2) {
        fields.push((
            "metadata".into(),
            Json::object([("partitionKey", Json::str("p"))]),
        ));
    }
    draft.body = json_body(rng, Json::Object(fields), big_transaction, &mut draft);
    draft
}

/// `POST|PUT /v1.0/bindings/{name}`: an operation, data of any JSON shape and string
/// metadata (file names that try to leave the binding's folder among them).
fn binding(rng: &mut StdRng) -> Draft {
    let binding = name(rng, world::BINDINGS);
    let method = if rng.random_bool(0.85) { "POST" } else { "PUT" };
    let mut draft = Draft::new(
        "/v1.0/bindings/{name}",
        method,
        path(&[b"/v1.0/bindings/", &binding.segment()]),
    );
    if !binding.is_known() {
        draft.note(binding.describe("binding"));
    }
    // Whatever the binding makes of it, daprd's only failure answer is
    // ERR_INVOKE_OUTPUT_BINDING (a malformed body is still ERR_MALFORMED_REQUEST).
    draft.allow = Allow::BindingRefused;
    let mut fields = Vec::new();
    let operation = name(rng, world::BINDING_OPERATIONS);
    if !operation.is_known() {
        draft.note(operation.describe("operation"));
    }
    if rng.random_bool(0.9) {
        fields.push(("operation".to_owned(), Json::str(&operation.bytes)));
    } else {
        draft.note("no operation");
    }
    let data = match rng.random_range(0..6) {
        0 => Json::object([("orderId", Json::num(rng.random_range(0..1000)))]),
        1 => Json::str(nasty(rng).bytes),
        2 => Json::str("aGVsbG8gd29ybGQ="),
        3 => Json::num(number(rng).0),
        4 => Json::Null,
        _ => Json::Array(vec![Json::str("a"), Json::num(1)]),
    };
    if rng.random_bool(0.9) {
        fields.push(("data".to_owned(), data));
    }
    let file = match rng.random_range(0..10) {
        0..6 => name(rng, world::BINDING_FILES).bytes,
        6 => b"../../../../etc/passwd".to_vec(),
        7 => b"/etc/hostname".to_vec(),
        _ => nasty(rng).bytes,
    };
    let mut metadata = vec![("fileName".to_owned(), Json::str(&file))];
    if rng.random_bool(0.2) {
        draft.note("metadata not a string");
        metadata.push(("ttlInSeconds".to_owned(), Json::num(60)));
    }
    if rng.random_bool(0.8) {
        fields.push(("metadata".to_owned(), Json::Object(metadata)));
    }
    draft.body = json_body(rng, Json::Object(fields), big_binding, &mut draft);
    draft
}

/// `POST /v1.0-alpha1/lock/{store}` and `/unlock/{store}`: names, owners and expiries
/// of every kind (empty, `||` in the name, numbers out of range, not numbers).
fn lock(rng: &mut StdRng) -> Draft {
    let store = name(rng, &[world::LOCK_STORE]);
    let unlock = rng.random_bool(0.4);
    let (endpoint, prefix): (&str, &[u8]) = if unlock {
        ("/v1.0-alpha1/unlock/{store}", b"/v1.0-alpha1/unlock/")
    } else {
        ("/v1.0-alpha1/lock/{store}", b"/v1.0-alpha1/lock/")
    };
    let mut draft = Draft::new(endpoint, "POST", path(&[prefix, &store.segment()]));
    if !store.is_known() {
        draft.note(store.describe("lock store"));
    }
    let mut fields = Vec::new();
    let resource = match rng.random_range(0..10) {
        0 => {
            draft.note("`||` in the resource id");
            draft.allow = Allow::LockNameRefused;
            b"a||b".to_vec()
        }
        1 => nasty(rng).bytes,
        _ => {
            let resource = name(rng, world::LOCK_RESOURCES);
            if !resource.is_known() {
                draft.note(resource.describe("resource id"));
            }
            resource.bytes
        }
    };
    // Lock names reserve `||`, whichever way it got into the id.
    if resource.windows(2).any(|pair| pair == b"||") {
        draft.allow = Allow::LockNameRefused;
    }
    if rng.random_bool(0.9) {
        fields.push(("resourceId".to_owned(), Json::str(&resource)));
    }
    if rng.random_bool(0.9) {
        fields.push((
            "lockOwner".to_owned(),
            Json::str(name(rng, world::LOCK_OWNERS).bytes),
        ));
    }
    if !unlock && rng.random_bool(0.9) {
        let expiry = if rng.random_bool(0.6) {
            Json::num(rng.random_range(1..120))
        } else {
            let (text, label) = number(rng);
            draft.note(format!("expiry: {label}"));
            Json::Raw(text.into_bytes())
        };
        fields.push(("expiryInSeconds".to_owned(), expiry));
    }
    draft.body = json_body(rng, Json::Object(fields), big_lock, &mut draft);
    draft
}

/// `POST|PUT /v1.0-alpha1/state/{store}/query`: filter trees of every operator (and
/// of none, deep ones, operators with the wrong shape), sorts, pages with odd limits
/// and tokens. Daprd answers a query it cannot parse with a 500.
fn query(rng: &mut StdRng) -> Draft {
    let store = name(rng, world::STATE_STORES);
    let method = if rng.random_bool(0.5) { "POST" } else { "PUT" };
    let mut draft = Draft::new(
        "/v1.0-alpha1/state/{store}/query",
        method,
        path(&[b"/v1.0-alpha1/state/", &store.segment(), b"/query"]),
    );
    if !store.is_known() {
        draft.note(store.describe("state store"));
    }
    // Most generated queries are fine; those that are not are daprd's 500.
    draft.allow = Allow::QueryRefused;
    let mut fields = Vec::new();
    if rng.random_bool(0.8) {
        let depth = rng.random_range(0..6);
        fields.push(("filter".to_owned(), filter(rng, depth)));
    }
    if rng.random_bool(0.5) {
        let order = match rng.random_range(0..4) {
            0 => Json::str("DESC"),
            1 => Json::str("ASC"),
            2 => Json::str(nasty(rng).bytes),
            _ => Json::num(1),
        };
        fields.push((
            "sort".to_owned(),
            Json::Array(vec![Json::object([
                ("key", Json::str(field_path(rng))),
                ("order", order),
            ])]),
        ));
    }
    if rng.random_bool(0.5) {
        let (limit, label) = number(rng);
        draft.note(format!("limit: {label}"));
        let token = if rng.random_bool(0.5) {
            Json::str(rng.random_range(0..20).to_string())
        } else {
            Json::str(nasty(rng).bytes)
        };
        fields.push((
            "page".to_owned(),
            Json::object([("limit", Json::Raw(limit.into_bytes())), ("token", token)]),
        ));
    }
    draft.body = json_body(rng, Json::Object(fields), big_query, &mut draft);
    draft
}

/// A filter of Dapr's query language, `depth` levels of AND/OR deep at most.
fn filter(rng: &mut StdRng, depth: usize) -> Json {
    let value = |rng: &mut StdRng| match rng.random_range(0..4) {
        0 => Json::num(rng.random_range(-5..5)),
        1 => Json::str("WA"),
        2 => Json::Raw(number(rng).0.into_bytes()),
        _ => Json::str(nasty(rng).bytes),
    };
    let roll = rng.random_range(0..if depth == 0 { 8 } else { 11 });
    let pair = |rng: &mut StdRng, op: &str| {
        let key = field_path(rng);
        let operand = value(rng);
        Json::Object(vec![(op.to_owned(), Json::Object(vec![(key, operand)]))])
    };
    match roll {
        0 => pair(rng, "EQ"),
        1 => pair(rng, "NEQ"),
        2 => pair(rng, "GT"),
        3 => pair(rng, "LTE"),
        4 => {
            let values = (0..rng.random_range(0..4)).map(|_| value(rng)).collect();
            Json::Object(vec![(
                "IN".to_owned(),
                Json::Object(vec![(field_path(rng), Json::Array(values))]),
            )])
        }
        5 => Json::Object(vec![("LIKE".to_owned(), Json::Null)]),
        6 => Json::Array(vec![]),
        7 => Json::Object(vec![]),
        _ => {
            let op = if rng.random_bool(0.5) { "AND" } else { "OR" };
            let entries = (0..rng.random_range(0..4))
                .map(|_| filter(rng, depth - 1))
                .collect();
            Json::Object(vec![(op.to_owned(), Json::Array(entries))])
        }
    }
}

/// A path into the stored values: plain, nested, indexed, or odd.
fn field_path(rng: &mut StdRng) -> String {
    match rng.random_range(0..5) {
        0 => "state".to_owned(),
        1 => "person.org".to_owned(),
        2 => "items.0.id".to_owned(),
        3 => "...".to_owned(),
        _ => String::from_utf8_lossy(&nasty(rng).bytes).into_owned(),
    }
}

fn big_query(size: usize) -> Json {
    Json::object([(
        "filter",
        Json::object([("EQ", Json::object([("state", Json::long_string(size))]))]),
    )])
}

/// `POST /v1.0-alpha1|alpha2/conversation/{name}/converse` on the echo component:
/// inputs or none, every kind of message (and none), PII, odd text, tools and tool
/// choices that name no tool.
fn conversation(rng: &mut StdRng) -> Draft {
    let component = name(rng, &[world::CONVERSATION]);
    let alpha2 = rng.random_bool(0.6);
    let (endpoint, prefix): (&str, &[u8]) = if alpha2 {
        (
            "/v1.0-alpha2/conversation/{name}/converse",
            b"/v1.0-alpha2/conversation/",
        )
    } else {
        (
            "/v1.0-alpha1/conversation/{name}/converse",
            b"/v1.0-alpha1/conversation/",
        )
    };
    let mut draft = Draft::new(
        endpoint,
        "POST",
        path(&[prefix, &component.segment(), b"/converse"]),
    );
    if !component.is_known() {
        draft.note(component.describe("component"));
    }
    let text = |rng: &mut StdRng, draft: &mut Draft| match rng.random_range(0..10) {
        0 => {
            draft.note("PII in a text");
            Json::str("mail me at ada@example.com or +2222222222 from 10.8.9.1")
        }
        1 => {
            let odd = nasty(rng);
            draft.note(odd.describe("text"));
            Json::str(odd.bytes)
        }
        _ => Json::str("What's Dapr?"),
    };
    let inputs = match rng.random_range(0..10) {
        0 => {
            draft.note("no inputs");
            0
        }
        _ => rng.random_range(1..4),
    };
    let mut fields = Vec::new();
    if alpha2 {
        let mut list = Vec::new();
        for _ in 0..inputs {
            let mut messages = Vec::new();
            for _ in 0..rng.random_range(0..4) {
                let content = Json::Array(vec![Json::object([("text", text(rng, &mut draft))])]);
                let message = match rng.random_range(0..12) {
                    0 => {
                        draft.note("a message of no type");
                        Json::object([("ofNothing", Json::object([]))])
                    }
                    1 => Json::object([(
                        "ofTool",
                        Json::object([
                            ("toolId", Json::str("call_1")),
                            ("name", Json::str("get_weather")),
                            ("content", content),
                        ]),
                    )]),
                    2 => {
                        let call = if rng.random_bool(0.2) {
                            draft.note("a tool call of no type");
                            Json::object([("id", Json::str("call_1"))])
                        } else {
                            Json::object([
                                ("id", Json::str("call_1")),
                                (
                                    "function",
                                    Json::object([
                                        ("name", Json::str("get_weather")),
                                        ("arguments", Json::str("{\"location\":\"Paris\"}")),
                                    ]),
                                ),
                            ])
                        };
                        Json::object([(
                            "ofAssistant",
                            Json::object([
                                ("content", content),
                                ("toolCalls", Json::Array(vec![call])),
                            ]),
                        )])
                    }
                    3 => Json::object([("ofSystem", Json::object([("content", content)]))]),
                    4 => Json::object([("ofDeveloper", Json::object([("content", content)]))]),
                    _ => Json::object([("ofUser", Json::object([("content", content)]))]),
                };
                messages.push(message);
            }
            list.push(Json::object([
                ("messages", Json::Array(messages)),
                ("scrubPii", Json::Bool(rng.random_bool(0.3))),
            ]));
        }
        fields.push(("inputs".to_owned(), Json::Array(list)));
        if rng.random_bool(0.4) {
            // The echo component refuses a schema whose `properties` is not an object,
            // which a swapped type may make.
            draft.allow = Allow::ConversationRefused;
            fields.push((
                "tools".to_owned(),
                Json::Array(vec![Json::object([(
                    "function",
                    Json::object([
                        ("name", Json::str("get_weather")),
                        (
                            "parameters",
                            Json::object([
                                ("type", Json::str("object")),
                                (
                                    "properties",
                                    Json::object([(
                                        "location",
                                        Json::object([("type", Json::str("string"))]),
                                    )]),
                                ),
                            ]),
                        ),
                    ]),
                )])]),
            ));
        }
        if rng.random_bool(0.3) {
            let choice =
                ["auto", "none", "required", "get_weather", "other"][rng.random_range(0..5usize)];
            draft.note(format!("tool choice {choice}"));
            fields.push(("toolChoice".to_owned(), Json::str(choice)));
        }
        if rng.random_bool(0.2) {
            fields.push(("promptCacheRetention".to_owned(), Json::str("86400s")));
        }
        fields.push(("scrubPii".to_owned(), Json::Bool(rng.random_bool(0.3))));
    } else {
        let mut list = Vec::new();
        for _ in 0..inputs {
            let role =
                ["user", "system", "assistant", "tool", "other"][rng.random_range(0..5usize)];
            list.push(Json::object([
                ("content", text(rng, &mut draft)),
                ("role", Json::str(role)),
                ("scrubPII", Json::Bool(rng.random_bool(0.3))),
            ]));
        }
        fields.push(("inputs".to_owned(), Json::Array(list)));
        fields.push(("scrubPII".to_owned(), Json::Bool(rng.random_bool(0.3))));
    }
    fields.push(("contextID".to_owned(), Json::str("chat-1")));
    if rng.random_bool(0.5) {
        let (value, label) = number(rng);
        draft.note(format!("temperature: {label}"));
        fields.push(("temperature".to_owned(), Json::Raw(value.into_bytes())));
    }
    draft.body = json_body(rng, Json::Object(fields), big_conversation, &mut draft);
    draft
}

fn big_conversation(size: usize) -> Json {
    Json::object([(
        "inputs",
        Json::Array(vec![Json::object([("content", Json::long_string(size))])]),
    )])
}

fn big_lock(size: usize) -> Json {
    Json::object([
        ("resourceId", Json::long_string(size)),
        ("lockOwner", Json::str("owner-a")),
        ("expiryInSeconds", Json::num(5)),
    ])
}

fn big_binding(size: usize) -> Json {
    Json::object([
        ("operation", Json::str("create")),
        ("data", Json::long_string(size)),
        (
            "metadata",
            Json::object([("fileName", Json::str("big.txt"))]),
        ),
    ])
}

fn secret_store(rng: &mut StdRng, draft: &mut Draft) -> Name {
    let store = name(rng, &[world::FILE_SECRET_STORE, world::ENV_SECRET_STORE]);
    if !store.is_known() {
        draft.note(store.describe("store"));
    }
    store
}

fn secret(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/secrets/{store}/{key}", "GET", Vec::new());
    draft.reads_secrets = true;
    let store = secret_store(rng, &mut draft);
    let held = match store.bytes.as_slice() {
        b"vault" if store.is_known() => world::FILE_SECRETS,
        b"envsecrets" if store.is_known() => world::ENV_SECRETS,
        _ => &[],
    };
    let key = name(rng, held);
    if !key.is_known() {
        draft.note(key.describe("secret"));
        if store.is_known() {
            // The store exists and lacks the secret: daprd answers ERR_SECRET_GET 500.
            draft.allow = Allow::MissingSecret;
        }
    }
    draft.path = path(&[b"/v1.0/secrets/", &store.segment(), b"/", &key.segment()]);
    if rng.random_bool(0.15) {
        draft.note("metadata.namespace");
        draft.param(b"metadata.namespace", b"other");
    }
    draft
}

fn bulk_secrets(rng: &mut StdRng) -> Draft {
    let mut draft = Draft::new("/v1.0/secrets/{store}/bulk", "GET", Vec::new());
    draft.reads_secrets = true;
    let store = secret_store(rng, &mut draft);
    draft.path = path(&[b"/v1.0/secrets/", &store.segment(), b"/bulk"]);
    draft
}

fn set_metadata(rng: &mut StdRng) -> Draft {
    let key = name(rng, &["fuzz-attribute"]);
    let mut draft = Draft::new(
        "/v1.0/metadata/{key}",
        "PUT",
        path(&[b"/v1.0/metadata/", &key.segment()]),
    );
    if !key.is_known() {
        draft.note(key.describe("attribute"));
    }
    draft.body = match rng.random_range(0..10) {
        0 => {
            draft.note("value not UTF-8");
            b"\xff\xfe".to_vec()
        }
        1 => {
            draft.note("empty value");
            Vec::new()
        }
        2 => {
            draft.note("body over the 4 MiB limit (10 MiB)");
            vec![b'v'; OVER_LIMIT]
        }
        3 => {
            let odd = nasty(rng);
            draft.note(odd.describe("value"));
            odd.bytes
        }
        _ => format!("value-{}", rng.random_range(0..100)).into_bytes(),
    };
    draft
}

/// Who an invocation is for, and whether daprd may answer it with ERR_DIRECT_INVOKE 500.
fn invoke_target(rng: &mut StdRng, world: &World) -> (Vec<u8>, String, Allow) {
    let echo = format!("http://127.0.0.1:{}", world.echo_port);
    let closed = format!("http://127.0.0.1:{}", world.closed_port);
    match rng.random_range(0..100) {
        0..35 => (world::APP_ID.into(), "own app".into(), Allow::Nothing),
        35..50 => (world::PEER_APP_ID.into(), "peer app".into(), Allow::Nothing),
        50..60 => (
            world::ENDPOINT_UP.into(),
            "HTTPEndpoint".into(),
            Allow::Nothing,
        ),
        60..65 => (
            world::ENDPOINT_DOWN.into(),
            "HTTPEndpoint refusing connections".into(),
            Allow::UnreachableTarget,
        ),
        65..70 => (echo.into_bytes(), "URL".into(), Allow::Nothing),
        70..73 => (
            closed.into_bytes(),
            "URL refusing connections".into(),
            Allow::UnreachableTarget,
        ),
        _ => {
            let id = name(rng, &[]);
            let allow = if id.kind == NameKind::Empty {
                Allow::Nothing
            } else {
                Allow::UnreachableTarget
            };
            (id.bytes.clone(), id.describe("app id"), allow)
        }
    }
}

/// A method path for the app: plain, one the echo app answers with a chosen status, or
/// nasty.
fn method_path(rng: &mut StdRng) -> (Vec<u8>, Option<String>) {
    match rng.random_range(0..100) {
        0..40 => (b"echo".to_vec(), None),
        40..55 => {
            let status = [200, 204, 400, 404, 409, 500, 503][rng.random_range(0..7usize)];
            (
                format!("status/{status}").into_bytes(),
                Some(format!("app answers {status}")),
            )
        }
        55..62 => (b"".to_vec(), Some("empty method".into())),
        62..68 => (b"a/b/../c//d/".to_vec(), Some("dot segments".into())),
        _ => {
            let odd = nasty(rng);
            let segment = percent_encode(&odd.bytes, odd.kind != NameKind::Nasty("slash"));
            (segment, Some(odd.describe("method")))
        }
    }
}

fn any_method(rng: &mut StdRng) -> &'static str {
    pick(
        rng,
        &[
            (5, "GET"),
            (5, "POST"),
            (2, "PUT"),
            (2, "DELETE"),
            (1, "PATCH"),
            (1, "HEAD"),
            (1, "OPTIONS"),
            (1, "FOO"),
        ],
    )
}

/// Headers an invocation may carry to the app.
fn invoke_headers(rng: &mut StdRng, draft: &mut Draft) {
    let count = if rng.random_bool(0.5) {
        0
    } else {
        rng.random_range(1..4)
    };
    for _ in 0..count {
        let (name, value, label): (&str, Vec<u8>, &str) = match rng.random_range(0..12) {
            0 => ("content-type", b"application/json".to_vec(), "content-type"),
            1 => (
                "x-custom",
                b"caf\xe9 \xff".to_vec(),
                "header value not UTF-8",
            ),
            2 => ("te", b"trailers".to_vec(), "te"),
            3 => (
                "dapr-caller-app-id",
                b"someone-else".to_vec(),
                "caller spoofed",
            ),
            4 => ("dapr-callee-app-id", b"nope".to_vec(), "callee spoofed"),
            5 => ("traceparent", b"00-zz".to_vec(), "traceparent garbage"),
            6 => ("cache-control", b"no-cache".to_vec(), "no-cache"),
            7 => ("expect", b"100-continue".to_vec(), "expect 100-continue"),
            8 => ("x-big", vec![b'h'; 16 << 10], "16 KiB header"),
            9 => (
                "content-encoding",
                b"gzip".to_vec(),
                "content-encoding gzip",
            ),
            10 => ("dapr-app-id", b"other-app".to_vec(), "dapr-app-id too"),
            _ => ("x-forwarded-for", b"10.0.0.1".to_vec(), "x-forwarded-for"),
        };
        draft.note(label);
        draft.header(name, value);
        if name == "dapr-app-id" && draft.allow == Allow::Nothing {
            // Whenever no route serves the request (a mangled path, another verb), daprd
            // and tandem take it as an invocation of `other-app`, which nobody runs.
            draft.allow = Allow::UnreachableTarget;
        }
    }
}

fn invoke(rng: &mut StdRng, world: &World) -> Draft {
    let (target, who, allow) = invoke_target(rng, world);
    let (method_path, what) = method_path(rng);
    let target_segment = if target.starts_with(b"http://") {
        // A URL target is written as it is: daprd reads it from the raw path.
        target.clone()
    } else {
        percent_encode(&target, true)
    };
    let mut draft = Draft::new(
        "/v1.0/invoke/{id}/method/{method}",
        any_method(rng),
        path(&[b"/v1.0/invoke/", &target_segment, b"/method/", &method_path]),
    );
    draft.any_method = true;
    draft.allow = allow;
    draft.note(who);
    if let Some(what) = what {
        draft.note(what);
    }
    if rng.random_bool(0.3) {
        let odd = nasty(rng);
        draft.note(odd.describe("query"));
        draft.param(b"q", &odd.bytes);
    }
    invoke_headers(rng, &mut draft);
    if target.is_empty() && draft.headers.iter().any(|(name, _)| name == b"dapr-app-id") {
        // No id in the path: the header names the app, one nobody runs.
        draft.allow = Allow::UnreachableTarget;
    }
    draft.body = any_body(rng, &mut draft);
    draft
}

fn invoke_by_header(rng: &mut StdRng, world: &World) -> Draft {
    let (target, who, allow) = invoke_target(rng, world);
    let (method_path, what) = method_path(rng);
    let mut draft = Draft::new(
        "/{method} with dapr-app-id",
        any_method(rng),
        path(&[b"/", &method_path]),
    );
    draft.any_method = true;
    // Not valid as a header value (NUL, CR LF): an invalid request, not an app id.
    draft.header("dapr-app-id", target);
    draft.allow = if draft.not_http {
        Allow::Nothing
    } else {
        allow
    };
    draft.note(who);
    if let Some(what) = what {
        draft.note(what);
    }
    invoke_headers(rng, &mut draft);
    draft.body = any_body(rng, &mut draft);
    draft
}

fn health(rng: &mut StdRng) -> Draft {
    if rng.random_bool(0.5) {
        Draft::new("/v1.0/healthz", "GET", b"/v1.0/healthz".to_vec())
    } else {
        Draft::new(
            "/v1.0/healthz/outbound",
            "GET",
            b"/v1.0/healthz/outbound".to_vec(),
        )
    }
}

fn unknown_route(rng: &mut StdRng) -> Draft {
    const ROUTES: &[&[u8]] = &[
        b"/",
        b"/v1.0",
        b"/v1.0/",
        b"/v1.0/state",
        b"/v1.0/state/",
        b"/v1.0/publish/pubsub",
        b"/v1.0/secrets/vault",
        b"/v1.0/invoke/fuzz-app",
        b"/v1.0/invoke/fuzz-app/echo",
        b"/v1.0/actors/type/id/method/m",
        b"/v1.0/bindings/binding",
        b"/v1.0-alpha1/jobs/job1",
        b"/v1.0-alpha1/lock/store",
        b"/v1.0-beta1/workflows/dapr/wf/start",
        b"/v2.0/state/statestore/k1",
        b"/V1.0/METADATA",
        b"/v1.0/healthz/inbound",
        b"/dapr/subscribe",
    ];
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let mut draft = Draft::new("(no such route)", any_method(rng), route.to_vec());
    draft.any_method = true;
    if route.starts_with(b"/v1.0/actors/") {
        // A route now, but the fuzz world has no actor state store: daprd's answer.
        draft.allow = Allow::NoActorRuntime;
    }
    draft.note(format!("path {}", escape(route, 60)));
    draft
}

/// Trouble at the HTTP level, on top of the endpoint's own.
fn http_mutation(rng: &mut StdRng, draft: &mut Draft) {
    match rng.random_range(0..11) {
        0 | 1 => {
            let method = [
                "PATCH", "OPTIONS", "FOO", "HEAD", "TRACE", "get", "DELETE", "PUT",
            ][rng.random_range(0..8usize)];
            draft.note(format!("method {method}"));
            draft.method = method.as_bytes().to_vec();
        }
        2 => {
            let junk: &[u8] = [
                &b"x=%FF%FE"[..],
                b"metadata.%FF=1",
                b"metadata.ttlInSeconds=%C0%AF",
                b"a=%ZZ",
                b"&&==&",
                b"metadata.=x",
            ][rng.random_range(0..6usize)];
            draft.note(format!("query {}", escape(junk, 40)));
            if !draft.query.is_empty() {
                draft.query.push(b'&');
            }
            draft.query.extend_from_slice(junk);
        }
        3 => {
            let junk: &[u8] =
                [&b"%ZZ"[..], b"%", b"%FF", b"%00", b"%C0%AF"][rng.random_range(0..5usize)];
            draft.note(format!("path ends with {}", escape(junk, 10)));
            draft.path.extend_from_slice(junk);
            if draft.route.starts_with("/v1.0/secrets/") {
                // The last segment is now a secret name the store does not hold.
                draft.allow = Allow::MissingSecret;
            }
        }
        4 => {
            draft.note("trailing slash");
            draft.path.push(b'/');
        }
        5 => {
            draft.note("double slashes");
            draft.path = draft
                .path
                .iter()
                .flat_map(|&byte| {
                    if byte == b'/' {
                        vec![b'/', b'/']
                    } else {
                        vec![byte]
                    }
                })
                .collect();
        }
        6 => {
            draft.note("header value not UTF-8");
            draft.header("x-fuzz", b"caf\xe9 \xff\xfe".to_vec());
        }
        7 => {
            // Under hyper's limit of 100 headers, which answers 431 (an HTTP-layer answer
            // the oracle does not judge).
            draft.note("80 headers");
            for at in 0..80 {
                draft.header(&format!("x-h{at}"), "v");
            }
        }
        8 => {
            draft.note("raw bytes in the request target");
            draft.path.extend_from_slice(b"\xff\xfe");
            draft.not_http = true;
        }
        9 => {
            draft.note("dapr-app-id on an API route");
            draft.header("dapr-app-id", world::APP_ID);
        }
        _ => {
            draft.note("content-type garbage");
            draft.headers.retain(|(name, _)| name != b"content-type");
            draft.header("content-type", b"\xff/\xfe; ===".to_vec());
        }
    }
}

// ---- the internal port -------------------------------------------------------------

/// A request straight to the internal port, as another sidecar would send it (or not).
pub(super) fn internal_case(rng: &mut StdRng) -> Case {
    let (method_path, what) = method_path(rng);
    let mut mutations = Vec::new();
    if let Some(what) = what {
        note(&mut mutations, what);
    }
    let mut headers = Vec::new();
    let mut allow = Allow::Nothing;
    match rng.random_range(0..4) {
        0 | 1 => headers.push((
            "dapr-callee-app-id".to_owned(),
            world::APP_ID.as_bytes().to_vec(),
        )),
        2 => {
            let callee = name(rng, &[]);
            note(&mut mutations, callee.describe("callee"));
            if callee.is_utf8() && !callee.bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
                allow = Allow::UnreachableTarget;
                headers.push(("dapr-callee-app-id".to_owned(), callee.bytes));
            }
        }
        _ => note(&mut mutations, "no callee".into()),
    }
    if rng.random_bool(0.3) {
        note(&mut mutations, "header value not UTF-8".into());
        headers.push(("x-custom".into(), b"caf\xe9 \xff".to_vec()));
    }
    let mut draft = Draft::new("", "POST", Vec::new());
    let body = any_body(rng, &mut draft);
    for what in draft.mutations {
        note(&mut mutations, what);
    }
    let method = any_method(rng);
    let mut path_and_query = String::from("/");
    path_and_query.push_str(&String::from_utf8_lossy(&method_path));
    if rng.random_bool(0.3) {
        let odd = nasty(rng);
        note(&mut mutations, odd.describe("query"));
        path_and_query.push_str("?q=");
        path_and_query.push_str(&String::from_utf8_lossy(&percent_encode(&odd.bytes, true)));
    }
    Case {
        index: 0,
        endpoint: "internal * /{method}".into(),
        mutation: if mutations.is_empty() {
            "valid".into()
        } else {
            mutations.join(", ")
        },
        request: Request::Internal(InternalRequest {
            method: method.into(),
            path_and_query,
            headers,
            body: Bytes::from(body),
        }),
        allow,
        not_http: false,
        reads_secrets: false,
    }
}

/// `PUT /v1.0-alpha1/crypto/{component}/encrypt|decrypt`: Dapr's headers present, absent
/// or odd, bodies of any bytes (for decryption also the scheme's first line and junk).
fn crypto(rng: &mut StdRng) -> Draft {
    let component = name(rng, &[world::CRYPTO]);
    let decrypt = rng.random_bool(0.4);
    let (endpoint, suffix): (&str, &[u8]) = if decrypt {
        ("/v1.0-alpha1/crypto/{component}/decrypt", b"/decrypt")
    } else {
        ("/v1.0-alpha1/crypto/{component}/encrypt", b"/encrypt")
    };
    let mut draft = Draft::new(
        endpoint,
        "PUT",
        path(&[b"/v1.0-alpha1/crypto/", &component.segment(), suffix]),
    );
    if !component.is_known() {
        draft.note(component.describe("crypto component"));
    }
    // daprd answers every failed operation alike (ERR_CRYPTO, 500).
    draft.allow = Allow::CryptoRefused;
    if rng.random_bool(0.85) {
        let key = name(rng, world::CRYPTO_KEYS);
        if !key.is_known() {
            draft.note(key.describe("dapr-key-name"));
        }
        draft.header("dapr-key-name", key.bytes);
    } else {
        draft.note("no dapr-key-name");
    }
    if !decrypt {
        if rng.random_bool(0.85) {
            let algorithm = name(rng, world::CRYPTO_ALGORITHMS);
            if !algorithm.is_known() {
                draft.note(algorithm.describe("dapr-key-wrap-algorithm"));
            }
            draft.header("dapr-key-wrap-algorithm", algorithm.bytes);
        } else {
            draft.note("no dapr-key-wrap-algorithm");
        }
        if rng.random_bool(0.3) {
            let cipher = name(rng, &["AES-GCM", "chacha20-poly1305"]);
            draft.header("dapr-data-encryption-cipher", cipher.bytes);
        }
        if rng.random_bool(0.2) {
            draft.header("dapr-omit-decryption-key-name", "true");
        }
        if rng.random_bool(0.2) {
            let name = name(rng, &["other-key"]);
            draft.header("dapr-decryption-key-name", name.bytes);
        }
    }
    draft.body = match rng.random_range(0..6) {
        0 => Vec::new(),
        1 => {
            draft.note("the scheme's first line, then junk");
            let mut body = b"dapr.io/enc/v1\n{\"kw\":1}\n".to_vec();
            body.extend((0..rng.random_range(0..100)).map(|_| rng.random::<u8>()));
            body
        }
        2 => {
            draft.note("a body of 200 KiB");
            vec![b'z'; 200 << 10]
        }
        _ => (0..rng.random_range(1..500))
            .map(|_| rng.random())
            .collect(),
    };
    draft
}
