"""A gRPC app (`--app-protocol grpc`) on the official Python SDK's `dapr.ext.grpc.App`:
its subscription is read with ListTopicSubscriptions, events arrive through OnTopicEvent
(a RETRY answer brings the event back), and it is invoked through OnInvoke — from the
HTTP API and from the SDK's gRPC client on another sidecar."""

import json
import re
import subprocess

import requests

from conftest import APPS, PYTHON, free_port, wait_until, write_component

TOTAL = 20


def lines(proc, kind):
    """The app's JSON records of `kind`. The SDK's handlers run on several threads, so
    two records may share a line of output: each is found on its own."""
    found = []
    for text in re.findall(r'\{"kind": [^{}]*\}', proc.output()):
        entry = json.loads(text)
        if entry["kind"] == kind:
            found.append(entry)
    return found


def test_python_grpc_app_subscribes_and_is_invoked(tandem, tmp_path):
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.sqlite",
                    {"connectionString": str(tmp_path / "broker.db")})
    port = free_port()
    app = tandem.run("grpc-app", [str(PYTHON), str(APPS / "grpc_app.py")], app_id="grpc-orders",
                     app_port=port, resources=[components], extra_args=["--app-protocol", "grpc"])
    app.wait_subscribed("pubsub", "orders")

    caller = tandem.sidecar("caller", app_id="grpc-caller", resources=[components])
    caller.wait_healthy()
    for n in range(TOTAL):
        assert caller.publish("pubsub", "orders", {"n": n}).status_code == 204

    wait_until(lambda: len(lines(app.proc, "event")) >= TOTAL, 60,
               f"{TOTAL} events, each after one retry")
    events = lines(app.proc, "event")
    assert sorted(event["n"] for event in events) == list(range(TOTAL))
    assert sorted(entry["n"] for entry in lines(app.proc, "retry")) == list(range(TOTAL))
    assert events[0]["topic"] == "orders"
    assert events[0]["content_type"] == "application/json"

    # Invoked from the HTTP API of the other sidecar ...
    answer = requests.post(f"{caller.url}/v1.0/invoke/grpc-orders/method/greet", data="http",
                           headers={"content-type": "text/plain", "x-tenant": "acme"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.text == "hello http"
    assert answer.headers["content-type"] == "text/plain"
    # ... and with the SDK's gRPC client.
    script = (
        "from dapr.clients import DaprClient\n"
        "with DaprClient() as client:\n"
        "    answer = client.invoke_method('grpc-orders', 'greet', data=b'sdk',"
        " content_type='text/plain')\n"
        "    print(answer.text())\n"
    )
    out = subprocess.run([str(PYTHON), "-c", script], capture_output=True, text=True, timeout=60,
                         env=tandem.env({"DAPR_GRPC_PORT": str(caller.grpc_port),
                                         "DAPR_HTTP_PORT": str(caller.http_port),
                                         "DAPR_API_METHOD_INVOCATION_PROTOCOL": "grpc"}))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello sdk"
    calls = lines(app.proc, "call")
    assert [call["text"] for call in calls] == ["http", "sdk"]
    assert calls[0]["tenant"] == ["acme"]
