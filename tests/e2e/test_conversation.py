"""The conversation API as the official Python SDK uses it (`converse_alpha1`,
`converse_alpha2` over gRPC, as in the SDK's examples/conversation) on
`conversation.echo`, and on `conversation.openai` against a stub of OpenAI's chat
completions API served by the test, through a whole tool-calling round; daprd's HTTP
answers and errors, with the expectations of daprd's own integration tests."""

import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import PYTHON, write_component

ECHO_APP = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("ignore")  # the conversation API is alpha; the SDK says so
    from dapr.clients import DaprClient
    from dapr.clients.grpc import conversation
    from dapr.clients.exceptions import DaprGrpcError

    with DaprClient() as d:
        inputs = [
            conversation.ConversationInput(content="What's Dapr?", role="user", scrub_pii=True),
            conversation.ConversationInput(content="Give a brief overview.", role="user"),
        ]
        response = d.converse_alpha1(name="echo", inputs=inputs, temperature=0.7,
                                     context_id="chat-123",
                                     metadata={"model": "foo", "key": "authKey", "cacheTTL": "10m"})
        print("alpha1:", json.dumps([o.result for o in response.outputs]), response.context_id,
              flush=True)

        inputs = [
            conversation.ConversationInputAlpha2(
                messages=[conversation.create_user_message("my email is ada@example.com")],
                scrub_pii=True),
            conversation.ConversationInputAlpha2(
                messages=[conversation.create_system_message("Give a brief overview.")]),
        ]
        response = d.converse_alpha2(name="echo", inputs=inputs, temperature=0.7,
                                     context_id="chat-123")
        out = response.outputs[0]
        choice = out.choices[0]
        print("alpha2:", json.dumps(choice.message.content), choice.finish_reason,
              out.usage.total_tokens, response.context_id, flush=True)

        weather = conversation.ConversationTools(function=conversation.ConversationToolsFunction(
            name="get_weather", description="The weather in a city",
            parameters={"type": "object",
                        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                        "required": ["location"]}))
        response = d.converse_alpha2(
            name="echo", inputs=[conversation.ConversationInputAlpha2(
                messages=[conversation.create_user_message("weather?")])],
            tools=[weather])
        choice = response.outputs[0].choices[0]
        call = choice.message.tool_calls[0]
        print("tools:", choice.finish_reason, call.id, call.function.name,
              call.function.arguments, flush=True)

        try:
            d.converse_alpha2(name="nope", inputs=inputs)
        except DaprGrpcError as error:
            print("unknown:", error.code().name, error.details(), flush=True)
        try:
            d.converse_alpha1(name="echo", inputs=[])
        except DaprGrpcError as error:
            print("empty:", error.code().name, error.details(), flush=True)
