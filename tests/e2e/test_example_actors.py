"""The seed's example: examples/actors run unchanged through `tandem run` with nothing but
the embedded default state store — a Pipeline actor hands a job to one Stage actor per
stage, the flaky stage fails its first attempt and its reminder retries it, and the job
also completes when the sidecar and the app are SIGKILLed while that retry is pending."""

from __future__ import annotations

import subprocess

import requests

from conftest import EXAMPLES, PYTHON, free_port, wait_until

ACTORS = EXAMPLES / "actors"
STAGES = ["checkout", "compile", "test", "package"]


def start_host(tandem, name: str, env: dict[str, str] | None = None):
    """`tandem run --app-id pipeline --app-port P -- uvicorn app:app --port P`, as the
    README says, from the example's folder."""
    port = free_port()
    sidecar = tandem.run(name, [PYTHON, "-m", "uvicorn", "app:app", "--port", str(port)],
                         app_id="pipeline", app_port=port, cwd=ACTORS, env=env)
    sidecar.wait_healthy(40)
    wait_until(lambda: sidecar.metadata().get("actorRuntime", {}).get("hostReady"), 20,
               "the pipeline's actors to be registered")
    return sidecar


def run_client(sidecar, job: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "client.py", job, *args], cwd=ACTORS, capture_output=True,
                          text=True, timeout=timeout,
                          env={"DAPR_HTTP_PORT": str(sidecar.http_port), "PATH": "/usr/bin:/bin"})


def progress(sidecar, job: str) -> dict | None:
    """The Pipeline actor's state, read through the sidecar's actor state API."""
    response = requests.get(f"{sidecar.url}/v1.0/actors/Pipeline/{job}/state/progress",
                            timeout=5)
    return response.json() if response.status_code == 200 else None


def assert_completed_with_one_retry(state: dict, job: str) -> None:
    assert state["status"] == "done", state
    assert [r["stage"] for r in state["results"]] == STAGES
    # One Stage actor per stage, its id derived from the job's.
    assert [r["actor"] for r in state["results"]] == [
        f"{job}.{n}-{stage}" for n, stage in enumerate(STAGES)]
    # The flaky stage needed a second attempt; the others one.
    assert {r["stage"]: r["attempts"] for r in state["results"]} == {
        "checkout": 1, "compile": 1, "test": 2, "package": 1}
    # Each stage got the previous stage's output: the messages went in order.
    assert state["artifact"] == f"{job} " + " ".join(f"+{stage}" for stage in STAGES)
    failures = [e for e in state["events"] if "failed" in e]
    assert failures == ["stage test attempt 1 failed: test hit a transient error (retrying)"]


def reminder_status(sidecar, actor_id: str) -> int:
    return requests.get(f"{sidecar.url}/v1.0/actors/Stage/{actor_id}/reminders/work",
                        timeout=5).status_code


def test_pipeline_completes_with_the_retried_stage(tandem):
    sidecar = start_host(tandem, "pipeline")
    done = run_client(sidecar, "job-1")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert "stage test attempt 1 failed: test hit a transient error (retrying)" in out
    assert "stage test done after 2 attempt(s)" in out
    assert "job done: job-1 +checkout +compile +test +package" in out
    assert_completed_with_one_retry(progress(sidecar, "job-1"), "job-1")
    # Acknowledged stages unregistered their reminders: nothing keeps firing.
    for n, stage in enumerate(STAGES):
        assert reminder_status(sidecar, f"job-1.{n}-{stage}") == 404

    # Submitting the same job again changes nothing: the pipeline answers with its state.
    again = run_client(sidecar, "job-1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert_completed_with_one_retry(progress(sidecar, "job-1"), "job-1")
    assert sidecar.proc.output().count("job-1.2-test: attempt 1 failed") == 1


def test_a_pending_retry_survives_a_sigkill(tandem):
    # A longer retry period leaves a wide window between the failure and its retry.
    env = {"RETRY_SECONDS": "3"}
    sidecar = start_host(tandem, "pipeline", env)
    client = subprocess.Popen([PYTHON, "client.py", "job-2"], cwd=ACTORS,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={"DAPR_HTTP_PORT": str(sidecar.http_port),
                                   "PATH": "/usr/bin:/bin"})
    try:
        sidecar.proc.wait_for("job-2.2-test: attempt 1 failed", timeout=20)
        state = progress(sidecar, "job-2")
        assert state["status"] == "running" and state["next"] == 2, state
        sidecar.proc.kill()
    finally:
        client.kill()
        client.wait(timeout=5)

    # Started again, nobody resubmits: the stage's reminder, kept by the store, fires on
    # the new host once the dead one's lease has ended, and the pipeline carries on.
    sidecar = start_host(tandem, "pipeline-again", env)
    wait_until(lambda: (progress(sidecar, "job-2") or {}).get("status") == "done", 25,
               "the pipeline to finish after the restart")
    assert_completed_with_one_retry(progress(sidecar, "job-2"), "job-2")
    assert "job-2.2-test: done in 2 attempt(s)" in sidecar.proc.output()
