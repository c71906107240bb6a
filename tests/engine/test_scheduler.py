import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.engine.packing import PackOptions
from stream_server.engine.scheduler import BATCH, LIVE, DecodeScheduler
from stream_server.service import window_options


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

    with pytest.raises(RuntimeError, match="model failed"):
        await scheduler.run(broken)
    assert ran == []
    assert scheduler.busy == 0


async def test_file_work_leaves_a_slot_for_live_streams():
    """Two long file decodes on two slots: the second waits, and a live window arriving meanwhile
    runs on the slot left (before either file ends)."""
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=2)
    release, finished = threading.Event(), []

    def file_job(name: str) -> str:
        release.wait(10)
        finished.append(name)
        return name

    def live_job() -> str:
        finished.append("live")
        return "live"

    files = [asyncio.ensure_future(scheduler.run(file_job, name, priority=BATCH)) for name in ("file 1", "file 2")]
    await asyncio.sleep(0.05)
    assert scheduler.busy == 1 and scheduler.queue_depth == 1
    assert await scheduler.run(live_job) == "live"
    release.set()
    assert await asyncio.gather(*files) == ["file 1", "file 2"]
    assert finished == ["live", "file 1", "file 2"]
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


# Packing: a scripted model that hears one word per stretch of non-silent audio, named by its level.