""")


def app_lines(sidecar) -> list[str]:
    assert sidecar.proc.wait_exit(60) == 0, sidecar.proc.tail()
    return [line.split("== APP == ", 1)[1] for line in sidecar.proc.output().splitlines()
            if "== APP == " in line]


def test_python_sdk_on_echo(tandem, tmp_path):
    components = tmp_path / "components"
    write_component(components, "echo.yaml", "echo", "conversation.echo")
    (tmp_path / "app.py").write_text(ECHO_APP)
    sidecar = tandem.run("echo", [PYTHON, "app.py"], app_id="conversation-echo",
                         resources=[components], cwd=tmp_path,
                         env={"DAPR_HEALTH_TIMEOUT": "20", "DAPR_API_TIMEOUT_SECONDS": "10"})
    assert app_lines(sidecar) == [
        'alpha1: ["What\'s Dapr?\\nGive a brief overview."] chat-123',
        'alpha2: "my email is <EMAIL_ADDRESS>\\nGive a brief overview." stop 16 chat-123',
        "tools: tool_calls 0 get_weather location,unit",
        "unknown: INVALID_ARGUMENT failed finding conversation component nope",
        "empty: INVALID_ARGUMENT failed conversing with component echo: missing inputs in request",
    ], sidecar.proc.tail()


class StubOpenAI(BaseHTTPRequestHandler):
    """OpenAI's chat completions API, as far as the test needs it: checks the key, asks for
    a call of the first tool offered until a tool has answered, then says what it heard."""

    seen: list = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubOpenAI.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                "body": body})
        if self.headers.get("Authorization") != "Bearer sk-stub":
            return self.answer(401, {"error": {"message": "Incorrect API key provided"}})
        last = body["messages"][-1]
        if body.get("tools") and last["role"] != "tool":
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_7", "type": "function",
                "function": {"name": body["tools"][0]["function"]["name"],
                             "arguments": json.dumps({"location": "Paris"})}}]}
            reason = "tool_calls"
        else:
            message = {"role": "assistant", "content": f"heard: {last['content']}"}
            reason = "stop"
        self.answer(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "message": message, "finish_reason": reason}],
                          "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                    "total_tokens": 13}})

    def answer(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_stub():
    StubOpenAI.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


TOOL_APP = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("ignore")
    from dapr.clients import DaprClient
    from dapr.clients.grpc import conversation
    from dapr.clients.exceptions import DaprGrpcError

    @conversation.tool
    def get_weather(location: str) -> str:
        '''The weather in a city.'''
        return f"sunny in {location}"

    with DaprClient() as d:
        question = conversation.create_user_message("What's the weather in Paris?")
        response = d.converse_alpha2(
            name="llm", inputs=[conversation.ConversationInputAlpha2(messages=[question])],
            tools=conversation.get_registered_tools(), temperature=0.2)
        out = response.outputs[0]
        choice = out.choices[0]
        call = choice.message.tool_calls[0]
        print("asked:", choice.finish_reason, call.id, call.function.name, call.function.arguments,
              out.model, out.usage.total_tokens, flush=True)
        result = conversation.execute_registered_tool(call.function.name, call.function.arguments)
        history = [
            question,
            conversation.ConversationMessage(of_assistant=conversation.ConversationMessageOfAssistant(
                tool_calls=[call])),
            conversation.create_tool_message(tool_id=call.id, name=call.function.name,
                                             content=result),
        ]
        response = d.converse_alpha2(
            name="llm", inputs=[conversation.ConversationInputAlpha2(messages=history)],
            tools=conversation.get_registered_tools())
        choice = response.outputs[0].choices[0]
        print("answer:", choice.finish_reason, json.dumps(choice.message.content), flush=True)
        try:
            d.converse_alpha1(name="wrongkey",
                              inputs=[conversation.ConversationInput(content="hi")])
        except DaprGrpcError as error:
            print("wrong key:", error.code().name, error.details(), flush=True)
""")


def test_python_sdk_tool_call_round_on_openai(tandem, tmp_path, openai_stub):
    components = tmp_path / "components"
    write_component(components, "llm.yaml", "llm", "conversation.openai",
                    {"key": "sk-stub", "model": "gpt-stub", "endpoint": openai_stub})
    write_component(components, "wrongkey.yaml", "wrongkey", "conversation.openai",
                    {"key": "sk-not-this-one", "endpoint": openai_stub})
    (tmp_path / "app.py").write_text(TOOL_APP)
    sidecar = tandem.run("tools", [PYTHON, "app.py"], app_id="conversation-tools",
                         resources=[components], cwd=tmp_path,
                         env={"DAPR_HEALTH_TIMEOUT": "20", "DAPR_API_TIMEOUT_SECONDS": "10",
                              "OPENAI_MODEL": ""})
    lines = app_lines(sidecar)
    assert lines == [
        'asked: tool_calls call_7 get_weather {"location": "Paris"} gpt-stub 13',
        'answer: stop "heard: sunny in Paris"',
        "wrong key: INTERNAL failed conversing with component wrongkey: "
        "API returned unexpected status code: 401: Incorrect API key provided",
    ], sidecar.proc.tail()
    first, second = StubOpenAI.seen[0]["body"], StubOpenAI.seen[1]["body"]
    assert StubOpenAI.seen[0]["path"] == "/v1/chat/completions"
    assert StubOpenAI.seen[0]["auth"] == "Bearer sk-stub"
    assert first["model"] == "gpt-stub" and first["temperature"] == 0.2
    assert first["tool_choice"] == "auto"
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["location"]
    assert second["messages"][1]["tool_calls"][0]["id"] == "call_7"
    assert second["messages"][2] == {"role": "tool", "tool_call_id": "call_7",
                                     "name": "get_weather", "content": "sunny in Paris"}
    # The key is never written to the sidecar's log.
    assert "sk-stub" not in sidecar.proc.output()
    assert "sk-not-this-one" not in sidecar.proc.output()


