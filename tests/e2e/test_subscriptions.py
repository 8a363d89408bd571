"""Subscriptions with the official Python SDK: a FastAPI app (`dapr.ext.fastapi.DaprApp`)
subscribed programmatically with a dead-letter topic, beside a declarative v2alpha1
`Subscription` whose CEL rules route its events to three paths; events published with the
SDK's `DaprClient`."""

import json

import requests

from dapr.clients import DaprClient

from conftest import APPS, PYTHON, free_port, wait_until, write_component

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: inventory
spec:
  pubsubname: pubsub
  topic: inventory
  routes:
    rules:
      - match: event.data.kind == "widget"
        path: /widgets
      - match: event.data.price > 100
        path: /expensive
    default: /products
"""


def test_declarative_rules_and_dead_letters_with_the_sdk(tandem, tmp_path, monkeypatch):
    resources = tmp_path / "resources"
    write_component(resources, "pubsub.yaml", "pubsub", "pubsub.sqlite", {
        "connectionString": str(tmp_path / "broker.db"),
    })
    (resources / "subscription.yaml").write_text(SUBSCRIPTION)
    app_port = free_port()
    app = tandem.run("routed", [PYTHON, "-m", "uvicorn", "routed:app", "--port", str(app_port)],
                     app_id="routed", app_port=app_port, resources=[resources], cwd=APPS)
    for topic in ("inventory", "payments", "payments-dead"):
        app.wait_subscribed("pubsub", topic)

    sent = {
        "widget": {"kind": "widget", "price": 500},
        "pricey": {"kind": "gadget", "price": 500},
        "cheap": {"kind": "gadget", "price": 5},
    }
    # The SDK finds its sidecar through the environment, as under `tandem run`.
    monkeypatch.setenv("DAPR_HTTP_PORT", str(app.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(app.grpc_port))
    monkeypatch.setenv("DAPR_API_TIMEOUT_SECONDS", "10")
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    with DaprClient() as client:
        for name, data in sent.items():
            client.publish_event("pubsub", "inventory", json.dumps({"name": name, **data}),
                                 data_content_type="application/json")
        client.publish_event("pubsub", "payments", json.dumps({"amount": 12}),
                             data_content_type="application/json")
        client.publish_event("pubsub", "payments", json.dumps({"amount": -1}),
                             data_content_type="application/json")

    def received():
        return requests.get(f"http://127.0.0.1:{app_port}/received", timeout=5).json()

    wait_until(lambda: len(received()) >= 6, 30, "six deliveries")
    got = received()
    routes = {event["data"]["name"]: route for route, event in got if "name" in event["data"]}
    assert routes == {"widget": "/widgets", "pricey": "/expensive", "cheap": "/products"}
    payments = [(route, event["data"]["amount"]) for route, event in got
                if "amount" in event["data"]]
    assert sorted(payments) == [("/payments", -1), ("/payments", 12), ("/payments-dead", -1)]
    dead = next(event for route, event in got if route == "/payments-dead")
    dropped = next(event for route, event in got
                   if route == "/payments" and event["data"]["amount"] == -1)
    assert dead == dropped  # the original CloudEvent, as it was first delivered
    assert dead["topic"] == "payments"

    kinds = {(s["topic"], s["type"]) for s in app.metadata()["subscriptions"]}
    assert kinds == {("inventory", "DECLARATIVE"), ("payments", "PROGRAMMATIC"),
                     ("payments-dead", "PROGRAMMATIC")}
