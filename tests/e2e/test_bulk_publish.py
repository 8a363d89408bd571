"""Bulk publish with the official Python SDK (`publish_events`): 100 entries in one call,
each one delivered (read back through a streaming subscription); with the broker gone,
the call fails with Dapr's error code rather than reporting success."""

import subprocess

import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import BulkPublishEntry
from dapr.conf import settings

from conftest import write_component

TOTAL = 100


def test_sdk_bulk_publishes_100_entries(tandem, tmp_path, redis_server, monkeypatch):
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.redis",
                    {"redisHost": f"127.0.0.1:{redis_server}"})
    sidecar = tandem.sidecar("bulk", app_id="bulk-publisher", resources=[components])
    sidecar.wait_healthy()
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", str(sidecar.grpc_port))

    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        subscription = client.subscribe(pubsub_name="pubsub", topic="bulk")
        entries = [BulkPublishEntry(entry_id=str(n), event=f'{{"n": {n}}}'.encode(),
                                    content_type="application/json") for n in range(TOTAL)]
        response = client.publish_events("pubsub", "bulk", entries)
        assert response.failed_entries == []

        seen = set()
        while len(seen) < TOTAL:
            message = subscription.next_message()
            seen.add(message.data()["n"])
            subscription.respond_success(message)
        subscription.close()
        assert seen == set(range(TOTAL))


def test_sdk_bulk_publish_to_a_broker_that_is_gone_fails_loudly(tandem, tmp_path, monkeypatch,
                                                               request):
    port = request.getfixturevalue("redis_server")
    components = tmp_path / "components"
    write_component(components, "pubsub.yaml", "pubsub", "pubsub.redis",
                    {"redisHost": f"127.0.0.1:{port}"})
    sidecar = tandem.sidecar("bulk", app_id="bulk-publisher", resources=[components])
    sidecar.wait_healthy()
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", str(sidecar.http_port))
    # Stop the broker: every entry fails.
    subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], capture_output=True)
    with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
        with pytest.raises(DaprGrpcError) as failed:
            client.publish_events("pubsub", "bulk", [b"a", b"b"], data_content_type="text/plain")
    assert failed.value.error_code() == "DAPR_PUBSUB_PUBLISH_MESSAGE"
