"""The user story: the FastAPI publisher and consumer of examples/orders, on the official
Dapr Python SDK, started with the same `tandem run` commands as `dapr run`, through Redis,
with the Redis password read through the local secret store."""

import shutil

import pytest
import requests

from conftest import EXAMPLES, PYTHON, free_port, port_open, redis_command, wait_until

ORDERS = EXAMPLES / "orders"


def components_for(broker, tmp_path, request):
    """examples/orders/components, with only pubsub.yaml changed: pointed at this test's
    private Redis, or swapped for the embedded broker the way the README shows."""
    target = tmp_path / "components"
    shutil.copytree(ORDERS / "components", target)
    pubsub = target / "pubsub.yaml"
    text = pubsub.read_text()
    if broker == "redis":
        assert "localhost:6379" in text
        port = request.getfixturevalue("redis_server")
        pubsub.write_text(text.replace("localhost:6379", f"127.0.0.1:{port}"))
        return target, port
    spec_start, auth_start = text.index("spec:"), text.index("auth:")
    sqlite_spec = (
        "spec:\n"
        "  type: pubsub.sqlite\n"
        "  version: v1\n"
        "  metadata:\n"
        "  - name: connectionString\n"
        f"    value: {tmp_path / 'orders.db'}\n"
    )
    pubsub.write_text(text[:spec_start] + sqlite_spec + text[auth_start:])
    return target, None


def uvicorn(port):
    return [PYTHON, "-m", "uvicorn", "app:app", "--port", str(port)]


@pytest.mark.parametrize("broker", ["redis", "sqlite"])
def test_seed_story(broker, tandem, tmp_path, request):
    components, redis_port = components_for(broker, tmp_path, request)

    consumer_port = free_port()
    consumer = tandem.run("consumer", uvicorn(consumer_port), app_id="order-processor",
                          app_port=consumer_port, resources=[components],
                          cwd=ORDERS / "consumer")
    consumer.wait_subscribed("order_pub_sub", "orders")

    publisher_port = free_port()
    publisher = tandem.run("publisher", uvicorn(publisher_port), app_id="order-processor",
                           app_port=publisher_port, resources=[components],
                           cwd=ORDERS / "publisher")
    publisher.wait_healthy()
    wait_until(lambda: port_open(publisher_port), 20, "the publisher app to listen")

    response = requests.post(f"http://127.0.0.1:{publisher_port}/orders",
                             json={"product": "falafel"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"product": "falafel"}

    consumer.proc.wait_for("== APP == Subscriber received : falafel", timeout=20)
    # Accepted on the first try: the CloudEvent had every field the consumer's model requires.
    consumer.proc.wait_for('"POST /events/order_pub_sub/orders HTTP/1.1" 200 OK', timeout=5)
    assert 'HTTP/1.1" 422' not in consumer.proc.output()
    publisher.proc.wait_for("== APP == INFO:root:Received order", timeout=5)

    if redis_port is not None:
        # The event really went through the test's Redis: one entry on the `orders` stream.
        assert redis_command(redis_port, "XLEN", "orders") == 1

    # The consumer's sidecar lists what it loaded and what the app subscribed to.
    metadata = consumer.metadata()
    assert metadata["id"] == "order-processor"
    components_listed = {(c["name"], c["type"]) for c in metadata["components"]}
    assert ("order_pub_sub", f"pubsub.{broker}") in components_listed
    assert ("local-secret-store", "secretstores.local.file") in components_listed
    subscriptions = [(s["pubsubname"], s["topic"]) for s in metadata["subscriptions"]]
    assert subscriptions == [("order_pub_sub", "orders")]
    # The publisher subscribes to nothing: only the consumer may take the order.
    # As daprd, an empty list is left out of the metadata document.
    assert publisher.metadata().get("subscriptions", []) == []
