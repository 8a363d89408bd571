"""examples/hello on the embedded default broker: no resources path, no components folder
in TANDEM_HOME, so both sidecars use the built-in `pubsub` (a SQLite file in TANDEM_HOME)."""

import os
import re
import signal

from conftest import EXAMPLES, PYTHON, descendants, free_port, port_open, wait_until

HELLO = EXAMPLES / "hello"
COUNT = 10


def test_embedded_default(tandem):
    app_port = free_port()
    subscriber = tandem.run("subscriber", [PYTHON, str(HELLO / "subscriber.py")],
                            app_id="hello-subscriber", app_port=app_port, cwd=HELLO)
    subscriber.wait_subscribed("pubsub", "greetings")
    components = {(c["name"], c["type"]) for c in subscriber.metadata()["components"]}
    assert ("pubsub", "pubsub.sqlite") in components

    publisher = tandem.run("publisher", [PYTHON, str(HELLO / "publisher.py"), str(COUNT)],
                           app_id="hello-publisher", cwd=HELLO)
    # `tandem run` exits with its app's exit code once the app is done.
    assert publisher.proc.wait_exit(timeout=60) == 0, publisher.proc.tail()
    published = re.findall(r"published hello #(\d+) \((\d+)\)", publisher.proc.output())
    assert published == [(str(n), "204") for n in range(1, COUNT + 1)]

    def received():
        found = re.findall(r"received: \{'greeting': 'hello #(\d+)'\}", subscriber.proc.output())
        return set(map(int, found))

    # Every greeting arrives; the order across concurrent deliveries is not promised.
    wait_until(lambda: received() == set(range(1, COUNT + 1)), 20, f"all {COUNT} greetings")
    assert (tandem.home / "tandem.db").is_file()


def test_sigterm_stops_app_then_sidecar(tandem):
    """SIGTERM to `tandem run` (what Ctrl-C or a supervisor sends) stops the app and the
    sidecar: nothing is left running, and the ports are free again."""
    app_port = free_port()
    subscriber = tandem.run("subscriber", [PYTHON, str(HELLO / "subscriber.py")],
                            app_id="hello-subscriber", app_port=app_port, cwd=HELLO)
    subscriber.wait_subscribed("pubsub", "greetings")
    app_pids = descendants(subscriber.proc.pid)
    assert app_pids, "tandem run started no app"

    os.kill(subscriber.proc.pid, signal.SIGTERM)  # tandem itself only, not the app's group
    subscriber.proc.wait_exit(timeout=15)

    def app_gone():
        return not any(os.path.exists(f"/proc/{pid}") and not _zombie(pid) for pid in app_pids)

    wait_until(app_gone, 5, "the app to be stopped with its sidecar")
    for port in (app_port, subscriber.http_port, subscriber.grpc_port):
        assert not port_open(port), f"port {port} still open"


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
