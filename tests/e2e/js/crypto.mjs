// Encrypts and decrypts through the official JavaScript SDK's DaprClient over gRPC (its
// HTTP client has no crypto calls), with component COMPONENT and its key KEY: buffers,
// then streams. Prints each result as a JSON line.
import { Readable } from "node:stream";
import { CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";

const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: process.env.DAPR_GRPC_PORT,
  communicationProtocol: CommunicationProtocolEnum.GRPC,
});
const say = (fields) => console.log(JSON.stringify(fields));
const componentName = process.env.COMPONENT;
const keyName = process.env.KEY;

// Three segments and a bit: the scheme's 64 KiB segments are crossed.
const plaintext = Buffer.alloc(200_000, "tandem ");
const ciphertext = await client.crypto.encrypt(plaintext, { componentName, keyName, keyWrapAlgorithm: "A256KW" });
say({ kind: "buffer", header: ciphertext.subarray(0, 15).toString(), grew: ciphertext.length - plaintext.length });
const decrypted = await client.crypto.decrypt(ciphertext, { componentName });
say({ kind: "buffer-round-trip", equal: decrypted.equals(plaintext) });

{
  const collect = async (stream) => {
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return Buffer.concat(chunks);
  };
  const encryptor = await client.crypto.encrypt({ componentName, keyName, keyWrapAlgorithm: "A256KW", dataEncryptionCipher: "chacha20-poly1305" });
  Readable.from([plaintext.subarray(0, 70_000), plaintext.subarray(70_000)]).pipe(encryptor);
  const streamed = await collect(encryptor);
  const decryptor = await client.crypto.decrypt({ componentName });
  Readable.from([streamed]).pipe(decryptor);
  say({ kind: "stream-round-trip", equal: (await collect(decryptor)).equals(plaintext) });
}
say({ kind: "done" });
