"""A plain grpcio server with no generated code: service `tandemtest.Echo`, whose
messages are raw bytes. `Say` greets and tells what metadata it got (or fails with a
status, details and trailing metadata when asked to `fail`); `Chat` answers each message
as it comes. It knows nothing of Dapr: its sidecar only proxies calls to it."""

import json
import os
from concurrent import futures

import grpc


def say(request: bytes, context: grpc.ServicerContext) -> bytes:
    metadata = dict(context.invocation_metadata())
    if request == b"fail":
        context.set_trailing_metadata((("x-why", "because"),
                                       ("grpc-status-details-bin", b"rich details")))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not today")
    context.send_initial_metadata((("x-greeted", "yes"),))
    seen = {name: metadata.get(name) for name in
            ("dapr-app-id", "dapr-api-token", "dapr-caller-app-id", "dapr-callee-app-id",
             "x-tenant")}
    return json.dumps({"hello": request.decode(), **seen}).encode()


def chat(requests, context):
    context.set_trailing_metadata((("x-said", "goodbye"),))
    for message in requests:
        yield message.upper()


handler = grpc.method_handlers_generic_handler("tandemtest.Echo", {
    "Say": grpc.unary_unary_rpc_method_handler(say),
    "Chat": grpc.stream_stream_rpc_method_handler(chat),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{os.environ['APP_PORT']}")
server.start()
print("echo server started", flush=True)
server.wait_for_termination()
