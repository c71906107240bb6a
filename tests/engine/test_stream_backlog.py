"""LiveTranscriber.backlog_seconds: speech received and not yet decoded (what paces a socket)."""

from __future__ import annotations

import asyncio

import numpy as np

from stream_server.audio.decode import decode_file
from stream_server.decoder.results import Transcription
from stream_server.engine.stream import LiveTranscriber
from tests.conftest import audio_path


async def test_the_backlog_grows_while_a_decode_is_busy_and_clears_after() -> None:
    gate = asyncio.Event()
    decodes = 0

    async def decode(audio: np.ndarray, prompt: str | None, *, final: bool, deadline: float) -> Transcription:
        nonlocal decodes
        decodes += 1
        await gate.wait()
        return Transcription(language="en", duration=len(audio) / 16000, segments=())

    transcriber = LiveTranscriber(decode, lambda event: None)
    speech = decode_file(audio_path("en_jfk_16k.wav").read_bytes(), "en_jfk_16k.wav")[: 16000 * 6]
    for start in range(0, len(speech), 1600):
        transcriber.push(speech[start : start + 1600])
        await asyncio.sleep(0)
    assert 1 <= decodes <= 2  # the first partial (and the decode of a pause that overtook it) held at the gate
    assert transcriber.backlog_seconds > 3.0  # everything after it waits
    gate.set()
    async with asyncio.timeout(30):
        await transcriber.finish()
    assert transcriber.backlog_seconds == 0


async def test_the_start_of_a_pause_is_not_backlog() -> None:
    """A long stretch of speech arrives while a decode is busy, then the first silence of a pause
    (too short to announce it). Once that decode is done no other is due until more audio
    comes, so none of it is backlog: a socket paced by it would otherwise wait for ever."""
    gate = asyncio.Event()

    async def decode(audio: np.ndarray, prompt: str | None, *, final: bool, deadline: float) -> Transcription:
        await gate.wait()
        return Transcription(language="en", duration=len(audio) / 16000, segments=())

    transcriber = LiveTranscriber(decode, lambda event: None)
    speech = decode_file(audio_path("en_jfk_16k.wav").read_bytes(), "en_jfk_16k.wav")[: 16000 * 7]
    pause_start = np.zeros(int(16000 * transcriber.options.vad.pause_ms / 1000 * 0.75), np.float32)
    for start in range(0, len(speech), 1600):
        transcriber.push(speech[start : start + 1600])
        await asyncio.sleep(0)
    transcriber.push(pause_start)
    assert transcriber.backlog_seconds > 5.0  # a decode is under way: the speech after it waits
    gate.set()
    async with asyncio.timeout(30):
        await transcriber.drain()
    assert not transcriber.decoding
    assert transcriber.backlog_seconds == 0
