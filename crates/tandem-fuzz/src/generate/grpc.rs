//! Cases for the gRPC API: each method's request message with good and nasty field
//! values, then possibly broken as bytes (not UTF-8, truncated, wrong wire types, random)
//! or as a gRPC frame, or sent with odd metadata.
//!
//! Whether the bytes still decode as the method's message is checked with the generated
//! types, not guessed: only a case whose message really does not decode may be answered
//! `INTERNAL` (as grpc-go answers it).

use bytes::Bytes;
use prost::Message as _;
use rand::RngExt;
use rand::rngs::StdRng;
use tandem_proto::runtime as pb;

use super::pick;
use crate::case::{Allow, Case, GrpcRequest, Request};
use crate::proto::{Message, frame, frame_with};
use crate::values::{self, Name, NameKind, OVER_LIMIT, UNDER_LIMIT, etag, name, nasty, number};
use crate::world::{self, World};

const SERVICE: &str = "/dapr.proto.runtime.v1.Dapr/";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    InvokeService,
    GetState,
    GetBulkState,
    SaveState,
    DeleteState,
    DeleteBulkState,
    ExecuteStateTransaction,
    PublishEvent,
    GetSecret,
    GetBulkSecret,
    GetMetadata,
    SetMetadata,
    InvokeBinding,
    TryLock,
    Unlock,
    ConverseAlpha1,
    ConverseAlpha2,
    SubtleGetKey,
    SubtleEncrypt,
    SubtleSign,
    /// A method the service does not have.
    Unknown(&'static str),
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::InvokeService => "InvokeService",
            Method::GetState => "GetState",
            Method::GetBulkState => "GetBulkState",
            Method::SaveState => "SaveState",
            Method::DeleteState => "DeleteState",
            Method::DeleteBulkState => "DeleteBulkState",
            Method::ExecuteStateTransaction => "ExecuteStateTransaction",
            Method::PublishEvent => "PublishEvent",
            Method::GetSecret => "GetSecret",
            Method::GetBulkSecret => "GetBulkSecret",
            Method::GetMetadata => "GetMetadata",
            Method::SetMetadata => "SetMetadata",
            Method::InvokeBinding => "InvokeBinding",
            Method::TryLock => "TryLockAlpha1",
            Method::Unlock => "UnlockAlpha1",
            Method::ConverseAlpha1 => "ConverseAlpha1",
            Method::ConverseAlpha2 => "ConverseAlpha2",
            Method::SubtleGetKey => "SubtleGetKeyAlpha1",
            Method::SubtleEncrypt => "SubtleEncryptAlpha1",
            Method::SubtleSign => "SubtleSignAlpha1",
            Method::Unknown(name) => name,
        }
    }

    /// Whether `bytes` decode as this method's request message.
    fn decodes(self, bytes: &[u8]) -> bool {
        match self {
            Method::InvokeService => pb::InvokeServiceRequest::decode(bytes).is_ok(),
            Method::GetState => pb::GetStateRequest::decode(bytes).is_ok(),
            Method::GetBulkState => pb::GetBulkStateRequest::decode(bytes).is_ok(),
            Method::SaveState => pb::SaveStateRequest::decode(bytes).is_ok(),
            Method::DeleteState => pb::DeleteStateRequest::decode(bytes).is_ok(),
            Method::DeleteBulkState => pb::DeleteBulkStateRequest::decode(bytes).is_ok(),
            Method::ExecuteStateTransaction => {
                pb::ExecuteStateTransactionRequest::decode(bytes).is_ok()
            }
            Method::PublishEvent => pb::PublishEventRequest::decode(bytes).is_ok(),
            Method::GetSecret => pb::GetSecretRequest::decode(bytes).is_ok(),
            Method::GetBulkSecret => pb::GetBulkSecretRequest::decode(bytes).is_ok(),
            Method::GetMetadata => pb::GetMetadataRequest::decode(bytes).is_ok(),
            Method::SetMetadata => pb::SetMetadataRequest::decode(bytes).is_ok(),
            Method::InvokeBinding => pb::InvokeBindingRequest::decode(bytes).is_ok(),
            Method::TryLock => pb::TryLockRequest::decode(bytes).is_ok(),
            Method::Unlock => pb::UnlockRequest::decode(bytes).is_ok(),
            Method::ConverseAlpha1 => pb::ConversationRequest::decode(bytes).is_ok(),
            Method::ConverseAlpha2 => pb::ConversationRequestAlpha2::decode(bytes).is_ok(),
            Method::SubtleGetKey => pb::SubtleGetKeyRequest::decode(bytes).is_ok(),
            Method::SubtleEncrypt => pb::SubtleEncryptRequest::decode(bytes).is_ok(),
            Method::SubtleSign => pb::SubtleSignRequest::decode(bytes).is_ok(),
            // Nobody decodes it: the answer is UNIMPLEMENTED whatever the bytes.
            Method::Unknown(_) => true,
        }
    }
}

