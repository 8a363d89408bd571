//! Sidecars prove themselves to each other on the internal port.
//!
//! The internal port is where another sidecar delivers a call for this app, and the
//! receiving sidecar forwards it with the app's real `APP_API_TOKEN` and tells the app
//! who called (`dapr-caller-app-id`). So it must only take calls from sidecars of the
//! same deployment, and the caller's app id must be proven, not claimed. Dapr does this
//! with mTLS certificates from its Sentry service; tandem, which needs no such service,
//! uses a shared secret key:
//!
//! - every sidecar of one deployment holds the same key: on one machine it is created
//!   once in `~/.tandem/internal.key` (mode 0600, so only the user who runs the apps can
//!   read it) and shared by every sidecar started there; across machines (Kubernetes, DNS
//!   name resolution) `TANDEM_INTERNAL_KEY` gives it, e.g. from a Secret;
//! - each call carries `tandem-peer-auth: v1 <unix-ms> <hmac>`, an HMAC-SHA256 under the
//!   key of the time, the caller's and the callee's app ids, the method and the path
//!   with its query. The key itself never travels, so a captured header is worth one
//!   call to one path for a few minutes at most, and cannot be turned into another call
//!   or another caller;
//! - the receiver recomputes the HMAC (in constant time), refuses a time more than
//!   [`MAX_SKEW`] away from its own clock, and then trusts `dapr-caller-app-id`.
//!
//! See `docs/security.md` for the threat model.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::{CALLEE_HEADER, CALLER_HEADER};

/// The header a calling sidecar proves itself with.
pub const PEER_AUTH_HEADER: &str = "tandem-peer-auth";
/// Set on a refusal by the internal port, so the calling sidecar can tell it from an
/// app that answered 401 itself.
pub const PEER_REFUSED_HEADER: &str = "tandem-peer-refused";

/// How far a caller's clock may be from the receiver's.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The shortest secret accepted: anything shorter could be guessed.
const MIN_SECRET_LEN: usize = 16;

/// Why a peer key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum PeerKeyError {
    #[error("the internal key must be at least {MIN_SECRET_LEN} characters long")]
    TooShort,
    #[error("cannot read the internal key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the internal key {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no random bytes for a new internal key")]
    Random,
}

/// Why a call's proof was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerAuthError {
    #[error("no tandem-peer-auth header")]
    Missing,
    #[error("a malformed tandem-peer-auth header")]
    Malformed,
    #[error(
        "the call was signed {}s away from this sidecar's clock (at most {}s allowed)",
        .0.as_secs(),
        MAX_SKEW.as_secs()
    )]
    Skewed(Duration),
    #[error(
        "the signature does not match: the calling sidecar holds another internal key \
         (sidecars on several machines need the same TANDEM_INTERNAL_KEY)"
    )]
    Mismatch,
}

/// The secret key sidecars sign their calls to each other with.
///
/// The HMAC key is made from the secret on first use: a sidecar that never calls
/// another, nor is called, never runs the crypto code, and its pages stay out of the
/// sidecar's memory.
pub struct PeerKey {
    secret: Secret,
    key: OnceLock<hmac::Key>,
}

/// Where the key comes from.
enum Secret {
    /// A shared secret (`TANDEM_INTERNAL_KEY`, the machine's key file).
    Shared(Box<str>),
    /// Random, known to this sidecar alone.
    Random,
}

/// What a signature covers besides the time.
pub(crate) struct Claim<'a> {
    pub caller: &'a str,
    pub callee: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
}

