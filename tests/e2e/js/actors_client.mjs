// An actor client on the official JavaScript SDK's ActorProxyBuilder, over HTTP or gRPC
// (PROTOCOL=http|grpc). CALLS is a JSON list of [actorId, method, ...args]; the calls run
// in order, except that PARALLEL=1 runs them all at once. Each answer is printed as one
// JSON line {kind: "answer", id, method, answer} (or kind "error"), then {kind: "done"}.
import { ActorId, ActorProxyBuilder, CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";

// The proxy names the actor type after the class: the same name as the host's class.
class JsCounter {}

const grpc = process.env.PROTOCOL === "grpc";
const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
});
const builder = new ActorProxyBuilder(JsCounter, client);
const say = (fields) => console.log(JSON.stringify(fields));

async function call([id, method, ...args]) {
  try {
    const answer = await builder.build(new ActorId(id))[method](...args);
    say({ kind: "answer", id, method, answer });
  } catch (error) {
    say({ kind: "error", id, method, error: String(error?.message ?? error) });
  }
}

const calls = JSON.parse(process.env.CALLS ?? "[]");
if (process.env.PARALLEL === "1") {
  await Promise.all(calls.map(call));
} else {
  for (const one of calls) {
    await call(one);
  }
}
say({ kind: "done" });
await client.stop();
