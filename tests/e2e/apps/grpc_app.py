"""A gRPC app on the official Python SDK's `dapr.ext.grpc.App`: it subscribes to a topic
(retrying the first delivery of each message once) and serves one method. Each handled
event and call is printed as a JSON line."""

import json
import os

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse, SubscriptionMessage

app = App()
PUBSUB = os.environ.get("PUBSUB_NAME", "pubsub")
TOPIC = os.environ.get("TOPIC", "orders")
retried = set()


def say(**fields):
    print(json.dumps(fields), flush=True)


@app.subscribe(pubsub_name=PUBSUB, topic=TOPIC)
def on_order(event: SubscriptionMessage) -> TopicEventResponse:
    data = event.data()
    n = data["n"]
    if n not in retried:
        retried.add(n)
        say(kind="retry", n=n)
        return TopicEventResponse("retry")
    say(kind="event", n=n, topic=event.topic(), content_type=event.data_content_type())
    return TopicEventResponse("success")


@app.method(name="greet")
def greet(request: InvokeMethodRequest) -> InvokeMethodResponse:
    tenant = dict(request.metadata).get("x-tenant", ["-"])
    say(kind="call", text=request.text(), tenant=tenant)
    return InvokeMethodResponse(f"hello {request.text()}".encode(), "text/plain")


app.run(int(os.environ["APP_PORT"]))
