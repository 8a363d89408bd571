"""A subscriber for the delivery tests, on Python's standard library alone.

It subscribes to PUBSUB_NAME/TOPIC, and for every event appends a line to RECORD_FILE:
`start <n> <event id>` when the event arrives, then — after working on it for DELAY_MS —
`done <n> <event id>` just before answering 200. A line is one write() on a file opened
with O_APPEND, so lines from concurrent deliveries never interleave, and a process killed
at any moment leaves only whole lines behind.
"""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PUBSUB = os.environ["PUBSUB_NAME"]
TOPIC = os.environ["TOPIC"]
RECORD_FILE = os.environ["RECORD_FILE"]
DELAY = int(os.environ.get("DELAY_MS", "50")) / 1000

record = os.open(RECORD_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(line: str) -> None:
    os.write(record, (line + "\n").encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/dapr/subscribe":
            self.reply(404, {"error": "not found"})
            return
        self.reply(200, [{"pubsubname": PUBSUB, "topic": TOPIC, "route": "/numbers"}])

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        number = event["data"]["n"]
        note(f"start {number} {event['id']}")
        time.sleep(DELAY)
        note(f"done {number} {event['id']}")
        self.reply(200, {"status": "SUCCESS"})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


print(f"recorder listening on {os.environ['APP_PORT']}", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
