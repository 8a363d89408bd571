"""A client app run by `tandem run`: it uses the official SDK's state calls against the
store named in argv[1] and prints one JSON line per result, for the test to check."""

import json
import sys

import requests
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.conf import settings

store = sys.argv[1]


def report(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


with DaprClient() as client:
    client.save_state(store, "order", '{"product":"falafel"}')
    got = client.get_state(store, "order")
    report("get", data=got.data.decode(), etag=got.etag)

    try:
        client.save_state(store, "order", "late", etag="1" + got.etag)
        report("stale-etag", error=None)
    except DaprGrpcError as error:
        report("stale-etag", error=error.code().name)

    client.execute_state_transaction(store, operations=[
        TransactionalStateOperation(key="cart", data='["falafel"]'),
        TransactionalStateOperation(key="order", operation_type=TransactionOperationType.delete),
    ])
    report("after-transaction",
           cart=client.get_state(store, "cart").data.decode(),
           order=client.get_state(store, "order").data.decode())

    # What the HTTP API writes, the SDK reads unchanged.
    base = f"http://127.0.0.1:{settings.DAPR_HTTP_PORT}/v1.0/state/{store}"
    requests.post(base, json=[{"key": "from-http", "value": {"n": 1}}], timeout=10).raise_for_status()
    report("from-http", data=client.get_state(store, "from-http").data.decode())

    bulk = client.get_bulk_state(store, keys=["cart", "missing"])
    report("bulk", items={item.key: item.data.decode() for item in bulk.items})
    report("done")
