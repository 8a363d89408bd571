"""A client app run by `tandem run`: calls the app named in argv[1] with the official
SDK's invoke_method and prints what came back as JSON lines."""

import json
import sys

from dapr.clients import DaprClient

target = sys.argv[1]

with DaprClient() as client:
    answer = client.invoke_method(target, "greet/sdk", data='{"n": 1}', http_verb="POST",
                                  content_type="application/json", http_querystring=(("lang", "en"),))
    print(json.dumps({"step": "post", "status": answer.status_code, "body": json.loads(answer.text())}), flush=True)
    answer = client.invoke_method(target, "greet/again", http_verb="GET")
    print(json.dumps({"step": "get", "status": answer.status_code, "body": json.loads(answer.text())}), flush=True)
    print(json.dumps({"step": "done"}), flush=True)
