//! Dapr's chunked encryption scheme `dapr.io/enc/v1` (`dapr/kit`'s `schemes/enc/v1`),
//! byte for byte, so a message encrypted by daprd decrypts here and the other way round.
//!
//! A message is a header and segments:
//!
//! ```text
//! dapr.io/enc/v1\n
//! {"k":"key name","kw":1,"wfk":"<wrapped file key, base64>","cph":1,"np":"<nonce prefix, base64>"}\n
//! <HMAC-SHA-256 of the two lines above, base64>\n
//! segment_0 || segment_1 || ...
//! ```
//!
//! A random 32-byte file key is wrapped by the caller's key (the component does that:
//! see [`Encryptor::new`]'s `wrapped`). The header MAC key is
//! HKDF-SHA-256(file key, no salt, "header"); the payload key is
//! HKDF-SHA-256(file key, salt = nonce prefix, "payload"). The plaintext is cut into
//! 64 KiB segments, each sealed on its own (AES-256-GCM or ChaCha20-Poly1305, 16-byte
//! tag) with the nonce `prefix(7) || segment number (u32 BE) || last (0/1)`, so a
//! truncated or reordered message never decrypts. An empty message is the header alone.
//!
//! Both directions are incremental: data goes in as it arrives and whole segments come
//! out; a full segment is only sealed once more data shows it is not the last.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use sha2::Sha256;

/// The scheme's name, the header's first line.
pub const SCHEME_NAME: &str = "dapr.io/enc/v1";
/// Plaintext bytes in a segment (all but the last).
pub const SEGMENT_SIZE: usize = 64 << 10;
/// What sealing adds to a segment: the AEAD tag.
pub const SEGMENT_OVERHEAD: usize = 16;
const NONCE_PREFIX_LEN: usize = 7;
/// The header must fit in one segment's worth of bytes, as in Dapr.
const MAX_HEADER: usize = SEGMENT_SIZE;

/// Why a message could not be encrypted or decrypted, in Dapr's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("option Algorithm is not valid: algorithm {0} is not supported")]
    Algorithm(String),
    #[error("option Cipher is not valid: cipher {0} is not supported")]
    Cipher(String),
    #[error("invalid header: {0}")]
    Header(&'static str),
    #[error("document's manifest does not contain a key name, and no key name was provided")]
    KeyMissing,
    #[error("failed to validate the document's signature")]
    Signature,
    #[error("error processing segment {0}: failed to decrypt segment")]
    Segment(u32),
    #[error("unexpected EOF")]
    UnexpectedEof,
    #[error("input stream is too large")]
    TooLarge,
    #[error("header is too long")]
    HeaderTooLong,
}

/// How the file key is wrapped, with Dapr's names and manifest numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrap {
    A256Kw,
    A128Cbc,
    A192Cbc,
    A256Cbc,
    RsaOaep256,
}

impl KeyWrap {
    /// Reads a caller's name (any case, as daprd upper-cases it): `AES` stands for
    /// `A256KW`, `RSA` for `RSA-OAEP-256`.
    pub fn parse(name: &str) -> Result<Self, SchemeError> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "A256KW" | "AES" => Self::A256Kw,
            "A128CBC-NOPAD" => Self::A128Cbc,
            "A192CBC-NOPAD" => Self::A192Cbc,
            "A256CBC-NOPAD" => Self::A256Cbc,
            "RSA-OAEP-256" | "RSA" => Self::RsaOaep256,
            other => return Err(SchemeError::Algorithm(other.to_owned())),
        })
    }

    /// The algorithm name the component wraps with.
    pub fn algorithm(self) -> &'static str {
        match self {
            Self::A256Kw => "A256KW",
            Self::A128Cbc => "A128CBC-NOPAD",
            Self::A192Cbc => "A192CBC-NOPAD",
            Self::A256Cbc => "A256CBC-NOPAD",
            Self::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    fn id(self) -> u64 {
        match self {
            Self::A256Kw => 1,
            Self::A128Cbc => 2,
            Self::A192Cbc => 3,
            Self::A256Cbc => 4,
            Self::RsaOaep256 => 5,
        }
    }

    fn from_id(id: u64) -> Option<Self> {
        Some(match id {
            1 => Self::A256Kw,
            2 => Self::A128Cbc,
            3 => Self::A192Cbc,
            4 => Self::A256Cbc,
            5 => Self::RsaOaep256,
            _ => return None,
        })
    }
}

