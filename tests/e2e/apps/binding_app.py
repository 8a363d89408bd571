"""An app that takes input binding events, on Python's standard library alone.

It answers the sidecar's `OPTIONS /{route}` probe for the routes in ROUTES (a comma
separated list) and 404 for any other, and prints one JSON line per request it gets:
`{"kind": "probe"|"event", "path", "headers", "body"}`. Events on a route listed in
REFUSE are answered 500.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = {"/" + r.strip("/") for r in os.environ.get("ROUTES", "").split(",") if r}
REFUSE = {"/" + r.strip("/") for r in os.environ.get("REFUSE", "").split(",") if r}


def say(**fields):
    print(json.dumps(fields), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        # /dapr/subscribe, /dapr/config: nothing to subscribe to, no actors.
        self.reply(404)

    def do_OPTIONS(self):
        say(kind="probe", path=self.path)
        self.reply(200 if self.path in ROUTES else 404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        say(kind="event", path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
            body=body.decode())
        self.reply(500 if self.path in REFUSE else 200)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