class ToneModel:
    """Writes one word per run of non-zero samples, named after the run's level and timed by it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        self.calls.append((len(audio) / SAMPLE_RATE, options.prompt))
        edges = np.flatnonzero(np.diff(np.concatenate([[0.0], audio, [0.0]]) != 0))
        words = tuple(
            Word(start / SAMPLE_RATE, end / SAMPLE_RATE, f" w{round(float(audio[start]) * 10)}", 0.9)
            for start, end in zip(edges[::2], edges[1::2])
        )
        segment = Segment(1, 0, 0.0, len(audio) / SAMPLE_RATE, "".join(w.text for w in words), (1,), 0.0, -0.1, 1.0, 0.01, words)
        return Transcription("en", len(audio) / SAMPLE_RATE, (segment,) if words else ())


def level(value: int, seconds: float = 2.0) -> np.ndarray:
    return np.full(int(seconds * SAMPLE_RATE), value / 10, np.float32)


OPTIONS = window_options("en", None, seconds=2.0)


async def with_the_slot_held(scheduler: DecodeScheduler, submit) -> list:
    """Hold the only slot while `submit()` queues its decodes, then let them run."""
    gate = threading.Event()
    blocker = asyncio.ensure_future(scheduler.run(gate.wait, 5))
    await asyncio.sleep(0.05)
    queued = submit()
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    return await asyncio.gather(*queued)


async def test_queued_windows_share_one_call_and_each_gets_back_its_own_words():
    model = ToneModel()
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1, packing=PackOptions(gap_s=1.0, gap_noise=0.0))
    results = await with_the_slot_held(
        scheduler,
        lambda: [
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(k), replace(OPTIONS, prompt=f"p{k}"), deadline=d))
            for k, d in ((1, 30.0), (2, 10.0), (3, 20.0))
        ],
    )
    assert [r.text for r in results] == ["w1", "w2", "w3"]
    assert all(r.words[0].start == 0.0 and r.words[0].end == 2.0 for r in results)  # timed from each window's start
    assert model.calls == [(8.0, None)]  # one call: three 2 s windows and two 1 s gaps, no prompt
    assert (scheduler.decodes, scheduler.packed_decodes, scheduler.packed_windows) == (2, 1, 3)
    assert scheduler.realtime_factor.samples == 1  # the blocker said no audio; the packed call counts its 6 s


async def test_without_packing_each_window_is_its_own_call():
    model = ToneModel()
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1)
    results = await with_the_slot_held(
        scheduler, lambda: [asyncio.ensure_future(scheduler.run_window(model.transcribe, level(k), OPTIONS, deadline=k)) for k in (1, 2, 3)]
    )
    assert [r.text for r in results] == ["w1", "w2", "w3"]
    assert model.calls == [(2.0, None)] * 3
    assert scheduler.packed_decodes == 0


async def test_finals_other_options_windows_that_detect_their_language_and_a_window_with_a_free_slot_run_alone():
    model = ToneModel()
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1, packing=PackOptions())
    alone = await scheduler.run_window(model.transcribe, level(1), OPTIONS, deadline=0.0)
    assert alone.text == "w1" and model.calls == [(2.0, None)]  # nothing waits for company
    final = window_options("en", "before", seconds=2.0)
    model.calls.clear()
    results = await with_the_slot_held(
        scheduler,
        lambda: [
            asyncio.ensure_future(scheduler.run(model.transcribe, level(2), final, deadline=1.0)),
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(3), replace(OPTIONS, language=None), deadline=2.0)),
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(4), OPTIONS, deadline=3.0)),
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(5), replace(OPTIONS, language=None), deadline=4.0)),
        ],
    )
    assert [r.text for r in results] == ["w2", "w3", "w4", "w5"]
    # one pass detects one language: two windows that each need theirs do not share it
    assert model.calls == [(2.0, "before"), (2.0, None), (2.0, None), (2.0, None)]
    assert scheduler.packed_decodes == 0


async def test_finals_run_alone_with_their_prompt_until_the_server_is_behind_then_share_calls():
    model = ToneModel()

    def queue(scheduler: DecodeScheduler):
        return lambda: [
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(1), replace(OPTIONS, prompt="before"), deadline=1.0, final=True)),
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(2), OPTIONS, deadline=2.0)),
            asyncio.ensure_future(scheduler.run_window(model.transcribe, level(3), replace(OPTIONS, prompt="other"), deadline=3.0, final=True)),
        ]

    on_time = DecodeScheduler(ThreadPoolExecutor(2), slots=1, packing=PackOptions(gap_s=1.0, gap_noise=0.0, finals_after_s=10.0))
    results = await with_the_slot_held(on_time, queue(on_time))
    assert [r.text for r in results] == ["w1", "w2", "w3"]
    assert model.calls == [(2.0, "before"), (2.0, None), (2.0, "other")]  # each final alone, prompted

    model.calls.clear()
    behind = DecodeScheduler(ThreadPoolExecutor(2), slots=1, packing=PackOptions(gap_s=1.0, gap_noise=0.0, finals_after_s=0.01))
    results = await with_the_slot_held(behind, queue(behind))  # they wait 50 ms behind the held slot
    assert [r.text for r in results] == ["w1", "w2", "w3"]
    assert model.calls == [(8.0, None)]  # one call for all three, unprompted


async def test_partials_leave_the_last_slot_to_finals():
    """Two slots: one stream's partial holds the first; another's partial waits rather than take
    the second, so that a final asked for meanwhile starts at once."""
    model, gate = ToneModel(), threading.Event()

    def transcribe(audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        if audio[0] == level(1)[0]:
            gate.wait(5)
        return model.transcribe(audio, options)

    scheduler = DecodeScheduler(ThreadPoolExecutor(3), slots=2, packing=PackOptions(gap_s=1.0, gap_noise=0.0))
    held = asyncio.ensure_future(scheduler.run_window(transcribe, level(1), OPTIONS, deadline=1.0))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(scheduler.run_window(transcribe, level(2), OPTIONS, deadline=2.0))
    await asyncio.sleep(0.05)
    assert (scheduler.busy, scheduler.queue_depth) == (1, 1)
    final = await scheduler.run_window(transcribe, level(3), replace(OPTIONS, prompt="before"), deadline=3.0, final=True)
    assert final.text == "w3" and not waiting.done()
    gate.set()
    assert [(await held).text, (await waiting).text] == ["w1", "w2"]

    unreserved = DecodeScheduler(ThreadPoolExecutor(2), slots=2, packing=PackOptions(finals_slot=False))
    gate.clear()
    first = asyncio.ensure_future(unreserved.run_window(transcribe, level(1), OPTIONS, deadline=1.0))
    await asyncio.sleep(0.05)
    assert (await unreserved.run_window(transcribe, level(2), OPTIONS, deadline=2.0)).text == "w2"  # the second slot
    gate.set()
    await first


async def test_admission_counts_the_decode_time_of_finals_only():
    model = ToneModel()
    scheduler = DecodeScheduler(ThreadPoolExecutor(2), slots=1, packing=PackOptions())
    await scheduler.run_window(model.transcribe, level(1), OPTIONS, deadline=0.0)
    assert scheduler.live_decode_seconds > 0 and scheduler.final_decode_seconds == 0.0  # a partial is elastic
    partials = scheduler.live_decode_seconds
    await scheduler.run_window(model.transcribe, level(2), OPTIONS, deadline=0.0, final=True)
    assert scheduler.final_decode_seconds == pytest.approx(scheduler.live_decode_seconds - partials)
