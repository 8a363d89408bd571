// A client on the official JavaScript SDK's DaprClient, HTTP or gRPC (PROTOCOL): publishes
// COUNT events {n} to each of TOPICS (comma-separated) and invokes `greet` on TARGET;
// prints the answers as JSON lines.
import { CommunicationProtocolEnum, DaprClient, HttpMethod } from "@dapr/dapr";

const grpc = process.env.PROTOCOL === "grpc";
const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
});
const say = (fields) => console.log(JSON.stringify(fields));

const count = Number(process.env.COUNT ?? "10");
for (const topic of (process.env.TOPICS ?? "orders").split(",")) {
  for (let n = 0; n < count; n++) {
    const result = await client.pubsub.publish("pubsub", topic, { n });
    if (result.error) {
      say({ kind: "publish-failed", topic, n, error: String(result.error) });
    }
  }
}
say({ kind: "published", count });
const answer = await client.invoker.invoke(process.env.TARGET, "greet", HttpMethod.POST, { from: "js" });
say({ kind: "answer", answer });
say({ kind: "done" });