/// A message being put together, with what was done to it.
struct Draft {
    message: Message,
    mutations: Vec<String>,
    allow: Allow,
    reads_secrets: bool,
}

impl Draft {
    fn note(&mut self, what: impl Into<String>) {
        super::http::note(&mut self.mutations, what.into());
    }

    /// Notes a name that is not one the sidecar has.
    fn name(&mut self, name: &Name, role: &str) {
        if !name.is_known() {
            self.note(name.describe(role));
        }
    }
}

pub(super) fn case(rng: &mut StdRng, world: &World) -> Case {
    use Method::*;
    let method = pick(
        rng,
        &[
            (14, InvokeService),
            (10, GetState),
            (7, GetBulkState),
            (12, SaveState),
            (7, DeleteState),
            (5, DeleteBulkState),
            (9, ExecuteStateTransaction),
            (12, PublishEvent),
            (8, GetSecret),
            (3, GetBulkSecret),
            (3, GetMetadata),
            (4, SetMetadata),
            (7, InvokeBinding),
            (4, TryLock),
            (3, Unlock),
            (3, ConverseAlpha1),
            (4, ConverseAlpha2),
            (2, SubtleGetKey),
            (3, SubtleEncrypt),
            (2, SubtleSign),
            (1, Unknown("ScheduleJobAlpha1")),
        ],
    );
    let mut draft = Draft {
        message: Message::new(),
        mutations: Vec::new(),
        allow: Allow::Nothing,
        reads_secrets: false,
    };
    match method {
        InvokeService => invoke_service(rng, world, &mut draft),
        GetState => get_state(rng, &mut draft),
        GetBulkState => get_bulk_state(rng, &mut draft),
        SaveState | DeleteBulkState => {
            let store = store(rng, &mut draft);
            let count = item_count(rng, &mut draft);
            let mut message = Message::new().bytes_if_any(1, &store.bytes);
            for _ in 0..count {
                message = message.message(2, state_item(rng, &mut draft));
            }
            draft.message = message;
        }
        DeleteState => delete_state(rng, &mut draft),
        ExecuteStateTransaction => transaction(rng, &mut draft),
        PublishEvent => publish(rng, &mut draft),
        GetSecret => get_secret(rng, &mut draft),
        GetBulkSecret => {
            draft.reads_secrets = true;
            let store = name(rng, &[world::FILE_SECRET_STORE, world::ENV_SECRET_STORE]);
            draft.name(&store, "store");
            draft.message = Message::new().bytes_if_any(1, &store.bytes);
        }
        GetMetadata => {}
        InvokeBinding => invoke_binding(rng, &mut draft),
        TryLock => lock(rng, &mut draft, true),
        Unlock => lock(rng, &mut draft, false),
        ConverseAlpha1 => converse(rng, &mut draft, false),
        ConverseAlpha2 => converse(rng, &mut draft, true),
        SubtleGetKey | SubtleEncrypt | SubtleSign => subtle(rng, &mut draft, method),
        SetMetadata => {
            let key = name(rng, &["fuzz-attribute"]);
            draft.name(&key, "attribute");
            let value = if rng.random_bool(0.2) {
                let odd = nasty(rng);
                draft.note(odd.describe("value"));
                odd.bytes
            } else {
                b"value".to_vec()
            };
            draft.message = Message::new()
                .bytes_if_any(1, &key.bytes)
                .bytes_if_any(2, value);
        }
        Unknown(_) => draft.note("no such method"),
    }
    let mut message = std::mem::take(&mut draft.message).into_bytes();
    message = break_message(rng, message, &mut draft);
    if !method.decodes(&message) {
        draft.allow = Allow::Undecodable;
    }
    let mut body = frame(&message);
    if rng.random_bool(0.03) {
        body = break_frame(rng, &message, &mut draft);
        draft.allow = Allow::Undecodable;
    }
    let mut request = GrpcRequest {
        path: format!("{SERVICE}{}", method.name()),
        content_type: "application/grpc".into(),
        metadata: Vec::new(),
        body: Bytes::from(body),
    };
    if rng.random_bool(0.08) {
        odd_metadata(rng, &mut request, &mut draft);
    }
    Case {
        index: 0,
        endpoint: format!("gRPC {}", method.name()),
        mutation: if draft.mutations.is_empty() {
            "valid".into()
        } else {
            draft.mutations.join(", ")
        },
        request: Request::Grpc(request),
        allow: draft.allow,
        not_http: false,
        reads_secrets: draft.reads_secrets,
    }
}

