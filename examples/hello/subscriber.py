"""A subscriber with nothing but Python's standard library.

tandem asks `GET /dapr/subscribe` which topics the app wants, then POSTs each event
(a CloudEvent) to the route named there. Answering 200 tells tandem the event is done.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PUBSUB = os.environ.get("PUBSUB_NAME", "pubsub")
TOPIC = os.environ.get("TOPIC", "greetings")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/dapr/subscribe":
            self.send_error(404)
            return
        body = json.dumps([{"pubsubname": PUBSUB, "topic": TOPIC, "route": "/greetings"}])
        self.reply(200, body)

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print(f"received: {event['data']} (event {event['id']} from {event['source']})", flush=True)
        self.reply(200, json.dumps({"status": "SUCCESS"}))

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
