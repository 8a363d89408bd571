"""`state.mongodb` end to end: the official Python SDK's `examples/state_store_query`
(its `components/mongodb.yml`, dataset, `query.json` and `query-token.json`) against a
real `tandem` and tests/mongo/server.py — a MongoDB wire-protocol front over mongomock,
as no MongoDB server can be installed where tandem is tested.

As the example's README runs it: the dataset is saved through a sidecar of app `demo`,
and app `queryexample` queries it (a query covers the whole store, as on daprd, and
answers each key without its app prefix); the printed lines are the README's, doubles
and all."""

import json
import textwrap
from pathlib import Path

import pymongo
import pytest
import requests

from conftest import PYTHON, REPO, _server, free_port, write_component

# The SDK example's dataset.json: key, person.org, person.id, city, state.
DATASET = [
    ("1", "Dev Ops", 1036, "Seattle", "WA"), ("2", "Hardware", 1028, "Portland", "OR"),
    ("3", "Finance", 1071, "Sacramento", "CA"), ("4", "Dev Ops", 1042, "Spokane", "WA"),
    ("5", "Hardware", 1007, "Los Angeles", "CA"), ("6", "Finance", 1094, "Eugene", "OR"),
    ("7", "Dev Ops", 1015, "San Francisco", "CA"), ("8", "Hardware", 1077, "Redmond", "WA"),
    ("9", "Finance", 1002, "San Diego", "CA"), ("10", "Dev Ops", 1054, "New York", "NY"),
]

# The example's query.json; query-token.json is the same with page.token "3".
QUERY = {
    "filter": {"OR": [{"EQ": {"person.org": "Dev Ops"}},
                      {"AND": [{"EQ": {"person.org": "Finance"}},
                               {"IN": {"state": ["CA", "WA"]}}]}]},
    "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
    "page": {"limit": 3},
}

# The example's state_store_query.py.
APP = textwrap.dedent("""
    import json
    from dapr.clients import DaprClient
    with DaprClient() as d:
        for name in ['query.json', 'query-token.json']:
            res = d.query_state(store_name='statestore', query=open(name).read())
            for r in res.results:
                print(r.key, json.dumps(json.loads(str(r.value, 'UTF-8')), sort_keys=True), flush=True)
            print('Token:', res.token, flush=True)
""")


@pytest.fixture
def mongo_server(tmp_path):
    """A private tests/mongo/server.py on a free loopback port. Yields its port."""
    port = free_port()
    with _server("mongo", [PYTHON, str(REPO / "tests" / "mongo" / "server.py"), "--port", str(port)],
                 port, tmp_path / "mongo"):
        yield port


def value(key):
    _, org, id, city, state = next(row for row in DATASET if row[0] == key)
    return {"person": {"org": org, "id": id}, "city": city, "state": state}


def test_python_sdk_state_store_query_example(tandem, tmp_path, mongo_server):
    components = tmp_path / "components"
    # The example's components/mongodb.yml, pointed at the test server (as the primary of
    # the one-member replica set it reports).
    write_component(components, "mongodb.yml", "statestore", "state.mongodb",
                    {"host": f"127.0.0.1:{mongo_server}",
                     "params": "?directConnection=true&replicaSet=rs0"})
    sidecar = tandem.sidecar("loader", app_id="demo", resources=[components], cwd=tmp_path)
    sidecar.wait_healthy()
    metadata = sidecar.metadata()
    store = next(c for c in metadata["components"] if c["name"] == "statestore")
    assert store["type"] == "state.mongodb"
    assert set(store["capabilities"]) >= {"ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"}, store

    saved = requests.post(f"{sidecar.url}/v1.0/state/statestore", timeout=10,
                          json=[{"key": key, "value": value(key)} for key, *_ in DATASET])
    assert saved.status_code == 204, saved.text

    # daprd's document layout, read straight from the server.
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{mongo_server}/?directConnection=true",
                                 serverSelectionTimeoutMS=5000)
    document = client["daprStore"]["daprCollection"].find_one({"_id": "demo||1"})
    assert set(document) == {"_id", "value", "_etag", "_ttl"}, document
    assert document["value"] == value("1") and document["_ttl"] is None
    # Numbers are doubles, as daprd's HTTP API stores them.
    assert isinstance(document["value"]["person"]["id"], float), document
    assert requests.get(f"{sidecar.url}/v1.0/state/statestore/1", timeout=10).headers["ETag"] \
        == document["_etag"]

    (tmp_path / "state_store_query.py").write_text(APP)
    (tmp_path / "query.json").write_text(json.dumps(QUERY))
    (tmp_path / "query-token.json").write_text(json.dumps({**QUERY, "page": {"limit": 3, "token": "3"}}))
    app = tandem.run("sdk", [PYTHON, "state_store_query.py"], app_id="queryexample",
                     resources=[components], cwd=tmp_path, env={"DAPR_HEALTH_TIMEOUT": "20"})
    assert app.proc.wait_exit(60) == 0, app.proc.tail()
    lines = [line.split("== APP == ", 1)[1] for line in app.proc.output().splitlines()
             if "== APP == " in line]
    # Less the SDK's warning that the query API is alpha (on stderr, two lines).
    lines = [line for line in lines if "Warning" not in line and "query_state(" not in line]
    # The README's lines, as its own test (tests/examples) compares them: daprd stores
    # JSON numbers as doubles and renders them as such in query answers.
    expected = [
        '1 {"city": "Seattle", "person": {"id": 1036.0, "org": "Dev Ops"}, "state": "WA"}',
        '4 {"city": "Spokane", "person": {"id": 1042.0, "org": "Dev Ops"}, "state": "WA"}',
        '10 {"city": "New York", "person": {"id": 1054.0, "org": "Dev Ops"}, "state": "NY"}',
        'Token: 3',
        '9 {"city": "San Diego", "person": {"id": 1002.0, "org": "Finance"}, "state": "CA"}',
        '7 {"city": "San Francisco", "person": {"id": 1015.0, "org": "Dev Ops"}, "state": "CA"}',
        '3 {"city": "Sacramento", "person": {"id": 1071.0, "org": "Finance"}, "state": "CA"}',
        'Token: 6',
    ]
    assert lines == expected, lines
