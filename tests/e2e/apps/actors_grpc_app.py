"""The actor test app's `Counter`, hosted over the gRPC actor stream
(`SubscribeActorEventsAlpha1`) with the official Python SDK's `ActorGrpcHost`: no HTTP
callback routes; state, reminders and timers go through the sidecar's gRPC API."""

import asyncio

from dapr.actor.runtime.grpc_host import ActorGrpcHost

from actors_app import Counter


async def main():
    host = ActorGrpcHost()
    await host.register_actor(Counter)
    await host.run_forever()


if __name__ == "__main__":
    asyncio.run(main())