def test_http_as_daprd(tandem, tmp_path):
    components = tmp_path / "components"
    write_component(components, "echo.yaml", "echo", "conversation.echo")
    sidecar = tandem.sidecar("sidecar", app_id="conversation-http", resources=[components],
                             cwd=tmp_path)
    sidecar.wait_healthy()
    base = f"http://127.0.0.1:{sidecar.http_port}"

    def post(version, body, name="echo"):
        data = body if isinstance(body, str) else json.dumps(body)
        return requests.post(f"{base}/v1.0-{version}/conversation/{name}/converse", data=data,
                             headers={"Content-Type": "application/json"}, timeout=10)

    def user(text):
        return {"ofUser": {"content": [{"text": text}]}}

    # daprd's own integration expectations (alpha2/http/scrubpii.go, basic.go).
    answer = post("alpha2", {"inputs": [{"messages": [user(
        "well hello there, my phone number is +2222222222")], "scrubPii": True}]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outputs": [{"choices": [{"finishReason": "stop", "message": {
        "content": "well hello there, my phone number is <PHONE_NUMBER>"}}], "usage": {
        "completionTokens": "8", "promptTokens": "8", "totalTokens": "16"}}]}
    answer = post("alpha2", {"inputs": [
        {"messages": [user("well hello there from 10.8.9.1")]},
        {"messages": [user("well hello there, my email is test@test.com")]}], "scrubPii": True})
    assert answer.json()["outputs"][0]["choices"][0]["message"]["content"] == \
        "well hello there from <IP>\nwell hello there, my email is <EMAIL_ADDRESS>"
    answer = post("alpha2", {
        "name": "echo", "contextId": "test-conversation-123",
        "inputs": [{"messages": [{"ofUser": {"name": "u", "content": [{"text": "well hello there"}]}}],
                    "scrubPII": False},
                   {"messages": [{"ofSystem": {"name": "s", "content": [
                       {"text": "You are a helpful assistant"}]}}], "scrubPII": True}],
        "parameters": {"model": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                 "value": "test-model"}},
        "metadata": {"api_key": "test-key"}, "scrubPii": True, "temperature": 0.7,
        "responseFormat": {"type": "object"}, "promptCacheRetention": "86400s",
        "tools": [{"function": {"name": "test_function", "description": "A test function",
                                "parameters": {"type": "object", "properties": {
                                    "param1": {"type": "string"}}, "required": ["param1"]}}}],
        "toolChoice": "auto"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"contextId": "test-conversation-123", "outputs": [{"choices": [{
        "finishReason": "tool_calls", "message": {
            "content": "well hello there\nYou are a helpful assistant",
            "toolCalls": [{"function": {"arguments": "param1", "name": "test_function"},
                           "id": "0"}]}}],
        "usage": {"completionTokens": "8", "promptTokens": "8", "totalTokens": "16"}}]}
    answer = post("alpha2", {"inputs": [{"messages": [{"ofAssistant": {
        "content": [{"text": "assistant message"}],
        "toolCalls": [{"id": "id 123", "function": {"name": "test_function",
                                                    "arguments": "{\"test\": \"value\"}"}}]}}]}]})
    assert answer.json()["outputs"][0]["choices"][0] == {"finishReason": "tool_calls", "message": {
        "content": "assistant message", "toolCalls": [{"id": "id 123", "function": {
            "name": "test_function", "arguments": "{\"test\": \"value\"}"}}]}}

    # Alpha1: the text of the first choice, the parameters echoed.
    parameters = {"p": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "v"}}
    answer = post("alpha1", {"contextID": "c1", "inputs": [
        {"content": "call me at +2222222222", "role": "user"}, {"content": "bye"}],
        "parameters": parameters, "scrubPII": True})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"contextID": "c1", "outputs": [{
        "result": "call me at <PHONE_NUMBER>\nbye", "parameters": parameters}]}

    for version, body, name, status, code, message in [
        ("alpha2", {"inputs": [{"messages": [user("hi")]}]}, "nope", 400,
         "ERR_CONVERSATION_NOT_FOUND", "failed finding conversation component nope"),
        ("alpha1", {"inputs": [{"content": "hi"}]}, "nope", 400,
         "ERR_CONVERSATION_NOT_FOUND", "failed finding conversation component nope"),
        ("alpha2", {}, "echo", 400, "ERR_CONVERSATION_MISSING_INPUTS",
         "failed conversing with component echo: missing inputs in request"),
        ("alpha1", "", "echo", 400, "ERR_CONVERSATION_MISSING_INPUTS",
         "failed conversing with component echo: missing inputs in request"),
        ("alpha2", {"inputs": [{"messages": [{"invalidField": {"content": "invalid"}}]}]}, "echo",
         400, "ERR_CONVERSATION_INVALID_PARMS",
         "failed conversing with component echo: invalid params: message type cannot be nil"),
        ("alpha2", {"inputs": [{"messages": [{"ofAssistant": {"toolCalls": [{"id": "call_1"}]}}]}]},
         "echo", 400, "ERR_CONVERSATION_INVALID_PARMS",
         "failed conversing with component echo: invalid params: tool types cannot be nil"),
        ("alpha2", {"inputs": [{"messages": [user("hi")]}], "toolChoice": "required"}, "echo", 400,
         "ERR_CONVERSATION_INVALID_PARMS", "failed conversing with component echo: invalid params: "
         "tool choice must be 'auto', 'none', 'required', or a specific tool name matching the "
         "tools available to be used"),
        ("alpha2", {"inputs": [{"messages": [user("hi")]}], "toolChoice": "other",
                    "tools": [{"function": {"name": "f"}}]}, "echo", 400,
         "ERR_CONVERSATION_INVALID_PARMS", "failed conversing with component echo: invalid params: "
         "tool choice selected was not found. Must be 'auto', 'none', 'required', or a specific "
         "tool name matching the tools available to be used"),
    ]:
        answer = post(version, body, name)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json() == {"errorCode": code, "message": message}, answer.text

    # Malformed bodies are Dapr errors, never a crash.
    for body in ["{", "[]", '{"inputs": 5}', '{"inputs": [{"messages": [{"ofUser": 1}]}]}',
                 '{"promptCacheRetention": "soon", "inputs": []}', '{"temperature": "hot"}',
                 '{"inputs": [{"messages": [{"ofUser": {}, "ofSystem": {}}]}]}']:
        answer = post("alpha2", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["errorCode"] == "ERR_MALFORMED_REQUEST", answer.text
    huge = json.dumps({"inputs": [{"messages": [user("x" * (5 << 20))]}]})
    answer = post("alpha2", huge)
    assert answer.status_code in (400, 413), answer.status_code
    assert answer.json()["errorCode"] == "ERR_BODY_READ", answer.text
    assert sidecar.proc.alive()
