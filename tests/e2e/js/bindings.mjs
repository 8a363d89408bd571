// The official JavaScript SDK's bindings, HTTP or gRPC (PROTOCOL=http|grpc). ROLE=server:
// a DaprServer taking the input binding BINDING's events (binding.receive), one JSON line
// each. ROLE=client: a DaprClient sending COUNT `create` operations {n} to BINDING
// (binding.send), then one JSON line `done`.
import { CommunicationProtocolEnum, DaprClient, DaprServer } from "@dapr/dapr";

const grpc = process.env.PROTOCOL === "grpc";
const protocol = grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP;
const daprPort = grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT;
const binding = process.env.BINDING;
const say = (fields) => console.log(JSON.stringify(fields));

if (process.env.ROLE === "server") {
  const server = new DaprServer({
    serverHost: "127.0.0.1",
    serverPort: process.env.APP_PORT,
    communicationProtocol: protocol,
    clientOptions: { daprHost: "127.0.0.1", daprPort },
  });
  await server.binding.receive(binding, async (data) => {
    say({ kind: "event", data: typeof data === "string" ? data : JSON.stringify(data) });
  });
  await server.start();
  say({ kind: "started" });
} else {
  const client = new DaprClient({ daprHost: "127.0.0.1", daprPort, communicationProtocol: protocol });
  const count = Number(process.env.COUNT ?? "5");
  for (let n = 0; n < count; n++) {
    try {
      await client.binding.send(binding, "create", { n }, { source: "js" });
    } catch (error) {
      say({ kind: "send-failed", n, error: String(error) });
    }
  }
  say({ kind: "done" });
}
