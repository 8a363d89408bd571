"""The state query API as the official Python SDK uses it (`query_state`, over gRPC, in
the shape of the SDK's own state_store_query example: a filter tree, a sort order and
pages with a token) on the embedded default store, and daprd's answers over HTTP: 204
for no match, ERR_STATE_STORE_NOT_SUPPORTED for a store without queries, ERR_STATE_QUERY
for a malformed query."""

import json
import textwrap

import requests

from conftest import PYTHON, write_component

PEOPLE = [
    ("1", "Platform", 1036, "Lyon", "WA"), ("2", "Sales", 1028, "Nantes", "OR"),
    ("3", "Finance", 1071, "Lille", "CA"), ("4", "Platform", 1042, "Metz", "WA"),
    ("5", "Sales", 1007, "Brest", "CA"), ("6", "Finance", 1094, "Dijon", "OR"),
    ("7", "Platform", 1015, "Nice", "CA"), ("8", "Sales", 1077, "Caen", "WA"),
    ("9", "Finance", 1002, "Tours", "CA"), ("10", "Platform", 1054, "Pau", "NY"),
]

QUERY = {
    "filter": {"OR": [{"EQ": {"person.org": "Platform"}},
                      {"AND": [{"EQ": {"person.org": "Finance"}},
                               {"IN": {"state": ["CA", "WA"]}}]}]},
    "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
    "page": {"limit": 3},
}

APP = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")  # the query API is alpha; the SDK says so
    from dapr.clients import DaprClient
    query = json.loads(sys.argv[1])
    with DaprClient() as client:
        for token in [None, "3", "6"]:
            if token:
                query["page"]["token"] = token
            answer = client.query_state(store_name="statestore", query=json.dumps(query))
            for result in answer.results:
                print(result.key, json.dumps(json.loads(result.value), sort_keys=True), flush=True)
            print("Token:", answer.token, flush=True)
""")


def test_python_sdk_queries_the_embedded_store(tandem, tmp_path):
    sidecar = tandem.sidecar("loader", app_id="queryexample", cwd=tmp_path)
    sidecar.wait_healthy()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    saved = requests.post(f"{base}/v1.0/state/statestore", timeout=10, json=[
        {"key": key, "value": {"person": {"org": org, "id": id}, "city": city, "state": state}}
        for key, org, id, city, state in PEOPLE])
    assert saved.status_code == 204, saved.text
    (tmp_path / "query_app.py").write_text(APP)
    app = tandem.run("sdk", [PYTHON, "query_app.py", json.dumps(QUERY)], app_id="queryexample",
                     cwd=tmp_path, env={"DAPR_HEALTH_TIMEOUT": "20"})
    assert app.proc.wait_exit(60) == 0, app.proc.tail()
    lines = [line.split("== APP == ", 1)[1] for line in app.proc.output().splitlines()
             if "== APP == " in line]

    def row(key):
        _, org, id, city, state = next(p for p in PEOPLE if p[0] == key)
        return f'{key} ' + json.dumps({"city": city, "person": {"id": id, "org": org},
                                       "state": state}, sort_keys=True)

    assert lines == [row("1"), row("4"), row("10"), "Token: 3",
                     row("9"), row("7"), row("3"), "Token: 6",
                     "Token: 6"], lines  # as Dapr's stores: a limited page always has one

    # Over HTTP, as daprd: the same page, with ETags; nothing matched is 204.
    page = requests.post(f"{base}/v1.0-alpha1/state/statestore/query", json=QUERY, timeout=10)
    assert page.status_code == 200, page.text
    body = page.json()
    assert [result["key"] for result in body["results"]] == ["1", "4", "10"]
    assert body["token"] == "3" and all(result["etag"] for result in body["results"])
    assert body["results"][0]["data"] == {"person": {"org": "Platform", "id": 1036},
                                          "city": "Lyon", "state": "WA"}
    none = requests.put(f"{base}/v1.0-alpha1/state/statestore/query",
                        json={"filter": {"EQ": {"state": "TX"}}}, timeout=10)
    assert none.status_code == 204 and none.content == b""
    bad = requests.post(f"{base}/v1.0-alpha1/state/statestore/query",
                        json={"filter": {"LIKE": {"state": "T%"}}}, timeout=10)
    assert bad.status_code == 500
    assert bad.json()["errorCode"] == "ERR_STATE_QUERY"
    assert bad.json()["message"] == ("state store statestore query failed: failed to parse JSON "
                                     "query body: unsupported filter \"LIKE\""), bad.text


def test_a_store_without_queries_says_so(tandem, tmp_path, redis_server):
    components = tmp_path / "components"
    write_component(components, "statestore.yaml", "redisstore", "state.redis",
                    {"redisHost": f"127.0.0.1:{redis_server}"})
    sidecar = tandem.sidecar("redis", app_id="noquery", resources=[components], cwd=tmp_path)
    sidecar.wait_healthy()
    answer = requests.post(f"http://127.0.0.1:{sidecar.http_port}/v1.0-alpha1/state/redisstore/query",
                           json={}, timeout=10)
    assert answer.status_code == 500
    body = answer.json()
    assert body["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
    assert body["message"] == "state store does not support querying"
    assert any(detail.get("reason") == "DAPR_STATE_QUERYING_NOT_SUPPORTED"
               for detail in body.get("details", [])), body
