"""A publisher with nothing but Python's standard library: it POSTs to its sidecar's
publish API, whose port tandem passes in DAPR_HTTP_PORT."""

import json
import os
import sys
import time
import urllib.request

PUBSUB = os.environ.get("PUBSUB_NAME", "pubsub")
TOPIC = os.environ.get("TOPIC", "greetings")
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 5

url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/publish/{PUBSUB}/{TOPIC}"
for n in range(1, COUNT + 1):
    body = json.dumps({"greeting": f"hello #{n}"}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        print(f"published hello #{n} ({response.status})", flush=True)
    time.sleep(0.2)
