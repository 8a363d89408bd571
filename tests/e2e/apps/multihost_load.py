"""The load of the multi-host test: `Add` calls to many actor ids, sent through several
sidecars at once over Dapr's HTTP actor API, every call with an id of its own.

    multihost_load.py CONFIG_JSON

CONFIG_JSON names `urls` (the sidecars' HTTP APIs), `ids` (actor ids), `calls_per_id`,
`concurrency`, `progress` (a file rewritten with the number of calls done) and `out`
(where the report goes). Call n goes to sidecar n mod len(urls). A call a sidecar
answered with an error is sent again, with the same call id, to the same sidecar (each
such answer is counted: the test wants none); a call whose sidecar could not be reached
or vanished mid-call (its host was killed) is sent with the same call id to the next
sidecar (counted apart). The report lists every call's outcome.
"""

import asyncio
import json
import sys
import time

import aiohttp


async def main(config):
    urls = config["urls"]
    calls = [(actor, f"{actor}-{n}") for n in range(config["calls_per_id"])
             for actor in config["ids"]]
    queue: asyncio.Queue = asyncio.Queue()
    for index, call in enumerate(calls):
        queue.put_nowait((index, call))
    report = {"calls": [], "sidecar_errors": [], "rerouted": [], "started": time.time()}
    done = 0
    unreachable: set[int] = set()

    async def one(session, index, actor, call):
        target = index % len(urls)
        attempts = 0
        started = time.time()
        while True:
            if target in unreachable:
                target = (target + 1) % len(urls)
                continue
            attempts += 1
            url = f"{urls[target]}/v1.0/actors/Counter/{actor}/method/Add"
            try:
                async with session.put(url, json=call) as answer:
                    body = await answer.text()
                    if answer.status == 200:
                        return {"call": call, "actor": actor, "sidecar": target,
                                "attempts": attempts, "started": started,
                                "ended": time.time(), "count": json.loads(body)}
                    report["sidecar_errors"].append(
                        {"call": call, "sidecar": target, "status": answer.status,
                         "body": body[:300], "at": time.time()})
                    await asyncio.sleep(0.2)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
                report["rerouted"].append({"call": call, "sidecar": target,
                                           "error": repr(error)[:200], "at": time.time()})
                # A connection refused or cut: that sidecar is gone, the next one takes
                # this call (with the same call id: it may have been applied already).
                unreachable.add(target)
                if len(unreachable) == len(urls):
                    raise
            if time.time() - started > config.get("call_deadline", 60):
                raise RuntimeError(f"call {call} did not succeed within the deadline")

    async def worker(session):
        nonlocal done
        while True:
            try:
                index, (actor, call) = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            report["calls"].append(await one(session, index, actor, call))
            done += 1

    async def progress():
        while True:
            with open(config["progress"], "w") as f:
                f.write(str(done))
            await asyncio.sleep(0.1)

    timeout = aiohttp.ClientTimeout(total=config.get("attempt_timeout", 30))
    connector = aiohttp.TCPConnector(limit=config["concurrency"])
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        ticker = asyncio.create_task(progress())
        await asyncio.gather(*[worker(session) for _ in range(config["concurrency"])])
        ticker.cancel()
    report["ended"] = time.time()
    with open(config["progress"], "w") as f:
        f.write(str(done))
    with open(config["out"], "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