/// The AEAD cipher of the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cipher {
    /// `AES-GCM` (AES-256-GCM), Dapr's default.
    #[default]
    AesGcm,
    /// `CHACHA20-POLY1305`.
    ChaCha20Poly1305,
}

impl Cipher {
    /// Reads a caller's name, in any case.
    pub fn parse(name: &str) -> Result<Self, SchemeError> {
        match name.to_ascii_uppercase().as_str() {
            "AES-GCM" => Ok(Self::AesGcm),
            "CHACHA20-POLY1305" => Ok(Self::ChaCha20Poly1305),
            other => Err(SchemeError::Cipher(other.to_owned())),
        }
    }

    fn id(self) -> u64 {
        match self {
            Self::AesGcm => 1,
            Self::ChaCha20Poly1305 => 2,
        }
    }

    fn from_id(id: u64) -> Option<Self> {
        match id {
            1 => Some(Self::AesGcm),
            2 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// The segment cipher with its payload key.
enum Sealer {
    AesGcm(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

/// The keys derived from one file key.
struct FileKey {
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    header_key: [u8; 32],
    sealer: Sealer,
}

impl FileKey {
    fn derive(file_key: &[u8], nonce_prefix: [u8; NONCE_PREFIX_LEN], cipher: Cipher) -> Self {
        let mut header_key = [0u8; 32];
        let mut payload_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's limit (255 × 32): expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, file_key).expand(b"header", &mut header_key);
        let _ =
            Hkdf::<Sha256>::new(Some(&nonce_prefix), file_key).expand(b"payload", &mut payload_key);
        let sealer = match cipher {
            Cipher::AesGcm => Sealer::AesGcm(Box::new(Aes256Gcm::new(&payload_key.into()))),
            Cipher::ChaCha20Poly1305 => {
                Sealer::ChaCha(Box::new(ChaCha20Poly1305::new(&payload_key.into())))
            }
        };
        Self {
            nonce_prefix,
            header_key,
            sealer,
        }
    }

    fn header_mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.header_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(SCHEME_NAME.as_bytes());
        mac.update(b"\n");
        mac
    }

    fn nonce(&self, segment: u32, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&segment.to_be_bytes());
        nonce[11] = u8::from(last);
        nonce
    }

    fn seal(&self, segment: u32, last: bool, data: &[u8]) -> Vec<u8> {
        let nonce = self.nonce(segment, last);
        let sealed = match &self.sealer {
            Sealer::AesGcm(aead) => aead.encrypt((&nonce).into(), data),
            Sealer::ChaCha(aead) => aead.encrypt((&nonce).into(), data),
        };
        // Sealing only fails past the ciphers' length limits (64 GiB), far above a segment.
        sealed.unwrap_or_default()
    }

    fn open(&self, segment: u32, last: bool, data: &[u8]) -> Result<Vec<u8>, SchemeError> {
        let nonce = self.nonce(segment, last);
        match &self.sealer {
            Sealer::AesGcm(aead) => aead.decrypt((&nonce).into(), data),
            Sealer::ChaCha(aead) => aead.decrypt((&nonce).into(), data),
        }
        .map_err(|_| SchemeError::Segment(segment))
    }
}

/// A fresh file key: 32 random bytes, and 7 for the nonce prefix.
pub fn new_file_key() -> ([u8; 32], [u8; NONCE_PREFIX_LEN]) {
    let mut key = [0u8; 32];
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    OsRng.fill_bytes(&mut key);
    OsRng.fill_bytes(&mut prefix);
    (key, prefix)
}

/// A JSON string as Go's `encoding/json` writes it (HTML characters and the JS line
/// separators escaped), so manifests look like daprd's.
fn go_json_string(text: &str) -> String {
    let plain = serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""));
    plain
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Encrypts one message, incrementally.
pub struct Encryptor {
    key: FileKey,
    header: Vec<u8>,
    pending: Vec<u8>,
    segment: u32,
}

impl Encryptor {
    /// Starts a message: `file_key` and `nonce_prefix` from [`new_file_key`], `wrapped`
    /// the file key as the component wrapped it with `wrap`, and `key_name` the name
    /// written in the manifest (empty: none, and the decrypting side must name the key).
    pub fn new(
        file_key: &[u8; 32],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        wrap: KeyWrap,
        wrapped: &[u8],
        cipher: Cipher,
        key_name: &str,
    ) -> Result<Self, SchemeError> {
        let key = FileKey::derive(file_key, nonce_prefix, cipher);
        // Go's struct field order: k (omitted when empty), kw, wfk, cph, np.
        let mut manifest = String::from("{");
        if !key_name.is_empty() {
            manifest.push_str("\"k\":");
            manifest.push_str(&go_json_string(key_name));
            manifest.push(',');
        }
        manifest.push_str(&format!(
            "\"kw\":{},\"wfk\":\"{}\",\"cph\":{},\"np\":\"{}\"}}",
            wrap.id(),
            STANDARD.encode(wrapped),
            cipher.id(),
            STANDARD.encode(nonce_prefix),
        ));
        let mut mac = key.header_mac();
        mac.update(manifest.as_bytes());
        mac.update(b"\n");
        let mut header = format!("{SCHEME_NAME}\n{manifest}\n").into_bytes();
        header.extend(STANDARD.encode(mac.finalize().into_bytes()).as_bytes());
        header.push(b'\n');
        if header.len() > MAX_HEADER {
            return Err(SchemeError::HeaderTooLong);
        }
        Ok(Self {
            key,
            header,
            pending: Vec::new(),
            segment: 0,
        })
    }

    /// The header, to send before any segment.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Takes more plaintext; returns the segments it completes. A full segment waits
    /// until a byte after it arrives: only then is it known not to be the last.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, SchemeError> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while self.pending.len() > SEGMENT_SIZE {
            if self.segment == u32::MAX {
                return Err(SchemeError::TooLarge);
            }
            out.extend(
                self.key
                    .seal(self.segment, false, &self.pending[..SEGMENT_SIZE]),
            );
            self.pending.drain(..SEGMENT_SIZE);
            self.segment += 1;
        }
        Ok(out)
    }

