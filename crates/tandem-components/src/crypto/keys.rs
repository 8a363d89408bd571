//! Keys as Dapr's crypto components read them: PEM (PKCS#1, PKCS#8, SEC1 and SPKI
//! blocks for RSA, EC P-256/384/521 and Ed25519), JSON Web Keys, and raw symmetric
//! bytes (optionally base64), told apart by the same rules as `dapr/kit`'s
//! `ParseKey`; and their public halves, as PEM (SPKI) or JWK, for `SubtleGetKeyAlpha1`.
//!
//! Key material never appears in `Debug` output or error messages.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value};

use super::CryptoError;

/// An elliptic curve Dapr's components accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// Bytes in one coordinate.
    fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

/// The material of a key.
#[derive(Clone)]
pub enum Material {
    /// A symmetric key's bytes (JWK `oct`).
    Symmetric(Vec<u8>),
    RsaPrivate(Box<RsaPrivateKey>),
    RsaPublic(Box<RsaPublicKey>),
    P256Private(p256::SecretKey),
    P256Public(p256::PublicKey),
    P384Private(p384::SecretKey),
    P384Public(p384::PublicKey),
    P521Private(p521::SecretKey),
    P521Public(p521::PublicKey),
    Ed25519Private(Box<ed25519_dalek::SigningKey>),
    Ed25519Public(ed25519_dalek::VerifyingKey),
}

/// A key with the JWK properties that limit its use (`use`, `key_ops`, `alg`) and
/// its `kid`, as Dapr's components keep them.
#[derive(Clone)]
pub struct Key {
    pub material: Material,
    pub kid: Option<String>,
    /// JWK `use`: `sig` or `enc`.
    pub usage: Option<String>,
    /// JWK `key_ops`.
    pub ops: Vec<String>,
    /// JWK `alg`: the only algorithm the key may be used with.
    pub alg: Option<String>,
}

impl fmt::Debug for Key {
    // Never the material: only what kind of key it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl From<Material> for Key {
    fn from(material: Material) -> Self {
        Self {
            material,
            kid: None,
            usage: None,
            ops: Vec::new(),
            alg: None,
        }
    }
}

/// An operation a key's `use`/`key_ops` may allow, with JWK's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::WrapKey => "wrapKey",
            Self::UnwrapKey => "unwrapKey",
            Self::Sign => "sign",
            Self::Verify => "verify",
        }
    }
}