fn store(rng: &mut StdRng, draft: &mut Draft) -> Name {
    let store = name(rng, world::STATE_STORES);
    draft.name(&store, "store");
    store
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

/// A string-map entry with a number-ish value (`ttlInSeconds`, ...).
fn number_entry(rng: &mut StdRng, draft: &mut Draft, field: u32, role: &str) -> Message {
    let (text, label) = number(rng);
    draft.note(format!("{role} {label}"));
    Message::new().map_entry(field, role, text)
}

fn state_item(rng: &mut StdRng, draft: &mut Draft) -> Message {
    let key = name(rng, world::STATE_KEYS);
    draft.name(&key, "key");
    let mut item = Message::new().bytes_if_any(1, &key.bytes);
    if rng.random_bool(0.9) {
        let value: Vec<u8> = match rng.random_range(0..4) {
            0 => b"{\"a\":1}".to_vec(),
            1 => b"\xff\x00binary".to_vec(),
            2 => Vec::new(),
            _ => format!("{}", rng.random_range(0..1000)).into_bytes(),
        };
        item = item.bytes_if_any(2, value);
    }
    if rng.random_bool(0.3) {
        let (tag, label) = etag(rng);
        draft.note(format!("etag {label}"));
        item = item.message(3, Message::new().bytes_if_any(1, tag));
    }
    if rng.random_bool(0.5) {
        item = item.raw(&number_entry(rng, draft, 4, "ttlInSeconds").into_bytes());
    }
    if rng.random_bool(0.25) {
        let concurrency = enum_value(rng, draft, "concurrency");
        let consistency = enum_value(rng, draft, "consistency");
        item = item.message(
            5,
            Message::new().varint(1, concurrency).varint(2, consistency),
        );
    }
    item
}

/// An enum's number: its values, and ones it does not have.
fn enum_value(rng: &mut StdRng, draft: &mut Draft, role: &str) -> u64 {
    let value = [0u64, 1, 2, 3, 99, u64::MAX][rng.random_range(0..6usize)];
    if value > 2 {
        draft.note(format!("{role} enum {}", value as i64));
    }
    value
}

fn get_state(rng: &mut StdRng, draft: &mut Draft) {
    let store = store(rng, draft);
    let key = name(rng, world::STATE_KEYS);
    draft.name(&key, "key");
    let mut message = Message::new()
        .bytes_if_any(1, &store.bytes)
        .bytes_if_any(2, &key.bytes);
    if rng.random_bool(0.3) {
        message = message.varint(3, enum_value(rng, draft, "consistency"));
    }
    if rng.random_bool(0.1) {
        message = message.raw(&number_entry(rng, draft, 4, "ttlInSeconds").into_bytes());
    }
    draft.message = message;
}

fn get_bulk_state(rng: &mut StdRng, draft: &mut Draft) {
    let store = store(rng, draft);
    let count = item_count(rng, draft);
    let mut message = Message::new().bytes_if_any(1, &store.bytes);
    for _ in 0..count {
        message = message.bytes(2, name(rng, world::STATE_KEYS).bytes);
    }
    if rng.random_bool(0.6) {
        let parallelism: i64 =
            [0, 1, 10, -1, i64::from(i32::MAX), i64::from(i32::MIN)][rng.random_range(0..6usize)];
        draft.note(format!("parallelism {parallelism}"));
        message = message.varint(3, parallelism as u64);
    }
    draft.message = message;
}

fn delete_state(rng: &mut StdRng, draft: &mut Draft) {
    let store = store(rng, draft);
    let key = name(rng, world::STATE_KEYS);
    draft.name(&key, "key");
    let mut message = Message::new()
        .bytes_if_any(1, &store.bytes)
        .bytes_if_any(2, &key.bytes);
    if rng.random_bool(0.5) {
        let (tag, label) = etag(rng);
        draft.note(format!("etag {label}"));
        message = message.message(3, Message::new().bytes_if_any(1, tag));
    }
    if rng.random_bool(0.3) {
        let concurrency = enum_value(rng, draft, "concurrency");
        message = message.message(4, Message::new().varint(1, concurrency));
    }
    draft.message = message;
}

fn transaction(rng: &mut StdRng, draft: &mut Draft) {
    let store = store(rng, draft);
    let count = item_count(rng, draft).min(300);
    let mut message = Message::new().bytes_if_any(1, &store.bytes);
    for _ in 0..count {
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
        let mut entry = Message::new().bytes_if_any(1, operation);
        if rng.random_bool(0.95) {
            entry = entry.message(2, state_item(rng, draft));
        } else {
            draft.note("operation without a request");
        }
        message = message.message(2, entry);
    }
    draft.message = message;
}

fn publish(rng: &mut StdRng, draft: &mut Draft) {
    let pubsub = name(rng, &[world::PUBSUB]);
    let topic = name(rng, world::TOPICS);
    draft.name(&pubsub, "pubsub");
    draft.name(&topic, "topic");
    let data: Vec<u8> = match rng.random_range(0..5) {
        0 => b"{\"orderId\":1}".to_vec(),
        1 => b"\xff\xfe not UTF-8".to_vec(),
        2 => Vec::new(),
        3 => b"{\"specversion\":1,\"id\":[]}".to_vec(),
        _ => nasty(rng).bytes,
    };
    let content_type = [
        "application/json",
        "",
        "text/plain",
        "application/cloudevents+json",
        ";;",
    ][rng.random_range(0..5usize)];
    let mut message = Message::new()
        .bytes_if_any(1, &pubsub.bytes)
        .bytes_if_any(2, &topic.bytes)
        .bytes_if_any(3, data)
        .bytes_if_any(4, content_type);
    if rng.random_bool(0.3) {
        let raw = ["true", "false", "maybe"][rng.random_range(0..3usize)];
        draft.note(format!("rawPayload '{raw}'"));
        message = message.map_entry(5, "rawPayload", raw);
    }
    if rng.random_bool(0.3) {
        message = message.raw(&number_entry(rng, draft, 5, "ttlInSeconds").into_bytes());
    }
    draft.message = message;
}

/// `InvokeBinding`: name 1, data 2, metadata 3 (a map), operation 4.
fn invoke_binding(rng: &mut StdRng, draft: &mut Draft) {
    // daprd's one failure answer for an output binding is INTERNAL.
    draft.allow = Allow::BindingRefused;
    let binding = name(rng, world::BINDINGS);
    draft.name(&binding, "binding");
    let operation = name(rng, world::BINDING_OPERATIONS);
    draft.name(&operation, "operation");
    let data = if rng.random_bool(0.3) {
        let odd = nasty(rng);
        draft.note(odd.describe("data"));
        odd.bytes
    } else {
        br#"{"orderId":42}"#.to_vec()
    };
    let file = match rng.random_range(0..10) {
        0..7 => name(rng, world::BINDING_FILES).bytes,
        7 => b"../../../../etc/passwd".to_vec(),
        _ => nasty(rng).bytes,
    };
    draft.message = Message::new()
        .bytes_if_any(1, &binding.bytes)
        .bytes_if_any(2, &data)
        .map_entry(3, "fileName", &file)
        .bytes_if_any(4, &operation.bytes);
}

/// `TryLockAlpha1` (store 1, resource 2, owner 3, expiry 4, an int32) and
/// `UnlockAlpha1` (the first three).
fn lock(rng: &mut StdRng, draft: &mut Draft, take: bool) {
    let store = name(rng, &[world::LOCK_STORE]);
    draft.name(&store, "lock store");
    let resource = match rng.random_range(0..10) {
        0 => {
            draft.note("`||` in the resource id");
            draft.allow = Allow::LockNameRefused;
            b"a||b".to_vec()
        }
        1 => {
            let odd = nasty(rng);
            draft.note(odd.describe("resource id"));
            odd.bytes
        }
        _ => {
            let resource = name(rng, world::LOCK_RESOURCES);
            draft.name(&resource, "resource id");
            resource.bytes
        }
    };
    // Lock names reserve `||`, whichever way it got into the id.
    if resource.windows(2).any(|pair| pair == b"||") {
        draft.allow = Allow::LockNameRefused;
    }
    let owner = name(rng, world::LOCK_OWNERS);
    draft.name(&owner, "owner");
    let mut message = Message::new()
        .bytes_if_any(1, &store.bytes)
        .bytes_if_any(2, &resource)
        .bytes_if_any(3, &owner.bytes);
    if take {
        // An int32 on the wire: negatives are 10-byte varints; some are out of range.
        let expiry: i64 = match rng.random_range(0..10) {
            0 => -1,
            1 => 0,
            2 => i64::from(i32::MAX),
            3 => i64::MAX,
            _ => rng.random_range(1..120),
        };
        if !(1..=i64::from(i32::MAX)).contains(&expiry) {
            draft.note(format!("expiry {expiry}"));
        }
        message = message.varint(4, expiry as u64);
    }
    draft.message = message;
}

/// `ConverseAlpha1` (name 1, inputs 3: content 1, role 2, scrubPII 3; scrubPII 6) and
/// `ConverseAlpha2` (name 1, inputs 3: messages 1 — of_system 2, of_user 3,
/// of_assistant 4 with tool_calls 3, of_tool 5, or none — and scrub_pii 2; tools 8;
/// tool_choice 9) on the echo component.
fn converse(rng: &mut StdRng, draft: &mut Draft, alpha2: bool) {
    let component = name(rng, &[world::CONVERSATION]);
    draft.name(&component, "component");
    let mut message = Message::new().bytes_if_any(1, &component.bytes);
    let inputs = if rng.random_bool(0.1) {
        draft.note("no inputs");
        0
    } else {
        rng.random_range(1..4)
    };
    for _ in 0..inputs {
        let text = if rng.random_bool(0.15) {
            let odd = nasty(rng);
            draft.note(odd.describe("text"));
            odd.bytes
        } else {
            b"What's Dapr? mail ada@example.com".to_vec()
        };
        let scrub = u64::from(rng.random_bool(0.3));
        let input = if alpha2 {
            let content = Message::new().bytes(1, &text);
            let kind = match rng.random_range(0..8) {
                0 => {
                    draft.note("a message of no type");
                    Message::new()
                }
                1 => Message::new().message(2, Message::new().message(2, content)),
                2 => {
                    let call = if rng.random_bool(0.3) {
                        draft.note("a tool call of no type");
                        Message::new().bytes(1, "call_1")
                    } else {
                        Message::new().bytes(1, "call_1").message(
                            2,
                            Message::new()
                                .bytes(1, "get_weather")
                                .bytes(2, r#"{"location":"Paris"}"#),
                        )
                    };
                    Message::new().message(4, Message::new().message(2, content).message(3, call))
                }
                3 => Message::new().message(
                    5,
                    Message::new()
                        .bytes(1, "call_1")
                        .bytes(2, "get_weather")
                        .message(3, content),
                ),
                _ => Message::new().message(3, Message::new().message(2, content)),
            };
            Message::new().message(1, kind).varint(2, scrub)
        } else {
            Message::new()
                .bytes_if_any(1, &text)
                .bytes(
                    2,
                    ["user", "system", "assistant", "nobody"][rng.random_range(0..4usize)],
                )
                .varint(3, scrub)
        };
        message = message.message(3, input);
    }
    message = message.varint(6, u64::from(rng.random_bool(0.3)));
    if alpha2 {
        if rng.random_bool(0.4) {
            // `parameters`: a Struct whose `properties` (field 1, map entries) is an
            // object, or — sometimes — a string, which the echo component refuses.
            draft.allow = Allow::ConversationRefused;
            let property = if rng.random_bool(0.2) {
                draft.note("tool properties not an object");
                Message::new().bytes(3, "location")
            } else {
                Message::new().message(5, Message::new())
            };
            let schema = Message::new().message(
                1,
                Message::new().bytes(1, "properties").message(2, property),
            );
            let function = Message::new().bytes(1, "get_weather").message(3, schema);
            message = message.message(8, Message::new().message(1, function));
        }
        if rng.random_bool(0.3) {
            let choice =
                ["auto", "none", "required", "get_weather", "other"][rng.random_range(0..5usize)];
            draft.note(format!("tool choice {choice}"));
            message = message.bytes(9, choice);
        }
    }
    draft.message = message;
}

fn get_secret(rng: &mut StdRng, draft: &mut Draft) {
    draft.reads_secrets = true;
    let store = name(rng, &[world::FILE_SECRET_STORE, world::ENV_SECRET_STORE]);
    draft.name(&store, "store");
    let held = match store.bytes.as_slice() {
        b"vault" if store.is_known() => world::FILE_SECRETS,
        b"envsecrets" if store.is_known() => world::ENV_SECRETS,
        _ => &[],
    };
    let key = name(rng, held);
    if !key.is_known() {
        draft.note(key.describe("secret"));
        if store.is_known() {
            draft.allow = Allow::MissingSecret;
        }
    }
    draft.message = Message::new()
        .bytes_if_any(1, &store.bytes)
        .bytes_if_any(2, &key.bytes);
}

fn invoke_service(rng: &mut StdRng, world: &World, draft: &mut Draft) {
    let (id, allow): (Vec<u8>, Allow) = match rng.random_range(0..100) {
        0..35 => (world::APP_ID.into(), Allow::Nothing),
        35..50 => (world::PEER_APP_ID.into(), Allow::Nothing),
        50..60 => (world::ENDPOINT_UP.into(), Allow::Nothing),
        60..65 => {
            draft.note("HTTPEndpoint refusing connections");
            (world::ENDPOINT_DOWN.into(), Allow::UnreachableTarget)
        }
        65..70 => {
            draft.note("URL");
            (
                format!("http://127.0.0.1:{}", world.echo_port).into_bytes(),
                Allow::Nothing,
            )
        }
        70..73 => {
            draft.note("URL refusing connections");
            (
                format!("http://127.0.0.1:{}", world.closed_port).into_bytes(),
                Allow::UnreachableTarget,
            )
        }
        _ => {
            let id = name(rng, &[]);
            draft.note(id.describe("app id"));
            let allow = if id.kind == NameKind::Empty {
                Allow::Nothing
            } else {
                Allow::UnreachableTarget
            };
            (id.bytes, allow)
        }
    };
    draft.allow = allow;
    let method: Vec<u8> = match rng.random_range(0..100) {
        0..45 => b"echo".to_vec(),
        45..60 => {
            let status = [400, 404, 500, 503][rng.random_range(0..4usize)];
            draft.note(format!("app answers {status}"));
            format!("status/{status}").into_bytes()
        }
        60..66 => {
            draft.note("empty method");
            Vec::new()
        }
        _ => {
            let odd = nasty(rng);
            draft.note(odd.describe("method"));
            odd.bytes
        }
    };
    let verb = [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99][rng.random_range(0..11usize)];
    if verb == 6 || verb == 99 {
        draft.note(format!("verb {verb}"));
    }
    let mut extension = Message::new().varint(1, verb);
    if rng.random_bool(0.3) {
        let odd = nasty(rng);
        draft.note(odd.describe("querystring"));
        extension = extension.bytes(2, odd.bytes);
    }
    let data: Vec<u8> = match rng.random_range(0..20) {
        0..3 => Vec::new(),
        3..6 => b"\xff\xfe".to_vec(),
        6 => {
            draft.note("data just under 4 MiB");
            vec![b'd'; UNDER_LIMIT]
        }
        _ => b"{\"orderId\":1}".to_vec(),
    };
    let content_type = [
        "application/json",
        "",
        "text/plain; charset=\u{1F600}",
        "a\r\nb",
    ][rng.random_range(0..4usize)];
    let request = Message::new()
        .bytes_if_any(1, method)
        .message(
            2,
            Message::new()
                .bytes_if_any(1, "type.googleapis.com/google.protobuf.BytesValue")
                .bytes_if_any(2, data),
        )
        .bytes_if_any(3, content_type)
        .message(4, extension);
    draft.message = Message::new().bytes_if_any(1, id).message(3, request);
}

/// The message as bytes, possibly broken in one way.
fn break_message(rng: &mut StdRng, message: Vec<u8>, draft: &mut Draft) -> Vec<u8> {
    match rng.random_range(0..100) {
        0..5 => {
            draft.note("a string field not UTF-8");
            Message::new()
                .raw(&message)
                .bytes(1, b"\xff\xfe\xfd")
                .into_bytes()
        }
        5..10 => {
            draft.note("truncated message");
            let cut = rng.random_range(0..message.len().max(1));
            message[..cut].to_vec()
        }
        10..14 => {
            draft.note("random bytes");
            let len = rng.random_range(1..300);
            values::random_bytes(rng, len)
        }
        14..16 => {
            draft.note("field 1 with the wrong wire type");
            Message::new().raw(&message).varint(1, 5).into_bytes()
        }
        16..18 => {
            draft.note("garbage after the message");
            let len = rng.random_range(1..40);
            let garbage = values::random_bytes(rng, len);
            Message::new().raw(&message).raw(&garbage).into_bytes()
        }
        18..20 => {
            draft.note("message over the 4 MiB limit (5 MiB)");
            Message::new()
                .raw(&message)
                .bytes(99, vec![b'x'; OVER_LIMIT / 2])
                .into_bytes()
        }
        20..22 => {
            draft.note("message just under the 4 MiB limit");
            Message::new()
                .raw(&message)
                .bytes(99, vec![b'x'; UNDER_LIMIT])
                .into_bytes()
        }
        22..25 => {
            draft.note("a length past the end");
            Message::new()
                .raw(&message)
                .raw(b"\x0a\xff\x01ab")
                .into_bytes()
        }
        _ => message,
    }
}

/// A gRPC frame that lies: about compression, about its length, or that is missing.
fn break_frame(rng: &mut StdRng, message: &[u8], draft: &mut Draft) -> Vec<u8> {
    let length = message.len() as u32;
    match rng.random_range(0..6) {
        0 => {
            draft.note("frame says compressed, no grpc-encoding");
            frame_with(1, length, message)
        }
        1 => {
            draft.note("frame flag 7");
            frame_with(7, length, message)
        }
        2 => {
            draft.note("frame longer than its body");
            frame_with(0, length.saturating_add(100), message)
        }
        3 => {
            draft.note("frame length u32::MAX");
            frame_with(0, u32::MAX, message)
        }
        4 => {
            draft.note("no frame at all");
            Vec::new()
        }
        _ => {
            draft.note("three bytes of a frame header");
            vec![0, 0, 0]
        }
    }
}

fn odd_metadata(rng: &mut StdRng, request: &mut GrpcRequest, draft: &mut Draft) {
    let (label, name, value): (&str, &str, Vec<u8>) = match rng.random_range(0..9) {
        0 => ("grpc-timeout garbage", "grpc-timeout", b"1x".to_vec()),
        1 => ("grpc-timeout huge", "grpc-timeout", b"99999999H".to_vec()),
        2 => ("grpc-timeout 1ns", "grpc-timeout", b"1n".to_vec()),
        3 => ("grpc-encoding gzip", "grpc-encoding", b"gzip".to_vec()),
        4 => ("traceparent garbage", "traceparent", b"00-zz".to_vec()),
        5 => ("binary metadata not base64", "x-data-bin", b"!!!".to_vec()),
        6 => ("metadata value not UTF-8", "x-custom", b"caf\xe9".to_vec()),
        7 => {
            request.content_type = "application/grpc+json".into();
            (
                "content-type application/grpc+json",
                "x-note",
                b"1".to_vec(),
            )
        }
        _ => {
            request.content_type = "application/json".into();
            ("content-type application/json", "x-note", b"1".to_vec())
        }
    };
    draft.note(label);
    request.metadata.push((name.to_owned(), value));
}

/// The subtle crypto calls: `SubtleGetKeyAlpha1` (component 1, name 2, format 3),
/// `SubtleEncryptAlpha1` (component 1, plaintext 2, algorithm 3, key 4, nonce 5, associated
/// data 6) and `SubtleSignAlpha1` (component 1, digest 2, algorithm 3, key 4), with names,
/// algorithms, nonces and formats of every kind.
fn subtle(rng: &mut StdRng, draft: &mut Draft, method: Method) {
    // daprd answers every failed operation alike (ERR_CRYPTO / ERR_CRYPTO_KEY, INTERNAL).
    draft.allow = Allow::CryptoRefused;
    let component = name(rng, &[world::CRYPTO]);
    draft.name(&component, "crypto component");
    let key = name(rng, world::CRYPTO_KEYS);
    draft.name(&key, "key");
    let algorithm = name(rng, world::CRYPTO_ALGORITHMS);
    draft.name(&algorithm, "algorithm");
    let data: Vec<u8> = match rng.random_range(0..4) {
        0 => Vec::new(),
        1 => nasty(rng).bytes,
        _ => (0..rng.random_range(1..200))
            .map(|_| rng.random())
            .collect(),
    };
    let mut message = Message::new().bytes_if_any(1, &component.bytes);
    match method {
        Method::SubtleGetKey => {
            message = message.bytes_if_any(2, &key.bytes);
            let format: u64 = match rng.random_range(0..6) {
                0 => 7,
                1 => u64::MAX,
                n => n % 2,
            };
            if format > 1 {
                draft.note(format!("key format {format}"));
            }
            message = message.varint(3, format);
        }
        Method::SubtleEncrypt => {
            let nonce_len = *[0usize, 12, 12, 16, 24, 7]
                .get(rng.random_range(0..6))
                .unwrap_or(&12);
            let nonce: Vec<u8> = (0..nonce_len).map(|_| rng.random()).collect();
            message = message
                .bytes_if_any(2, &data)
                .bytes_if_any(3, &algorithm.bytes)
                .bytes_if_any(4, &key.bytes)
                .bytes_if_any(5, &nonce)
                .bytes_if_any(
                    6,
                    if rng.random_bool(0.3) {
                        &b"aad"[..]
                    } else {
                        &[]
                    },
                );
        }
        _ => {
            message = message
                .bytes_if_any(2, &data)
                .bytes_if_any(3, &algorithm.bytes)
                .bytes_if_any(4, &key.bytes);
        }
    }
    draft.message = message;
}