impl PeerKey {
    /// A key from a secret string (`TANDEM_INTERNAL_KEY`, or the key file's text).
    pub fn from_secret(secret: &str) -> Result<Self, PeerKeyError> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(PeerKeyError::TooShort);
        }
        Ok(Self {
            secret: Secret::Shared(secret.into()),
            key: OnceLock::new(),
        })
    }

    /// A fresh random key: a sidecar alone, or tests.
    pub fn generate() -> Self {
        Self {
            secret: Secret::Random,
            key: OnceLock::new(),
        }
    }

    fn key(&self) -> &hmac::Key {
        self.key.get_or_init(|| match &self.secret {
            Secret::Shared(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            Secret::Random => {
                let secret = random_secret().unwrap_or_else(|_| {
                    // The system has no randomness: a key nobody else knows is still
                    // a key nobody else can use, which is all a lone sidecar needs.
                    format!("{:?}{}", std::time::Instant::now(), std::process::id())
                });
                hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
            }
        })
    }

    /// The machine's key in `path`, created (readable by this user only) if there is
    /// none yet. Several sidecars starting at once agree on one key: the file appears
    /// whole (written aside, then hard-linked into place), and whoever links second
    /// reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<Self, PeerKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_readable_by_others(path);
                return Self::from_secret(&text);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PeerKeyError::Read {
                    path: shown,
                    source,
                });
            }
        }
        let create = |source| PeerKeyError::Create {
            path: shown.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(create)?;
        }
        let secret = random_secret()?;
        // Unique per attempt: the process id alone is shared by threads.
        let aside =
            path.with_extension(format!("key.{}.{}.tmp", std::process::id(), &secret[..12]));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut file| {
                file.write_all(secret.as_bytes())?;
                file.write_all(b"\n")?;
                file.sync_all()
            });
        if let Err(source) = written {
            let _ = std::fs::remove_file(&aside);
            return Err(create(source));
        }
        let linked = std::fs::hard_link(&aside, path);
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => Self::from_secret(&secret),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|source| PeerKeyError::Read {
                    path: shown,
                    source,
                })?;
                Self::from_secret(&text)
            }
            Err(source) => Err(create(source)),
        }
    }

    /// The header value proving a call `claim` made now.
    pub(crate) fn sign(&self, claim: &Claim<'_>) -> HeaderValue {
        let at = now_ms();
        let tag = hmac::sign(self.key(), &message(at, claim));
        let value = format!("v1 {at} {}", hex(tag.as_ref()));
        let mut value =
            HeaderValue::from_str(&value).expect("digits and hex are a valid header value");
        // A credential: HTTP/2 must not keep it in its header tables.
        value.set_sensitive(true);
        value
    }

    /// Names the caller and callee of a call to another sidecar in `headers` and adds
    /// the proof over them, `method` and `path_and_query`: what
    /// [`verify_headers`](Self::verify_headers) checks there. Err: the app id that
    /// cannot be a header value.
    pub(crate) fn sign_headers<'a>(
        &self,
        headers: &mut HeaderMap,
        caller: &'a str,
        callee: &'a str,
        method: &str,
        path_and_query: &str,
    ) -> Result<(), &'a str> {
        for (name, value) in [(CALLER_HEADER, caller), (CALLEE_HEADER, callee)] {
            headers.insert(name, HeaderValue::from_str(value).map_err(|_| value)?);
        }
        let claim = Claim {
            caller,
            callee,
            method,
            path_and_query,
        };
        headers.insert(PEER_AUTH_HEADER, self.sign(&claim));
        Ok(())
    }

    /// Checks the proof on a call another sidecar sent, over the caller and callee its
    /// headers name, `method` and `path_and_query`; returns the callee.
    pub(crate) fn verify_headers<'h>(
        &self,
        headers: &'h HeaderMap,
        method: &str,
        path_and_query: &str,
    ) -> Result<&'h str, PeerAuthError> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
        };
        let (caller, callee) = (text(CALLER_HEADER), text(CALLEE_HEADER));
        let claim = Claim {
            caller,
            callee,
            method,
            path_and_query,
        };
        self.verify(headers.get(PEER_AUTH_HEADER), &claim)?;
        Ok(callee)
    }

    /// Checks the proof a call came with.
    pub(crate) fn verify(
        &self,
        header: Option<&HeaderValue>,
        claim: &Claim<'_>,
    ) -> Result<(), PeerAuthError> {
        let header = header
            .ok_or(PeerAuthError::Missing)?
            .to_str()
            .map_err(|_| PeerAuthError::Malformed)?;
        let mut parts = header.split(' ');
        let (Some("v1"), Some(at), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PeerAuthError::Malformed);
        };
        let at: u64 = at.parse().map_err(|_| PeerAuthError::Malformed)?;
        let skew = Duration::from_millis(now_ms().abs_diff(at));
        if skew > MAX_SKEW {
            return Err(PeerAuthError::Skewed(skew));
        }
        let tag = unhex(tag).ok_or(PeerAuthError::Malformed)?;
        hmac::verify(self.key(), &message(at, claim), &tag).map_err(|_| PeerAuthError::Mismatch)
    }
}