impl Key {
    /// What kind of key this is, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.material {
            Material::Symmetric(_) => "symmetric",
            Material::RsaPrivate(_) => "RSA private",
            Material::RsaPublic(_) => "RSA public",
            Material::P256Private(_) | Material::P384Private(_) | Material::P521Private(_) => {
                "EC private"
            }
            Material::P256Public(_) | Material::P384Public(_) | Material::P521Public(_) => {
                "EC public"
            }
            Material::Ed25519Private(_) => "Ed25519 private",
            Material::Ed25519Public(_) => "Ed25519 public",
        }
    }

    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, Material::Symmetric(_))
    }

    /// Whether `use` and `key_ops` allow `op`, as Dapr's `KeyCanPerformOperation`: a key
    /// with neither allows everything.
    pub fn can(&self, op: Operation) -> Result<(), CryptoError> {
        if !self.ops.is_empty() && !self.ops.iter().any(|allowed| allowed == op.name()) {
            return Err(CryptoError::OperationNotAllowed(op.name()));
        }
        if let Some(usage) = &self.usage {
            let needed = match op {
                Operation::Sign | Operation::Verify => "sig",
                _ => "enc",
            };
            if usage != needed {
                return Err(CryptoError::OperationNotAllowed(op.name()));
            }
        }
        Ok(())
    }

    /// Whether the key's `alg` (if any) is `algorithm`.
    pub fn allows(&self, algorithm: &str) -> Result<(), CryptoError> {
        match &self.alg {
            Some(alg) if !alg.is_empty() && alg != algorithm => {
                Err(CryptoError::AlgorithmNotAllowed(algorithm.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// The public half of an asymmetric key, keeping its properties; a symmetric key
    /// has none.
    pub fn public(&self) -> Option<Key> {
        let material = match &self.material {
            Material::Symmetric(_) => return None,
            Material::RsaPrivate(key) => Material::RsaPublic(Box::new(key.to_public_key())),
            Material::P256Private(key) => Material::P256Public(key.public_key()),
            Material::P384Private(key) => Material::P384Public(key.public_key()),
            Material::P521Private(key) => Material::P521Public(key.public_key()),
            Material::Ed25519Private(key) => Material::Ed25519Public(key.verifying_key()),
            public => public.clone(),
        };
        Some(Key {
            material,
            ..self.clone()
        })
    }

    /// The public half as a PEM `PUBLIC KEY` (SPKI) block, as Go's `pem.EncodeToMemory`
    /// writes it.
    pub fn public_pem(&self) -> Result<String, CryptoError> {
        let public = self.public().ok_or(CryptoError::KeyTypeMismatch)?;
        let pem = match &public.material {
            Material::RsaPublic(key) => key.to_public_key_pem(LineEnding::LF),
            Material::P256Public(key) => key.to_public_key_pem(LineEnding::LF),
            Material::P384Public(key) => key.to_public_key_pem(LineEnding::LF),
            Material::P521Public(key) => key.to_public_key_pem(LineEnding::LF),
            Material::Ed25519Public(key) => key.to_public_key_pem(LineEnding::LF),
            _ => return Err(CryptoError::KeyTypeMismatch),
        };
        pem.map_err(|error| CryptoError::Encode(error.to_string()))
    }

    /// The public half as a JWK, members in name order as Dapr's JWK library writes them.
    pub fn public_jwk(&self) -> Result<String, CryptoError> {
        let public = self.public().ok_or(CryptoError::KeyTypeMismatch)?;
        let mut jwk = BTreeMap::<&str, Value>::new();
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        match &public.material {
            Material::RsaPublic(key) => {
                jwk.insert("kty", "RSA".into());
                jwk.insert("n", b64(&key.n().to_bytes_be()));
                jwk.insert("e", b64(&key.e().to_bytes_be()));
            }
            Material::P256Public(key) => {
                ec_members(&mut jwk, Curve::P256, key.to_sec1_bytes().as_ref());
            }
            Material::P384Public(key) => {
                ec_members(&mut jwk, Curve::P384, key.to_sec1_bytes().as_ref());
            }
            Material::P521Public(key) => {
                ec_members(&mut jwk, Curve::P521, key.to_sec1_bytes().as_ref());
            }
            Material::Ed25519Public(key) => {
                jwk.insert("kty", "OKP".into());
                jwk.insert("crv", "Ed25519".into());
                jwk.insert("x", b64(key.as_bytes()));
            }
            _ => return Err(CryptoError::KeyTypeMismatch),
        }
        if let Some(kid) = &public.kid {
            jwk.insert("kid", kid.clone().into());
        }
        if let Some(usage) = &public.usage {
            jwk.insert("use", usage.clone().into());
        }
        if !public.ops.is_empty() {
            jwk.insert("key_ops", public.ops.clone().into());
        }
        if let Some(alg) = &public.alg {
            jwk.insert("alg", alg.clone().into());
        }
        serde_json::to_string(&jwk).map_err(|error| CryptoError::Encode(error.to_string()))
    }

    /// The key as bytes to wrap, as Dapr's `SerializeKey`: a symmetric key's own
    /// bytes, a private key as PKCS#8 DER, a public key as SPKI DER.
    pub fn serialize(&self) -> Result<Vec<u8>, CryptoError> {
        let encode = |error: &dyn fmt::Display| CryptoError::Encode(error.to_string());
        Ok(match &self.material {
            Material::Symmetric(bytes) => bytes.clone(),
            Material::RsaPrivate(key) => key
                .to_pkcs8_der()
                .map_err(|e| encode(&e))?
                .as_bytes()
                .to_vec(),
            Material::P256Private(key) => key
                .to_pkcs8_der()
                .map_err(|e| encode(&e))?
                .as_bytes()
                .to_vec(),
            Material::P384Private(key) => key
                .to_pkcs8_der()
                .map_err(|e| encode(&e))?
                .as_bytes()
                .to_vec(),
            Material::P521Private(key) => key
                .to_pkcs8_der()
                .map_err(|e| encode(&e))?
                .as_bytes()
                .to_vec(),
            Material::Ed25519Private(key) => key
                .to_pkcs8_der()
                .map_err(|e| encode(&e))?
                .as_bytes()
                .to_vec(),
            Material::RsaPublic(key) => key.to_public_key_der().map_err(|e| encode(&e))?.into_vec(),
            Material::P256Public(key) => {
                key.to_public_key_der().map_err(|e| encode(&e))?.into_vec()
            }
            Material::P384Public(key) => {
                key.to_public_key_der().map_err(|e| encode(&e))?.into_vec()
            }
            Material::P521Public(key) => {
                key.to_public_key_der().map_err(|e| encode(&e))?.into_vec()
            }
            Material::Ed25519Public(key) => {
                key.to_public_key_der().map_err(|e| encode(&e))?.into_vec()
            }
        })
    }
}

fn ec_members(jwk: &mut BTreeMap<&str, Value>, curve: Curve, sec1: &[u8]) {
    // An uncompressed SEC1 point: 0x04 || x || y, each coordinate padded to the curve's size.
    let size = curve.size();
    let (x, y) = if sec1.len() == 1 + 2 * size {
        (&sec1[1..=size], &sec1[1 + size..])
    } else {
        (&[][..], &[][..])
    };
    jwk.insert("kty", "EC".into());
    jwk.insert("crv", curve.name().into());
    jwk.insert("x", URL_SAFE_NO_PAD.encode(x).into());
    jwk.insert("y", URL_SAFE_NO_PAD.encode(y).into());
}

/// How a key file's content is known to be encoded, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// `.json`: one JWK.
    Json,
    /// `.pem`.
    Pem,
    /// Anything else: told apart by content.
    None,
}

/// Reads a key the way Dapr's `ParseKey` does: by the hint if there is one; otherwise
/// a JWK if it starts with `{` (unless it is 16, 24 or 32 bytes long: then it is a
/// raw AES key), PEM if it starts with `-----`, else a symmetric key — base64
/// (standard, then URL alphabet) if it decodes, its raw bytes otherwise.
pub fn parse_key(raw: &[u8], hint: Hint) -> Result<Key, CryptoError> {
    if raw.is_empty() {
        return Err(CryptoError::Parse("key is empty".into()));
    }
    match hint {
        Hint::Json => return parse_jwk(raw),
        Hint::Pem => return parse_pem(raw),
        Hint::None => {}
    }
    let len = raw.len();
    if raw[0] == b'{' && len != 16 && len != 24 && len != 32 {
        parse_jwk(raw)
    } else if len > 10 && raw.starts_with(b"-----") {
        parse_pem(raw)
    } else {
        Ok(parse_symmetric(raw).into())
    }
}

fn parse_symmetric(raw: &[u8]) -> Material {
    // As Dapr: trailing newlines and padding off, then standard or URL base64.
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'=') {
        end -= 1;
    }
    // Go's base64 decoder skips line breaks anywhere in its input.
    let trimmed: Vec<u8> = raw[..end]
        .iter()
        .copied()
        .filter(|byte| !matches!(byte, b'\r' | b'\n'))
        .collect();
    if let Ok(bytes) = STANDARD_NO_PAD.decode(&trimmed) {
        return Material::Symmetric(bytes);
    }
    if let Ok(bytes) = URL_SAFE_NO_PAD.decode(&trimmed) {
        return Material::Symmetric(bytes);
    }
    Material::Symmetric(raw.to_vec())
}

/// The first PEM block of `raw`: its label and DER bytes. Text before the block (as
/// OpenSSL writes with `-text`) and after it is ignored, as Go's `pem.Decode` does.
fn pem_block(raw: &[u8]) -> Result<(String, Vec<u8>), CryptoError> {
    let text =
        std::str::from_utf8(raw).map_err(|_| CryptoError::Parse("PEM is not text".into()))?;
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| CryptoError::Parse("no PEM block found".into()))?;
    let block = &text[begin..];
    let label_end = block[11..]
        .find("-----")
        .ok_or_else(|| CryptoError::Parse("malformed PEM header".into()))?;
    let label = &block[11..11 + label_end];
    // The body starts after the header line's closing dashes; the end marker is looked
    // for only from there, so text such as `-----BEGIN X-----END X-----` cannot make
    // the body's end come before its start.
    let body_start = 11 + label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let end = block[body_start..]
        .find(&end_marker)
        .map(|at| body_start + at)
        .ok_or_else(|| CryptoError::Parse("PEM block has no end".into()))?;
    let body: String = block[body_start..end]
        .lines()
        // Headers such as `Proc-Type:` are not part of the base64 body.
        .filter(|line| !line.contains(':'))
        .flat_map(|line| line.trim().chars())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|error| CryptoError::Parse(format!("PEM body is not base64: {error}")))?;
    Ok((label.to_owned(), der))
}

