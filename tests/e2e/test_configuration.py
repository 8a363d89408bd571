"""The configuration API as the official SDKs use it: the Python SDK's DaprClient over
gRPC (`get_configuration`, `subscribe_configuration`, `unsubscribe_configuration`, as in
the SDK's own example) and the JavaScript SDK on `configuration.redis`; an HTTP app
subscribed over HTTP receives changes at `POST /configuration/{store}/{key}` as daprd
sends them; daprd's answers and errors over HTTP."""

import json
import re
import shutil
import textwrap

import pytest
import requests

from conftest import E2E, PYTHON, free_port, redis_command, wait_until, write_component

JS = E2E / "js"

SDK_APP = textwrap.dedent("""
    import threading, warnings
    warnings.simplefilter("ignore")  # the configuration API's subscribe is alpha
    from dapr.clients import DaprClient
    changed = threading.Event()
    def handler(id, response):
        for key in response.items:
            item = response.items[key]
            print(f"Subscribe key={key} value={item.value} version={item.version} "
                  f"metadata={item.metadata}", flush=True)
        changed.set()
    with DaprClient() as client:
        keys = ["orderId1", "orderId2"]
        got = client.get_configuration(store_name="configstore", keys=keys, config_metadata={})
        for key in sorted(got.items):
            item = got.items[key]
            print(f"Got key={key} value={item.value} version={item.version} "
                  f"metadata={item.metadata}", flush=True)
        id = client.subscribe_configuration(store_name="configstore", keys=keys,
                                            handler=handler, config_metadata={})
        print("Subscription ID is", id, flush=True)
        changed.wait(20)
        ok = client.unsubscribe_configuration(store_name="configstore", id=id)
        print(f"Unsubscribed successfully? {ok}", flush=True)
        again = client.unsubscribe_configuration(store_name="configstore", id=id)
        print(f"Unsubscribed again? {again}", flush=True)
""")


def redis_components(tmp_path, port):
    components = tmp_path / "components"
    write_component(components, "configstore.yaml", "configstore", "configuration.redis",
                    {"redisHost": f"127.0.0.1:{port}", "redisPassword": ""})
    return components


def app_lines(sidecar):
    return [line.split("== APP == ", 1)[1] for line in sidecar.proc.output().splitlines()
            if "== APP == " in line]


def test_python_sdk_example_on_redis(tandem, tmp_path, redis_server):
    """The Python SDK's examples/configuration, with the same expected lines."""
    redis_command(redis_server, "SET", "orderId1", "100||1")
    redis_command(redis_server, "SET", "orderId2", "200||1")
    (tmp_path / "configuration_app.py").write_text(SDK_APP)
    sidecar = tandem.run("sdk", [PYTHON, "configuration_app.py"], app_id="configexample",
                         resources=[redis_components(tmp_path, redis_server)], cwd=tmp_path,
                         env={"DAPR_HEALTH_TIMEOUT": "20", "DAPR_API_TIMEOUT_SECONDS": "10"},
                         extra_args=["--app-protocol", "grpc"])
    sidecar.proc.wait_for("Subscription ID is", 30)
    redis_command(redis_server, "SET", "orderId2", "210||2")
    assert sidecar.proc.wait_exit(60) == 0, sidecar.proc.tail()
    lines = app_lines(sidecar)
    assert lines[:2] == ["Got key=orderId1 value=100 version=1 metadata={}",
                         "Got key=orderId2 value=200 version=1 metadata={}"], lines
    assert re.fullmatch(r"Subscription ID is [0-9a-f-]{36}", lines[2]), lines
    assert lines[3:] == ["Subscribe key=orderId2 value=210 version=2 metadata={}",
                         "Unsubscribed successfully? True",
                         "Unsubscribed again? False"], lines


