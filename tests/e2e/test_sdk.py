"""The official Python SDK's DaprClient against `tandem sidecar`: secrets from the local file
and environment stores, secret scopes, publishing, the errors for unknown components, and the
API token."""

import json

import grpc
import pytest
import requests
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError

from conftest import write_component

SECRETS = {
    "redisPassword": "s3cret",
    "database": {"user": "alice", "password": "wonderland"},
}


@pytest.fixture
def resources(tmp_path):
    """A local.file store reading ./secrets.json (relative to where the sidecar runs), an
    env store with a prefix, and an in-memory pubsub."""
    workdir = tmp_path / "app"
    workdir.mkdir()
    (workdir / "secrets.json").write_text(json.dumps(SECRETS))
    components = tmp_path / "components"
    write_component(components, "secrets.yaml", "local-secret-store", "secretstores.local.file",
                    {"secretsFile": "secrets.json"})
    write_component(components, "env.yaml", "env-secret-store", "secretstores.local.env",
                    {"prefix": "E2E_SECRET_"})
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.in-memory")
    return workdir, components


def use_sidecar(monkeypatch, sidecar, token=None):
    """Points the SDK at `sidecar` the way `tandem run` would: through the environment."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "20")
    monkeypatch.setenv("DAPR_API_TIMEOUT_SECONDS", "10")  # a hung call fails instead of hanging
    if token is None:
        monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DAPR_API_TOKEN", token)


def test_sdk_secrets_and_errors(tandem, resources, monkeypatch):
    workdir, components = resources
    sidecar = tandem.sidecar("sidecar", app_id="sdk-client", resources=[components], cwd=workdir,
                             env={"E2E_SECRET_API_KEY": "from-the-environment"})
    sidecar.wait_healthy()
    use_sidecar(monkeypatch, sidecar)

    with DaprClient() as client:
        secret = client.get_secret(store_name="local-secret-store", key="redisPassword")
        assert secret.secret == {"redisPassword": "s3cret"}

        # Nested keys are flattened with ':'.
        nested = client.get_secret(store_name="local-secret-store", key="database:user")
        assert nested.secret == {"database:user": "alice"}

        bulk = client.get_bulk_secret(store_name="local-secret-store")
        assert bulk.secrets == {
            "redisPassword": {"redisPassword": "s3cret"},
            "database:user": {"database:user": "alice"},
            "database:password": {"database:password": "wonderland"},
        }

        from_env = client.get_secret(store_name="env-secret-store", key="API_KEY")
        assert from_env.secret == {"API_KEY": "from-the-environment"}

        # Publishing to a component that exists works ...
        client.publish_event(pubsub_name="pubsub", topic_name="anything", data=json.dumps({"a": 1}),
                             data_content_type="application/json")

        # ... and to one that does not is an error that says so.
        with pytest.raises(DaprGrpcError) as raised:
            client.publish_event(pubsub_name="no-such-pubsub", topic_name="orders", data="{}",
                                 data_content_type="application/json")
        message = raised.value.details()
        assert "no-such-pubsub" in message and "not found" in message, message

        # (get_secret lets grpc's own error through; DaprGrpcError is one of those too.)
        with pytest.raises(grpc.RpcError) as raised:
            client.get_secret(store_name="no-such-store", key="redisPassword")
        assert "no-such-store" in raised.value.details(), raised.value.details()

    # The HTTP API answers the same mistake with Dapr's error code.
    response = sidecar.publish("no-such-pubsub", "orders", {"product": "falafel"})
    assert response.status_code == 404, response.text
    assert response.json()["errorCode"] == "ERR_PUBSUB_NOT_FOUND"
    assert response.headers["Content-Type"].startswith("application/json")


def test_secret_scopes_of_the_configuration(tandem, resources, tmp_path, monkeypatch):
    """The Python SDK's own secret_store example with its config.yaml: the store denies by
    default and allows one secret."""
    workdir, components = resources
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n"
        "spec:\n  secrets:\n    scopes:\n      - storeName: \"local-secret-store\"\n"
        "        defaultAccess: \"deny\"\n        allowedSecrets: [\"redisPassword\",]\n")
    sidecar = tandem.sidecar("sidecar", app_id="scoped", resources=[components], cwd=workdir,
                             extra_args=["--config", str(config)])
    sidecar.wait_healthy()
    use_sidecar(monkeypatch, sidecar)
    with DaprClient() as client:
        allowed = client.get_secret(store_name="local-secret-store", key="redisPassword")
        assert allowed.secret == {"redisPassword": "s3cret"}
        # Bulk answers only what the scope allows.
        bulk = client.get_bulk_secret(store_name="local-secret-store")
        assert bulk.secrets == {"redisPassword": {"redisPassword": "s3cret"}}
        with pytest.raises(grpc.RpcError) as raised:
            client.get_secret(store_name="local-secret-store", key="database:user")
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == \
            'access denied by policy to get "database:user" from "local-secret-store"'

    response = requests.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0/secrets/"
                            "local-secret-store/database:password", timeout=10)
    assert response.status_code == 403, response.text
    assert response.json() == {
        "errorCode": "ERR_PERMISSION_DENIED",
        "message": 'access denied by policy to get "database:password" from "local-secret-store"',
    }
    assert "wonderland" not in response.text


def test_api_token(tandem, resources, monkeypatch):
    workdir, components = resources
    token = "e2e-token"
    sidecar = tandem.sidecar("sidecar", app_id="sdk-client", resources=[components], cwd=workdir,
                             env={"DAPR_API_TOKEN": token})
    sidecar.wait_healthy()  # health needs no token
    url = sidecar.url

    assert requests.get(f"{url}/v1.0/healthz", timeout=5).status_code == 204
    assert requests.get(f"{url}/v1.0/healthz/outbound", timeout=5).status_code == 204

    assert requests.get(f"{url}/v1.0/metadata", timeout=5).status_code == 401
    assert sidecar.publish("pubsub", "orders", {"n": 1}).status_code == 401
    wrong = {"dapr-api-token": "not-the-token"}
    assert requests.get(f"{url}/v1.0/metadata", headers=wrong, timeout=5).status_code == 401

    right = {"dapr-api-token": token}
    assert requests.get(f"{url}/v1.0/metadata", headers=right, timeout=5).status_code == 200
    assert sidecar.publish("pubsub", "orders", {"n": 1}, headers=right).status_code == 204
    secret = requests.get(f"{url}/v1.0/secrets/local-secret-store/redisPassword", headers=right,
                          timeout=5)
    assert secret.status_code == 200 and secret.json() == {"redisPassword": "s3cret"}

    # The SDK sends DAPR_API_TOKEN from its environment as gRPC metadata.
    use_sidecar(monkeypatch, sidecar, token=token)
    with DaprClient() as client:
        assert client.get_secret("local-secret-store", "redisPassword").secret == {
            "redisPassword": "s3cret"}

    use_sidecar(monkeypatch, sidecar, token=None)
    with DaprClient() as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.get_secret("local-secret-store", "redisPassword")
        assert raised.value.code().name == "UNAUTHENTICATED"


def test_sdk_reads_daprs_rich_errors(tandem, tmp_path, monkeypatch):
    """The SDK's DaprGrpcError decodes the google.rpc details tandem sends as daprd does:
    error_code() is the ErrorInfo reason, and the resource and bad field are named."""
    components = tmp_path / "components"
    write_component(components, "state.yaml", "statestore", "state.in-memory")
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.in-memory")
    sidecar = tandem.sidecar("sidecar", app_id="sdk-errors", resources=[components])
    sidecar.wait_healthy()
    use_sidecar(monkeypatch, sidecar)

    with DaprClient() as client:
        with pytest.raises(DaprGrpcError) as raised:
            client.save_state(store_name="statestore", key="a||b", value="x")
        error = raised.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "input key/keyPrefix 'a||b' can't contain '||'"
        assert error.error_code() == "DAPR_STATE_ILLEGAL_KEY", error.json()
        details = error.status_details()
        assert details.error_info["domain"] == "dapr.io"
        assert details.resource_info["resource_type"] == "state"
        assert details.resource_info["resource_name"] == "statestore"
        assert details.bad_request["field_violations"][0]["field"] == "a||b"

        with pytest.raises(DaprGrpcError) as raised:
            client.publish_event(pubsub_name="no-such-pubsub", topic_name="orders", data="{}",
                                 data_content_type="application/json")
        assert raised.value.error_code() == "DAPR_PUBSUB_NOT_FOUND", raised.value.json()
