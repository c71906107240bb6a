"""Admission control end to end: refusals up front with 429, admitted streams unharmed, per-key
limits, the place given back after a disconnect, and one stream's burst not starving another."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.app import create_app
from stream_server.audio import SAMPLE_RATE
from stream_server.engine.admission import Admission
from stream_server.transports.appkeys import ADMISSION
from tests.live_helpers import RAW_S16LE, PacedUpload, of_type, pcm16k, read_sse, s16le

normalise = EnglishTextNormalizer()
LIVE_URL = "/v1/audio/transcriptions?model=whisper-1&stream=true"
JFK_WORDS = "ask not what your country can do for you"


def jfk_upload(speed: float = 2.0) -> PacedUpload:
    return PacedUpload(s16le(pcm16k("en_jfk_16k.wav")), 2 * SAMPLE_RATE, speed=speed)


def headers(key: str | None = None) -> dict[str, str]:
    return {"Content-Type": RAW_S16LE, **({"Authorization": f"Bearer {key}"} if key else {})}


async def final_text(response) -> str:
    assert response.status == 200
    events = await read_sse(response)
    return of_type(events, "transcript.text.done")[0]["text"]


def assert_refused(response, body: dict, code: str) -> None:
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == code
    assert body["error"]["message"] and set(body["error"]) == {"message", "type", "param", "code"}


@pytest.fixture
async def one_stream_client(aiohttp_client, settings, speech_model):
    return await aiohttp_client(create_app(replace(settings, max_streams=1), model=speech_model))


async def test_streams_beyond_the_limit_are_refused_and_the_place_comes_back(one_stream_client):
    """One place, held by a stream: an HTTP stream is refused with 429 and a WebSocket closed with
    1013 while the admitted one completes; the place comes back when it ends, and again when a
    client leaves mid-stream. (One test: each stream here is a live decode of the JFK clip.)"""
    client = one_stream_client
    admission = client.app[ADMISSION]
    admitted = await client.post(LIVE_URL, data=jfk_upload(), headers=headers())
    assert admitted.status == 200
    refused = await client.post(LIVE_URL, data=s16le(pcm16k("en_jfk_16k.wav")), headers=headers())
    assert_refused(refused, await refused.json(), "overloaded")
    ws = await client.ws_connect("/v1/audio/stream")
    message = await ws.receive_json()
    assert message["type"] == "error" and message["error"]["code"] == "overloaded"
    await ws.receive()
    assert ws.close_code == 1013
    assert JFK_WORDS in normalise(await final_text(admitted))
    await place_given_back(admission)  # as the handler ends, just after [DONE]
    assert admission.refused["max_streams"] == 2

    long_audio = s16le(np.concatenate([pcm16k("en_jfk_16k.wav")] * 3))
    leaving = await client.post(LIVE_URL, data=PacedUpload(long_audio, 2 * SAMPLE_RATE, speed=2.0), headers=headers())
    assert leaving.status == 200
    await leaving.content.readline()  # the stream is under way
    leaving.close()  # the client goes away mid-stream
    await place_given_back(admission)
    after = await client.post(LIVE_URL, data=jfk_upload(speed=8.0), headers=headers())
    assert JFK_WORDS in normalise(await final_text(after))
    assert admission.admitted == 3 and admission.refused["max_streams"] == 2


async def place_given_back(admission: Admission) -> None:
    """Waits for the place to be given back (bounded for a loaded machine)."""
    async with asyncio.timeout(30):
        while admission.active:
            await asyncio.sleep(0.02)


async def test_per_key_limit_refuses_the_same_key_but_not_another(aiohttp_client, settings, speech_model):
    settings = replace(settings, api_keys=("k1", "k2"), max_streams_per_key=1)
    client = await aiohttp_client(create_app(settings, model=speech_model))
    first = await client.post(LIVE_URL, data=jfk_upload(), headers=headers("k1"))
    assert first.status == 200
    same_key = await client.post(LIVE_URL, data=s16le(pcm16k("en_jfk_16k.wav")), headers=headers("k1"))
    assert_refused(same_key, await same_key.json(), "too_many_streams")
    other_key = await client.post(LIVE_URL, data=jfk_upload(), headers=headers("k2"))
    texts = await asyncio.gather(final_text(first), final_text(other_key))
    assert all(JFK_WORDS in normalise(text) for text in texts)
    assert client.app[ADMISSION].refused["per_key"] == 1


async def test_a_burst_from_one_stream_does_not_starve_a_paced_one(client):
    feed = pcm16k("en_dev_feed_16k.wav")[: 40 * SAMPLE_RATE]
    burst = PacedUpload(s16le(feed), 2 * SAMPLE_RATE, speed=200.0, chunk=64000)
    paced = jfk_upload(speed=1.0)
    burst_response = await client.post(LIVE_URL, data=burst, headers=headers())
    paced_response = await client.post(LIVE_URL, data=paced, headers=headers())
    burst_events, paced_events = await asyncio.gather(read_sse(burst_response), read_sse(paced_response))
    deltas = [e for e in paced_events if e.type == "transcript.text.delta" and e.data["delta"]]
    done = of_type(paced_events, "transcript.text.done")[0]
    assert len(deltas) >= 2 and "".join(e.data["delta"] for e in deltas) == done["text"]
    assert JFK_WORDS in normalise(done["text"])
    # while it still speaks; a machine too slow for that must still give it text before the burst's
    # is all decoded: a starved stream would wait behind the whole burst
    (burst_done,) = [e for e in burst_events if e.type == "transcript.text.done"]
    first = deltas[0].received_at
    assert first < paced.finished_at or first < burst_done.received_at, "the paced stream must not wait for the burst"
    seqs = [e.data["seq"] for e in paced_events[1:-1]]  # between the first (empty) delta and [DONE]
    assert seqs == sorted(seqs)
    burst_text = normalise(of_type(burst_events, "transcript.text.done")[0]["text"])
    assert JFK_WORDS in burst_text and "great sorrow of his life" in burst_text
