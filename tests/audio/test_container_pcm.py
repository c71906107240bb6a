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
from tests.conftest import audio_path

THREAD = "container-decode"
LONG_CLIP = "en_osr_us_000_0034_8k.wav"


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


async def test_a_container_that_arrives_slowly_is_handed_on_as_it_arrives() -> None:
    """Decoded audio is batched only while the upload is ahead of FFmpeg: a source sending at
    its own pace (a live recording) has each piece handed on before the next arrives."""
    data = audio_path(LONG_CLIP).read_bytes()
    chunks = 60  # each under a second of audio: less than a batch
    chunk = len(data) // chunks
    sent = 0

    async def paced() -> AsyncIterator[bytes]:
        nonlocal sent
        for offset in range(0, len(data), chunk):
            sent = min(offset + chunk, len(data))
            yield data[offset:sent]
            await asyncio.sleep(0.05)

    sent_by_piece = [sent async for _ in container_pcm(paced(), LONG_CLIP, 10**7)]
    assert sent_by_piece[0] <= len(data) // 2, "the first audio comes while the upload still arrives"
    assert len(set(sent_by_piece)) >= chunks * 0.8, "each chunk's audio is handed on before the next arrives"
