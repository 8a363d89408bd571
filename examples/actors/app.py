"""The actor host: a build pipeline made of actors, on the official Dapr Python SDK.

A `Pipeline` actor (its id is the job's id) receives a job — a list of stages — and hands
the work to one `Stage` actor per stage, whose id is derived from the job's
(`{job}.{n}-{stage}`). Nothing creates those actors explicitly: the first message sent
to an id activates it, here or on whichever host owns it.

The actors only talk through messages, and every message may be lost to a crash, so:

- each actor saves its state before it sends anything, and every handler is idempotent:
  a message delivered twice changes nothing the second time;
- a stage does its work in a *reminder*, not in the call that started it. The reminder
  is stored by the sidecar, so it fires again after a crash or a restart, and it keeps
  firing — once a period — until the stage has done its work *and* the pipeline has
  acknowledged it. A failed attempt is therefore retried by the next fire.

One stage is flaky on purpose: the stage the job names in `flaky` fails its first attempt.
"""

import logging
import os
from contextlib import asynccontextmanager
from datetime import timedelta

from dapr.actor import Actor, ActorId, ActorInterface, ActorProxy, Remindable, actormethod
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("pipeline")

# How often a stage's reminder fires, which is also the wait before a failed attempt is
# retried (RETRY_SECONDS, 1 by default). A stage gives up after MAX_ATTEMPTS failures, and
# its pipeline fails with it.
RETRY_PERIOD = timedelta(seconds=float(os.environ.get("RETRY_SECONDS", "1")))
MAX_ATTEMPTS = 5
WORK_REMINDER = "work"


class PipelineInterface(ActorInterface):
    @actormethod(name="Submit")
    async def submit(self, job: dict) -> dict: ...

    @actormethod(name="StageDone")
    async def stage_done(self, report: dict) -> None: ...

    @actormethod(name="StageFailed")
    async def stage_failed(self, report: dict) -> None: ...

    @actormethod(name="Status")
    async def status(self) -> dict: ...


class StageInterface(ActorInterface):
    @actormethod(name="Start")
    async def start(self, order: dict) -> None: ...


def stage_actor_id(job: str, index: int, stage: str) -> str:
    """The id of a job's stage actor: derived from the job, so the same job always
    addresses the same stage actors (which is what makes a resent message harmless)."""
    return f"{job}.{index}-{stage}"


class StageFailure(Exception):
    """A stage's work failed this attempt; the reminder's next fire retries it."""


class Pipeline(Actor, PipelineInterface):
    """Receives a job, starts its stages one after the other, keeps the job's progress."""

    async def submit(self, job):
        found, progress = await self._state_manager.try_get_state("progress")
        if found:
            # The same job submitted again (a client retrying): nothing new, but the first
            # stage's message may be what failed the first time, so it goes out again.
            await self._send_next(progress)
            return progress
        stages = list(job["stages"])
        progress = {
            "job": self.id.id,
            "stages": stages,
            "flaky": job.get("flaky"),
            "status": "running",
            "next": 0,
            "artifact": job.get("source", self.id.id),
            "results": [],
            "events": [f"received job with stages {', '.join(stages)}"],
        }
        await self._save(progress)
        await self._send_next(progress)
        return progress

    async def stage_done(self, report):
        progress = await self._state_manager.get_state("progress")
        index = report["index"]
        if progress["status"] == "running" and index == progress["next"]:
            stage = progress["stages"][index]
            progress["results"].append({
                "stage": stage,
                "actor": report["actor"],
                "attempts": report["attempts"],
                "output": report["output"],
            })
            progress["artifact"] = report["output"]
            progress["next"] = index + 1
            progress["events"].append(
                f"stage {stage} done after {report['attempts']} attempt(s)")
            if progress["next"] == len(progress["stages"]):
                progress["status"] = "done"
                progress["events"].append(f"job done: {progress['artifact']}")
            await self._save(progress)
        # Also when this report is a repeat: the stage repeats it until this call answers,
        # so the message to the next stage may have been lost with an earlier answer.
        await self._send_next(progress)

    async def stage_failed(self, report):
        progress = await self._state_manager.get_state("progress")
        if progress["status"] != "running" or report["index"] != progress["next"]:
            return
        stage = progress["stages"][report["index"]]
        event = f"stage {stage} attempt {report['attempts']} failed: {report['error']}"
        if report["final"]:
            progress["status"] = "failed"
            event += " (giving up)"
        else:
            event += " (retrying)"
        progress["events"].append(event)
        await self._save(progress)

    async def status(self):
        found, progress = await self._state_manager.try_get_state("progress")
        return progress if found else {"job": self.id.id, "status": "unknown"}

    async def _save(self, progress):
        # Saved before any message leaves: a crash after this point resends, never forgets.
        await self._state_manager.set_state("progress", progress)
        await self._state_manager.save_state()

    async def _send_next(self, progress):
        if progress["status"] != "running":
            return
        index = progress["next"]
        stage = progress["stages"][index]
        actor_id = stage_actor_id(self.id.id, index, stage)
        log.info("%s: sending stage %s to Stage/%s", self.id.id, stage, actor_id)
        proxy = ActorProxy.create("Stage", ActorId(actor_id), StageInterface)
        await proxy.Start({
            "pipeline": self.id.id,
            "index": index,
            "stage": stage,
            "input": progress["artifact"],
            "flaky": progress["flaky"] == stage,
        })