    /// Ends the message: the last segment (nothing for an empty message).
    pub fn finish(self) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        self.key.seal(self.segment, true, &self.pending)
    }
}

/// A message's header, read but not yet verified (its MAC needs the file key).
#[derive(Debug, Clone)]
pub struct Header {
    /// The manifest's key name (`k`); empty if it has none.
    pub key_name: String,
    pub wrap: KeyWrap,
    /// The wrapped file key (`wfk`).
    pub wrapped_key: Vec<u8>,
    pub cipher: Cipher,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// The manifest line exactly as received: the MAC covers these bytes.
    manifest: Vec<u8>,
    mac: Vec<u8>,
}

impl Header {
    /// Reads a header from the start of `data`: `None` while more bytes are needed,
    /// else the header and how many bytes it took.
    pub fn read(data: &[u8]) -> Result<Option<(Self, usize)>, SchemeError> {
        let mut lines = Vec::with_capacity(3);
        let mut start = 0;
        for (at, byte) in data.iter().enumerate().take(MAX_HEADER) {
            if *byte != b'\n' {
                continue;
            }
            if at == start {
                return Err(SchemeError::Header("invalid format"));
            }
            let line = &data[start..at];
            if lines.is_empty() && line != SCHEME_NAME.as_bytes() {
                return Err(SchemeError::Header("unsupported scheme"));
            }
            lines.push(line);
            start = at + 1;
            if lines.len() == 3 {
                let header = Self::parse(lines[1], lines[2])?;
                return Ok(Some((header, start)));
            }
        }
        if data.len() >= MAX_HEADER {
            return Err(SchemeError::Header(match lines.len() {
                0 => "scheme name not found",
                1 => "manifest not found",
                _ => "message authentication code not found",
            }));
        }
        Ok(None)
    }

    /// The header of a message that ended before its header did.
    pub fn truncated(data: &[u8]) -> SchemeError {
        let lines = data.iter().filter(|byte| **byte == b'\n').count();
        SchemeError::Header(match lines {
            0 => "scheme name not found",
            1 => "manifest not found",
            _ => "message authentication code not found",
        })
    }

