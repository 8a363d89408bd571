"""The order publisher: an HTTP endpoint that turns each order it is given into an event
on the `orders` topic. It only knows the pub/sub component's name, `order_pub_sub`; which
broker is behind that name is decided by ../components/pubsub.yaml, not here."""

import logging

from dapr.clients import DaprClient
from fastapi import FastAPI
from pydantic import BaseModel

logging.basicConfig(level=logging.INFO)

app = FastAPI()


class Order(BaseModel):
    product: str


@app.post("/orders")
def place_order(order: Order) -> Order:
    logging.info("Received order for %s", order.product)
    # DaprClient finds its sidecar through DAPR_GRPC_PORT, which `tandem run` sets.
    with DaprClient() as client:
        client.publish_event(
            pubsub_name="order_pub_sub",
            topic_name="orders",
            data=order.model_dump_json(),
            data_content_type="application/json",
        )
    return order
