//! The crypto components: keys of every format load from `crypto.dapr.localstorage`
//! (the keys in `crypto-keys/` were made with OpenSSL for these tests) and from
//! `crypto.dapr.jwks` (inline, base64, file, HTTP); sign/verify, wrap/unwrap and
//! encrypt/decrypt round trips; the key-use rules; the `dapr.io/enc/v1` scheme against
//! `dapr/kit`'s own test messages when they are at hand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::Digest;
use tandem_components::crypto::{self, CryptoProvider, Hint, parse_key, scheme};
use tandem_spec::{Component, ComponentMetadata};

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crypto-keys")
}

async fn build(kind: &str, values: &[(&str, &str)]) -> Result<Arc<dyn CryptoProvider>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let component = Component {
        file: Some("components/crypto.yaml".into()),
        ..Component::new("mycrypto", kind)
    };
    crypto::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

async fn local() -> Arc<dyn CryptoProvider> {
    build(
        "crypto.dapr.localstorage",
        &[("path", keys_dir().to_str().unwrap())],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn localstorage_metadata_errors_name_the_component_and_field() {
    let missing = build("crypto.dapr.localstorage", &[]).await.err().unwrap();
    assert!(
        missing.contains("mycrypto") && missing.contains("path"),
        "{missing}"
    );
    let file = keys_dir().join("symmetric-256");
    let not_dir = build(
        "crypto.dapr.localstorage",
        &[("path", file.to_str().unwrap())],
    )
    .await
    .err()
    .unwrap();
    assert!(not_dir.contains("is not a directory"), "{not_dir}");
    let absent = build("crypto.dapr.localstorage", &[("path", "/no/such/folder")])
        .await
        .err()
        .unwrap();
    assert!(absent.contains("could not stat path"), "{absent}");
}

#[tokio::test]
async fn every_key_format_loads() {
    let provider = local().await;
    for (name, kind) in [
        ("rsa-pkcs8.pem", "RSA private"),
        ("rsa-pkcs1.pem", "RSA private"),
        ("rsa-public.pem", "RSA public"),
        ("rsa.json", "RSA private"),
        ("ec256-sec1.pem", "EC private"),
        ("ec256-pkcs8.pem", "EC private"),
        ("ec256-public.pem", "EC public"),
        ("ec256.json", "EC private"),
        ("ec384.pem", "EC private"),
        ("ec521.pem", "EC private"),
        ("ed25519.pem", "Ed25519 private"),
        ("symmetric-256", "symmetric"),
        ("symmetric-128-base64", "symmetric"),
        ("oct-wrap-only.json", "symmetric"),
    ] {
        let key = provider
            .retrieve_key(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.kind(), kind, "{name}");
    }
    // The base64 file is 16 bytes of key, not 25 of text.
    let key = provider.retrieve_key("symmetric-128-base64").await.unwrap();
    assert_eq!(key.serialize().unwrap().len(), 16);
    // Names stay in the folder; missing files say so.
    let escape = provider.retrieve_key("../Cargo.toml").await.unwrap_err();
    assert_eq!(escape.to_string(), "invalid key path: cannot contain '..'");
    let missing = provider.retrieve_key("nope").await.unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("failed to load key 'nope': "),
        "{missing}"
    );
    // Debug output never shows material.
    let debug = format!(
        "{:?}",
        provider.retrieve_key("symmetric-256").await.unwrap()
    );
    assert!(debug.starts_with("Key { kind: \"symmetric\""), "{debug}");
}

#[tokio::test]
async fn public_keys_come_out_as_pem_and_jwk() {
    let provider = local().await;
    // The private PKCS#8 key's public half is the same as the public file.
    let public = crypto::get_key(provider.as_ref(), "rsa-pkcs8.pem")
        .await
        .unwrap();
    let expected = std::fs::read_to_string(keys_dir().join("rsa-public.pem")).unwrap();
    assert_eq!(public.public_pem().unwrap(), expected);
    let jwk: serde_json::Value = serde_json::from_str(&public.public_jwk().unwrap()).unwrap();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    assert!(jwk.get("d").is_none());
    // Members are in name order, as Dapr's JWK library writes them.
    let text = public.public_jwk().unwrap();
    assert!(
        text.starts_with("{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":"),
        "{text}"
    );
    let ec = crypto::get_key(provider.as_ref(), "ec256.json")
        .await
        .unwrap();
    let ec_jwk: serde_json::Value = serde_json::from_str(&ec.public_jwk().unwrap()).unwrap();
    assert_eq!(ec_jwk["crv"], "P-256");
    assert_eq!(ec_jwk["use"], "sig");
    let ec_pem = crypto::get_key(provider.as_ref(), "ec256-sec1.pem")
        .await
        .unwrap();
    let expected = std::fs::read_to_string(keys_dir().join("ec256-public.pem")).unwrap();
    assert_eq!(ec_pem.public_pem().unwrap(), expected);
    // A symmetric key has no public half: not found, as in Dapr.
    let symmetric = crypto::get_key(provider.as_ref(), "symmetric-256")
        .await
        .unwrap_err();
    assert!(symmetric.is_key_not_found());
}

#[tokio::test]
async fn signatures_round_trip_and_refuse_other_digests() {
    let provider = local().await;
    let p = provider.as_ref();
    let message = b"the message";
    let sha256 = sha2::Sha256::digest(message).to_vec();
    let sha384 = sha2::Sha384::digest(message).to_vec();
    let sha512 = sha2::Sha512::digest(message).to_vec();
    for (key, algorithm, digest) in [
        ("rsa-pkcs8.pem", "RS256", &sha256),
        ("rsa-pkcs1.pem", "RS512", &sha512),
        ("rsa.json", "PS256", &sha256),
        ("rsa-pkcs8.pem", "PS384", &sha384),
        ("ec256-sec1.pem", "ES256", &sha256),
        ("ec384.pem", "ES384", &sha384),
        ("ec521.pem", "ES512", &sha512),
        ("ed25519.pem", "EdDSA", &message.to_vec()),
    ] {
        let signature = crypto::sign(p, key, algorithm, digest)
            .await
            .unwrap_or_else(|e| panic!("{key} {algorithm}: {e}"));
        assert!(
            crypto::verify(p, key, algorithm, digest, &signature)
                .await
                .unwrap(),
            "{key} {algorithm}"
        );
        let mut other = digest.clone();
        other[0] ^= 1;
        assert!(
            !crypto::verify(p, key, algorithm, &other, &signature)
                .await
                .unwrap(),
            "{key} {algorithm}"
        );
        assert!(
            !crypto::verify(p, key, algorithm, digest, b"junk")
                .await
                .unwrap(),
            "{key} {algorithm}"
        );
    }
    // A public key verifies what its private key signed.
    let signature = crypto::sign(p, "rsa-pkcs8.pem", "PS256", &sha256)
        .await
        .unwrap();
    assert!(
        crypto::verify(p, "rsa-public.pem", "PS256", &sha256, &signature)
            .await
            .unwrap()
    );
    // Wrong key types and unknown algorithms are errors.
    let error = crypto::sign(p, "symmetric-256", "RS256", &sha256)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to sign message: key type mismatch"
    );
    let error = crypto::sign(p, "rsa-pkcs8.pem", "HS256", &sha256)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to sign message: unsupported algorithm"
    );
}

