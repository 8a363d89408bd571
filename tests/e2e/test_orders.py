"""The user story: the FastAPI publisher and consumer of examples/orders, on the official
Dapr Python SDK, started with the same `tandem run` commands as `dapr run`, unchanged, over
every broker — swapped by copying the broker's ready file over components/pubsub.yaml, as
the README shows — with credentials read through the local secret store."""

import shutil

import pytest
import requests

from conftest import EXAMPLES, PYTHON, free_port, port_open, redis_command, wait_until

ORDERS = EXAMPLES / "orders"


# Each broker: the fixture that starts a private server (None: none needed), and what in
# its ready file (components/brokers/<broker>.yaml) points at the machine's server.
BROKERS = {
    "redis": ("redis_server", "localhost:6379", "127.0.0.1:{port}"),
    "rabbitmq": ("rabbitmq_server", "value: localhost", None),  # hostname: host:port
    "mqtt": ("mosquitto_server", "tcp://localhost:1883", "tcp://127.0.0.1:{port}"),
    "jetstream": ("nats_server", "nats://localhost:4222", "nats://127.0.0.1:{port}"),
    "snssqs": ("moto_server", "http://localhost:5000", "http://127.0.0.1:{port}"),
    "kafka": ("kafka_server", "localhost:9092", "127.0.0.1:{port}"),
    "embedded": (None, "~/.tandem/orders.db", "{tmp}/orders.db"),
}

KINDS = {"redis": "pubsub.redis", "rabbitmq": "pubsub.rabbitmq", "mqtt": "pubsub.mqtt3",
         "jetstream": "pubsub.jetstream", "snssqs": "pubsub.aws.snssqs", "kafka": "pubsub.kafka",
         "embedded": "pubsub.sqlite"}


def components_for(broker, tmp_path, request):
    """examples/orders/components, swapped to `broker` the way the README shows — its
    ready file copied over pubsub.yaml — and pointed at this test's private server."""
    target = tmp_path / "components"
    shutil.copytree(ORDERS / "components", target)
    fixture, machine, private = BROKERS[broker]
    text = (target / "brokers" / f"{broker}.yaml").read_text()
    port = request.getfixturevalue(fixture) if fixture else None
    if broker == "rabbitmq":
        # The private node's port; the file's user and secret-store password stay.
        port = int(port.rsplit(":", 1)[1])
        assert "value: localhost\n" in text
        text = text.replace("value: localhost\n", f"value: 127.0.0.1:{port}\n")
    else:
        assert machine in text, f"{broker}.yaml no longer names {machine}"
        text = text.replace(machine, private.format(port=port, tmp=tmp_path))
    (target / "pubsub.yaml").write_text(text)
    return target, port


def uvicorn(port):
    return [PYTHON, "-m", "uvicorn", "app:app", "--port", str(port)]


@pytest.mark.parametrize("broker", list(BROKERS))
def test_seed_story(broker, tandem, tmp_path, request):
    components, port = components_for(broker, tmp_path, request)

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

    if broker == "redis":
        # The event really went through the test's Redis: one entry on the `orders` stream.
        assert redis_command(port, "XLEN", "orders") == 1

    # The consumer's sidecar lists what it loaded and what the app subscribed to.
    metadata = consumer.metadata()
    assert metadata["id"] == "order-processor"
    components_listed = {(c["name"], c["type"]) for c in metadata["components"]}
    assert ("order_pub_sub", KINDS[broker]) in components_listed
    assert ("local-secret-store", "secretstores.local.file") in components_listed
    subscriptions = [(s["pubsubname"], s["topic"]) for s in metadata["subscriptions"]]
    assert subscriptions == [("order_pub_sub", "orders")]
    # The publisher subscribes to nothing: only the consumer may take the order.
    # As daprd, an empty list is left out of the metadata document.
    assert publisher.metadata().get("subscriptions", []) == []
