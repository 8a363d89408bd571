// An app on the official JavaScript SDK's DaprServer, HTTP or gRPC (PROTOCOL=http|grpc):
// it subscribes to `orders` (one event at a time) and `batches` (bulk, in batches of at
// most 10 gathered for at most 200 ms), and serves the
// method `greet`. Each handled event and call is printed as one JSON line.
import { CommunicationProtocolEnum, DaprServer, HttpMethod } from "@dapr/dapr";

const grpc = process.env.PROTOCOL === "grpc";
const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: process.env.APP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
  clientOptions: {
    daprHost: "127.0.0.1",
    daprPort: grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT,
  },
});
const say = (fields) => console.log(JSON.stringify(fields));

await server.pubsub.subscribe("pubsub", "orders", async (data) => {
  say({ kind: "event", n: data.n });
});
{
  await server.pubsub.subscribeBulk("pubsub", "batches", async (data) => {
    say({ kind: "bulk", n: data.n });
  }, { maxMessagesCount: 10, maxAwaitDurationMs: 200 });
}
await server.invoker.listen("greet", async ({ body }) => {
  say({ kind: "call", body });
  return { greeting: `hello ${typeof body === "string" ? body : JSON.stringify(body)}` };
}, { method: HttpMethod.POST });
await server.start();
say({ kind: "started" });
