"""Calls `tandemtest.Echo` on the app named by TARGET through its own sidecar's gRPC port
(gRPC proxying, `dapr-app-id` metadata), with grpcio's generic calls on raw bytes, and
prints what came back as JSON lines."""

import json
import os
import queue

import grpc

TARGET = os.environ["TARGET"]
METADATA = (("dapr-app-id", TARGET), ("x-tenant", "acme"))


def out(**fields):
    print(json.dumps(fields), flush=True)


with grpc.insecure_channel(f"127.0.0.1:{os.environ['DAPR_GRPC_PORT']}") as channel:
    say = channel.unary_unary("/tandemtest.Echo/Say")
    answer, call = say.with_call(b"there", metadata=METADATA, timeout=20)
    out(kind="say", answer=json.loads(answer), headers=dict(call.initial_metadata()))

    try:
        say(b"fail", metadata=METADATA, timeout=20)
        out(kind="fail", code="OK")
    except grpc.RpcError as error:
        trailers = dict(error.trailing_metadata())
        out(kind="fail", code=error.code().name, message=error.details(),
            why=trailers.get("x-why"),
            details=trailers.get("grpc-status-details-bin", b"").decode())

    # Each reply is read before the next message is sent: the call streams both ways.
    outgoing = queue.Queue()

    def messages():
        while (message := outgoing.get()) is not None:
            yield message

    replies = channel.stream_stream("/tandemtest.Echo/Chat")(messages(), metadata=METADATA,
                                                             timeout=20)
    got = []
    for word in (b"ping", b"pong"):
        outgoing.put(word)
        got.append(next(replies).decode())
    outgoing.put(None)
    rest = [reply.decode() for reply in replies]
    out(kind="chat", replies=got, rest=rest, code=replies.code().name,
        trailers=dict(replies.trailing_metadata()))

    try:
        say(b"x", metadata=(("dapr-app-id", "nobody"),), timeout=20)
    except grpc.RpcError as error:
        out(kind="unknown", code=error.code().name, message=error.details())