def test_js_sdk_on_redis(tandem, tmp_path, redis_server):
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    redis_command(redis_server, "SET", "js-a", "one||1")
    client = tandem.run("js-config", [node, "configuration.mjs"], app_id="js-config", cwd=JS,
                        resources=[redis_components(tmp_path, redis_server)],
                        env={"STORE": "configstore"})
    wait_until(lambda: '"kind":"subscribed"' in client.proc.output() or not client.proc.alive(),
               60, "the client to subscribe")
    redis_command(redis_server, "SET", "js-a", "two||2")
    wait_until(lambda: '"kind":"done"' in client.proc.output() or not client.proc.alive(), 30,
               "the client to finish")
    answers = {fields["kind"]: fields.get("answer") for fields in
               (json.loads(text) for text in
                re.findall(r'^.*?(\{"kind":.*\})\s*$', client.proc.output(), re.M))}
    assert answers["get"] == {"items": {"js-a": {"key": "js-a", "value": "one", "version": "1",
                                                 "metadata": {}}}}, client.proc.tail()
    assert answers["change"]["items"] == {"js-a": {"key": "js-a", "value": "two",
                                                   "version": "2", "metadata": {}}}, \
        client.proc.tail()


HTTP_APP = textwrap.dedent("""
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class App(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            print(json.dumps({"path": self.path, "type": self.headers.get("content-type"),
                              "body": json.loads(body)}), flush=True)
            self.send_response(200)
            self.end_headers()
        def log_message(self, *args):
            pass
    HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), App).serve_forever()
""")


def test_http_subscription_and_errors_as_daprd(tandem, tmp_path, redis_server):
    redis_command(redis_server, "SET", "color", "blue||1")
    (tmp_path / "http_app.py").write_text(HTTP_APP)
    app_port = free_port()
    sidecar = tandem.run("http", [PYTHON, "http_app.py"], app_id="config-http",
                         app_port=app_port, resources=[redis_components(tmp_path, redis_server)],
                         cwd=tmp_path, env={"APP_PORT": str(app_port)})
    sidecar.wait_healthy()
    base = f"http://127.0.0.1:{sidecar.http_port}"

    got = requests.get(f"{base}/v1.0/configuration/configstore?key=color&key=missing", timeout=10)
    assert got.status_code == 200 and got.json() == {"color": {"value": "blue", "version": "1"}}
    none = requests.get(f"{base}/v1.0-alpha1/configuration/configstore?key=missing", timeout=10)
    assert none.status_code == 204 and none.content == b""

    subscribed = requests.get(f"{base}/v1.0/configuration/configstore/subscribe?key=color",
                              timeout=10)
    assert subscribed.status_code == 200, subscribed.text
    id = subscribed.json()["id"]
    redis_command(redis_server, "SET", "color", "red||2")
    wait_until(lambda: "/configuration/configstore/color" in sidecar.proc.output(), 20,
               "the change to reach the app")
    delivered = [json.loads(text) for text in
                 re.findall(r'(\{"path": "/configuration/.*\})\s*$', sidecar.proc.output(), re.M)]
    assert delivered == [{"path": "/configuration/configstore/color", "type": "application/json",
                          "body": {"id": id, "items": {"color": {"value": "red",
                                                                 "version": "2"}}}}]

    done = requests.get(f"{base}/v1.0/configuration/configstore/{id}/unsubscribe", timeout=10)
    assert done.status_code == 200 and done.json() == {"ok": True}
    redis_command(redis_server, "SET", "color", "green||3")
    again = requests.get(f"{base}/v1.0/configuration/configstore/{id}/unsubscribe", timeout=10)
    assert again.status_code == 500
    assert again.json() == {"message": f"failed to unsubscribe to configuration request {id}: "
                                       f"subscription with id {id} does not exist"}
    assert "green" not in sidecar.proc.output(), "no change after unsubscribing"

    missing = requests.get(f"{base}/v1.0/configuration/nope?key=a", timeout=10)
    assert missing.status_code == 400
    assert missing.json() == {"errorCode": "ERR_CONFIGURATION_STORE_NOT_FOUND",
                              "message": "configuration store nope not found"}
    bare = tandem.sidecar("bare", app_id="config-none", cwd=tmp_path)
    bare.wait_healthy()
    unconfigured = requests.get(
        f"http://127.0.0.1:{bare.http_port}/v1.0/configuration/configstore?key=a", timeout=10)
    assert unconfigured.status_code == 500
    assert unconfigured.json() == {"errorCode": "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
                                   "message": "configuration stores not configured"}
