"""The official Python SDK's state calls through `tandem run`: the embedded default
`statestore`, and a SQLite store with the first-level cache turned on."""

import json

import pytest

from conftest import E2E, PYTHON, wait_until, write_component

APP = "apps/state_client.py"


def results(proc):
    lines = [line.split("== APP == ", 1)[1] for line in proc.output().splitlines() if "== APP == {" in line]
    return {entry["step"]: entry for entry in map(json.loads, lines)}


@pytest.mark.parametrize("store", ["embedded", "cached"])
def test_sdk_state_calls(tandem, tmp_path, store):
    resources = []
    if store == "cached":
        components = tmp_path / "components"
        write_component(components, "state.yaml", "statestore", "state.sqlite", {
            "connectionString": str(tmp_path / "state.db"),
            "cacheTTL": "30s",
            "cacheMaxEntries": "100",
        })
        resources = [components]
    app = tandem.run("client", [str(PYTHON), str(E2E / APP), "statestore"],
                     app_id="state-client", resources=resources)
    wait_until(lambda: "done" in results(app.proc) or not app.proc.alive(), 60, "the client to finish")
    steps = results(app.proc)
    assert "done" in steps, app.proc.tail()
    assert steps["get"]["data"] == '{"product":"falafel"}'
    assert steps["get"]["etag"]
    assert steps["stale-etag"]["error"] == "ABORTED"
    assert steps["after-transaction"] == {"step": "after-transaction", "cart": '["falafel"]', "order": ""}
    assert json.loads(steps["from-http"]["data"]) == {"n": 1}
    assert steps["bulk"]["items"] == {"cart": '["falafel"]', "missing": ""}
