"""Service invocation with the official Python SDK: one app calls another through two
`tandem run`s on this machine, with no configuration."""

import json

from conftest import E2E, PYTHON, free_port, wait_until


def results(proc):
    lines = [line.split("== APP == ", 1)[1] for line in proc.output().splitlines() if "== APP == {" in line]
    return {entry["step"]: entry for entry in map(json.loads, lines)}


def test_sdk_invoke_method_between_two_apps(tandem):
    port = free_port()
    callee = tandem.run("callee", [str(PYTHON), "-m", "uvicorn", "callee:app", "--port", str(port)],
                        app_id="greeter", app_port=port, cwd=E2E / "apps")
    callee.wait_healthy()
    caller = tandem.run("caller", [str(PYTHON), str(E2E / "apps" / "invoker.py"), "greeter"], app_id="visitor")
    wait_until(lambda: "done" in results(caller.proc) or not caller.proc.alive(), 60, "the caller to finish")
    steps = results(caller.proc)
    assert "done" in steps, caller.proc.tail()
    assert steps["post"]["status"] == 200
    assert steps["post"]["body"] == {"greeting": "hello sdk", "method": "POST", "query": {"lang": "en"},
                                     "body": '{"n": 1}', "caller": "visitor"}
    assert steps["get"]["body"]["greeting"] == "hello again"
    assert steps["get"]["body"]["method"] == "GET"
