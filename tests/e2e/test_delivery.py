"""At-least-once delivery across a crash: a subscriber's sidecar and app are SIGKILLed while
messages are being worked on and published; once it is started again, every message must
arrive (some twice — that is allowed; none missing)."""

import re
import threading
import time

import pytest

from conftest import APPS, PYTHON, free_port, redis_command, wait_until, write_component

TOTAL = 200
PUBSUB = "numbers"
TOPIC = "numbers"
KILL_AFTER = 60  # messages done before the crash


def broker_components(broker, tmp_path, request):
    directory = tmp_path / "components"
    if broker == "redis":
        port = request.getfixturevalue("redis_server")
        write_component(directory, "pubsub.yaml", PUBSUB, "pubsub.redis", {
            "redisHost": f"127.0.0.1:{port}",
            "processingTimeout": "2s",   # a Go duration ...
            "redeliverInterval": "1000",  # ... or a number of milliseconds
        })
        return directory, port
    if broker == "rabbitmq":
        write_component(directory, "pubsub.yaml", PUBSUB, "pubsub.rabbitmq", {
            "connectionString": request.getfixturevalue("rabbitmq_server"),
            "deliveryMode": "2",
        })
        return directory, None
    write_component(directory, "pubsub.yaml", PUBSUB, "pubsub.sqlite", {
        "connectionString": str(tmp_path / "broker.db"),
        "processingTimeout": "2s",
    })
    return directory, None


def read_record(path):
    """(numbers started, numbers done) as sets, from the recorder's file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set(), set()
    started, done = set(), set()
    for kind, number in re.findall(r"^(start|done) (\d+) \S+$", text, re.MULTILINE):
        (started if kind == "start" else done).add(int(number))
    return started, done


@pytest.mark.parametrize("broker", ["redis", "sqlite", "rabbitmq"])
def test_no_loss_after_sigkill(broker, tandem, tmp_path, request):
    components, redis_port = broker_components(broker, tmp_path, request)
    record = tmp_path / "record.txt"

    def start_subscriber(name):
        app_port = free_port()
        subscriber = tandem.run(name, [PYTHON, str(APPS / "recorder.py")],
                                app_id="numbers-subscriber", app_port=app_port,
                                resources=[components],
                                env={"PUBSUB_NAME": PUBSUB, "TOPIC": TOPIC,
                                     "RECORD_FILE": str(record), "DELAY_MS": "50"})
        subscriber.wait_subscribed(PUBSUB, TOPIC)
        return subscriber

    subscriber = start_subscriber("subscriber-1")
    publisher = tandem.sidecar("publisher", app_id="numbers-publisher", resources=[components])
    publisher.wait_healthy()

    # Publish steadily from a thread, so the crash lands in the middle of the flow.
    statuses, errors = {}, []

    def publish_all():
        try:
            for n in range(1, TOTAL + 1):
                statuses[n] = publisher.publish(PUBSUB, TOPIC, {"n": n}).status_code
                time.sleep(0.015)
        except Exception as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    publishing = threading.Thread(target=publish_all, daemon=True)
    publishing.start()

    # Crash once enough is done and something is being worked on right now.
    def mid_flow():
        started, done = read_record(record)
        return len(done) >= KILL_AFTER and started - done

    wait_until(mid_flow, 30, f"{KILL_AFTER} messages done and one in flight", interval=0.005)
    subscriber.proc.kill()
    started, done_before = read_record(record)
    in_flight = started - done_before
    assert len(done_before) < TOTAL, "the crash came after everything was done"
    assert not subscriber.proc.alive()

    if redis_port is not None:
        # Redis still holds the crashed consumer's unacknowledged messages.
        summary = redis_command(redis_port, "XPENDING", TOPIC, "numbers-subscriber")
        print(f"pending in redis after the crash: {summary[0]}")

    start_subscriber("subscriber-2")

    publishing.join(timeout=60)
    assert not publishing.is_alive(), "publishing did not finish"
    assert not errors, errors
    assert statuses == {n: 204 for n in range(1, TOTAL + 1)}

    def all_done():
        return read_record(record)[1] == set(range(1, TOTAL + 1))

    wait_until(all_done, 45, f"all {TOTAL} messages to be done")
    # What the app was working on when it died was never answered, so never acknowledged:
    # it must have been delivered again.
    text = record.read_text()
    for n in in_flight:
        assert len(re.findall(rf"^start {n} ", text, re.MULTILINE)) >= 2, f"{n} not redelivered"
    print(f"{broker}: killed with {len(done_before)} done and {sorted(in_flight)} in flight; "
          f"all {TOTAL} arrived after the restart")