#[tokio::test]
async fn symmetric_and_rsa_encryption_round_trip() {
    let provider = local().await;
    let p = provider.as_ref();
    let plaintext = b"a small secret message";
    let aad = b"context";
    let key_of = |algorithm: &str| match algorithm {
        a if a.starts_with("RSA") => "rsa-pkcs8.pem",
        _ => "symmetric-256",
    };
    for (algorithm, nonce) in [
        ("A256GCM", vec![1u8; 12]),
        ("A256CBC", vec![2u8; 16]),
        ("C20P", vec![3u8; 12]),
        ("XC20P", vec![4u8; 24]),
        ("A128CBC-HS256", vec![5u8; 16]),
        ("RSA-OAEP", vec![]),
        ("RSA-OAEP-256", vec![]),
        ("RSA-OAEP-512", vec![]),
        ("RSA1_5", vec![]),
    ] {
        let key = key_of(algorithm);
        let (ciphertext, tag) = crypto::encrypt(p, key, algorithm, plaintext, &nonce, aad)
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_ne!(&ciphertext[..], &plaintext[..]);
        let decrypted = crypto::decrypt(p, key, algorithm, &ciphertext, &nonce, &tag, aad)
            .await
            .unwrap();
        assert_eq!(decrypted, plaintext, "{algorithm}");
        if !tag.is_empty() {
            let mut bad = tag.clone();
            bad[0] ^= 1;
            crypto::decrypt(p, key, algorithm, &ciphertext, &nonce, &bad, aad)
                .await
                .unwrap_err();
        }
    }
    // A public key encrypts; only the private key decrypts.
    let (ciphertext, _) = crypto::encrypt(p, "rsa-public.pem", "RSA-OAEP-256", plaintext, &[], &[])
        .await
        .unwrap();
    assert_eq!(
        crypto::decrypt(
            p,
            "rsa-pkcs1.pem",
            "RSA-OAEP-256",
            &ciphertext,
            &[],
            &[],
            &[]
        )
        .await
        .unwrap(),
        plaintext
    );
    crypto::decrypt(
        p,
        "rsa-public.pem",
        "RSA-OAEP-256",
        &ciphertext,
        &[],
        &[],
        &[],
    )
    .await
    .unwrap_err();
    // Dapr's size rules: a 256-bit key is not an A128GCM key; GCM wants a 12-byte nonce.
    let error = crypto::encrypt(p, "symmetric-256", "A128GCM", plaintext, &[0; 12], &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to encrypt data: key type mismatch"
    );
    let error = crypto::encrypt(p, "symmetric-256", "A256GCM", plaintext, &[0; 8], &[])
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "failed to encrypt data: invalid nonce");
    let error = crypto::encrypt(
        p,
        "symmetric-256",
        "A256CBC-NOPAD",
        plaintext,
        &[0; 16],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to encrypt data: invalid plaintext length"
    );
    let error = crypto::encrypt(p, "symmetric-256", "ECDH-ES", plaintext, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to encrypt data: unsupported algorithm"
    );
}

