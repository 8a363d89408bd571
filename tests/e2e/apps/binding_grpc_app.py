"""A gRPC app on the official Python SDK's `dapr.ext.grpc.App` that takes the `tick` input
binding's events (`@app.binding`) and prints one JSON line per event."""

import json
import os

from dapr.ext.grpc import App, BindingRequest

app = App()


@app.binding("tick")
def on_tick(request: BindingRequest):
    print(json.dumps({"kind": "event", "metadata": dict(request.binding_metadata),
                      "text": request.text()}), flush=True)


app.run(int(os.environ["APP_PORT"]))
