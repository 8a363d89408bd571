"""The transactional outbox (`outboxPublishPubsub`/`outboxPublishTopic` on a state
store): a state transaction's upserts reach the topic's subscribers as CloudEvents only
when the transaction commits — through HTTP and the official Python SDK's
`execute_state_transaction` — with `outbox.projection` publishing one value while storing
another, the operation's metadata among the event's attributes, and nothing published
for a transaction that failed."""

import json
import re
import textwrap
import time

import requests

from conftest import PYTHON, free_port, wait_until, write_component

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: events
  topic: orders
  routes:
    default: /orders
"""

APP = textwrap.dedent("""
    import json, os
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class App(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            print("EVENT " + json.dumps(json.loads(body)), flush=True)
            self.send_response(200)
            self.end_headers()
        def do_GET(self):
            self.send_response(404)
            self.end_headers()
        def log_message(self, *args):
            pass
    HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), App).serve_forever()
""")

SDK_CLIENT = textwrap.dedent("""
    from dapr.clients import DaprClient
    from dapr.clients.grpc._request import TransactionalStateOperation
    with DaprClient() as client:
        client.execute_state_transaction(store_name="orderstore", operations=[
            TransactionalStateOperation(key="sdk-order", data='{"total": 42}',
                                        metadata={"contentType": "application/json"}),
        ])
        print("committed", flush=True)
""")


def events(sidecar):
    return [json.loads(text) for text in
            re.findall(r"== APP == EVENT (\{.*\})\s*$", sidecar.proc.output(), re.M)]


def test_outbox_publishes_what_committed(tandem, tmp_path):
    components = tmp_path / "components"
    write_component(components, "orderstore.yaml", "orderstore", "state.sqlite",
                    {"connectionString": str(tmp_path / "state.db"),
                     "outboxPublishPubsub": "events", "outboxPublishTopic": "orders",
                     "outboxDiscardWhenMissingState": "true"})
    write_component(components, "events.yaml", "events", "pubsub.sqlite",
                    {"connectionString": str(tmp_path / "events.db")})
    (components / "subscription.yaml").write_text(SUBSCRIPTION)
    (tmp_path / "app.py").write_text(APP)
    app_port = free_port()
    sidecar = tandem.run("outbox", [PYTHON, "app.py"], app_id="orders", app_port=app_port,
                         resources=[components], cwd=tmp_path, env={"APP_PORT": str(app_port)})
    sidecar.wait_healthy()
    base = f"http://127.0.0.1:{sidecar.http_port}/v1.0/state/orderstore"

    def transact(operations):
        return requests.post(f"{base}/transaction", json={"operations": operations}, timeout=10)

    # One upsert: its value is the event's data; its metadata the event's attributes.
    done = transact([{"operation": "upsert", "request": {
        "key": "order-1", "value": {"item": "tea", "n": 2},
        "metadata": {"outbox.cloudevent.myapp": "shop", "data": "a", "id": "b"}}}])
    assert done.status_code == 204, done.text
    wait_until(lambda: len(events(sidecar)) == 1, 20, "the event of the committed transaction")
    event = events(sidecar)[0]
    assert event["data"] == {"item": "tea", "n": 2}
    assert event["id"].startswith("outbox-")
    assert event["outbox.cloudevent.myapp"] == "shop"
    assert event["topic"] == "orders" and event["pubsubname"] == "events"
    assert event["source"] == "orders" and event["datacontenttype"] == "application/json"
    stored = requests.get(f"{base}/order-1", timeout=10)
    assert stored.json() == {"item": "tea", "n": 2}
    # The transaction's marker is gone once the event is out.
    wait_until(lambda: requests.get(f"{base}/{event['id']}", timeout=10).status_code == 204, 10,
               "the marker to be deleted")

    # A projection: the event carries one value, the store keeps the other.
    done = transact([
        {"operation": "upsert", "request": {"key": "order-2", "value": "stored"}},
        {"operation": "upsert", "request": {"key": "order-2", "value": "published",
                                            "metadata": {"outbox.projection": "true"}}},
    ])
    assert done.status_code == 204, done.text
    wait_until(lambda: len(events(sidecar)) == 2, 20, "the projected event")
    assert events(sidecar)[1]["data"] == "published"
    assert requests.get(f"{base}/order-2", timeout=10).json() == "stored"

    # A transaction that fails (a stale ETag) writes nothing and publishes nothing.
    failed = transact([{"operation": "upsert", "request": {
        "key": "order-1", "value": {"item": "coffee"}, "etag": "999999"}}])
    assert failed.status_code == 409, failed.text
    # Through the Python SDK over gRPC.
    (tmp_path / "sdk_client.py").write_text(SDK_CLIENT)
    client = tandem.start("sdk", [PYTHON, "sdk_client.py"], cwd=tmp_path,
                          env={"DAPR_GRPC_PORT": str(sidecar.grpc_port),
                               "DAPR_HTTP_PORT": str(sidecar.http_port)})
    assert client.wait_exit(30) == 0, client.tail()
    wait_until(lambda: len(events(sidecar)) == 3, 20, "the SDK transaction's event")
    assert events(sidecar)[2]["data"] == {"total": 42}
    time.sleep(3)
    assert [e["data"] for e in events(sidecar)] == [{"item": "tea", "n": 2}, "published",
                                                    {"total": 42}], \
        "the failed transaction published nothing"
    assert requests.get(f"{base}/order-1", timeout=10).json() == {"item": "tea", "n": 2}
