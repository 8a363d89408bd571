"""An app other apps call: it answers who called it and what it was sent."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.api_route("/greet/{name}", methods=["GET", "POST"])
async def greet(name: str, request: Request):
    return {
        "greeting": f"hello {name}",
        "method": request.method,
        "query": dict(request.query_params),
        "body": (await request.body()).decode(),
        "caller": request.headers.get("dapr-caller-app-id"),
    }
