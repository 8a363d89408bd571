"""The official JavaScript SDK (@dapr/dapr, installed by scripts/test into tests/e2e/js):
an app on its DaprServer — HTTP and gRPC — subscribes and serves a method; a client on its
DaprClient — HTTP and gRPC — publishes to it and invokes it, each through `tandem run`.
The app's bulk subscription (`subscribeBulk`) gets every event exactly as its single one
does: once each, in batches, none acknowledged without the app's own status."""

import json
import re
import shutil

import pytest

from conftest import E2E, free_port, wait_until, write_component

JS = E2E / "js"
COUNT = 10


def records(proc, kind):
    return [json.loads(text) for text in re.findall(r'\{"kind":"[^"]*".*?\}(?=\s*$)', proc.output(), re.M)
            if json.loads(text)["kind"] == kind]


@pytest.fixture
def node():
    binary = shutil.which("node")
    if binary is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    return binary


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_js_sdk_server_and_client(tandem, tmp_path, node, protocol):
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.sqlite",
                    {"connectionString": str(tmp_path / "broker.db")})
    port = free_port()
    server = tandem.run("js-server", [node, "server.mjs"], app_id=f"js-server-{protocol}",
                        app_port=port, resources=[components], cwd=JS,
                        env={"PROTOCOL": protocol},
                        extra_args=["--app-protocol", protocol])
    server.wait_subscribed("pubsub", "orders")
    server.wait_subscribed("pubsub", "batches")

    client = tandem.run("js-client", [node, "client.mjs"], app_id=f"js-client-{protocol}",
                        resources=[components], cwd=JS,
                        env={"PROTOCOL": protocol, "TARGET": f"js-server-{protocol}",
                             "COUNT": str(COUNT), "TOPICS": "orders,batches"})
    wait_until(lambda: records(client.proc, "done") or not client.proc.alive(), 60,
               "the client to finish")
    assert records(client.proc, "done"), client.proc.tail()
    assert not records(client.proc, "publish-failed"), client.proc.tail()
    assert records(client.proc, "answer")[0]["answer"] == {"greeting": 'hello {"from":"js"}'}

    wait_until(lambda: len(records(server.proc, "event")) >= COUNT, 30, f"{COUNT} events")
    assert sorted(event["n"] for event in records(server.proc, "event")) == list(range(COUNT))
    wait_until(lambda: len(records(server.proc, "bulk")) >= COUNT, 30, f"{COUNT} bulk events")
    assert sorted(event["n"] for event in records(server.proc, "bulk")) == list(range(COUNT))
    # The SDK's servers hand a method its body as text, HTTP and gRPC alike.
    assert json.loads(records(server.proc, "call")[0]["body"]) == {"from": "js"}
