"""Bindings through `tandem run`: input bindings reach HTTP apps (after daprd's OPTIONS
probe, or at once with `direction: input`) and gRPC apps on the official SDK's
`dapr.ext.grpc.App` (ListInputBindings + OnBindingEvent); output bindings answer the
HTTP API and the SDK's `invoke_binding` with daprd's codes."""

import json
import re
import shutil
import subprocess

import pytest
import requests

from conftest import APPS, E2E, PYTHON, free_port, wait_until, write_component

JS = E2E / "js"


def records(proc, kind):
    """The app's JSON records of `kind`. Threads of the app may print two records on one
    line, and `tandem run` prefixes the app's lines: each record is decoded where it
    starts."""
    decoder, text, found, at = json.JSONDecoder(), proc.output(), [], 0
    while (at := text.find('{"kind":', at)) != -1:
        try:
            record, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        if record.get("kind") == kind:
            found.append(record)
        at = end
    return found


def cron(components, name, schedule="@every 1s", **metadata):
    write_component(components, f"{name}.yaml", name, "bindings.cron",
                    {"schedule": schedule, **metadata})


def test_cron_ticks_reach_an_http_app_that_answers_the_probe(tandem, tmp_path):
    components = tmp_path / "components"
    cron(components, "tick")
    cron(components, "ignored")  # the app answers 404 to its probe: never delivered
    cron(components, "routed", route="/elsewhere", direction="input")  # no probe at all
    cron(components, "refused")  # the app takes it, then answers 500: not retried by cron
    port = free_port()
    app = tandem.run("binding-app", [str(PYTHON), str(APPS / "binding_app.py")],
                     app_id="binding-app", app_port=port, resources=[components],
                     env={"ROUTES": "tick,refused", "REFUSE": "refused"})
    app.wait_healthy()
    wait_until(lambda: len([e for e in records(app.proc, "event") if e["path"] == "/tick"]) >= 2,
               15, "two ticks at /tick")
    wait_until(lambda: any(e["path"] == "/elsewhere" for e in records(app.proc, "event")),
               15, "a tick at the routed path")
    wait_until(lambda: any(e["path"] == "/refused" for e in records(app.proc, "event")),
               15, "a refused tick")

    probes = {p["path"] for p in records(app.proc, "probe")}
    assert probes == {"/tick", "/ignored", "/refused"}, probes
    events = records(app.proc, "event")
    assert not any(e["path"] == "/ignored" for e in events)
    tick = next(e for e in events if e["path"] == "/tick")
    assert tick["body"] == ""
    assert tick["headers"]["content-type"] == "application/json"
    assert tick["headers"]["timezone"] == "UTC"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC",
                        tick["headers"]["readtimeutc"]), tick["headers"]

    # An input-only binding is not an output binding; a malformed body is the caller's.
    answer = requests.post(f"{app.url}/v1.0/bindings/tick", json={"operation": "create"},
                           timeout=5)
    assert answer.status_code == 500
    assert answer.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert answer.json()["message"] == \
        "error invoking output binding tick: couldn't find output binding tick"
    answer = requests.post(f"{app.url}/v1.0/bindings/tick", data="{not json", timeout=5)
    assert answer.status_code == 400
    assert answer.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    answer = requests.post(f"{app.url}/v1.0/bindings/tick", json={"data": 1}, timeout=5)
    assert answer.status_code == 500
    assert "operation field is missing from request" in answer.json()["message"]
    assert app.proc.alive()