    fn parse(manifest: &[u8], mac: &[u8]) -> Result<Self, SchemeError> {
        let invalid = SchemeError::Header("invalid manifest");
        let value: Value = serde_json::from_slice(manifest).map_err(|_| invalid.clone())?;
        let object = value.as_object().ok_or_else(|| invalid.clone())?;
        // Go matches struct fields without regard to case (an exact match first).
        let field = |name: &str| {
            object
                .get(name)
                .or_else(|| {
                    object
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value)
                })
                .filter(|value| !value.is_null())
        };
        let bytes = |name: &str| -> Result<Vec<u8>, SchemeError> {
            match field(name) {
                None => Ok(Vec::new()),
                Some(Value::String(text)) => STANDARD.decode(text).map_err(|_| invalid.clone()),
                Some(_) => Err(invalid.clone()),
            }
        };
        let number = |name: &str| field(name).and_then(Value::as_u64);
        let key_name = match field("k") {
            None => String::new(),
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(invalid),
        };
        let wrap = number("kw")
            .and_then(KeyWrap::from_id)
            .ok_or_else(|| invalid.clone())?;
        let cipher = number("cph")
            .and_then(Cipher::from_id)
            .ok_or_else(|| invalid.clone())?;
        let wrapped_key = bytes("wfk")?;
        if wrapped_key.is_empty() {
            return Err(invalid);
        }
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] =
            bytes("np")?.try_into().map_err(|_| invalid.clone())?;
        Ok(Self {
            key_name,
            wrap,
            wrapped_key,
            cipher,
            nonce_prefix,
            manifest: manifest.to_vec(),
            mac: mac.to_vec(),
        })
    }

    /// Checks the header's MAC with the unwrapped file key and starts decrypting.
    /// A key that could not be unwrapped is given as `None`: the MAC then fails, as
    /// in Dapr, which never says whether the key or the message was wrong.
    pub fn open(self, file_key: Option<&[u8]>) -> Result<Decryptor, SchemeError> {
        let zero = [0u8; 32];
        let file_key = file_key.filter(|key| key.len() == 32).unwrap_or(&zero);
        let key = FileKey::derive(file_key, self.nonce_prefix, self.cipher);
        let expected = STANDARD
            .decode(&self.mac)
            .map_err(|_| SchemeError::Signature)?;
        let mut mac = key.header_mac();
        mac.update(&self.manifest);
        mac.update(b"\n");
        mac.verify_slice(&expected)
            .map_err(|_| SchemeError::Signature)?;
        Ok(Decryptor {
            key,
            pending: Vec::new(),
            segment: 0,
        })
    }
}

/// Decrypts one message's segments, incrementally; only verified plaintext comes out.
pub struct Decryptor {
    key: FileKey,
    pending: Vec<u8>,
    segment: u32,
}

