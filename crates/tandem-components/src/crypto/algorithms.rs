//! The algorithms of Dapr's subtle crypto API, by Dapr's (JWA) names, with the
//! behaviour of `dapr/kit`'s `crypto` package: the nonce, tag and key-size rules, the
//! tag returned apart from the ciphertext, signatures over a caller's digest.
//!
//! Every primitive is RustCrypto's; this module only picks one and checks sizes.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hmac::{Hmac, Mac};
use rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};

use super::CryptoError;
use super::keys::{Key, Material};

type Aes192Gcm = AesGcm<aes::Aes192, U12>;

/// The symmetric encryption algorithms Dapr's local components offer.
pub const SYMMETRIC: &[&str] = &[
    "A128CBC",
    "A192CBC",
    "A256CBC",
    "A128CBC-NOPAD",
    "A192CBC-NOPAD",
    "A256CBC-NOPAD",
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
    "A128KW",
    "A192KW",
    "A256KW",
    "C20P",
    "C20PKW",
    "XC20P",
    "XC20PKW",
];
/// The asymmetric encryption algorithms.
pub const ASYMMETRIC: &[&str] = &[
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
];
/// The signature algorithms.
pub const SIGNATURE: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// The AES key size an algorithm name implies (`A128…`, `A192…`, `A256…`).
fn aes_key_size(algorithm: &str) -> usize {
    match algorithm.get(1..4) {
        Some("128") => 16,
        Some("192") => 24,
        Some("256") => 32,
        _ => 0,
    }
}

fn symmetric(key: &Key) -> Result<&[u8], CryptoError> {
    match &key.material {
        Material::Symmetric(bytes) => Ok(bytes),
        _ => Err(CryptoError::KeyTypeMismatch),
    }
}

/// Encrypts `plaintext`: the ciphertext and, for AEAD algorithms, the tag apart.
pub fn encrypt(
    key: &Key,
    algorithm: &str,
    plaintext: &[u8],
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    if SYMMETRIC.contains(&algorithm) {
        let bytes = symmetric(key)?;
        return encrypt_symmetric(bytes, algorithm, plaintext, nonce, aad);
    }
    if ASYMMETRIC.contains(&algorithm) {
        let public = key.public().ok_or(CryptoError::KeyTypeMismatch)?;
        let Material::RsaPublic(rsa_key) = &public.material else {
            return Err(CryptoError::KeyTypeMismatch);
        };
        return Ok((rsa_encrypt(rsa_key, algorithm, plaintext, aad)?, Vec::new()));
    }
    Err(CryptoError::UnsupportedAlgorithm)
}

/// Decrypts `ciphertext` (with its `tag`, for AEAD algorithms).
pub fn decrypt(
    key: &Key,
    algorithm: &str,
    ciphertext: &[u8],
    nonce: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if SYMMETRIC.contains(&algorithm) {
        let bytes = symmetric(key)?;
        return decrypt_symmetric(bytes, algorithm, ciphertext, nonce, tag, aad);
    }
    if ASYMMETRIC.contains(&algorithm) {
        let Material::RsaPrivate(rsa_key) = &key.material else {
            return Err(CryptoError::KeyTypeMismatch);
        };
        return rsa_decrypt(rsa_key, algorithm, ciphertext, aad);
    }
    Err(CryptoError::UnsupportedAlgorithm)
}

