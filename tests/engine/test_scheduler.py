import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from stream_server.engine.scheduler import BATCH, LIVE, DecodeScheduler


async def test_live_work_goes_first_then_by_deadline():
    gate = threading.Event()
    order: list[str] = []
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1)

    def job(name: str) -> str:
        if name == "blocker":
            gate.wait(5)
        order.append(name)
        return name

    blocker = asyncio.ensure_future(scheduler.run(job, "blocker"))
    await asyncio.sleep(0.05)
    queued = [
        asyncio.ensure_future(scheduler.run(job, "file", priority=BATCH, deadline=0.0)),
        asyncio.ensure_future(scheduler.run(job, "late stream", priority=LIVE, deadline=20.0)),
        asyncio.ensure_future(scheduler.run(job, "oldest stream", priority=LIVE, deadline=10.0)),
    ]
    await asyncio.sleep(0.05)
    assert scheduler.queue_depth == 3
    gate.set()
    await asyncio.gather(blocker, *queued)
    assert order == ["blocker", "oldest stream", "late stream", "file"]


async def test_a_cancelled_waiter_is_skipped_and_errors_reach_the_caller():
    scheduler = DecodeScheduler(ThreadPoolExecutor(1), slots=1)
    gate = threading.Event()
    ran: list[str] = []
    blocker = asyncio.ensure_future(scheduler.run(lambda: gate.wait(5)))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(scheduler.run(lambda: ran.append("gone")))
    await asyncio.sleep(0.01)
    gone.cancel()
    gate.set()
    await blocker

    def broken() -> None:
        raise RuntimeError("model failed")

    try:
        await scheduler.run(broken)
    except RuntimeError as exc:
        assert "model failed" in str(exc)
    assert ran == []
    assert scheduler.busy == 0


async def test_the_real_time_factor_counts_slot_time_per_audio_second_not_the_wait():
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1)
    assert scheduler.realtime_factor.value is None  # until measured

    def job(seconds: float) -> None:
        time.sleep(seconds)

    first = asyncio.ensure_future(scheduler.run(job, 0.1, priority=BATCH, audio_seconds=1.0))
    second = asyncio.ensure_future(scheduler.run(job, 0.1, priority=BATCH, audio_seconds=1.0))  # waits ~0.1 s
    unmeasured = asyncio.ensure_future(scheduler.run(job, 0.0))  # says no audio: not a sample
    await asyncio.gather(first, second, unmeasured)
    assert scheduler.realtime_factor.samples == 2
    assert 0.09 <= scheduler.realtime_factor.value < 0.15  # the second's 0.1 s in the queue is not counted
