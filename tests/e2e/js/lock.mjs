// Takes and gives back a distributed lock through the official JavaScript SDK's
// DaprClient, HTTP or gRPC (PROTOCOL), in store STORE; prints each answer as a JSON line.
import { CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";

const grpc = process.env.PROTOCOL === "grpc";
const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
});
const say = (fields) => console.log(JSON.stringify(fields));
const store = process.env.STORE;

say({ kind: "lock", owner: "js-a", answer: await client.lock.lock(store, "report", "js-a", 30) });
say({ kind: "lock", owner: "js-b", answer: await client.lock.lock(store, "report", "js-b", 30) });
say({ kind: "unlock", owner: "js-b", answer: await client.lock.unlock(store, "report", "js-b") });
say({ kind: "unlock", owner: "js-a", answer: await client.lock.unlock(store, "report", "js-a") });
say({ kind: "unlock", owner: "js-a", answer: await client.lock.unlock(store, "report", "js-a") });
say({ kind: "done" });