fn encrypt_symmetric(
    key: &[u8],
    algorithm: &str,
    plaintext: &[u8],
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    match algorithm {
        "A128CBC" | "A192CBC" | "A256CBC" | "A128CBC-NOPAD" | "A192CBC-NOPAD" | "A256CBC-NOPAD" => {
            let pad = !algorithm.ends_with("-NOPAD");
            Ok((
                aes_cbc_encrypt(key, aes_key_size(algorithm), nonce, plaintext, pad)?,
                Vec::new(),
            ))
        }
        "A128GCM" | "A192GCM" | "A256GCM" => {
            if key.len() != aes_key_size(algorithm) {
                return Err(CryptoError::KeyTypeMismatch);
            }
            if nonce.len() != 12 {
                return Err(CryptoError::InvalidNonce);
            }
            let payload = Payload {
                msg: plaintext,
                aad,
            };
            let sealed = match key.len() {
                16 => Aes128Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .encrypt(nonce.into(), payload),
                24 => Aes192Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .encrypt(nonce.into(), payload),
                _ => Aes256Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .encrypt(nonce.into(), payload),
            }
            .map_err(|_| CryptoError::Failed)?;
            Ok(split_tag(sealed, 16))
        }
        "A128CBC-HS256" | "A192CBC-HS384" | "A256CBC-HS512" => {
            cbc_hmac_seal(key, algorithm, plaintext, nonce, aad)
        }
        "A128KW" | "A192KW" | "A256KW" => {
            if key.len() != aes_key_size(algorithm) {
                return Err(CryptoError::KeyTypeMismatch);
            }
            Ok((aes_kw_wrap(key, plaintext)?, Vec::new()))
        }
        "C20P" | "C20PKW" | "XC20P" | "XC20PKW" => {
            if key.len() != 32 {
                return Err(CryptoError::KeyTypeMismatch);
            }
            let payload = Payload {
                msg: plaintext,
                aad,
            };
            let sealed = if algorithm.starts_with('X') {
                if nonce.len() != 24 {
                    return Err(CryptoError::InvalidNonce);
                }
                XChaCha20Poly1305::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .encrypt(nonce.into(), payload)
            } else {
                if nonce.len() != 12 {
                    return Err(CryptoError::InvalidNonce);
                }
                ChaCha20Poly1305::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .encrypt(nonce.into(), payload)
            }
            .map_err(|_| CryptoError::Failed)?;
            Ok(split_tag(sealed, 16))
        }
        _ => Err(CryptoError::UnsupportedAlgorithm),
    }
}

fn decrypt_symmetric(
    key: &[u8],
    algorithm: &str,
    ciphertext: &[u8],
    nonce: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let joined = || [ciphertext, tag].concat();
    match algorithm {
        "A128CBC" | "A192CBC" | "A256CBC" | "A128CBC-NOPAD" | "A192CBC-NOPAD" | "A256CBC-NOPAD" => {
            let pad = !algorithm.ends_with("-NOPAD");
            aes_cbc_decrypt(key, aes_key_size(algorithm), nonce, ciphertext, pad)
        }
        "A128GCM" | "A192GCM" | "A256GCM" => {
            if key.len() != aes_key_size(algorithm) {
                return Err(CryptoError::KeyTypeMismatch);
            }
            if nonce.len() != 12 {
                return Err(CryptoError::InvalidNonce);
            }
            if tag.len() != 16 {
                return Err(CryptoError::InvalidTag);
            }
            let sealed = joined();
            let payload = Payload { msg: &sealed, aad };
            match key.len() {
                16 => Aes128Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .decrypt(nonce.into(), payload),
                24 => Aes192Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .decrypt(nonce.into(), payload),
                _ => Aes256Gcm::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .decrypt(nonce.into(), payload),
            }
            .map_err(|_| CryptoError::Failed)
        }
        "A128CBC-HS256" | "A192CBC-HS384" | "A256CBC-HS512" => {
            cbc_hmac_open(key, algorithm, ciphertext, nonce, tag, aad)
        }
        "A128KW" | "A192KW" | "A256KW" => {
            if key.len() != aes_key_size(algorithm) {
                return Err(CryptoError::KeyTypeMismatch);
            }
            aes_kw_unwrap(key, ciphertext)
        }
        "C20P" | "C20PKW" | "XC20P" | "XC20PKW" => {
            if key.len() != 32 {
                return Err(CryptoError::KeyTypeMismatch);
            }
            let x = algorithm.starts_with('X');
            if nonce.len() != if x { 24 } else { 12 } {
                return Err(CryptoError::InvalidNonce);
            }
            if tag.len() != 16 {
                return Err(CryptoError::InvalidTag);
            }
            let sealed = joined();
            let payload = Payload { msg: &sealed, aad };
            if x {
                XChaCha20Poly1305::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .decrypt(nonce.into(), payload)
            } else {
                ChaCha20Poly1305::new_from_slice(key)
                    .map_err(|_| CryptoError::KeyTypeMismatch)?
                    .decrypt(nonce.into(), payload)
            }
            .map_err(|_| CryptoError::Failed)
        }
        _ => Err(CryptoError::UnsupportedAlgorithm),
    }
}

