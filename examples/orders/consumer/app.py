"""The order consumer: subscribes to the `orders` topic of the `order_pub_sub` component.

DaprApp answers the sidecar's `GET /dapr/subscribe` with the subscriptions declared below,
and the sidecar then POSTs every event to the route it generated, as a CloudEvent whose
`data` is the order the publisher sent."""

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

app = FastAPI()
dapr_app = DaprApp(app)


class OrderEvent(BaseModel):
    """The CloudEvent envelope the sidecar wraps each order in. Declaring its fields makes
    FastAPI check them: an event missing one is rejected (422) instead of half-handled."""

    model_config = ConfigDict(extra="allow")  # e.g. `time`, `traceparent`

    specversion: str
    id: str
    source: str
    type: str
    datacontenttype: str
    pubsubname: str
    topic: str
    traceid: str
    tracestate: str
    data: dict


@dapr_app.subscribe(pubsub="order_pub_sub", topic="orders")
def on_order(event: OrderEvent) -> dict:
    print(f"Subscriber received : {event.data['product']}", flush=True)
    # A 2xx answer with SUCCESS tells the sidecar the event is done; anything else is retried.
    return {"status": "SUCCESS"}