fn parse_pem(raw: &[u8]) -> Result<Key, CryptoError> {
    let (label, der) = pem_block(raw)?;
    let unsupported = || CryptoError::Parse(format!("unsupported PEM block `{label}`"));
    let material = match label.as_str() {
        "PRIVATE KEY" => private_pkcs8(&der).ok_or_else(unsupported)?,
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der)
            .map(|key| Material::RsaPrivate(Box::new(key)))
            .map_err(|error| CryptoError::Parse(format!("invalid RSA private key: {error}")))?,
        "EC PRIVATE KEY" => private_sec1(&der).ok_or_else(unsupported)?,
        "PUBLIC KEY" => public_spki(&der).ok_or_else(unsupported)?,
        "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&der)
            .map(|key| Material::RsaPublic(Box::new(key)))
            .map_err(|error| CryptoError::Parse(format!("invalid RSA public key: {error}")))?,
        _ => return Err(unsupported()),
    };
    Ok(material.into())
}

fn private_pkcs8(der: &[u8]) -> Option<Material> {
    if let Ok(key) = RsaPrivateKey::from_pkcs8_der(der) {
        return Some(Material::RsaPrivate(Box::new(key)));
    }
    if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        return Some(Material::P256Private(key));
    }
    if let Ok(key) = p384::SecretKey::from_pkcs8_der(der) {
        return Some(Material::P384Private(key));
    }
    if let Ok(key) = p521::SecretKey::from_pkcs8_der(der) {
        return Some(Material::P521Private(key));
    }
    ed25519_dalek::SigningKey::from_pkcs8_der(der)
        .ok()
        .map(|key| Material::Ed25519Private(Box::new(key)))
}