impl Decryptor {
    /// Takes more ciphertext; returns the plaintext of the segments it completes.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, SchemeError> {
        const SEALED: usize = SEGMENT_SIZE + SEGMENT_OVERHEAD;
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while self.pending.len() > SEALED {
            if self.segment == u32::MAX {
                return Err(SchemeError::TooLarge);
            }
            out.extend(
                self.key
                    .open(self.segment, false, &self.pending[..SEALED])?,
            );
            self.pending.drain(..SEALED);
            self.segment += 1;
        }
        Ok(out)
    }

    /// Ends the message: the last segment's plaintext.
    pub fn finish(self) -> Result<Vec<u8>, SchemeError> {
        if self.pending.is_empty() {
            return if self.segment == 0 {
                Ok(Vec::new())
            } else {
                Err(SchemeError::UnexpectedEof)
            };
        }
        self.key.open(self.segment, true, &self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(plaintext: &[u8], cipher: Cipher, chunk: usize) -> Vec<u8> {
        let (key, prefix) = new_file_key();
        let mut encryptor =
            Encryptor::new(&key, prefix, KeyWrap::A256Kw, &key, cipher, "mykey").unwrap();
        let mut message = encryptor.header().to_vec();
        for piece in plaintext.chunks(chunk.max(1)) {
            message.extend(encryptor.update(piece).unwrap());
        }
        message.extend(encryptor.finish());
        message
    }

    fn decrypt(message: &[u8], chunk: usize) -> Result<Vec<u8>, SchemeError> {
        let (header, used) = Header::read(message)?.ok_or(SchemeError::UnexpectedEof)?;
        let wrapped = header.wrapped_key.clone();
        let mut decryptor = header.open(Some(&wrapped))?;
        let mut out = Vec::new();
        for piece in message[used..].chunks(chunk.max(1)) {
            out.extend(decryptor.update(piece)?);
        }
        out.extend(decryptor.finish()?);
        Ok(out)
    }

    #[test]
    fn messages_of_every_shape_round_trip() {
        let sizes = [
            0,
            1,
            11,
            SEGMENT_SIZE - 1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            2 * SEGMENT_SIZE,
            300 << 10,
        ];
        for cipher in [Cipher::AesGcm, Cipher::ChaCha20Poly1305] {
            for size in sizes {
                let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                for chunk in [7, 4096, SEGMENT_SIZE + 3] {
                    let message = round_trip(&plaintext, cipher, chunk);
                    let segments = size.div_ceil(SEGMENT_SIZE);
                    assert_eq!(
                        message.len() - Header::read(&message).unwrap().unwrap().1,
                        size + segments * SEGMENT_OVERHEAD
                    );
                    assert_eq!(
                        decrypt(&message, chunk).unwrap(),
                        plaintext,
                        "{cipher:?} {size} {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_keys_are_refused() {
        let plaintext = vec![9u8; SEGMENT_SIZE + 100];
        let message = round_trip(&plaintext, Cipher::AesGcm, 1000);
        let (_, used) = Header::read(&message).unwrap().unwrap();
        // A flipped payload bit.
        let mut tampered = message.clone();
        tampered[used + 10] ^= 1;
        assert_eq!(decrypt(&tampered, 100), Err(SchemeError::Segment(0)));
        // The last segment dropped: the first one was not sealed as last.
        let truncated = &message[..used + SEGMENT_SIZE + SEGMENT_OVERHEAD];
        assert_eq!(decrypt(truncated, 100), Err(SchemeError::Segment(0)));
        // A changed manifest: the MAC fails.
        let mut manifest = message.clone();
        let at = message.iter().position(|b| *b == b'"').unwrap() + 1;
        manifest[at] = b'K';
        assert!(decrypt(&manifest, 100).is_err());
        // A wrong file key.
        let (header, _) = Header::read(&message).unwrap().unwrap();
        assert_eq!(
            header.open(Some(&[1u8; 32])).err(),
            Some(SchemeError::Signature)
        );
    }

    #[test]
    fn manifests_read_as_dapr_writes_them() {
        let (key, prefix) = new_file_key();
        let encryptor = Encryptor::new(
            &key,
            prefix,
            KeyWrap::RsaOaep256,
            b"wrapped",
            Cipher::ChaCha20Poly1305,
            "a<b",
        )
        .unwrap();
        let header = String::from_utf8(encryptor.header().to_vec()).unwrap();
        let lines: Vec<&str> = header.lines().collect();
        assert_eq!(lines[0], SCHEME_NAME);
        assert!(
            lines[1].starts_with(r#"{"k":"a\u003cb","kw":5,"wfk":"d3JhcHBlZA==","cph":2,"np":""#),
            "{}",
            lines[1]
        );
        let (read, _) = Header::read(encryptor.header()).unwrap().unwrap();
        assert_eq!(read.key_name, "a<b");
        assert_eq!(read.wrap, KeyWrap::RsaOaep256);
        assert_eq!(read.cipher, Cipher::ChaCha20Poly1305);
        // An unnamed key is left out.
        let unnamed =
            Encryptor::new(&key, prefix, KeyWrap::A256Kw, b"w", Cipher::AesGcm, "").unwrap();
        assert!(unnamed.header().starts_with(b"dapr.io/enc/v1\n{\"kw\":1,"));
        assert!(matches!(
            Header::read(b"dapr.io/enc/v2\n"),
            Err(SchemeError::Header("unsupported scheme"))
        ));
        assert!(matches!(Header::read(b"dapr.io/enc/v1\n{"), Ok(None)));
        assert_eq!(KeyWrap::parse("rsa").unwrap(), KeyWrap::RsaOaep256);
        assert_eq!(KeyWrap::parse("aes").unwrap(), KeyWrap::A256Kw);
        assert!(Cipher::parse("chacha20-poly1305").is_ok());
    }
}
