"""Submits a build job to a `Pipeline` actor through the SDK's ActorProxy and prints its
progress until it is done (or failed), then the final state.

    python client.py [JOB_ID] [--stages checkout,compile,test,package] [--flaky test]

The proxy finds the sidecar through DAPR_HTTP_PORT (3500 when unset, as with
`tandem run` or `dapr run` on their defaults). Submitting a job id again is harmless:
the pipeline answers with the progress it already has.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid

from dapr.actor import ActorId, ActorInterface, ActorProxy, actormethod


class PipelineInterface(ActorInterface):
    """The client's view of the Pipeline actor: only the calls it makes."""

    @actormethod(name="Submit")
    async def submit(self, job: dict) -> dict: ...

    @actormethod(name="Status")
    async def status(self) -> dict: ...


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", default=f"job-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--stages", default="checkout,compile,test,package")
    parser.add_argument("--flaky", default="test", help="the stage whose first attempt fails")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    pipeline = ActorProxy.create("Pipeline", ActorId(args.job), PipelineInterface)
    job = {"stages": args.stages.split(","), "flaky": args.flaky, "source": args.job}
    print(f"submitting {args.job}: {' -> '.join(job['stages'])} (flaky: {args.flaky})",
          flush=True)
    progress = await pipeline.Submit(job)

    shown = 0
    deadline = time.monotonic() + args.timeout
    while True:
        for event in progress["events"][shown:]:
            print(f"  {event}", flush=True)
        shown = len(progress["events"])
        if progress["status"] != "running" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
        progress = await pipeline.Status()

    print(f"final state of Pipeline/{args.job}:", flush=True)
    print(json.dumps({k: progress[k] for k in ("status", "artifact", "results")}, indent=2),
          flush=True)
    return 0 if progress["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