fn private_sec1(der: &[u8]) -> Option<Material> {
    if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
        return Some(Material::P256Private(key));
    }
    if let Ok(key) = p384::SecretKey::from_sec1_der(der) {
        return Some(Material::P384Private(key));
    }
    p521::SecretKey::from_sec1_der(der)
        .ok()
        .map(Material::P521Private)
}

fn public_spki(der: &[u8]) -> Option<Material> {
    if let Ok(key) = RsaPublicKey::from_public_key_der(der) {
        return Some(Material::RsaPublic(Box::new(key)));
    }
    if let Ok(key) = p256::PublicKey::from_public_key_der(der) {
        return Some(Material::P256Public(key));
    }
    if let Ok(key) = p384::PublicKey::from_public_key_der(der) {
        return Some(Material::P384Public(key));
    }
    if let Ok(key) = p521::PublicKey::from_public_key_der(der) {
        return Some(Material::P521Public(key));
    }
    ed25519_dalek::VerifyingKey::from_public_key_der(der)
        .ok()
        .map(Material::Ed25519Public)
}

/// Reads one JWK (RFC 7517) from JSON.
pub fn parse_jwk(raw: &[u8]) -> Result<Key, CryptoError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|error| CryptoError::Parse(format!("invalid JWK JSON: {error}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| CryptoError::Parse("a JWK must be a JSON object".into()))?;
    jwk_from_object(object)
}

/// Reads one JWK from a parsed JSON object (one entry of a JWKS too).
pub fn jwk_from_object(object: &Map<String, Value>) -> Result<Key, CryptoError> {
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Option<Vec<u8>>, CryptoError> {
        match text(name) {
            None => Ok(None),
            Some(value) => URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map(Some)
                .map_err(|_| CryptoError::Parse(format!("JWK member `{name}` is not base64url"))),
        }
    };
    let need = |name: &str| -> Result<Vec<u8>, CryptoError> {
        bytes(name)?.ok_or_else(|| CryptoError::Parse(format!("JWK member `{name}` is missing")))
    };
    let kty =
        text("kty").ok_or_else(|| CryptoError::Parse("JWK member `kty` is missing".into()))?;
    let material = match kty {
        "oct" => Material::Symmetric(need("k")?),
        "RSA" => {
            let n = BigUint::from_bytes_be(&need("n")?);
            let e = BigUint::from_bytes_be(&need("e")?);
            match bytes("d")? {
                None => RsaPublicKey::new(n, e)
                    .map(|key| Material::RsaPublic(Box::new(key)))
                    .map_err(|error| CryptoError::Parse(format!("invalid RSA JWK: {error}")))?,
                Some(d) => {
                    let mut primes = Vec::new();
                    if let (Some(p), Some(q)) = (bytes("p")?, bytes("q")?) {
                        primes.push(BigUint::from_bytes_be(&p));
                        primes.push(BigUint::from_bytes_be(&q));
                    }
                    let key =
                        RsaPrivateKey::from_components(n, e, BigUint::from_bytes_be(&d), primes)
                            .map_err(|error| {
                                CryptoError::Parse(format!("invalid RSA JWK: {error}"))
                            })?;
                    key.validate()
                        .map_err(|error| CryptoError::Parse(format!("invalid RSA JWK: {error}")))?;
                    Material::RsaPrivate(Box::new(key))
                }
            }
        }
        "EC" => {
            let curve = match text("crv") {
                Some("P-256") => Curve::P256,
                Some("P-384") => Curve::P384,
                Some("P-521") => Curve::P521,
                other => {
                    return Err(CryptoError::Parse(format!(
                        "unsupported EC curve {}",
                        other.unwrap_or("(none)")
                    )));
                }
            };
            ec_jwk(curve, need("x")?, need("y")?, bytes("d")?)?
        }
        "OKP" => {
            if text("crv") != Some("Ed25519") {
                return Err(CryptoError::Parse(
                    "unsupported OKP curve (only Ed25519)".into(),
                ));
            }
            let x = need("x")?;
            let invalid = || CryptoError::Parse("invalid Ed25519 JWK".into());
            match bytes("d")? {
                Some(d) => {
                    let d: [u8; 32] = d.try_into().map_err(|_| invalid())?;
                    let key = ed25519_dalek::SigningKey::from_bytes(&d);
                    if key.verifying_key().as_bytes()[..] != x[..] {
                        return Err(invalid());
                    }
                    Material::Ed25519Private(Box::new(key))
                }
                None => {
                    let x: [u8; 32] = x.try_into().map_err(|_| invalid())?;
                    Material::Ed25519Public(
                        ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| invalid())?,
                    )
                }
            }
        }
        other => return Err(CryptoError::Parse(format!("invalid key type {other}"))),
    };
    Ok(Key {
        material,
        kid: text("kid").map(str::to_owned),
        usage: text("use").map(str::to_owned),
        ops: object
            .get("key_ops")
            .and_then(Value::as_array)
            .map(|ops| {
                ops.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        alg: text("alg").map(str::to_owned),
    })
}

fn ec_jwk(
    curve: Curve,
    x: Vec<u8>,
    y: Vec<u8>,
    d: Option<Vec<u8>>,
) -> Result<Material, CryptoError> {
    let invalid = || CryptoError::Parse(format!("invalid {} JWK", curve.name()));
    let size = curve.size();
    if x.len() > size || y.len() > size {
        return Err(invalid());
    }
    // Coordinates left-padded to the curve's size, as SEC1 wants them.
    let mut point = vec![4u8];
    point.extend(std::iter::repeat_n(0, size - x.len()));
    point.extend(&x);
    point.extend(std::iter::repeat_n(0, size - y.len()));
    point.extend(&y);
    let material = match (curve, d) {
        (Curve::P256, None) => {
            Material::P256Public(p256::PublicKey::from_sec1_bytes(&point).map_err(|_| invalid())?)
        }
        (Curve::P384, None) => {
            Material::P384Public(p384::PublicKey::from_sec1_bytes(&point).map_err(|_| invalid())?)
        }
        (Curve::P521, None) => {
            Material::P521Public(p521::PublicKey::from_sec1_bytes(&point).map_err(|_| invalid())?)
        }
        (Curve::P256, Some(d)) => {
            Material::P256Private(p256::SecretKey::from_slice(&d).map_err(|_| invalid())?)
        }
        (Curve::P384, Some(d)) => {
            Material::P384Private(p384::SecretKey::from_slice(&d).map_err(|_| invalid())?)
        }
        (Curve::P521, Some(d)) => {
            Material::P521Private(p521::SecretKey::from_slice(&d).map_err(|_| invalid())?)
        }
    };
    Ok(material)
}

/// Reads a JWKS (`{"keys": [...]}`): its keys in order. A key that cannot be read
/// fails the whole set, as Dapr's JWK library does.
pub fn parse_jwks(raw: &[u8]) -> Result<Vec<Key>, CryptoError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|error| CryptoError::Parse(format!("invalid JWKS JSON: {error}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| CryptoError::Parse("a JWKS must be a JSON object".into()))?;
    // A lone JWK is accepted as a set of one, as Dapr's `jwk.Parse` does.
    let Some(keys) = object.get("keys") else {
        return Ok(vec![jwk_from_object(object)?]);
    };
    let keys = keys
        .as_array()
        .ok_or_else(|| CryptoError::Parse("JWKS member `keys` must be a list".into()))?;
    keys.iter()
        .map(|key| {
            key.as_object()
                .ok_or_else(|| CryptoError::Parse("a JWK must be a JSON object".into()))
                .and_then(jwk_from_object)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        for raw in [
            &b"-----BEGIN X-----END X-----"[..],
            b"-----BEGIN -----END -----",
            b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN PRIVATE KEY",
            b"{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"\"}",
            b"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}",
            b"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\",\"d\":\"AA\"}",
            b"{\"kty\":\"oct\"}",
            b"{\"kty\":7}",
            b"{not json at all, and longer than 32 bytes}",
        ] {
            assert!(
                parse_key(raw, Hint::None).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(parse_key(b"", Hint::None).is_err());
        assert!(parse_key(b"x", Hint::Pem).is_err());
        assert!(parse_key(b"[]", Hint::Json).is_err());
    }

    #[test]
    fn symmetric_keys_are_raw_or_base64_as_dapr_reads_them() {
        let key = |raw: &[u8]| parse_key(raw, Hint::None).unwrap().serialize().unwrap();
        assert_eq!(
            key(b"AAECAwQFBgcICQoLDA0ODw==\n"),
            (0u8..16).collect::<Vec<_>>()
        );
        assert_eq!(key(b"_-_-"), vec![0xff, 0xef, 0xfe]);
        assert_eq!(key(b"AAEC\r\nAwQF\n"), (0u8..6).collect::<Vec<_>>());
        // 16 bytes starting with `{`: an AES key, not a JWK.
        assert_eq!(key(b"{234567890abcde}"), b"{234567890abcde}".to_vec());
    }
}