#[tokio::test]
async fn key_wrapping_round_trips_and_honours_key_ops() {
    let provider = local().await;
    let p = provider.as_ref();
    let file_key = parse_key(&[7u8; 32], Hint::None).unwrap();
    for (kek, algorithm) in [
        ("symmetric-256", "A256KW"),
        ("oct-wrap-only.json", "A256KW"),
        ("rsa-pkcs8.pem", "RSA-OAEP-256"),
    ] {
        let (wrapped, tag) = crypto::wrap_key(p, kek, algorithm, &file_key, &[], &[])
            .await
            .unwrap();
        let unwrapped = crypto::unwrap_key(p, kek, algorithm, &wrapped, &[], &tag, &[])
            .await
            .unwrap();
        assert_eq!(unwrapped, vec![7u8; 32], "{kek}");
    }
    // AES-KW detects a wrong key.
    let (wrapped, _) = crypto::wrap_key(p, "symmetric-256", "A256KW", &file_key, &[], &[])
        .await
        .unwrap();
    crypto::unwrap_key(p, "oct-wrap-only.json", "A256KW", &wrapped, &[], &[], &[])
        .await
        .unwrap_err();
    // `key_ops` and `alg` limit what a key does.
    let error = crypto::encrypt(p, "oct-wrap-only.json", "A256GCM", b"x", &[0; 12], &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "key cannot perform the 'encrypt' operation"
    );
    let error = crypto::wrap_key(p, "oct-wrap-only.json", "A128KW", &file_key, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "key cannot be used with algorithm 'A128KW'"
    );
    // `use: sig` keys only sign and verify.
    let error = crypto::wrap_key(p, "ec256.json", "RSA-OAEP", &file_key, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "key cannot perform the 'wrapKey' operation"
    );
    // An asymmetric plaintext key is wrapped as its PKCS#8 DER.
    let rsa = parse_key(
        &std::fs::read(keys_dir().join("ec256-pkcs8.pem")).unwrap(),
        Hint::None,
    )
    .unwrap();
    let der = rsa.serialize().unwrap();
    assert_eq!(der[0], 0x30);
}

