"""What replicas' shared state costs: balance holds on SQLite and PostgreSQL, and a live
session's events through Redis to an observer on another replica.

    python -m scripts.bench_shared_state

Starts PostgreSQL and Redis on loopback (scripts/services.py), then reports medians of one run:
1. a hold then its release, one at a time (ms each), and 50 at once from two storages on the
   same database (holds per second), on SQLite and on PostgreSQL;
2. a synthetic session of `--events` partials and commits, published at `--rate` events a
   second (0: as fast as it can) and mirrored into Redis, followed from a second connection as
   a remote replica would: events per second through, and ms from publish to the follower's
   receipt (p50 / p95).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from scripts.services import fresh_database, postgres_server, redis_server
from stream_server.engine.sessions import SessionHub
from stream_server.events import StreamDone, TextCommitted, TextPartial
from stream_server.live_state import RedisLiveState
from stream_server.storage import LocalStorage
from stream_server.transports.event_json import event_json


async def holds(root: Path, url: str, rounds: int) -> tuple[float, float]:
    """(median ms of a hold + release, holds per second with 50 at once from two storages)."""
    storages = [await LocalStorage.open(root, database_url=url), await LocalStorage.open(root, database_url=url)]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hold = await storages[0].hold_balance("k", 1, 1e9, ttl_s=60)
        await storages[0].release_hold(hold.id)
        times.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    await asyncio.gather(*(storages[i % 2].hold_balance("k", 1, 1e9, ttl_s=60) for i in range(50)))
    rate = 50 / (time.perf_counter() - started)
    for storage in storages:
        await storage.close()
    return statistics.median(times), rate


async def events_through_redis(url: str, storage: LocalStorage, count: int, rate: float) -> tuple[float, float, float]:
    state = await RedisLiveState.open(url, storage, lease_s=15, keep_s=60, max_events=count + 10, failure_json=lambda e: {})
    session = SessionHub().create("tiny.en", "en", owner="k")
    published: dict[int, float] = {}
    state.publish(session, lambda e: event_json(e, len, logprobs=True))
    follower = await RedisLiveState.open(url, storage, lease_s=15, keep_s=60, max_events=count + 10, failure_json=lambda e: {})
    await asyncio.sleep(0.2)
    delays: list[float] = []

    async def follow() -> None:
        async for item in follower.follow(session.id):
            seq, _ = item
            delays.append((time.perf_counter() - published[seq]) * 1000)

    following = asyncio.create_task(follow())
    published[0] = time.perf_counter()
    started = time.perf_counter()
    for i in range(1, count):
        event = TextPartial(text=f"words so far {i}", start=i, end=i + 1) if i % 4 else TextCommitted(delta=f" word{i}", start=i, end=i + 1, words=())
        published[session.published] = time.perf_counter()
        session.publish(event)
        await asyncio.sleep(1 / rate if rate else 0)
    published[session.published] = time.perf_counter()
    session.publish(StreamDone(text=session.text, duration=count, speech_seconds=count, prompt_tokens=0))
    await following
    through = count / (time.perf_counter() - started)
    await state.close()
    await follower.close()
    delays.sort()
    return through, delays[len(delays) // 2], delays[int(len(delays) * 0.95)]


async def main(rounds: int, events: int, rates: list[float]) -> None:
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = stack.enter_context(postgres_server())
        redis_url = stack.enter_context(redis_server())
        print("| backend | hold + release, one at a time (ms, median) | 50 holds at once, two storages (holds/s) |")
        print("| --- | --- | --- |")
        for name, url in (("SQLite", ""), ("PostgreSQL (loopback)", await fresh_database(server))):
            ms, rate = await holds(root / name[:6], url, rounds)
            print(f"| {name} | {ms:.2f} | {rate:.0f} |")
        storage = await LocalStorage.open(root / "redis")
        print("\n| events published per second | events | through Redis (events/s) | publish -> remote follower p50 / p95 (ms) |")
        print("| --- | --- | --- | --- |")
        for rate in rates:
            through, p50, p95 = await events_through_redis(redis_url, storage, events, rate)
            print(f"| {rate or 'as fast as it can'} | {events} | {through:.0f} | {p50:.1f} / {p95:.1f} |")
        await storage.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, nargs="+", default=[50.0, 0.0])
    options = parser.parse_args()
    asyncio.run(main(options.rounds, options.events, options.rate))