fn split_tag(mut sealed: Vec<u8>, size: usize) -> (Vec<u8>, Vec<u8>) {
    let tag = sealed.split_off(sealed.len().saturating_sub(size));
    (sealed, tag)
}

fn aes_cbc_encrypt(
    key: &[u8],
    size: usize,
    iv: &[u8],
    plaintext: &[u8],
    pad: bool,
) -> Result<Vec<u8>, CryptoError> {
    if key.len() != size {
        return Err(CryptoError::KeyTypeMismatch);
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    if !pad && !plaintext.len().is_multiple_of(16) {
        return Err(CryptoError::InvalidPlaintextLength);
    }
    macro_rules! run {
        ($aes:ty) => {{
            let cipher = cbc::Encryptor::<$aes>::new_from_slices(key, iv)
                .map_err(|_| CryptoError::KeyTypeMismatch)?;
            if pad {
                cipher.encrypt_padded_vec_mut::<block_padding::Pkcs7>(plaintext)
            } else {
                cipher.encrypt_padded_vec_mut::<block_padding::NoPadding>(plaintext)
            }
        }};
    }
    Ok(match size {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    })
}

fn aes_cbc_decrypt(
    key: &[u8],
    size: usize,
    iv: &[u8],
    ciphertext: &[u8],
    pad: bool,
) -> Result<Vec<u8>, CryptoError> {
    if key.len() != size {
        return Err(CryptoError::KeyTypeMismatch);
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    if !ciphertext.len().is_multiple_of(16) {
        return Err(CryptoError::InvalidCiphertextLength);
    }
    macro_rules! run {
        ($aes:ty) => {{
            let cipher = cbc::Decryptor::<$aes>::new_from_slices(key, iv)
                .map_err(|_| CryptoError::KeyTypeMismatch)?;
            if pad {
                cipher.decrypt_padded_vec_mut::<block_padding::Pkcs7>(ciphertext)
            } else {
                cipher.decrypt_padded_vec_mut::<block_padding::NoPadding>(ciphertext)
            }
            .map_err(|_| CryptoError::InvalidPadding)?
        }};
    }
    Ok(match size {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        _ => run!(aes::Aes256),
    })
}

/// AES-CBC with HMAC-SHA-2 (RFC 7518 §5.2) with Dapr's key splits: the MAC key first,
/// the encryption key last; the tag over AAD ‖ IV ‖ ciphertext ‖ AAD's bit length.
struct CbcHmac {
    enc: usize,
    mac: usize,
    tag: usize,
}

fn cbc_hmac_params(algorithm: &str) -> CbcHmac {
    match algorithm {
        "A128CBC-HS256" => CbcHmac {
            enc: 16,
            mac: 16,
            tag: 16,
        },
        "A192CBC-HS384" => CbcHmac {
            enc: 24,
            mac: 24,
            tag: 24,
        },
        _ => CbcHmac {
            enc: 32,
            mac: 32,
            tag: 32,
        },
    }
}

fn cbc_hmac_tag(
    algorithm: &str,
    mac_key: &[u8],
    aad: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    size: usize,
) -> Result<Vec<u8>, CryptoError> {
    let bits = (aad.len() as u64).wrapping_mul(8).to_be_bytes();
    macro_rules! tag {
        ($hash:ty) => {{
            let mut mac = <Hmac<$hash> as Mac>::new_from_slice(mac_key)
                .map_err(|_| CryptoError::KeyTypeMismatch)?;
            mac.update(aad);
            mac.update(iv);
            mac.update(ciphertext);
            mac.update(&bits);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    let mut full = match algorithm {
        "A128CBC-HS256" => tag!(Sha256),
        "A192CBC-HS384" => tag!(Sha384),
        _ => tag!(Sha512),
    };
    full.truncate(size);
    Ok(full)
}

fn cbc_hmac_seal(
    key: &[u8],
    algorithm: &str,
    plaintext: &[u8],
    iv: &[u8],
    aad: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let params = cbc_hmac_params(algorithm);
    if key.len() != params.enc + params.mac {
        return Err(CryptoError::KeyTypeMismatch);
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    let (mac_key, enc_key) = (&key[..params.mac], &key[key.len() - params.enc..]);
    let ciphertext = aes_cbc_encrypt(enc_key, params.enc, iv, plaintext, true)?;
    let tag = cbc_hmac_tag(algorithm, mac_key, aad, iv, &ciphertext, params.tag)?;
    Ok((ciphertext, tag))
}

fn cbc_hmac_open(
    key: &[u8],
    algorithm: &str,
    ciphertext: &[u8],
    iv: &[u8],
    tag: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let params = cbc_hmac_params(algorithm);
    if key.len() != params.enc + params.mac {
        return Err(CryptoError::KeyTypeMismatch);
    }
    if iv.len() != 16 {
        return Err(CryptoError::InvalidNonce);
    }
    if tag.len() != params.tag {
        return Err(CryptoError::InvalidTag);
    }
    let (mac_key, enc_key) = (&key[..params.mac], &key[key.len() - params.enc..]);
    let expected = cbc_hmac_tag(algorithm, mac_key, aad, iv, ciphertext, params.tag)?;
    // Compared without an early exit, so timing says nothing of where they differ.
    let same = expected.len() == tag.len()
        && expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(CryptoError::Failed);
    }
    aes_cbc_decrypt(enc_key, params.enc, iv, ciphertext, true)
}

fn aes_kw_wrap(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let wrapped = match key.len() {
        16 => aes_kw::KekAes128::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .wrap_vec(plaintext),
        24 => aes_kw::KekAes192::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .wrap_vec(plaintext),
        _ => aes_kw::KekAes256::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .wrap_vec(plaintext),
    };
    wrapped.map_err(|_| CryptoError::InvalidPlaintextLength)
}

fn aes_kw_unwrap(key: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let plaintext = match key.len() {
        16 => aes_kw::KekAes128::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .unwrap_vec(wrapped),
        24 => aes_kw::KekAes192::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .unwrap_vec(wrapped),
        _ => aes_kw::KekAes256::try_from(key)
            .map_err(|_| CryptoError::KeyTypeMismatch)?
            .unwrap_vec(wrapped),
    };
    plaintext.map_err(|_| CryptoError::Failed)
}

/// The OAEP label: Go takes any bytes, the RSA crate a string.
fn oaep_label(aad: &[u8]) -> Result<Option<String>, CryptoError> {
    if aad.is_empty() {
        return Ok(None);
    }
    String::from_utf8(aad.to_vec())
        .map(Some)
        .map_err(|_| CryptoError::Unsupported("an RSA-OAEP label that is not UTF-8"))
}

fn oaep(algorithm: &str, label: Option<String>) -> Oaep {
    match (algorithm, label) {
        ("RSA-OAEP", None) => Oaep::new::<sha1::Sha1>(),
        ("RSA-OAEP", Some(label)) => Oaep::new_with_label::<sha1::Sha1, _>(label),
        ("RSA-OAEP-384", None) => Oaep::new::<Sha384>(),
        ("RSA-OAEP-384", Some(label)) => Oaep::new_with_label::<Sha384, _>(label),
        ("RSA-OAEP-512", None) => Oaep::new::<Sha512>(),
        ("RSA-OAEP-512", Some(label)) => Oaep::new_with_label::<Sha512, _>(label),
        (_, None) => Oaep::new::<Sha256>(),
        (_, Some(label)) => Oaep::new_with_label::<Sha256, _>(label),
    }
}

fn rsa_encrypt(
    key: &RsaPublicKey,
    algorithm: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let result = if algorithm == "RSA1_5" {
        key.encrypt(&mut OsRng, Pkcs1v15Encrypt, plaintext)
    } else {
        key.encrypt(&mut OsRng, oaep(algorithm, oaep_label(aad)?), plaintext)
    };
    result.map_err(CryptoError::Rsa)
}

fn rsa_decrypt(
    key: &RsaPrivateKey,
    algorithm: &str,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let result = if algorithm == "RSA1_5" {
        key.decrypt(Pkcs1v15Encrypt, ciphertext)
    } else {
        key.decrypt(oaep(algorithm, oaep_label(aad)?), ciphertext)
    };
    result.map_err(|_| CryptoError::Failed)
}

/// Go's `PSSSaltLengthAuto` when signing: the longest salt the key allows.
fn pss_max_salt(key: &RsaPublicKey, hash_len: usize) -> usize {
    let em_len = key.n().bits().saturating_sub(1).div_ceil(8);
    em_len.saturating_sub(hash_len + 2)
}

fn pkcs1_sign(algorithm: &str) -> Pkcs1v15Sign {
    match algorithm {
        "RS384" => Pkcs1v15Sign::new::<Sha384>(),
        "RS512" => Pkcs1v15Sign::new::<Sha512>(),
        _ => Pkcs1v15Sign::new::<Sha256>(),
    }
}

fn pss(algorithm: &str, salt: usize) -> Pss {
    match algorithm {
        "PS384" => Pss::new_with_salt::<Sha384>(salt),
        "PS512" => Pss::new_with_salt::<Sha512>(salt),
        _ => Pss::new_with_salt::<Sha256>(salt),
    }
}

fn hash_len(algorithm: &str) -> usize {
    match &algorithm[algorithm.len().saturating_sub(3)..] {
        "384" => 48,
        "512" => 64,
        _ => 32,
    }
}

/// Signs `digest` (the whole message for `EdDSA`), as Dapr's `SignPrivateKey`.
pub fn sign(key: &Key, algorithm: &str, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use ecdsa_signing as ec;
    match (algorithm, &key.material) {
        ("RS256" | "RS384" | "RS512", Material::RsaPrivate(rsa_key)) => rsa_key
            .sign(pkcs1_sign(algorithm), digest)
            .map_err(CryptoError::Rsa),
        ("PS256" | "PS384" | "PS512", Material::RsaPrivate(rsa_key)) => {
            if digest.len() != hash_len(algorithm) {
                return Err(CryptoError::Rsa(rsa::Error::InputNotHashed));
            }
            let salt = pss_max_salt(&rsa_key.to_public_key(), hash_len(algorithm));
            rsa_key
                .sign_with_rng(&mut OsRng, pss(algorithm, salt), digest)
                .map_err(CryptoError::Rsa)
        }
        ("ES256" | "ES384" | "ES512", Material::P256Private(secret)) => ec::p256(secret, digest),
        ("ES256" | "ES384" | "ES512", Material::P384Private(secret)) => ec::p384(secret, digest),
        ("ES256" | "ES384" | "ES512", Material::P521Private(secret)) => ec::p521(secret, digest),
        ("EdDSA", Material::Ed25519Private(signing)) => {
            use ed25519_dalek::Signer;
            Ok(signing.sign(digest).to_bytes().to_vec())
        }
        (algorithm, _) if SIGNATURE.contains(&algorithm) => Err(CryptoError::KeyTypeMismatch),
        _ => Err(CryptoError::UnsupportedAlgorithm),
    }
}

/// Checks `signature` over `digest`: `false` for a signature that does not verify,
/// an error only for a key or algorithm that cannot be used.
pub fn verify(
    key: &Key,
    algorithm: &str,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    if !SIGNATURE.contains(&algorithm) {
        return Err(CryptoError::UnsupportedAlgorithm);
    }
    let public = key.public().ok_or(CryptoError::KeyTypeMismatch)?;
    Ok(match (algorithm, &public.material) {
        ("RS256" | "RS384" | "RS512", Material::RsaPublic(rsa_key)) => rsa_key
            .verify(pkcs1_sign(algorithm), digest, signature)
            .is_ok(),
        ("PS256" | "PS384" | "PS512", Material::RsaPublic(rsa_key)) => {
            // Go verifies with any salt length; the RSA crate wants one. Signers use the
            // longest (Go, Python's `PSS.MAX_LENGTH`) or the hash's length (most others).
            let hash = hash_len(algorithm);
            [pss_max_salt(rsa_key, hash), hash].into_iter().any(|salt| {
                rsa_key
                    .verify(pss(algorithm, salt), digest, signature)
                    .is_ok()
            })
        }
        ("ES256" | "ES384" | "ES512", Material::P256Public(point)) => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            p256::ecdsa::Signature::from_der(signature).is_ok_and(|sig| {
                p256::ecdsa::VerifyingKey::from(point)
                    .verify_prehash(digest, &sig)
                    .is_ok()
            })
        }
        ("ES256" | "ES384" | "ES512", Material::P384Public(point)) => {
            use p384::ecdsa::signature::hazmat::PrehashVerifier;
            p384::ecdsa::Signature::from_der(signature).is_ok_and(|sig| {
                p384::ecdsa::VerifyingKey::from(point)
                    .verify_prehash(digest, &sig)
                    .is_ok()
            })
        }
        ("ES256" | "ES384" | "ES512", Material::P521Public(point)) => {
            use p521::ecdsa::signature::hazmat::PrehashVerifier;
            let Ok(verifying) = p521::ecdsa::VerifyingKey::from_affine(*point.as_affine()) else {
                return Ok(false);
            };
            p521::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| verifying.verify_prehash(digest, &sig).is_ok())
        }
        ("EdDSA", Material::Ed25519Public(verifying)) => {
            ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| verifying.verify_strict(digest, &sig).is_ok())
        }
        _ => return Err(CryptoError::KeyTypeMismatch),
    })
}

/// ECDSA over a caller's digest, DER-encoded as Go's `ecdsa.SignASN1` writes it.
mod ecdsa_signing {
    use super::CryptoError;

    pub(super) fn p256(secret: &p256::SecretKey, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let signature: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(secret)
            .sign_prehash(digest)
            .map_err(|_| CryptoError::InvalidDigest)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    pub(super) fn p384(secret: &p384::SecretKey, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use p384::ecdsa::signature::hazmat::PrehashSigner;
        let signature: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(secret)
            .sign_prehash(digest)
            .map_err(|_| CryptoError::InvalidDigest)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    pub(super) fn p521(secret: &p521::SecretKey, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // p521's deterministic signer needs its `getrandom` feature; the randomized one
        // (as Go's) takes our generator.
        use p521::ecdsa::signature::hazmat::RandomizedPrehashSigner;
        let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes())
            .map_err(|_| CryptoError::KeyTypeMismatch)?;
        let signature: p521::ecdsa::Signature = signing
            .sign_prehash_with_rng(&mut rand_core::OsRng, digest)
            .map_err(|_| CryptoError::InvalidDigest)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}
