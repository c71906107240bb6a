"""Containers decoded while they upload: FFmpeg's worker thread ends with the stream, whether it
ran to the end, failed, or was closed early by its reader."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from stream_server.audio.live import container_pcm
from stream_server.errors import AudioDecodeError
from tests.broken_audio import corpus

THREAD = "container-decode"


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), 4096):
        yield data[offset : offset + 4096]


async def no_decoder_thread() -> bool:
    async with asyncio.timeout(10):
        while any(t.name == THREAD for t in threading.enumerate()):
            await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("name", ["truncated_half.wav", "truncated_half.ogg", "truncated_half.flac", "truncated_half.mp3"])
async def test_a_stream_read_to_its_end_leaves_no_thread(name: str) -> None:
    samples = sum([pcm.shape[-1] async for pcm in container_pcm(chunks(corpus()[name]), name, 10**7)])
    assert samples > 12_000  # a file cut mid-frame still gives what comes before the cut
    assert await no_decoder_thread()


async def test_a_stream_that_is_no_audio_fails_and_leaves_no_thread() -> None:
    with pytest.raises(AudioDecodeError):
        async for _ in container_pcm(chunks(corpus()["archive.zip"]), "archive.zip", 10**7):
            pass
    assert await no_decoder_thread()


async def test_a_stream_closed_after_its_first_piece_leaves_no_thread() -> None:
    pcm = container_pcm(chunks(corpus()["truncated_half.wav"]), "a.wav", 10**7)
    assert (await anext(pcm)).shape[-1]
    await pcm.aclose()
    assert await no_decoder_thread()
