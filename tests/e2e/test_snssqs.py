"""`pubsub.aws.snssqs` through `tandem run`, against a private AWS emulator (moto_server, which
scripts/test installs into .venv): the official Python SDK publishes, and a subscriber whose
sidecar and app are SIGKILLed mid-flow still gets every message once it is started again
(some twice — at least once — none missing)."""

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import APPS, PYTHON, free_port, wait_until, write_component

TOTAL = 60
KILL_AFTER = 20
PUBSUB = "aws"
TOPIC = "numbers.v1"  # sanitized to the SNS topic `numbersv1`


@pytest.fixture
def moto_endpoint(tmp_path):
    """A private moto_server on a free loopback port (everything in memory). Yields its URL."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        binary = shutil.which("moto_server")
    if binary is None:
        pytest.fail("moto_server is not installed (scripts/test installs moto[server] into .venv)")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        def listening():
            if process.poll() is not None:
                pytest.fail(f"moto_server exited: {(tmp_path / 'moto.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(listening, 30, "moto_server to listen", interval=0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


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


def test_sdk_publishes_and_a_killed_subscriber_loses_nothing(moto_endpoint, tandem, tmp_path,
                                                             monkeypatch):
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", PUBSUB, "pubsub.aws.snssqs", {
        "endpoint": moto_endpoint,
        "region": "us-east-1",
        "accessKey": "test",
        "secretKey": "test",
        "messageVisibilityTimeout": "2",
        "messageWaitTimeSeconds": "1",
    })
    record = tmp_path / "record.txt"

    def start_subscriber(name):
        subscriber = tandem.run(name, [PYTHON, str(APPS / "recorder.py")],
                                app_id="numbers-subscriber", app_port=free_port(),
                                resources=[components],
                                env={"PUBSUB_NAME": PUBSUB, "TOPIC": TOPIC,
                                     "RECORD_FILE": str(record), "DELAY_MS": "50"})
        subscriber.wait_subscribed(PUBSUB, TOPIC)
        return subscriber

    subscriber = start_subscriber("subscriber-1")
    publisher = tandem.sidecar("publisher", app_id="numbers-publisher", resources=[components])
    publisher.wait_healthy()
    # The SDK finds the sidecar through the environment, as under `tandem run`.
    monkeypatch.setenv("DAPR_HTTP_PORT", str(publisher.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(publisher.grpc_port))
    monkeypatch.setenv("DAPR_API_TIMEOUT_SECONDS", "10")
    from dapr.clients import DaprClient

    errors = []

    def publish_all():
        try:
            with DaprClient() as client:
                for n in range(1, TOTAL + 1):
                    client.publish_event(pubsub_name=PUBSUB, topic_name=TOPIC,
                                         data=json.dumps({"n": n}),
                                         data_content_type="application/json")
                    time.sleep(0.02)
        except Exception as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    publishing = threading.Thread(target=publish_all, daemon=True)
    publishing.start()

    def mid_flow():
        if errors:
            pytest.fail(f"publishing failed: {errors}")
        started, done = read_record(record)
        return len(done) >= KILL_AFTER and started - done

    wait_until(mid_flow, 30, f"{KILL_AFTER} messages done and one in flight", interval=0.005)
    subscriber.proc.kill()
    started, done_before = read_record(record)
    in_flight = started - done_before
    assert len(done_before) < TOTAL, "the crash came after everything was done"

    start_subscriber("subscriber-2")
    publishing.join(timeout=60)
    assert not publishing.is_alive(), "publishing did not finish"
    assert not errors, errors

    def all_done():
        return read_record(record)[1] == set(range(1, TOTAL + 1))

    wait_until(all_done, 45, f"all {TOTAL} messages to be done")
    text = record.read_text()
    for n in in_flight:
        assert len(re.findall(rf"^start {n} ", text, re.MULTILINE)) >= 2, f"{n} not redelivered"
    print(f"snssqs: killed with {len(done_before)} done and {sorted(in_flight)} in flight; "
          f"all {TOTAL} arrived after the restart")