#[tokio::test]
async fn jwks_from_inline_json_base64_and_file() {
    let text = std::fs::read_to_string(keys_dir().join("jwks.json")).unwrap();
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
    let file = keys_dir().join("jwks.json");
    for value in [text.as_str(), encoded.as_str(), file.to_str().unwrap()] {
        let provider = build("crypto.dapr.jwks", &[("jwks", value)]).await.unwrap();
        let p = provider.as_ref();
        assert_eq!(
            provider.retrieve_key("rsa-pub").await.unwrap().kind(),
            "RSA public"
        );
        let public = crypto::get_key(p, "rsa-pub").await.unwrap();
        assert!(public.public_jwk().unwrap().contains("\"kid\":\"rsa-pub\""));
        assert!(
            provider
                .retrieve_key("nope")
                .await
                .unwrap_err()
                .is_key_not_found()
        );
        // The symmetric key encrypts and decrypts.
        let (ciphertext, tag) = crypto::encrypt(p, "aes", "A256GCM", b"hi", &[0; 12], &[])
            .await
            .unwrap();
        assert_eq!(
            crypto::decrypt(p, "aes", "A256GCM", &ciphertext, &[0; 12], &tag, &[])
                .await
                .unwrap(),
            b"hi"
        );
    }
    let missing = build("crypto.dapr.jwks", &[]).await.err().unwrap();
    assert!(missing.contains("jwks"), "{missing}");
    let bad = build("crypto.dapr.jwks", &[("jwks", "not a jwks")])
        .await
        .err()
        .unwrap();
    assert!(
        bad.contains("not a URL, path to local file, or JSON value"),
        "{bad}"
    );
    let duration = build(
        "crypto.dapr.jwks",
        &[("jwks", &text), ("requestTimeout", "soon")],
    )
    .await
    .err()
    .unwrap();
    assert!(duration.contains("requestTimeout"), "{duration}");
}

