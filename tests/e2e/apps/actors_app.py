"""An actor host on the official Python SDK's FastAPI extension, for the actor tests.

`Counter` increments a counter kept in actor state and records every turn's start and
end (with the activation's own id) in the events file named by ACTOR_EVENTS, so a test
can tell whether two turns — or two activations of one id — ever overlapped. It also
registers reminders and timers, and calls other actors (reentrancy). ACTOR_REENTRANCY=1
turns reentrancy on.
"""

import asyncio
import json
import os
import time
import uuid
from datetime import timedelta

from dapr.actor import Actor, ActorId, ActorInterface, ActorProxy, Remindable, actormethod
from dapr.actor.runtime.config import ActorReentrancyConfig, ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI

EVENTS = os.environ.get("ACTOR_EVENTS", os.devnull)
REENTRANT = os.environ.get("ACTOR_REENTRANCY") == "1"


def record(**event):
    event["at"] = time.time()
    event["pid"] = os.getpid()
    with open(EVENTS, "a") as events:
        events.write(json.dumps(event) + "\n")


class CounterInterface(ActorInterface):
    @actormethod(name="Add")
    async def add(self, amount: int) -> int: ...

    @actormethod(name="Get")
    async def get(self) -> int: ...

    @actormethod(name="StartReminder")
    async def start_reminder(self, spec: dict) -> None: ...

    @actormethod(name="StopReminder")
    async def stop_reminder(self, name: str) -> None: ...

    @actormethod(name="StartTimer")
    async def start_timer(self, spec: dict) -> None: ...

    @actormethod(name="Ping")
    async def ping(self, peer: str) -> str: ...

    @actormethod(name="Pong")
    async def pong(self, caller: str) -> str: ...


class Counter(Actor, CounterInterface, Remindable):
    def __init__(self, ctx, actor_id):
        super().__init__(ctx, actor_id)
        self.activation = uuid.uuid4().hex

    async def _on_activate(self):
        record(kind="activate", id=self.id.id, activation=self.activation)

    async def _on_deactivate(self):
        record(kind="deactivate", id=self.id.id, activation=self.activation)

    async def add(self, amount):
        record(kind="start", id=self.id.id, activation=self.activation)
        found, count = await self._state_manager.try_get_state("count")
        count = (count if found else 0) + amount
        await asyncio.sleep(0.002)  # a turn that takes a while: overlaps would show
        await self._state_manager.set_state("count", count)
        await self._state_manager.save_state()
        record(kind="end", id=self.id.id, activation=self.activation)
        return count

    async def get(self):
        found, count = await self._state_manager.try_get_state("count")
        return count if found else 0

    async def start_reminder(self, spec):
        await self.register_reminder(
            spec["name"], json.dumps(spec).encode(),
            timedelta(seconds=spec.get("due", 1)), timedelta(seconds=spec.get("period", 1)))

    async def stop_reminder(self, name):
        await self.unregister_reminder(name)

    async def receive_reminder(self, name, state, due_time, period, ttl=None):
        record(kind="reminder", id=self.id.id, name=name, activation=self.activation)

    async def start_timer(self, spec):
        await self.register_timer(spec["name"], self.on_timer, spec["name"],
                                  timedelta(seconds=spec.get("due", 0.2)),
                                  timedelta(seconds=spec.get("period", 0.2)))

    async def on_timer(self, name):
        record(kind="timer", id=self.id.id, name=name, activation=self.activation)

    async def ping(self, peer):
        # Calls another actor, which calls this one back: only reentrancy lets it in.
        other = ActorProxy.create("Counter", ActorId(peer), CounterInterface)
        return await other.Pong(self.id.id)

    async def pong(self, caller):
        back = ActorProxy.create("Counter", ActorId(caller), CounterInterface)
        count = await back.Get()
        return f"{self.id.id} saw {caller} at {count}"


app = FastAPI()
actors = DaprActor(app)
ActorRuntime.set_actor_config(ActorRuntimeConfig(
    actor_idle_timeout=timedelta(seconds=float(os.environ.get("ACTOR_IDLE_SECONDS", "3600"))),
    actor_scan_interval=timedelta(seconds=1),
    reentrancy=ActorReentrancyConfig(enabled=REENTRANT),
))


@app.on_event("startup")
async def startup():
    await actors.register_actor(Counter)
