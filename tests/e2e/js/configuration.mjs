// Reads and watches configuration through the official JavaScript SDK's DaprClient
// (gRPC: the SDK's HTTP client has no configuration API), in store STORE; prints each
// answer and change as a JSON line, and stops watching after the first change.
import { CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";

const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: process.env.DAPR_GRPC_PORT,
  communicationProtocol: CommunicationProtocolEnum.GRPC,
});
const say = (fields) => console.log(JSON.stringify(fields));
const store = process.env.STORE;

say({ kind: "get", answer: await client.configuration.get(store, ["js-a", "js-b"]) });
let stream;
const changed = new Promise((resolve) => {
  client.configuration
    .subscribeWithKeys(store, ["js-a"], async (change) => {
      say({ kind: "change", answer: change });
      resolve();
    })
    .then((started) => {
      stream = started;
      say({ kind: "subscribed" });
    });
});
await changed;
stream.stop();
say({ kind: "done" });
process.exit(0);
