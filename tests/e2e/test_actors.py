"""Virtual actors through `tandem run`, hosted by the official Python SDK's FastAPI
extension and called with its `ActorProxy`: turn-based concurrency (with and without
reentrancy), reentrant call chains, state, timers, durable reminders (exact repetitions,
and across a SIGKILL of the sidecar and the app) and idle deactivation — with nothing
but the embedded default state store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import APPS, PYTHON, free_port, wait_until

CLIENT = """
import asyncio, json, sys
sys.path.insert(0, {apps!r})
from dapr.actor import ActorProxy, ActorId
from actors_app import CounterInterface

async def main():
    proxy = lambda id: ActorProxy.create("Counter", ActorId(id), CounterInterface)
    {body}

asyncio.run(main())
"""


def client(sidecar, body: str, timeout: float = 120) -> str:
    """Runs `body` (inside `async def main()`) with the SDK's actor client on `sidecar`."""
    script = CLIENT.format(apps=str(APPS), body=body.strip().replace("\n", "\n    "))
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={"DAPR_HTTP_PORT": str(sidecar.http_port),
                               "DAPR_GRPC_PORT": str(sidecar.grpc_port), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def events(path: Path, kind: str | None = None) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if kind is None or row["kind"] == kind]


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


def start_host(tandem, tmp_path: Path, name: str = "actors", **env) -> object:
    port = free_port()
    env = {"ACTOR_EVENTS": str(tmp_path / "events.jsonl"), **{k: str(v) for k, v in env.items()}}
    sidecar = tandem.run(name, [PYTHON, "-m", "uvicorn", "actors_app:app", "--port", str(port)],
                         app_id="actors", app_port=port, cwd=APPS, env=env)
    sidecar.wait_healthy(40)
    wait_until(lambda: sidecar.metadata().get("actorRuntime", {}).get("hostReady"), 20,
               "the app's actors to be registered")
    return sidecar


@pytest.mark.parametrize("reentrancy", ["0", "1"], ids=["reentrancy-off", "reentrancy-on"])
def test_one_turn_at_a_time_with_exact_counts(tandem, tmp_path, reentrancy):
    sidecar = start_host(tandem, tmp_path, ACTOR_REENTRANCY=reentrancy)
    # 100 concurrent callers, 1000 increments of one actor in all.
    out = client(sidecar, """
results = await asyncio.gather(*[
    asyncio.gather(*[proxy("hot").Add(1) for _ in range(10)]) for _ in range(100)])
print(json.dumps({"max": max(max(r) for r in results), "final": await proxy("hot").Get()}))
""")
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer == {"max": 1000, "final": 1000}
    rows = events(tmp_path / "events.jsonl")
    assert len([r for r in rows if r["kind"] == "start"]) == 1000
    assert overlaps(rows) == []
    assert len(events(tmp_path / "events.jsonl", "activate")) == 1
    meta = sidecar.metadata()
    assert {"type": "Counter", "count": 1} in meta["actorRuntime"]["activeActors"]
    assert meta["actorRuntime"]["runtimeStatus"] == "RUNNING"


def test_reentrant_chains_come_back_in(tandem, tmp_path):
    sidecar = start_host(tandem, tmp_path, ACTOR_REENTRANCY="1")
    out = client(sidecar, """
await proxy("a").Add(5)
print(await proxy("a").Ping("b"))
""", timeout=30)
    assert "b saw a at 5" in out


def test_without_reentrancy_a_call_back_waits_for_the_turn(tandem, tmp_path):
    sidecar = start_host(tandem, tmp_path, ACTOR_REENTRANCY="0")
    # a → b → a: without reentrancy the call back waits for a's turn, which waits for b.
    response = None
    try:
        response = requests.put(f"{sidecar.url}/v1.0/actors/Counter/a/method/Ping",
                                json="b", timeout=3)
    except requests.exceptions.ReadTimeout:
        pass
    assert response is None, response.text if response is not None else ""


