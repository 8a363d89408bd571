"""Virtual actors with the official JavaScript SDK (@dapr/dapr, installed by scripts/test
into tests/e2e/js): an actor type hosted by the SDK's DaprServer (HTTP, the only way the
SDK hosts actors) under `tandem run`, called with its ActorProxyBuilder over HTTP and gRPC,
directly and through a second `tandem run` sidecar. Methods, state (the stateManager's
set/get/save), a timer, a reminder (registerActorReminder → receiveReminder), one turn at
a time, and idle deactivation (onDeactivate, with DaprServer's `actorIdleTimeout`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from conftest import E2E, free_port, wait_until

JS = E2E / "js"
TYPE = "JsCounter"


@pytest.fixture
def node():
    binary = shutil.which("node")
    if binary is None or not (JS / "node_modules" / "@dapr" / "dapr").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (scripts/test installs them)")
    return binary


def records(text: str, kind: str | None = None, actor: str | None = None) -> list[dict]:
    """The JSON lines the JS apps print (after `tandem run`'s `== APP ==` prefix)."""
    rows = [json.loads(found) for found in re.findall(r'\{"kind":"[^"]*".*?\}(?=\s*$)', text, re.M)]
    return [row for row in rows
            if (kind is None or row["kind"] == kind) and (actor is None or row.get("id") == actor)]


def overlaps(rows: list[dict]) -> list[tuple]:
    """Turns of one actor id that were in progress at the same time."""
    open_turns: dict[str, dict] = {}
    found = []
    for row in rows:
        if row["kind"] == "start":
            if row["id"] in open_turns:
                found.append((open_turns[row["id"]], row))
            open_turns[row["id"]] = row
        elif row["kind"] == "end":
            open_turns.pop(row["id"], None)
    return found


def call(node, sidecar, calls: list[list], protocol: str = "http", parallel: bool = False) -> list[dict]:
    """Runs actors_client.mjs against `sidecar`; answers {id, method, answer} in order."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PROTOCOL": protocol,
           "DAPR_HTTP_PORT": str(sidecar.http_port), "DAPR_GRPC_PORT": str(sidecar.grpc_port),
           "CALLS": json.dumps(calls), "PARALLEL": "1" if parallel else "0"}
    done = subprocess.run([node, "actors_client.mjs"], cwd=JS, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert records(done.stdout, "done"), done.stdout[-2000:]
    errors = records(done.stdout, "error")
    assert not errors, errors
    return records(done.stdout, "answer")


def answers(rows: list[dict]) -> list:
    return [row["answer"] for row in rows]


@pytest.fixture
def host(tandem, node):
    """The JS actor host under `tandem run`, its actors idle-deactivated after 2 s."""
    port = free_port()
    sidecar = tandem.run("js-actors", [node, "actors_server.mjs"], app_id="js-actors",
                         app_port=port, cwd=JS, env={"ACTOR_IDLE_TIMEOUT": "2s"})
    sidecar.wait_healthy(40)
    wait_until(lambda: sidecar.metadata().get("actorRuntime", {}).get("hostReady"), 20,
               "the app's actors to be registered")
    return sidecar


def test_methods_state_and_one_turn_at_a_time(host, node):
    meta = host.metadata()["actorRuntime"]
    assert {"type": TYPE, "count": 0} in meta["activeActors"]

    got = call(node, host, [["c", "add", 3], ["c", "add", 4], ["c", "get"],
                            ["c", "remember", {"x": [1, 2]}], ["c", "recall"], ["new", "get"]])
    assert answers(got) == [3, 7, 7, "saved", {"x": [1, 2]}, 0]
    # What the SDK's stateManager saved, read back through the actor state API.
    state = requests.get(f"{host.url}/v1.0/actors/{TYPE}/c/state/count", timeout=5)
    assert state.status_code == 200 and state.json() == 7
    memo = requests.get(f"{host.url}/v1.0/actors/{TYPE}/c/state/memo", timeout=5)
    assert memo.json() == {"x": [1, 2]}
    assert requests.get(f"{host.url}/v1.0/actors/{TYPE}/c/state/none",
                        timeout=5).status_code == 204

    # 60 concurrent calls to one actor: each its own turn, none lost or doubled.
    got = call(node, host, [["hot", "add", 1]] * 60, parallel=True)
    assert sorted(answers(got)) == list(range(1, 61))
    assert answers(call(node, host, [["hot", "get"]])) == [60]
    rows = records(host.proc.output())
    assert len(records(host.proc.output(), "start", "hot")) == 60
    assert overlaps(rows) == []
    assert len(records(host.proc.output(), "activate", "hot")) == 1
    active = {a["type"]: a["count"] for a in host.metadata()["actorRuntime"]["activeActors"]}
    assert active[TYPE] >= 1, active

    # A method the actor does not have: the app's 500 comes back as daprd reports it.
    missing = requests.put(f"{host.url}/v1.0/actors/{TYPE}/c/method/nope", timeout=5)
    assert missing.status_code == 500
    assert missing.json()["errorCode"] == "ERR_ACTOR_INVOKE_METHOD"


def test_timer_reminder_and_idle_deactivation(host, node):
    out = host.proc.output
    call(node, host, [["t", "add", 1], ["t", "startTimer", "tick", 100, 300]])
    wait_until(lambda: len(records(out(), "timer", "t")) >= 3, 10, "the timer to fire 3 times")
    # The timer's callback got its state; removed, the timer stops firing.
    assert records(out(), "timer", "t")[0]["data"] == "tick"
    call(node, host, [["t", "stopTimer", "tick"]])
    time.sleep(0.5)
    fired = len(records(out(), "timer", "t"))
    time.sleep(1.0)
    assert len(records(out(), "timer", "t")) == fired

    call(node, host, [["t", "startReminder", "ping", 100, 500, "hello"]])
    reminder = requests.get(f"{host.url}/v1.0/actors/{TYPE}/t/reminders/ping", timeout=5)
    assert reminder.status_code == 200 and reminder.json()["period"] == "0.5s", reminder.text
    wait_until(lambda: len(records(out(), "reminder", "t")) >= 3, 10,
               "the reminder to fire 3 times")
    fires = records(out(), "reminder", "t")
    assert all(row["data"] == "hello" for row in fires)
    gaps = [b["at"] - a["at"] for a, b in zip(fires, fires[1:])]
    assert all(0.3 < gap < 1.0 for gap in gaps), gaps
    call(node, host, [["t", "stopReminder", "ping"]])
    stopped = time.time()
    gone = requests.get(f"{host.url}/v1.0/actors/{TYPE}/t/reminders/ping", timeout=5)
    assert gone.status_code == 404
    time.sleep(0.5)
    fired = len(records(out(), "reminder", "t"))
    time.sleep(1.2)
    assert len(records(out(), "reminder", "t")) == fired

    # Idle for 2 s (the app's actorIdleTimeout), the actor is deactivated: onDeactivate
    # runs, and the next call activates it again with its state where it was.
    def deactivated_since(moment):
        return [row for row in records(out(), "deactivate", "t") if row["at"] > moment]

    wait_until(lambda: deactivated_since(stopped), 10, "the idle actor to be deactivated")
    assert deactivated_since(stopped)[0]["at"] - stopped > 1.5
    assert {"type": TYPE, "count": 0} in host.metadata()["actorRuntime"]["activeActors"]
    activations = len(records(out(), "activate", "t"))
    asked = time.time()
    assert answers(call(node, host, [["t", "get"]])) == [1]
    assert len(records(out(), "activate", "t")) == activations + 1

    # A reminder wakes a deactivated actor up.
    wait_until(lambda: deactivated_since(asked), 10, "a second deactivation")
    call(node, host, [["t", "startReminder", "once", 0, 60000, "wake"]])
    wait_until(lambda: records(out(), "reminder", "t")[-1]["data"] == "wake", 10,
               "the reminder to fire")
    call(node, host, [["t", "stopReminder", "once"]])


def test_grpc_client_and_calls_through_another_sidecar(host, tandem, node):
    call(node, host, [["g", "add", 5], ["g", "remember", "text"]])
    # Over gRPC (InvokeActor) the SDK's client reaches the same actor.
    assert answers(call(node, host, [["g", "get"], ["g", "recall"]], protocol="grpc")) == [5, "text"]

    # A client app under its own `tandem run`, with no actors of its own: its sidecar
    # finds the host through the actor state store and forwards the calls there.
    client = tandem.run("js-actor-client", [node, "actors_client.mjs"], app_id="js-actor-client",
                        cwd=JS, env={"CALLS": json.dumps([["g", "add", 2], ["g", "get"],
                                                          ["far", "add", 9]])})
    wait_until(lambda: records(client.proc.output(), "done") or not client.proc.alive(), 60,
               "the client to finish")
    assert not records(client.proc.output(), "error"), client.proc.tail()
    assert answers(records(client.proc.output(), "answer")) == [7, 7, 9]
    # Every turn ran in the host's one process.
    assert {row["pid"] for row in records(host.proc.output(), "activate")} == {
        records(host.proc.output(), "started")[0]["pid"]}
