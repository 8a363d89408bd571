"""The actor host of the multi-host test, on the official Python SDK's FastAPI extension.

`Counter.Add` takes a call id and increments the actor's counter once per call id: the
ids already applied are kept in the actor's state with the counter, so a call the client
sends again (its answer lost when a host died) is not counted twice. Every activation
gets a random id; its activation, every turn's start and end (with a random turn id and the call id) and every
reminder are appended as JSON lines to the file named by ACTOR_EVENTS — one file shared by
all hosts (network namespaces share the file system), so the test can tell which host ran
what and whether two activations of one actor id were ever alive at once. HOST_NAME
names the host in each line.
"""

import json
import os
import time
import uuid
from datetime import timedelta

from dapr.actor import Actor, ActorInterface, Remindable, actormethod
from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI

EVENTS = os.environ.get("ACTOR_EVENTS", os.devnull)
HOST = os.environ.get("HOST_NAME", "?")


def record(**event):
    event["at"] = time.time()
    event["host"] = HOST
    # One write of one line in append mode: lines from the three hosts never interleave.
    with open(EVENTS, "a") as events:
        events.write(json.dumps(event) + "\n")


class CounterInterface(ActorInterface):
    @actormethod(name="Add")
    async def add(self, call: str) -> int: ...

    @actormethod(name="Get")
    async def get(self) -> int: ...

    @actormethod(name="StartReminder")
    async def start_reminder(self, name: str) -> None: ...


class Counter(Actor, CounterInterface, Remindable):
    def __init__(self, ctx, actor_id):
        super().__init__(ctx, actor_id)
        self.activation = uuid.uuid4().hex

    async def _on_activate(self):
        record(kind="activate", id=self.id.id, activation=self.activation)

    async def _on_deactivate(self):
        record(kind="deactivate", id=self.id.id, activation=self.activation)

    async def add(self, call):
        turn = uuid.uuid4().hex
        record(kind="start", id=self.id.id, activation=self.activation, turn=turn, call=call)
        found, applied = await self._state_manager.try_get_state("applied")
        applied = applied if found else []
        if call not in applied:
            applied.append(call)
            await self._state_manager.set_state("applied", applied)
            await self._state_manager.set_state("count", len(applied))
            await self._state_manager.save_state()
        record(kind="end", id=self.id.id, activation=self.activation, turn=turn, call=call)
        return len(applied)

    async def get(self):
        turn = uuid.uuid4().hex
        record(kind="start", id=self.id.id, activation=self.activation, turn=turn, call="get")
        found, count = await self._state_manager.try_get_state("count")
        record(kind="end", id=self.id.id, activation=self.activation, turn=turn, call="get")
        return count if found else 0

    async def start_reminder(self, name):
        await self.register_reminder(name, b"{}", timedelta(seconds=1), timedelta(seconds=1))

    async def receive_reminder(self, name, state, due_time, period, ttl=None):
        turn = uuid.uuid4().hex
        record(kind="start", id=self.id.id, activation=self.activation, turn=turn,
               call=f"reminder:{name}")
        record(kind="reminder", id=self.id.id, activation=self.activation, name=name)
        record(kind="end", id=self.id.id, activation=self.activation, turn=turn,
               call=f"reminder:{name}")


app = FastAPI()
actors = DaprActor(app)
# Idle actors stay active for the whole test: every deactivation then means a move.
ActorRuntime.set_actor_config(ActorRuntimeConfig(actor_idle_timeout=timedelta(hours=1),
                                                 actor_scan_interval=timedelta(seconds=30)))


@app.on_event("startup")
async def startup():
    await actors.register_actor(Counter)
