"""Deepgram's /v1/listen with the real `deepgram-sdk`, unchanged but for its base URL: a shared
clip streamed live (interim and final Results, an UtteranceEnd, Metadata), the pre-recorded
call, the controls, and each bad input (Deepgram's error, no crash, the text kept)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from stream_server.app import create_app
from tests.conftest import audio_path
from tests.live_helpers import pcm16k, s16le
from tests.speech import reference, wer

URL = "/v1/listen"
JFK = "en_jfk_16k.wav"
CHUNK = 3200  # 100 ms of 16 kHz linear16
SPEED = 4.0
AUTH = {"Authorization": "Token k1"}


@pytest.fixture
def settings(settings):
    return replace(settings, api_keys=("k1",))


def sdk(client, key: str = "k1") -> AsyncDeepgramClient:
    base = str(client.make_url("")).rstrip("/")
    environment = DeepgramClientEnvironment(
        base=base, production=base.replace("http", "ws", 1), agent=base, agent_rest=base
    )
    return AsyncDeepgramClient(api_key=key, environment=environment)


def jfk() -> bytes:
    return s16le(pcm16k(JFK))


async def send_paced(send, audio: bytes, speed: float = SPEED) -> None:
    for offset in range(0, len(audio), CHUNK):
        await send(audio[offset : offset + CHUNK])
        await asyncio.sleep(CHUNK / 32000 / speed)


def dump(message) -> dict:
    return message.model_dump() if hasattr(message, "model_dump") else message


async def test_the_sdk_streams_a_clip_and_gets_interim_and_final_results_and_an_utterance_end(client):
    options = dict(model="nova-3", encoding="linear16", sample_rate=16000, interim_results="true")
    options |= dict(utterance_end_ms="1000", vad_events="true", punctuate="true", smart_format="true")
    async with sdk(client).listen.v1.connect(**options) as connection:
        received: list[dict] = []

        async def read() -> None:
            async for message in connection:
                received.append(dump(message))

        reader = asyncio.ensure_future(read())
        await send_paced(connection.send_media, jfk())
        await connection.send_close_stream()
        await asyncio.wait_for(reader, 60)
    kinds = [m["type"] for m in received]
    assert kinds[-1] == "Metadata" and kinds[0] == "SpeechStarted", kinds
    results = [m for m in received if m["type"] == "Results"]
    interim = [r for r in results if not r["is_final"]]
    finals = [r for r in results if r["is_final"]]
    assert interim and finals and any(r["speech_final"] for r in finals)
    text = " ".join(r["channel"]["alternatives"][0]["transcript"] for r in finals).strip()
    assert wer(reference(JFK), text) <= 0.25, text
    for before, after in zip(finals, finals[1:]):  # final results cover the audio end to end
        assert after["start"] == pytest.approx(before["start"] + before["duration"], abs=0.002)
    words = [w for r in finals for w in r["channel"]["alternatives"][0]["words"]]
    assert all(0 <= w["start"] < w["end"] <= 11.1 and 0 < w["confidence"] <= 1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    assert {w["word"] for w in words} >= {"ask", "country"} and any(w["punctuated_word"].endswith(".") for w in words)
    (utterance_end, *_) = [m for m in received if m["type"] == "UtteranceEnd"]
    assert utterance_end["channel"] == [0, 1] and utterance_end["last_word_end"] == pytest.approx(words[-1]["end"], abs=1.5)
    metadata = received[-1]
    assert metadata["duration"] == pytest.approx(11.0, abs=0.01) and metadata["channels"] == 1
    assert results[0]["metadata"]["request_id"] == metadata["request_id"]
    # the stream was a live session like any other: stored, with the same text
    listed = await (await client.get("/v1/audio/sessions", headers={"Authorization": "Bearer k1"})).json()
    (stored,) = [s for s in listed["data"] if s.get("protocol") == "deepgram"]
    assert stored["id"].removeprefix("sess_") == metadata["request_id"].replace("-", "")
    assert wer(text, stored["text"]) == 0.0


async def test_the_sdk_transcribes_a_prerecorded_file(client):
    response = await sdk(client).listen.v1.media.transcribe_file(request=audio_path(JFK).read_bytes(), model="nova-3", punctuate=True)
    alternative = response.results.channels[0].alternatives[0]
    assert wer(reference(JFK), alternative.transcript) <= 0.15, alternative.transcript
    assert alternative.words[0].start < alternative.words[-1].end <= 11.1 and 0 < alternative.confidence <= 1
    assert response.metadata.duration == pytest.approx(11.0, abs=0.05) and response.metadata.channels == 1

