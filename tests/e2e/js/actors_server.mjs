// An actor host on the official JavaScript SDK's DaprServer (HTTP: the SDK hosts actors
// over HTTP only). One actor type, `JsCounter`, with state kept by its stateManager, a
// timer, a reminder and activation hooks. Every hook, method, timer and reminder turn is
// printed as one JSON line {kind, id, ...} with the process id and the time, for the test
// to read. ACTOR_IDLE_TIMEOUT (a Go duration) goes to DaprServer's actor settings, which
// the SDK answers on GET /dapr/config.
import { AbstractActor, CommunicationProtocolEnum, DaprServer, Temporal } from "@dapr/dapr";

const say = (fields) =>
  console.log(JSON.stringify({ ...fields, pid: process.pid, at: Date.now() / 1000 }));
const ms = (milliseconds) => Temporal.Duration.from({ milliseconds });

class JsCounter extends AbstractActor {
  async onActivate() {
    say({ kind: "activate", id: this.getActorId().getId() });
  }

  async onDeactivate() {
    say({ kind: "deactivate", id: this.getActorId().getId() });
  }

  // Adds `n` to the stored count and answers the new count; the SDK saves the state
  // after the method returns (onActorMethodPostInternal).
  async add(n) {
    const id = this.getActorId().getId();
    say({ kind: "start", id, method: "add" });
    const [found, count] = await this.getStateManager().tryGetState("count");
    const next = (found ? Number(count) : 0) + Number(n);
    await this.getStateManager().setState("count", next);
    say({ kind: "end", id, method: "add" });
    return next;
  }

  async get() {
    const [found, count] = await this.getStateManager().tryGetState("count");
    return found ? Number(count) : 0;
  }

  // Saves a structured value explicitly (stateManager.saveState) before the method ends.
  async remember(value) {
    await this.getStateManager().setState("memo", value);
    await this.getStateManager().saveState();
    return "saved";
  }

  async recall() {
    return await this.getStateManager().getState("memo");
  }

  async startTimer(name, dueMs, periodMs) {
    await this.registerActorTimer(name, "onTick", ms(dueMs), ms(periodMs), undefined, name);
    return "timer set";
  }

  async stopTimer(name) {
    await this.unregisterActorTimer(name);
    return "timer removed";
  }

  // The timer's callback: the SDK calls the method named in the timer's `callback`.
  async onTick(data) {
    say({ kind: "timer", id: this.getActorId().getId(), data });
  }

  async startReminder(name, dueMs, periodMs, data) {
    await this.registerActorReminder(name, ms(dueMs), ms(periodMs), undefined, data);
    return "reminder set";
  }

  async stopReminder(name) {
    await this.unregisterActorReminder(name);
    return "reminder removed";
  }

  async receiveReminder(data) {
    say({ kind: "reminder", id: this.getActorId().getId(), data });
  }
}

const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: process.env.APP_PORT,
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  clientOptions: {
    daprHost: "127.0.0.1",
    daprPort: process.env.DAPR_HTTP_PORT,
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    actor: {
      actorIdleTimeout: process.env.ACTOR_IDLE_TIMEOUT ?? "1h",
      actorScanInterval: "1s",
    },
  },
});
await server.actor.init();
server.actor.registerActor(JsCounter);
await server.start();
say({ kind: "started" });
