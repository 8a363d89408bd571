//! What the sidecar under test is configured with, as both the resources folder and the
//! case generator need to know it: names of components, apps and secrets.

/// The app the sidecar under test serves (the in-process echo app).
pub const APP_ID: &str = "fuzz-app";
/// A second sidecar, for the same echo app: invocations of it travel sidecar to sidecar.
pub const PEER_APP_ID: &str = "fuzz-peer";

pub const STATE_STORES: &[&str] = &["statestore", "sqlstate"];
pub const PUBSUB: &str = "pubsub";
/// `orders` has a subscriber (the echo app), `audit` has none.
pub const TOPICS: &[&str] = &["orders", "audit"];
/// Keys cases read and write, so reads find values and ETags sometimes match.
pub const STATE_KEYS: &[&str] = &["k1", "k2", "k3", "order-42", "fuzz"];

/// `bindings.localstorage` over a scratch folder (an output binding with every
/// operation), and `bindings.cron` (input only: not an output binding).
pub const BINDINGS: &[&str] = &["files", "tick"];
/// Operations cases ask for: the localstorage ones, and some no binding has.
pub const BINDING_OPERATIONS: &[&str] = &["create", "get", "list", "delete", "query", "exec"];
/// File names cases use, so `get` and `delete` sometimes find what `create` made.
pub const BINDING_FILES: &[&str] = &["order-42.json", "notes/a.txt", "k1"];

/// `lock.sqlite` in the world's database file.
pub const LOCK_STORE: &str = "locks";
/// Lock names cases use, so unlocks sometimes find what a lock took.
pub const LOCK_RESOURCES: &[&str] = &["order-42", "report", "k1"];
/// Lock owners cases use.
pub const LOCK_OWNERS: &[&str] = &["owner-a", "owner-b"];

/// `conversation.echo`: answers with what it was told.
pub const CONVERSATION: &str = "llm";

/// `crypto.dapr.localstorage` over the world's `keys` folder.
pub const CRYPTO: &str = "keys";
/// The key files in it: a 256-bit AES key (its raw bytes).
pub const CRYPTO_KEYS: &[&str] = &["aes-256"];
/// The AES key's bytes.
pub const CRYPTO_AES_KEY: [u8; 32] = [7; 32];
/// Algorithm names cases use: stream key wraps, subtle algorithms, and some nobody has.
pub const CRYPTO_ALGORITHMS: &[&str] = &[
    "A256KW",
    "aes",
    "RSA",
    "A128CBC-NOPAD",
    "A256GCM",
    "C20P",
    "XC20P",
    "A256CBC",
    "A256CBC-HS512",
    "RSA-OAEP-256",
    "ES256",
    "EdDSA",
    "ROT13",
];

/// `secretstores.local.file` over [`SECRETS_FILE`].
pub const FILE_SECRET_STORE: &str = "vault";
/// `secretstores.local.env` with prefix [`ENV_PREFIX`].
pub const ENV_SECRET_STORE: &str = "envsecrets";
pub const ENV_PREFIX: &str = "FUZZSECRET_";

/// The secrets file: `db:password` (nested, flattened) and `plain`.
pub const SECRETS_FILE: &str =
    r#"{"db": {"password": "S3cr3t-fuzz-db-9f2c71"}, "plain": "plain-secret-77aa01"}"#;
/// The secret names each store holds.
pub const FILE_SECRETS: &[&str] = &["db:password", "plain"];
pub const ENV_SECRETS: &[&str] = &["TOKEN"];
/// `FUZZSECRET_TOKEN` in the sidecars' environment.
pub const ENV_SECRET_VALUE: &str = "env-secret-3c5e9d";

/// Every secret value: none may appear anywhere but the secrets API's own answers.
pub const SECRET_VALUES: &[&str] = &[
    "S3cr3t-fuzz-db-9f2c71",
    "plain-secret-77aa01",
    ENV_SECRET_VALUE,
];

/// An `HTTPEndpoint` to the echo app, with a header whose value is a secret.
pub const ENDPOINT_UP: &str = "appendpoint";
/// An `HTTPEndpoint` to a port nothing listens on.
pub const ENDPOINT_DOWN: &str = "closed";

/// What the echo app marks its answers with (a header on HTTP, the body's start for
/// statuses it was asked to answer), so the oracle can tell them from the sidecar's.
pub const ECHO_HEADER: &str = "x-fuzz-app";
pub const ECHO_MARK: &str = "fuzz-echo";

/// The ports of one run.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// The echo app's port.
    pub echo_port: u16,
    /// A port nothing listens on.
    pub closed_port: u16,
}