#[tokio::test]
async fn jwks_from_a_url() {
    let text = std::fs::read_to_string(keys_dir().join("jwks.json")).unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || async move { text }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{address}/jwks.json");
    let provider = build(
        "crypto.dapr.jwks",
        &[
            ("jwks", &url),
            ("requestTimeout", "5s"),
            ("minRefreshInterval", "1m"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        provider.retrieve_key("aes").await.unwrap().kind(),
        "symmetric"
    );
    let absent = format!("http://{address}/absent");
    let error = build("crypto.dapr.jwks", &[("jwks", &absent)])
        .await
        .err()
        .unwrap();
    assert!(error.contains("failed to fetch JWKS"), "{error}");
}

#[tokio::test]
async fn the_scheme_wraps_its_file_key_with_a_component_key() {
    // What the runtime does for EncryptAlpha1/DecryptAlpha1, by hand.
    let provider = local().await;
    let p = provider.as_ref();
    for (kek, wrap) in [("symmetric-256", "AES"), ("rsa-pkcs8.pem", "RSA")] {
        let wrap = scheme::KeyWrap::parse(wrap).unwrap();
        let (file_key, prefix) = scheme::new_file_key();
        let key = parse_key(&file_key, Hint::None).unwrap();
        let (wrapped, _) = crypto::wrap_key(p, kek, wrap.algorithm(), &key, &[], &[])
            .await
            .unwrap();
        let mut encryptor = scheme::Encryptor::new(
            &file_key,
            prefix,
            wrap,
            &wrapped,
            scheme::Cipher::AesGcm,
            kek,
        )
        .unwrap();
        let mut message = encryptor.header().to_vec();
        message.extend(encryptor.update(&[42u8; 100_000]).unwrap());
        message.extend(encryptor.finish());
        let (header, used) = scheme::Header::read(&message).unwrap().unwrap();
        assert_eq!(header.key_name, kek);
        let unwrapped = crypto::unwrap_key(
            p,
            &header.key_name,
            header.wrap.algorithm(),
            &header.wrapped_key,
            &[],
            &[],
            &[],
        )
        .await
        .unwrap();
        let mut decryptor = header.open(Some(&unwrapped)).unwrap();
        let mut plaintext = decryptor.update(&message[used..]).unwrap();
        plaintext.extend(decryptor.finish().unwrap());
        assert_eq!(plaintext, vec![42u8; 100_000]);
    }
}

/// `dapr/kit`'s own encrypted test messages (its `schemes/enc/v1/testdata`), which wrap
/// the file key with the identity function. Not part of this repository: set
/// `DAPR_KIT_ENC_TESTDATA` to that folder to run this check.
#[test]
fn dapr_kit_test_messages_decrypt() {
    let Some(dir) = std::env::var_os("DAPR_KIT_ENC_TESTDATA") else {
        eprintln!("DAPR_KIT_ENC_TESTDATA not set: skipped");
        return;
    };
    let dir = PathBuf::from(dir);
    let repeat = |pattern: &[u8], times: usize| pattern.repeat(times);
    let ten = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 0];
    let eight = [1u8, 2, 3, 4, 5, 6, 7, 8];
    for (file, expected) in [
        ("single-segment.enc", b"hello world".to_vec()),
        ("single-segment-no-key-name.enc", b"hello world".to_vec()),
        ("multi-segment.enc", repeat(&ten, 12 << 10)),
        ("one-full-segment.enc", repeat(&eight, 8 << 10)),
        ("two-full-segments.enc", repeat(&eight, 16 << 10)),
        ("large-file.enc", repeat(&ten, 30 << 10)),
        ("empty-message.enc", Vec::new()),
    ] {
        let message = std::fs::read(dir.join(file)).unwrap();
        let (header, used) = scheme::Header::read(&message).unwrap().unwrap();
        let file_key = header.wrapped_key.clone();
        let mut decryptor = header.open(Some(&file_key)).unwrap();
        let mut plaintext = Vec::new();
        for chunk in message[used..].chunks(1000) {
            plaintext.extend(decryptor.update(chunk).unwrap());
        }
        plaintext.extend(decryptor.finish().unwrap());
        assert_eq!(plaintext, expected, "{file}");
    }
}

#[tokio::test]
async fn jwks_files_are_read_again_and_urls_fetched_again() {
    let text = std::fs::read_to_string(keys_dir().join("jwks.json")).unwrap();
    let renamed = text.replace("\"aes\"", "\"aes-2\"");
    // A file: replaced, it is read again.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, &text).unwrap();
    let provider = build("crypto.dapr.jwks", &[("jwks", file.to_str().unwrap())])
        .await
        .unwrap();
    assert!(provider.retrieve_key("aes").await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    std::fs::write(&file, &renamed).unwrap();
    let reloaded = async {
        while provider.retrieve_key("aes-2").await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reloaded)
        .await
        .expect("file read again");
    assert!(provider.retrieve_key("aes").await.is_err());

    // A URL: fetched again every minRefreshInterval; a failed fetch keeps the keys.
    let served = Arc::new(parking_lot::Mutex::new((200u16, text.clone())));
    let answer = served.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (status, body) = answer.lock().clone();
            async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{address}/jwks.json");
    let provider = build(
        "crypto.dapr.jwks",
        &[("jwks", &url), ("minRefreshInterval", "1s")],
    )
    .await
    .unwrap();
    *served.lock() = (500, String::new());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        provider.retrieve_key("aes").await.is_ok(),
        "kept after a failed refresh"
    );
    *served.lock() = (200, renamed);
    let refreshed = async {
        while provider.retrieve_key("aes-2").await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), refreshed)
        .await
        .expect("fetched again");
}
