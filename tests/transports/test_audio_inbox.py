"""The audio inbox: bounded in seconds, paced by the decoder, controls in order; a body read into it
waits for room."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stream_server.errors import Overloaded
from stream_server.transports.live.audio_inbox import MAX_DECODER_BACKLOG_S, AudioInbox


def seconds(s: float, value: float = 0.0) -> np.ndarray:
    return np.full(int(16000 * s), value, np.float32)


async def test_audio_and_actions_come_out_in_the_order_they_went_in() -> None:
    inbox = AudioInbox(limit_s=10)
    seen: list[object] = []
    inbox.put(seconds(0.5, 1.0))
    inbox.then(lambda: seen.append("finalize"))
    inbox.put(seconds(0.25, 2.0))
    inbox.end()
    inbox.put(seconds(1.0, 3.0))  # after the end: ignored
    assert inbox.queued_seconds == pytest.approx(0.75)
    async for chunk in inbox.pcm():
        seen.append((float(chunk[0]), len(chunk)))
    assert seen == [(1.0, 8000), "finalize", (2.0, 4000)]
    assert inbox.queued_seconds == 0


async def test_more_than_the_limit_waiting_is_refused_as_overloaded() -> None:
    inbox = AudioInbox(limit_s=2)
    inbox.put(seconds(1.5))
    with pytest.raises(Overloaded) as refused:
        inbox.put(seconds(1.0))
    assert refused.value.code == "falling_behind" and "2 s" in refused.value.message
    assert inbox.queued_seconds == pytest.approx(1.5)  # the refused audio was not queued


async def test_audio_waits_while_the_decoder_is_behind() -> None:
    backlog = [MAX_DECODER_BACKLOG_S + 1]
    inbox = AudioInbox(limit_s=10)
    inbox.pace_by(lambda: backlog[0])
    inbox.put(seconds(1.0))
    chunks = inbox.pcm()
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.2)
    assert not waiting.done() and inbox.queued_seconds == pytest.approx(1.0)
    backlog[0] = 0.0  # the decoder caught up
    assert len(await asyncio.wait_for(waiting, 10)) == 16000
    assert inbox.queued_seconds == 0


async def test_a_body_is_not_read_further_while_the_inbox_is_full() -> None:
    read: list[int] = []

    async def body():
        for number in range(6):
            read.append(number)
            yield seconds(1.0, float(number))

    inbox = AudioInbox(limit_s=2.5)
    filling = asyncio.ensure_future(inbox.fill_from(body()))
    await asyncio.sleep(0.1)
    assert inbox.queued_seconds == pytest.approx(2.0) and read == [0, 1, 2]  # the third waits for room
    chunks = inbox.pcm()
    assert float((await anext(chunks))[0]) == 0.0
    await asyncio.sleep(0.1)
    assert inbox.queued_seconds == pytest.approx(2.0) and read == [0, 1, 2, 3]
    assert [float(c[0]) async for c in chunks] == [1.0, 2.0, 3.0, 4.0, 5.0]
    await filling


async def test_what_breaks_a_body_comes_out_after_the_audio_before_it() -> None:
    async def body():
        yield seconds(1.0)
        raise ConnectionResetError("gone")

    inbox = AudioInbox(limit_s=0.5)  # a piece larger than the bound goes in as slices that fit
    filling = asyncio.ensure_future(inbox.fill_from(body()))
    chunks = inbox.pcm()
    assert [len(await anext(chunks)), len(await anext(chunks))] == [8000, 8000]
    await filling
    with pytest.raises(ConnectionResetError):
        await anext(chunks)
