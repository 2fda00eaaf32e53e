"""One instance hammering one rate-limit key, in its own process (tests/test_ratelimit.py).

``python -m tests.rate_hammer URL KEY MESSAGES BURST MAX_WAIT TASKS SECONDS``: opens storage,
prints ``ready``, reads the start time (epoch seconds) from stdin, and from then on runs TASKS
senders that each take a slot, sleep until it, "send", and go again — as the send job does — for
SECONDS. Prints one JSON line: every send as ``[slot on the database clock in µs, process time
in s]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from core.ratelimit import acquire
from core.storage.database import close_storage, open_storage
from core.types import RateLimit


async def hammer(url: str, key: str, limit: RateLimit, max_wait: float, tasks: int, seconds: float) -> list[tuple[int, float]]:
    await open_storage(url)
    try:
        print("ready", flush=True)
        start = float(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + seconds
        sends: list[tuple[int, float]] = []

        async def sender() -> None:
            while time.time() < end:
                slot = await acquire(key, limit, max_wait)
                if not slot.granted:
                    await asyncio.sleep(slot.retry_after)
                    continue
                await asyncio.sleep(slot.wait)
                sends.append((slot.slot_us, time.time()))

        await asyncio.gather(*(sender() for _ in range(tasks)))
        return sends
    finally:
        await close_storage()


def main(argv: list[str]) -> None:
    url, key, messages, burst, max_wait, tasks, seconds = argv
    limit = RateLimit(float(messages), 1.0, int(burst))
    sends = asyncio.run(hammer(url, key, limit, float(max_wait), int(tasks), float(seconds)))
    print(json.dumps(sends), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
