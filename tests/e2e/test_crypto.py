"""The cryptography API as the official SDKs use it: the Python SDK's `encrypt`/`decrypt`
streams (RSA and AES key wrapping, as its examples/crypto), the subtle calls through the
SDK's generated gRPC stubs, the JavaScript SDK over gRPC, the HTTP doors, and
daprd's error answers. Messages are also opened here with the `cryptography` package by
the rules of Dapr's `dapr.io/enc/v1` scheme, independently of tandem's own decrypter."""

import base64
import hashlib
import hmac
import json
import re
import shutil
from pathlib import Path

import grpc
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conftest import E2E, wait_until, write_component

KEYS = Path(__file__).resolve().parents[2] / "crates/tandem-components/tests/crypto-keys"
JS = E2E / "js"
RSA_KEY = "rsa-private-key.pem"
SYMMETRIC_KEY = "symmetric-key-256"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the API is alpha


@pytest.fixture
def keys(tmp_path):
    """A keys folder as the Python SDK's examples/crypto has it (with tandem's test keys)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    shutil.copy(KEYS / "rsa-pkcs8.pem", folder / RSA_KEY)
    shutil.copy(KEYS / "symmetric-256", folder / SYMMETRIC_KEY)
    for name in ["ec256-sec1.pem", "ed25519.pem", "rsa.json"]:
        shutil.copy(KEYS / name, folder / name)
    return folder


@pytest.fixture
def sidecar(tandem, tmp_path, keys):
    components = tmp_path / "components"
    write_component(components, "crypto.yaml", "crypto-localstorage", "crypto.dapr.localstorage",
                    {"path": str(keys)})
    sidecar = tandem.sidecar("sidecar", app_id="crypto", resources=[components], cwd=tmp_path)
    sidecar.wait_healthy()
    return sidecar


@pytest.fixture
def client(sidecar, monkeypatch):
    from dapr.clients import DaprClient
    from dapr.conf import settings
    # The SDK waits for the sidecar's health on its configured HTTP port.
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", str(sidecar.grpc_port))
    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        yield client


@pytest.fixture
def stub(sidecar):
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


def encrypt(client, data, key, algorithm, **extra):
    from dapr.clients.grpc._crypto import EncryptOptions
    options = EncryptOptions(component_name="crypto-localstorage", key_name=key,
                             key_wrap_algorithm=algorithm, **extra)
    return client.encrypt(data=data, options=options).read()


def decrypt(client, data, key=""):
    from dapr.clients.grpc._crypto import DecryptOptions
    options = DecryptOptions(component_name="crypto-localstorage", key_name=key)
    return client.decrypt(data=data, options=options).read()


def open_message(message: bytes, file_key_of) -> bytes:
    """Dapr's v1 scheme by its specification: header, MAC, 64 KiB segments."""
    scheme, manifest, mac, payload = message.split(b"\n", 3)
    assert scheme == b"dapr.io/enc/v1"
    fields = json.loads(manifest)
    file_key = file_key_of(fields)
    header_key = HKDF(hashes.SHA256(), 32, None, b"header").derive(file_key)
    expected = hmac.new(header_key, scheme + b"\n" + manifest + b"\n", hashlib.sha256).digest()
    assert base64.b64decode(mac) == expected
    prefix = base64.b64decode(fields["np"])
    payload_key = HKDF(hashes.SHA256(), 32, prefix, b"payload").derive(file_key)
    assert fields["cph"] == 1, "AES-GCM"
    aead = AESGCM(payload_key)
    size = 65536 + 16
    segments = [payload[i:i + size] for i in range(0, len(payload), size)]
    out = b""
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        nonce = prefix + number.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        out += aead.decrypt(nonce, segment, None)
    return out