class Stage(Actor, StageInterface, Remindable):
    """Does one stage of one job, in reminder turns, until its pipeline has the result."""

    async def start(self, order):
        found, _ = await self._state_manager.try_get_state("order")
        if found:
            return  # started already: its reminder is doing the work
        await self._state_manager.set_state("order", order)
        await self._state_manager.set_state("attempts", 0)
        await self._state_manager.save_state()
        # The work happens in the reminder's turns: this call answers at once, and the
        # sidecar keeps firing the reminder — across crashes — until it is unregistered.
        await self.register_reminder(WORK_REMINDER, b"", timedelta(0), RETRY_PERIOD)

    async def receive_reminder(self, name, state, due_time, period, ttl=None):
        if name != WORK_REMINDER:
            return
        order = await self._state_manager.get_state("order")
        pipeline = ActorProxy.create("Pipeline", ActorId(order["pipeline"]), PipelineInterface)
        found, output = await self._state_manager.try_get_state("output")
        attempts = await self._state_manager.get_state("attempts")
        if not found:
            attempts += 1
            await self._state_manager.set_state("attempts", attempts)
            try:
                output = self._work(order, attempts)
            except StageFailure as failure:
                await self._state_manager.save_state()
                final = attempts >= MAX_ATTEMPTS
                log.info("%s: attempt %d failed: %s", self.id.id, attempts, failure)
                await self._tell(pipeline.StageFailed({
                    "index": order["index"], "attempts": attempts,
                    "error": str(failure), "final": final}))
                if final:
                    await self.unregister_reminder(WORK_REMINDER)
                return
            await self._state_manager.set_state("output", output)
            await self._state_manager.save_state()
            log.info("%s: done in %d attempt(s)", self.id.id, attempts)
        report = {"index": order["index"], "actor": self.id.id,
                  "attempts": attempts, "output": output}
        if await self._tell(pipeline.StageDone(report)):
            # Acknowledged: the pipeline has the result, no more fires needed.
            await self.unregister_reminder(WORK_REMINDER)

    @staticmethod
    def _work(order, attempt):
        """The stage's work: here it only marks the artifact, and the flaky stage fails
        its first attempt (as a real build step might on a network hiccup)."""
        if order["flaky"] and attempt == 1:
            raise StageFailure(f"{order['stage']} hit a transient error")
        return f"{order['input']} +{order['stage']}"

    async def _tell(self, call) -> bool:
        """Sends a message to the pipeline; a failure is not fatal: the reminder's next
        fire sends it again."""
        try:
            await call
            return True
        except Exception as error:  # noqa: BLE001 - any failure means "try next period"
            log.warning("%s: pipeline unreachable (%s), will retry", self.id.id, error)
            return False


@asynccontextmanager
async def lifespan(_app):
    await actors.register_actor(Pipeline)
    await actors.register_actor(Stage)
    yield


app = FastAPI(lifespan=lifespan)
# DaprActor answers the sidecar's GET /dapr/config (the actor types hosted here) and
# routes its PUT /actors/{type}/{id}/method/... calls to the actors.
actors = DaprActor(app)
