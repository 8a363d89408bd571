"""gRPC proxying between two `tandem run`s: a caller app calls a method of a plain grpcio
server (no Dapr code, no generated stubs) on its own sidecar's gRPC port with
`dapr-app-id`, and the call reaches the server through both sidecars — unary and
bidirectional streaming, metadata both ways, trailers after the messages, an error status
with details and trailing metadata,
and daprd's answer for an unknown app id."""

import json
import re

from conftest import APPS, PYTHON, free_port, wait_until


def records(proc):
    return {entry["kind"]: entry for entry in
            (json.loads(text) for text in re.findall(r'(\{"kind".*\})$', proc.output(), re.M))}


def test_a_grpc_call_is_proxied_to_another_apps_server(tandem):
    port = free_port()
    server = tandem.run("echo", [str(PYTHON), str(APPS / "grpc_proxy_app.py")], app_id="echo",
                        app_port=port, extra_args=["--app-protocol", "grpc"],
                        env={"APP_API_TOKEN": "app-token"})
    server.proc.wait_for("echo server started")
    server.wait_healthy()

    caller = tandem.run("caller", [str(PYTHON), str(APPS / "grpc_proxy_caller.py")],
                        app_id="caller", env={"TARGET": "echo"})
    wait_until(lambda: "unknown" in records(caller.proc), 60, "the caller's four calls")
    seen = records(caller.proc)

    say = seen["say"]
    assert say["answer"] == {"hello": "there", "dapr-app-id": None, "dapr-api-token": "app-token",
                             "dapr-caller-app-id": "caller", "dapr-callee-app-id": "echo",
                             "x-tenant": "acme"}
    assert say["headers"]["x-greeted"] == "yes"
    assert seen["fail"] == {"kind": "fail", "code": "FAILED_PRECONDITION", "message": "not today",
                            "why": "because", "details": "rich details"}
    assert seen["chat"]["replies"] == ["PING", "PONG"]
    assert seen["chat"]["rest"] == []
    assert seen["chat"]["code"] == "OK"
    assert seen["chat"]["trailers"] == {"x-said": "goodbye"}
    assert seen["unknown"]["code"] == "UNKNOWN"
    assert seen["unknown"]["message"] == "couldn't find service: nobody"