def test_python_sdk_round_trips_and_the_scheme_by_its_specification(client, keys):
    message = 'The secret is "passw0rd"'
    encrypted = encrypt(client, message.encode(), RSA_KEY, "RSA")
    assert decrypt(client, encrypted, RSA_KEY).decode() == message
    # The header names the key; decryption needs no key name then.
    assert decrypt(client, encrypted) == message.encode()
    manifest = json.loads(encrypted.split(b"\n")[1])
    assert manifest["k"] == RSA_KEY and manifest["kw"] == 5 and manifest["cph"] == 1
    private = serialization.load_pem_private_key((keys / RSA_KEY).read_bytes(), None)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    unwrap_rsa = lambda fields: private.decrypt(base64.b64decode(fields["wfk"]), oaep)
    assert open_message(encrypted, unwrap_rsa) == message.encode()

    # A large file with the AES key: several segments.
    data = bytes(range(256)) * 1200
    encrypted = encrypt(client, data, SYMMETRIC_KEY, "AES")
    assert len(encrypted.split(b"\n", 3)[3]) == len(data) + 5 * 16
    assert decrypt(client, encrypted, SYMMETRIC_KEY) == data
    kek = (keys / SYMMETRIC_KEY).read_bytes()
    unwrap_aes = lambda fields: aes_key_unwrap(kek, base64.b64decode(fields["wfk"]))
    assert open_message(encrypted, unwrap_aes) == data

    # ChaCha20-Poly1305, another decryption key name, or none at all.
    encrypted = encrypt(client, b"x" * 70000, SYMMETRIC_KEY, "A256KW",
                        data_encryption_cipher="chacha20-poly1305", decryption_key_name="other")
    assert json.loads(encrypted.split(b"\n")[1])["k"] == "other"
    assert decrypt(client, encrypted, SYMMETRIC_KEY) == b"x" * 70000
    encrypted = encrypt(client, b"z", SYMMETRIC_KEY, "AES", omit_decryption_key_name=True)
    assert "k" not in json.loads(encrypted.split(b"\n")[1])
    assert decrypt(client, encrypted, SYMMETRIC_KEY) == b"z"
    # The SDK sends no message at all for empty data: daprd's answer.
    text = grpc_error(lambda: encrypt(client, b"", SYMMETRIC_KEY, "AES"))
    assert "failed to perform operation: error receiving the first message: EOF" in text, text


def grpc_error(call):
    with pytest.raises(Exception) as raised:
        call()
    error = raised.value
    return str(error)


def test_python_sdk_errors_as_daprd(client):
    tampered = bytearray(encrypt(client, b"secret data", SYMMETRIC_KEY, "AES"))
    tampered[-3] ^= 1
    for call, text in [
        (lambda: encrypt(client, b"a", "nope", "AES"),
         "failed to perform operation: failed to wrap the file key: failed to retrieve the key "
         "encryption key: failed to load key 'nope'"),
        (lambda: encrypt(client, b"a", SYMMETRIC_KEY, "FOO"),
         "failed to perform operation: option Algorithm is not valid: algorithm FOO is not supported"),
        (lambda: decrypt(client, bytes(tampered), SYMMETRIC_KEY),
         "failed to perform operation: error processing segment 0: failed to decrypt segment"),
        (lambda: decrypt(client, encrypt(client, b"a", SYMMETRIC_KEY, "AES"), RSA_KEY),
         "failed to perform operation: failed to validate the document's signature"),
        (lambda: decrypt(client, b"not a message\n"),
         "failed to perform operation: invalid header: unsupported scheme"),
    ]:
        assert text in grpc_error(call), grpc_error(call)

    from dapr.clients.grpc._crypto import EncryptOptions
    options = EncryptOptions(component_name="nope", key_name=RSA_KEY, key_wrap_algorithm="RSA")
    text = grpc_error(lambda: client.encrypt(data=b"a", options=options).read())
    assert "crypto provider nope not found" in text, text


