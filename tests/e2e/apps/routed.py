"""A FastAPI app on the official Dapr Python SDK's extension (`dapr.ext.fastapi`), for the
subscription tests.

It subscribes programmatically with `DaprApp.subscribe` to `payments` (with a dead-letter
topic) and to that dead-letter topic, and serves plain routes that a declarative
`Subscription` resource routes to. Every event it is sent is kept; `GET /received` lists
them as [route, event] pairs. A payment with a negative amount is answered `DROP`.
"""

from fastapi import Body, FastAPI

from dapr.ext.fastapi import DaprApp

app = FastAPI()
dapr_app = DaprApp(app)
received: list = []


@dapr_app.subscribe(pubsub="pubsub", topic="payments", route="/payments",
                    dead_letter_topic="payments-dead")
def payment(event=Body()):
    received.append(["/payments", event])
    if event["data"]["amount"] < 0:
        return {"status": "DROP"}
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub="pubsub", topic="payments-dead", route="/payments-dead")
def dead_payment(event=Body()):
    received.append(["/payments-dead", event])
    return {"status": "SUCCESS"}


def recorder(route):
    def record(event=Body()):
        received.append([route, event])
        return {"status": "SUCCESS"}
    return record


for route in ("/widgets", "/expensive", "/products"):
    app.add_api_route(route, recorder(route), methods=["POST"])


@app.get("/received")
def everything():
    return received
