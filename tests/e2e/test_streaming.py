"""Streaming subscriptions with the official Python SDK (`DaprClient.subscribe`): events
published right after `subscribe` returns all arrive, the first included (the seed post
"Iterator fun" is about an iterator that loses its first element); a subscriber that stops
with an event taken but unanswered gets it again on its next subscription; nothing is lost."""

import threading

from dapr.clients import DaprClient
from dapr.conf import settings

from conftest import wait_until, write_component

TOTAL = 1000
STOP_AFTER = 300


def test_python_streaming_subscription_loses_nothing(tandem, tmp_path, redis_server, monkeypatch):
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.redis", {
        "redisHost": f"127.0.0.1:{redis_server}",
        "processingTimeout": "1s",
        "redeliverInterval": "500ms",
    })
    sidecar = tandem.sidecar("streamer", app_id="streamer", resources=[components])
    sidecar.wait_healthy()
    # The SDK reads its sidecar's ports from its settings (DAPR_HTTP_PORT at import).
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", str(sidecar.grpc_port))

    done = {}            # number -> times answered SUCCESS
    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        subscription = client.subscribe(pubsub_name="pubsub", topic="numbers")
        # Published as soon as subscribe() returned, and while the subscriber reads.
        publishing = threading.Thread(
            target=lambda: [client.publish_event("pubsub", "numbers", str(n),
                                                 data_content_type="text/plain")
                            for n in range(TOTAL)],
            daemon=True)
        publishing.start()

        streams = [s for s in sidecar.metadata().get("subscriptions", []) if s["type"] == "STREAMING"]
        assert [(s["pubsubname"], s["topic"]) for s in streams] == [("pubsub", "numbers")]

        first = None
        unanswered = None
        while True:
            message = subscription.next_message()
            n = int(message.data())
            if first is None:
                first = n
            if len(done) == STOP_AFTER:
                unanswered = n      # taken, never answered: the subscriber "crashes"
                break
            subscription.respond_success(message)
            done[n] = done.get(n, 0) + 1
        subscription.close()
        assert first == 0, f"the first event published came first, got {first}"

        wait_until(lambda: not [s for s in sidecar.metadata().get("subscriptions", [])
                                if s["type"] == "STREAMING"], 10, "the closed stream to go")

        again = client.subscribe(pubsub_name="pubsub", topic="numbers")
        seen_unanswered = False
        while len(done) < TOTAL:
            message = again.next_message()
            n = int(message.data())
            seen_unanswered |= n == unanswered
            again.respond_success(message)
            done[n] = done.get(n, 0) + 1
        again.close()
        publishing.join(timeout=60)

    assert sorted(done) == list(range(TOTAL)), "every event arrived"
    assert seen_unanswered, f"the event taken but unanswered ({unanswered}) came again"