fn message(at: u64, claim: &Claim<'_>) -> Vec<u8> {
    // Newlines cannot occur in app ids, methods or request targets, so the fields
    // cannot be shifted into one another.
    format!(
        "v1\n{at}\n{}\n{}\n{}\n{}",
        claim.caller, claim.callee, claim.method, claim.path_and_query
    )
    .into_bytes()
}

fn random_secret() -> Result<String, PeerKeyError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PeerKeyError::Random)?;
    Ok(hex(&bytes))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} can be read by other users: they could call your apps through their sidecars (chmod 600 it)",
            path.display()
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let digit = |byte: u8| {
        char::from(byte)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    bytes
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(caller: &'a str, path: &'a str) -> Claim<'a> {
        Claim {
            caller,
            callee: "orders",
            method: "POST",
            path_and_query: path,
        }
    }

    #[test]
    fn a_signature_proves_exactly_what_it_covers() {
        let key = PeerKey::from_secret("0123456789abcdef-shared").unwrap();
        let header = key.sign(&claim("checkout", "neworder?x=1"));
        assert!(
            key.verify(Some(&header), &claim("checkout", "neworder?x=1"))
                .is_ok()
        );
        // Another caller, another path, another key: refused.
        assert!(
            key.verify(Some(&header), &claim("mallory", "neworder?x=1"))
                .is_err()
        );
        assert!(
            key.verify(Some(&header), &claim("checkout", "refund"))
                .is_err()
        );
        let other = PeerKey::from_secret("another-secret-of-16").unwrap();
        assert!(
            other
                .verify(Some(&header), &claim("checkout", "neworder?x=1"))
                .is_err()
        );
        assert!(
            key.verify(None, &claim("checkout", "neworder?x=1"))
                .is_err()
        );
    }

    #[test]
    fn old_and_malformed_proofs_are_refused() {
        let key = PeerKey::from_secret("0123456789abcdef-shared").unwrap();
        let at = now_ms() - MAX_SKEW.as_millis() as u64 - 1000;
        let tag = hmac::sign(key.key(), &message(at, &claim("a", "m")));
        let stale = HeaderValue::from_str(&format!("v1 {at} {}", hex(tag.as_ref()))).unwrap();
        assert!(matches!(
            key.verify(Some(&stale), &claim("a", "m")),
            Err(PeerAuthError::Skewed(_))
        ));
        for bad in [
            "",
            "v1",
            "v2 1 00",
            "v1 x 00",
            "v1 1 zz",
            "v1 1 0",
            "v1 1 00 extra",
        ] {
            let header = HeaderValue::from_str(bad).unwrap();
            assert!(
                key.verify(Some(&header), &claim("a", "m")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            PeerKey::from_secret("short"),
            Err(PeerKeyError::TooShort)
        ));
    }

    #[test]
    fn sidecars_starting_at_once_share_one_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("internal.key");
        let keys: Vec<PeerKey> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| PeerKey::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let header = keys[0].sign(&claim("a", "m"));
        for key in &keys {
            assert!(key.verify(Some(&header), &claim("a", "m")).is_ok());
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing left aside.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