def test_state_timers_reminders_and_deactivation(tandem, tmp_path):
    sidecar = start_host(tandem, tmp_path, ACTOR_IDLE_SECONDS=2)
    path = tmp_path / "events.jsonl"
    client(sidecar, """
await proxy("s").Add(7)
await proxy("s").StartTimer({"name": "tick", "due": 0.2, "period": 0.3})
""")
    # State as the SDK stored it, under Dapr's key layout, read through the API.
    state = requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/state/count", timeout=5)
    assert state.status_code == 200 and state.json() == 7
    assert requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/state/none",
                        timeout=5).status_code == 204
    # A value with a TTL, written while the actor is active here, expires.
    written = requests.post(f"{sidecar.url}/v1.0/actors/Counter/s/state", timeout=5, json=[
        {"operation": "upsert",
         "request": {"key": "brief", "value": {"v": 1}, "metadata": {"ttlInSeconds": "1"}}}])
    assert written.status_code == 204, written.text
    assert requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/state/brief",
                        timeout=5).json() == {"v": 1}
    wait_until(lambda: requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/state/brief",
                                    timeout=5).status_code == 204, 5, "the value to expire")
    wait_until(lambda: len(events(path, "timer")) >= 3, 10, "the timer to fire three times")
    # A timer's turns keep its actor active, as in daprd: removed, it stops firing...
    removed = requests.delete(f"{sidecar.url}/v1.0/actors/Counter/s/timers/tick", timeout=5)
    assert removed.status_code == 204
    time.sleep(0.5)
    fired = len(events(path, "timer"))
    time.sleep(1.0)
    assert len(events(path, "timer")) == fired
    # ...and the actor, idle for 2 s, is deactivated.
    wait_until(lambda: events(path, "deactivate"), 15, "the idle actor to be deactivated")

    # A reminder registered over HTTP with an ISO 8601 repetition fires exactly 3 times
    # (its data base64, as the Python SDK reads reminder data),
    # and reactivates the actor to do so.
    created = requests.post(f"{sidecar.url}/v1.0/actors/Counter/s/reminders/thrice",
                            json={"dueTime": "0s", "period": "R3/PT1S", "data": "eyJuIjoxfQ=="},
                            timeout=5)
    assert created.status_code == 204, created.text
    got = requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/reminders/thrice", timeout=5)
    assert got.status_code == 200 and got.json()["period"] == "R3/PT1S"
    wait_until(lambda: len([e for e in events(path, "reminder") if e["name"] == "thrice"]) >= 3,
               10, "the reminder to fire three times")
    time.sleep(2.5)
    fires = [e for e in events(path, "reminder") if e["name"] == "thrice"]
    assert len(fires) == 3
    gaps = [b["at"] - a["at"] for a, b in zip(fires, fires[1:])]
    assert all(0.7 < gap < 1.6 for gap in gaps), gaps
    # Its last fire removed it.
    missing = requests.get(f"{sidecar.url}/v1.0/actors/Counter/s/reminders/thrice", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "ERR_ACTOR_REMINDER_NOT_FOUND"


def test_reminders_survive_a_sigkill_of_the_sidecar_and_the_app(tandem, tmp_path):
    sidecar = start_host(tandem, tmp_path)
    path = tmp_path / "events.jsonl"
    client(sidecar, """await proxy("r").StartReminder({"name": "beat", "due": 1, "period": 2})""")
    wait_until(lambda: len(events(path, "reminder")) >= 2, 10, "the reminder to fire twice")
    sidecar.proc.kill()
    killed_at = time.time()
    before = len(events(path, "reminder"))

    sidecar = start_host(tandem, tmp_path, name="actors-again")
    wait_until(lambda: len(events(path, "reminder")) >= before + 3, 30,
               "the reminder to fire again after the restart")
    fires = events(path, "reminder")
    after = [e for e in fires if e["at"] > killed_at]
    # Once per period: never two fires closer than most of a period, also right after the
    # restart (missed periods are skipped, not fired in a burst).
    gaps = [b["at"] - a["at"] for a, b in zip(after, after[1:])]
    assert all(gap > 1.5 for gap in gaps), gaps
    # Taken over within the documented bound (the dead host's lease seen to end: 6 s).
    assert after[0]["at"] - killed_at < 15
    client(sidecar, """await proxy("r").StopReminder("beat")""")


def test_errors_have_daprs_codes(tandem, tmp_path):
    sidecar = start_host(tandem, tmp_path)
    # State is written through the host running the actor's turn.
    missing = requests.post(f"{sidecar.url}/v1.0/actors/Counter/idle/state",
                            json=[{"operation": "upsert", "request": {"key": "k", "value": 1}}],
                            timeout=5)
    assert missing.status_code == 400
    assert missing.json()["errorCode"] == "ERR_ACTOR_INSTANCE_MISSING"
    nowhere = requests.put(f"{sidecar.url}/v1.0/actors/Nobody/x/method/m", timeout=10)
    assert nowhere.status_code == 404 and nowhere.json()["errorCode"] == "ERR_ACTOR_NO_ADDRESS"
    not_hosted = requests.post(f"{sidecar.url}/v1.0/actors/Other/x/reminders/r", json={}, timeout=5)
    assert not_hosted.status_code == 403
    assert not_hosted.json()["errorCode"] == "ERR_ACTOR_REMINDER_NON_HOSTED"
    bad = requests.post(f"{sidecar.url}/v1.0/actors/Counter/x/reminders/r",
                        json={"dueTime": "soon"}, timeout=5)
    assert bad.status_code == 500 and bad.json()["errorCode"] == "ERR_ACTOR_REMINDER_CREATE"
    # An app's answer other than 200 is a failed call, with its status and body.
    client(sidecar, """await proxy("e").Add(1)""")
    failed = requests.put(f"{sidecar.url}/v1.0/actors/Counter/e/method/Add", data="not json",
                          timeout=5)
    assert failed.status_code == 500, failed.text
    assert failed.json()["errorCode"] == "ERR_ACTOR_INVOKE_METHOD"
    assert "error from actor service: (500)" in failed.json()["message"]
    malformed = requests.post(f"{sidecar.url}/v1.0/actors/Counter/x/state", data="{", timeout=5)
    assert malformed.status_code == 400
    assert malformed.json()["errorCode"] == "ERR_MALFORMED_REQUEST"


def test_two_hosts_on_one_machine_share_the_embedded_store(tandem, tmp_path):
    """Two instances of one actor app on the embedded default store: actors spread over
    both, calls through either sidecar reach the one activation, counts stay exact; one
    instance killed, its actors come back on the other."""
    path = tmp_path / "events.jsonl"
    first = start_host(tandem, tmp_path, name="host-a")
    second = start_host(tandem, tmp_path, name="host-b")
    # Each sidecar reads the other's lease once a second (BEAT_INTERVAL): until host-a has
    # seen host-b it places every new actor on itself, and then hands the ones host-b
    # should hold over to it (drainRebalancedActors, on by default as in Dapr) — a move,
    # which the one-host-per-actor check below would count. Both know each other after
    # two beats.
    time.sleep(2.5)
    ids = [f"k{n}" for n in range(20)]
    script = f"""
ids = {ids!r}
await asyncio.gather(*[proxy(i).Add(1) for i in ids for _ in range(5)])
"""
    client(first, script)
    client(second, script)
    totals = json.loads(client(first, f"""
print(json.dumps([await proxy(i).Get() for i in {ids!r}]))
""").strip().splitlines()[-1])
    assert totals == [10] * len(ids)
    rows = events(path)
    assert overlaps(rows) == []
    hosts = {row["pid"] for row in rows if row["kind"] == "activate"}
    assert len(hosts) == 2, "the actors did not spread over both hosts"
    per_id = {}
    for row in events(path, "activate"):
        per_id.setdefault(row["id"], set()).add(row["pid"])
    assert all(len(pids) == 1 for pids in per_id.values()), per_id

    # The second host dies: its actors are activated on the first within the bound.
    second.proc.kill()
    killed_at = time.time()
    client(first, script, timeout=60)
    took = time.time() - killed_at
    totals = json.loads(client(first, f"""
print(json.dumps([await proxy(i).Get() for i in {ids!r}]))
""").strip().splitlines()[-1])
    assert totals == [15] * len(ids)
    assert took < 15, took
    assert overlaps(events(path)) == []


def test_grpc_stream_host(tandem, tmp_path):
    """The same actor hosted with the Python SDK's `ActorGrpcHost` over the gRPC actor
    stream: methods, state, timers, reminders and deactivation, all through gRPC."""
    path = tmp_path / "events.jsonl"
    port = free_port()
    sidecar = tandem.run("grpc-host", [PYTHON, "actors_grpc_app.py"], app_id="actors",
                         app_port=port, cwd=APPS, extra_args=["--app-protocol", "grpc"],
                         env={"ACTOR_EVENTS": str(path), "ACTOR_IDLE_SECONDS": "2"})
    sidecar.wait_healthy(40)
    wait_until(lambda: sidecar.metadata().get("actorRuntime", {}).get("hostReady"), 20,
               "the app's actors to be registered over the stream")
    out = client(sidecar, """
results = await asyncio.gather(*[proxy("g").Add(1) for _ in range(200)])
await proxy("g").StartTimer({"name": "tick", "due": 0.1, "period": 0.3})
await proxy("g").StartReminder({"name": "beat", "due": 0.5, "period": 1})
print(json.dumps({"max": max(results), "final": await proxy("g").Get()}))
""")
    assert json.loads(out.strip().splitlines()[-1]) == {"max": 200, "final": 200}
    assert overlaps(events(path)) == []
    wait_until(lambda: len(events(path, "timer")) >= 2, 10, "the timer to fire over the stream")
    wait_until(lambda: len(events(path, "reminder")) >= 2, 10, "the reminder to fire over the stream")
    # State written by the gRPC-hosted actor reads back over HTTP.
    assert requests.get(f"{sidecar.url}/v1.0/actors/Counter/g/state/count", timeout=5).json() == 200
    client(sidecar, """await proxy("g").StopReminder("beat")""")
    removed = requests.delete(f"{sidecar.url}/v1.0/actors/Counter/g/timers/tick", timeout=5)
    assert removed.status_code == 204
    wait_until(lambda: events(path, "deactivate"), 15, "the idle actor to be deactivated over the stream")