def test_subtle_calls(stub, keys):
    from dapr.proto.runtime.v1 import crypto_pb2 as pb
    component = "crypto-localstorage"
    # The public half of the RSA key, as PEM and as a JWK.
    pem = stub.SubtleGetKeyAlpha1(pb.SubtleGetKeyRequest(component_name=component, name=RSA_KEY))
    assert pem.name == RSA_KEY
    public = serialization.load_pem_public_key(pem.public_key.encode())
    private = serialization.load_pem_private_key((keys / RSA_KEY).read_bytes(), None)
    assert public.public_numbers() == private.public_key().public_numbers()
    jwk = stub.SubtleGetKeyAlpha1(pb.SubtleGetKeyRequest(
        component_name=component, name="rsa.json", format=pb.SubtleGetKeyRequest.JSON))
    assert jwk.name == "rsa.json"  # the name asked for, not the JWK's kid, as daprd
    fields = json.loads(jwk.public_key)
    assert fields["kty"] == "RSA" and fields["kid"] == "rsa-jwk" and "d" not in fields

    # AES-GCM, with the tag apart.
    sealed = stub.SubtleEncryptAlpha1(pb.SubtleEncryptRequest(
        component_name=component, key_name=SYMMETRIC_KEY, algorithm="A256GCM",
        plaintext=b"hello", nonce=b"\x01" * 12, associated_data=b"aad"))
    kek = (keys / SYMMETRIC_KEY).read_bytes()
    assert AESGCM(kek).decrypt(b"\x01" * 12, sealed.ciphertext + sealed.tag, b"aad") == b"hello"
    opened = stub.SubtleDecryptAlpha1(pb.SubtleDecryptRequest(
        component_name=component, key_name=SYMMETRIC_KEY, algorithm="A256GCM",
        ciphertext=sealed.ciphertext, tag=sealed.tag, nonce=b"\x01" * 12, associated_data=b"aad"))
    assert opened.plaintext == b"hello"

    # RSA-OAEP-256 from outside with the public key, decrypted inside.
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    opened = stub.SubtleDecryptAlpha1(pb.SubtleDecryptRequest(
        component_name=component, key_name=RSA_KEY, algorithm="RSA-OAEP-256",
        ciphertext=public.encrypt(b"from outside", oaep)))
    assert opened.plaintext == b"from outside"

    # Key wrapping.
    wrapped = stub.SubtleWrapKeyAlpha1(pb.SubtleWrapKeyRequest(
        component_name=component, key_name=SYMMETRIC_KEY, algorithm="A256KW",
        plaintext_key=b"\x07" * 32))
    assert aes_key_unwrap(kek, wrapped.wrapped_key) == b"\x07" * 32
    unwrapped = stub.SubtleUnwrapKeyAlpha1(pb.SubtleUnwrapKeyRequest(
        component_name=component, key_name=SYMMETRIC_KEY, algorithm="A256KW",
        wrapped_key=wrapped.wrapped_key))
    assert unwrapped.plaintext_key == b"\x07" * 32

    # Signatures over digests, checked by the cryptography package.
    digest = hashlib.sha256(b"signed message").digest()
    for algorithm, key, check in [
        ("RS256", RSA_KEY, lambda sig: public.verify(
            sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))),
        ("PS256", RSA_KEY, lambda sig: public.verify(
            sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
            utils.Prehashed(hashes.SHA256()))),
        ("ES256", "ec256-sec1.pem", lambda sig: serialization.load_pem_private_key(
            (keys / "ec256-sec1.pem").read_bytes(), None).public_key().verify(
            sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))),
    ]:
        signed = stub.SubtleSignAlpha1(pb.SubtleSignRequest(
            component_name=component, key_name=key, algorithm=algorithm, digest=digest))
        check(signed.signature)
        verified = stub.SubtleVerifyAlpha1(pb.SubtleVerifyRequest(
            component_name=component, key_name=key, algorithm=algorithm, digest=digest,
            signature=signed.signature))
        assert verified.valid, algorithm
        refused = stub.SubtleVerifyAlpha1(pb.SubtleVerifyRequest(
            component_name=component, key_name=key, algorithm=algorithm,
            digest=hashlib.sha256(b"other").digest(), signature=signed.signature))
        assert not refused.valid, algorithm
    # A signature made outside (PSS with the longest salt, as Go and Python make them).
    outside = private.sign(digest, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                           utils.Prehashed(hashes.SHA256()))
    assert stub.SubtleVerifyAlpha1(pb.SubtleVerifyRequest(
        component_name=component, key_name=RSA_KEY, algorithm="PS256", digest=digest,
        signature=outside)).valid
    eddsa = stub.SubtleSignAlpha1(pb.SubtleSignRequest(
        component_name=component, key_name="ed25519.pem", algorithm="EdDSA", digest=b"whole message"))
    ed_private = serialization.load_pem_private_key((keys / "ed25519.pem").read_bytes(), None)
    ed_private.public_key().verify(eddsa.signature, b"whole message")


