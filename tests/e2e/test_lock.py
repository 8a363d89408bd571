"""The distributed lock API as the official SDKs use it: the Python SDK's DaprClient over
gRPC (`try_lock`, its `with` form, `unlock`) and the JavaScript SDK over HTTP and gRPC,
on the embedded default lock store (nothing installed, shared by the machine's sidecars)
and on `lock.redis`; daprd's error answers over HTTP."""

import json
import re
import shutil
import textwrap

import pytest
import requests

from conftest import E2E, PYTHON, wait_until, write_component

JS = E2E / "js"

APP = textwrap.dedent("""
    import os, warnings
    warnings.simplefilter("ignore")  # the lock API is alpha; the SDK says so
    from dapr.clients import DaprClient
    store = os.environ["STORE"]
    with DaprClient() as client:
        first = client.try_lock(store, "invoice-7", "owner-a", 30)
        print("a took it:", first.success, flush=True)
        second = client.try_lock(store, "invoice-7", "owner-b", 30)
        print("b took it:", second.success, flush=True)
        print("b unlocks:", client.unlock(store, "invoice-7", "owner-b").status, flush=True)
        print("a unlocks:", client.unlock(store, "invoice-7", "owner-a").status, flush=True)
        with client.try_lock(store, "invoice-8", "owner-c", 30) as held:
            print("c holds it:", held.success, flush=True)
        print("c again:", client.unlock(store, "invoice-8", "owner-c").status, flush=True)
        held = client.try_lock(store, "shared", "owner-" + os.environ["WHO"], 60)
        print("shared:", held.success, flush=True)
""")

EXPECTED = [
    "a took it: True",
    "b took it: False",
    "b unlocks: UnlockResponseStatus.lock_belongs_to_others",
    "a unlocks: UnlockResponseStatus.success",
    "c holds it: True",
    "c again: UnlockResponseStatus.lock_does_not_exist",
]


def run_app(tandem, tmp_path, name, resources, store, who):
    (tmp_path / "lock_app.py").write_text(APP)
    sidecar = tandem.run(name, [PYTHON, "lock_app.py"], app_id="locksapp",
                         resources=resources, cwd=tmp_path,
                         env={"STORE": store, "WHO": who, "DAPR_HEALTH_TIMEOUT": "20",
                              "DAPR_API_TIMEOUT_SECONDS": "10"},
                         extra_args=["--app-protocol", "grpc"])
    assert sidecar.proc.wait_exit(60) == 0, sidecar.proc.tail()
    return [line.split("== APP == ", 1)[1] for line in sidecar.proc.output().splitlines()
            if "== APP == " in line]


def test_python_sdk_on_the_embedded_default(tandem, tmp_path):
    """No resources path: the embedded `lockstore`. Two sidecars of one app id share it:
    the second cannot take the lock the first holds."""
    first = run_app(tandem, tmp_path, "first", [], "lockstore", "first")
    assert first == [*EXPECTED, "shared: True"], first
    second = run_app(tandem, tmp_path, "second", [], "lockstore", "second")
    assert second[-1] == "shared: False", second


def test_python_sdk_on_redis(tandem, tmp_path, redis_server):
    components = tmp_path / "components"
    write_component(components, "lockstore.yaml", "lockstore", "lock.redis",
                    {"redisHost": f"127.0.0.1:{redis_server}", "redisPassword": ""})
    lines = run_app(tandem, tmp_path, "redis", [components], "lockstore", "one")
    assert lines == [*EXPECTED, "shared: True"], lines


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_js_sdk(tandem, tmp_path, protocol):
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    client = tandem.run("js-lock", [node, "lock.mjs"], app_id=f"js-lock-{protocol}", cwd=JS,
                        env={"PROTOCOL": protocol, "STORE": "lockstore"})
    wait_until(lambda: '"kind":"done"' in client.proc.output() or not client.proc.alive(), 60,
               "the client to finish")
    answers = [json.loads(text)["answer"] for text in
               re.findall(r'^.*?(\{"kind":"(?:lock|unlock)".*\})\s*$', client.proc.output(), re.M)]
    # The SDK's LockStatus: 0 success, 1 no such lock, 2 another owner's.
    assert answers == [{"success": True}, {"success": False}, {"status": 2}, {"status": 0},
                       {"status": 1}], client.proc.tail()


def test_http_errors_as_daprd(tandem, tmp_path):
    sidecar = tandem.sidecar("sidecar", app_id="locks-http", cwd=tmp_path)
    sidecar.wait_healthy()
    base = f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1"

    def post(path, body):
        return requests.post(f"{base}/{path}", json=body, timeout=10)

    taken = post("lock/lockstore", {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5})
    assert taken.status_code == 200 and taken.json() == {"success": True}, taken.text
    for path, body, status, code, message in [
        ("lock/nope", {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5}, 400,
         "ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found"),
        ("lock/lockstore", {"resourceId": "r", "lockOwner": "o"}, 400,
         "ERR_MALFORMED_REQUEST", "ExpiryInSeconds is not positive in lock store lockstore"),
        ("lock/lockstore", {"lockOwner": "o", "expiryInSeconds": 5}, 400,
         "ERR_MALFORMED_REQUEST", "ResourceId is empty in lock store lockstore"),
        ("unlock/lockstore", {"resourceId": "r"}, 400,
         "ERR_MALFORMED_REQUEST", "LockOwner is empty in lock store lockstore"),
        ("unlock/lockstore", {"resourceId": "a||b", "lockOwner": "o"}, 500,
         "ERR_UNLOCK", "failed to release lock: input key/keyPrefix 'a||b' can't contain '||'"),
    ]:
        answer = post(path, body)
        assert answer.status_code == status, answer.text
        assert answer.json() == {"errorCode": code, "message": message}, answer.text
    released = post("unlock/lockstore", {"resourceId": "r", "lockOwner": "o"})
    assert released.status_code == 200 and released.json() == {"status": 0}, released.text