def test_a_grpc_app_on_the_python_sdk_takes_cron_events_and_sees_output_errors(tandem, tmp_path):
    components = tmp_path / "components"
    cron(components, "tick")
    cron(components, "other")  # not in the app's ListInputBindings: never read
    port = free_port()
    app = tandem.run("binding-grpc-app", [str(PYTHON), str(APPS / "binding_grpc_app.py")],
                     app_id="binding-grpc-app", app_port=port, resources=[components],
                     extra_args=["--app-protocol", "grpc"])
    app.wait_healthy()
    wait_until(lambda: len(records(app.proc, "event")) >= 2, 15, "two ticks through OnBindingEvent")
    event = records(app.proc, "event")[0]
    assert event["metadata"]["timeZone"] == "UTC"
    assert event["text"] == ""
    assert "app has not subscribed to binding other" in app.proc.output()

    script = (
        "from dapr.clients import DaprClient\n"
        "from dapr.clients.exceptions import DaprGrpcError\n"
        "import grpc\n"
        "with DaprClient() as client:\n"
        "    try:\n"
        "        client.invoke_binding('nowhere', 'create', b'x')\n"
        "    except grpc.RpcError as failure:\n"
        "        error = DaprGrpcError(failure)\n"
        "        print(error.code(), error.error_code(), error.details(), sep='|')\n"
    )
    out = subprocess.run([str(PYTHON), "-c", script], capture_output=True, text=True, timeout=30,
                         env={"DAPR_GRPC_PORT": str(app.grpc_port),
                              "DAPR_HTTP_PORT": str(app.http_port), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    code, error_code, details = out.stdout.strip().split("|")
    assert code == "StatusCode.INTERNAL"
    assert error_code == "ERR_INVOKE_OUTPUT_BINDING"
    assert details == "error invoking output binding nowhere: couldn't find output binding nowhere"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdks_send_to_a_rabbitmq_binding_and_an_app_takes_its_events(
        protocol, tandem, tmp_path, rabbitmq_server):
    """Output through the JS SDK (HTTP or gRPC) and the Python SDK's invoke_binding, input
    to a JS SDK server (binding.receive) of the same protocol: every message arrives."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    components = tmp_path / "components"
    write_component(components, "jobs.yaml", "jobs", "bindings.rabbitmq",
                    {"host": rabbitmq_server, "queueName": f"jobs-{protocol}", "durable": "true"})
    port = free_port()
    server = tandem.run("js-binding-server", [node, "bindings.mjs"], app_id=f"jobs-{protocol}",
                        app_port=port, resources=[components], cwd=JS,
                        env={"PROTOCOL": protocol, "ROLE": "server", "BINDING": "jobs"},
                        extra_args=["--app-protocol", protocol])
    server.wait_healthy()
    wait_until(lambda: "reading input binding" in server.proc.output(), 20,
               "the sidecar to read the binding for the app")

    client = tandem.run("js-binding-client", [node, "bindings.mjs"], app_id=f"sender-{protocol}",
                        resources=[components], cwd=JS,
                        env={"PROTOCOL": protocol, "ROLE": "client", "BINDING": "jobs",
                             "COUNT": "5"})
    wait_until(lambda: records(client.proc, "done") or not client.proc.alive(), 60,
               "the JS client to finish")
    assert records(client.proc, "done") and not records(client.proc, "send-failed"), \
        client.proc.tail()

    # The Python SDK through the app's own sidecar (the client's stopped with it).
    script = (
        "import json\n"
        "from dapr.clients import DaprClient\n"
        "with DaprClient() as client:\n"
        "    answer = client.invoke_binding('jobs', 'create', json.dumps({'n': 'py'}),\n"
        "                                   binding_metadata={'source': 'python'})\n"
        "    print(repr(answer.data))\n"
    )
    out = subprocess.run([str(PYTHON), "-c", script], capture_output=True, text=True, timeout=30,
                         env={"DAPR_GRPC_PORT": str(server.grpc_port),
                              "DAPR_HTTP_PORT": str(server.http_port), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b''"

    wait_until(lambda: len(records(server.proc, "event")) >= 6, 30, "six events at the app")
    seen = sorted((json.loads(event["data"])["n"] for event in records(server.proc, "event")),
                  key=str)
    assert seen == [0, 1, 2, 3, 4, "py"], records(server.proc, "event")