def test_subtle_errors_as_daprd(stub):
    from dapr.proto.runtime.v1 import crypto_pb2 as pb
    component = "crypto-localstorage"
    for call, code, message in [
        (lambda: stub.SubtleEncryptAlpha1(pb.SubtleEncryptRequest(
            component_name="nope", key_name=SYMMETRIC_KEY, algorithm="A256GCM")),
         grpc.StatusCode.INVALID_ARGUMENT, "crypto provider nope not found"),
        (lambda: stub.SubtleEncryptAlpha1(pb.SubtleEncryptRequest(
            component_name="", key_name=SYMMETRIC_KEY, algorithm="A256GCM")),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid request: missing component name"),
        (lambda: stub.SubtleEncryptAlpha1(pb.SubtleEncryptRequest(
            component_name=component, key_name=SYMMETRIC_KEY, algorithm="ROT13", nonce=b"1" * 12)),
         grpc.StatusCode.INTERNAL, "failed to perform operation: failed to encrypt"),
        (lambda: stub.SubtleSignAlpha1(pb.SubtleSignRequest(
            component_name=component, key_name="missing", algorithm="RS256", digest=b"1" * 32)),
         grpc.StatusCode.INTERNAL, "failed to perform operation: failed to sign"),
        (lambda: stub.SubtleGetKeyAlpha1(pb.SubtleGetKeyRequest(
            component_name=component, name=SYMMETRIC_KEY)),
         grpc.StatusCode.INTERNAL, f"failed to retrieve key {SYMMETRIC_KEY}: key not found"),
        (lambda: stub.SubtleGetKeyAlpha1(pb.SubtleGetKeyRequest(
            component_name=component, name=RSA_KEY, format=7)),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid request: invalid key format"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == code, raised.value
        assert raised.value.details() == message, raised.value


def test_http_doors(sidecar, keys):
    base = f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/crypto"
    data = b"over HTTP " * 10000
    headers = {"dapr-key-name": SYMMETRIC_KEY, "dapr-key-wrap-algorithm": "A256KW"}
    encrypted = requests.put(f"{base}/crypto-localstorage/encrypt", data=iter([data[:5000], data[5000:]]),
                             headers=headers, timeout=10)
    assert encrypted.status_code == 200, encrypted.text
    assert encrypted.headers["content-type"] == "application/octet-stream"
    assert encrypted.content.startswith(b"dapr.io/enc/v1\n")
    decrypted = requests.put(f"{base}/crypto-localstorage/decrypt", data=encrypted.content, timeout=10)
    assert decrypted.status_code == 200 and decrypted.content == data, decrypted.text
    # Bodies count against --max-body-size (4 MiB by default), as every other body.
    large = requests.put(f"{base}/crypto-localstorage/encrypt", data=b"0" * (5 << 20),
                         headers=headers, timeout=30)
    assert large.json()["errorCode"] == "ERR_BODY_READ", large.text
    # An empty message is the header alone, and decrypts to nothing.
    empty = requests.put(f"{base}/crypto-localstorage/encrypt", data=b"", headers=headers, timeout=10)
    assert empty.content.count(b"\n") == 3 and empty.content.endswith(b"\n"), empty.content
    back = requests.put(f"{base}/crypto-localstorage/decrypt", data=empty.content, timeout=10)
    assert back.status_code == 200 and back.content == b"", back.text
    # Omitting the key name: the decrypting side names it.
    omitted = requests.put(f"{base}/crypto-localstorage/encrypt", data=b"hi", timeout=10,
                           headers={**headers, "dapr-omit-decryption-key-name": "true"})
    missing = requests.put(f"{base}/crypto-localstorage/decrypt", data=omitted.content, timeout=10)
    assert missing.status_code == 500 and missing.json() == {
        "errorCode": "ERR_CRYPTO",
        "message": "failed to perform operation: document's manifest does not contain a key name, "
                   "and no key name was provided"}, missing.text
    named = requests.put(f"{base}/crypto-localstorage/decrypt", data=omitted.content, timeout=10,
                         headers={"dapr-key-name": SYMMETRIC_KEY})
    assert named.content == b"hi"
    for path, sent, status, code, message in [
        ("nope/encrypt", headers, 400, "ERR_CRYPTO_PROVIDER_NOT_FOUND", "crypto provider nope not found"),
        ("crypto-localstorage/encrypt", {"dapr-key-name": SYMMETRIC_KEY}, 400, "ERR_BAD_REQUEST",
         "invalid request: missing header 'dapr-key-wrap-algorithm'"),
        ("crypto-localstorage/encrypt", {"dapr-key-wrap-algorithm": "A256KW"}, 400, "ERR_BAD_REQUEST",
         "invalid request: missing header 'dapr-key-name'"),
        ("crypto-localstorage/encrypt", {**headers, "dapr-data-encryption-cipher": "rot13"}, 500,
         "ERR_CRYPTO", "failed to perform operation: option Cipher is not valid: cipher ROT13 is not supported"),
    ]:
        answer = requests.put(f"{base}/{path}", data=b"x", headers=sent, timeout=10)
        assert answer.status_code == status, answer.text
        assert answer.json() == {"errorCode": code, "message": message}, answer.text


def test_no_crypto_components(tandem, tmp_path):
    sidecar = tandem.sidecar("bare", app_id="no-crypto", cwd=tmp_path)
    sidecar.wait_healthy()
    answer = requests.put(f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/crypto/any/encrypt",
                          data=b"x", timeout=10)
    assert answer.status_code == 500
    assert answer.json() == {"errorCode": "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED",
                             "message": "crypto providers not configured"}


def test_js_sdk(tandem, tmp_path, keys):
    """Over gRPC: the SDK's HTTP client refuses crypto calls itself."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    components = tmp_path / "components"
    write_component(components, "crypto.yaml", "crypto-local", "crypto.dapr.localstorage",
                    {"path": str(keys)})
    client = tandem.run("js-crypto", [node, "crypto.mjs"], app_id="js-crypto", cwd=JS,
                        resources=[components],
                        env={"COMPONENT": "crypto-local", "KEY": SYMMETRIC_KEY})
    wait_until(lambda: '"kind":"done"' in client.proc.output() or not client.proc.alive(), 60,
               "the client to finish")
    lines = [json.loads(text) for text in
             re.findall(r'^.*?(\{"kind":"[a-z-]+".*\})\s*$', client.proc.output(), re.M)]
    assert lines[:1] and lines == [
        {"kind": "buffer", "header": "dapr.io/enc/v1\n", "grew": lines[0].get("grew")},
        {"kind": "buffer-round-trip", "equal": True},
        {"kind": "stream-round-trip", "equal": True},
        {"kind": "done"},
    ], client.proc.tail()
    assert lines[0]["grew"] > 4 * 16
