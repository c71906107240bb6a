"""Deepgram's /v1/listen with the real `deepgram-sdk`, unchanged but for its base URL: a shared
clip streamed live (interim and final Results, an UtteranceEnd, Metadata), the pre-recorded
call, the controls, and each bad input (Deepgram's error, no crash, the text kept)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from aiohttp import WSMsgType
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from stream_server.app import create_app
from stream_server.audio.decode import decode_channels
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


async def deepgram_sessions(client) -> list[dict]:
    """The sessions streamed over this protocol, once stored (the socket closes first)."""
    async with asyncio.timeout(20):
        while True:
            listed = await (await client.get("/v1/audio/sessions", headers={"Authorization": "Bearer k1"})).json()
            found = [s for s in listed["data"] if s.get("protocol") == "deepgram"]
            if found and all(s["status"] == "completed" for s in found):
                return found
            await asyncio.sleep(0.1)


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
    # an UtteranceEnd after each pause (JFK pauses after "for you"), each at a word's end, the last at the last word's
    utterance_ends = [m for m in received if m["type"] == "UtteranceEnd"]
    assert utterance_ends and all(m["channel"] == [0, 1] for m in utterance_ends)
    ends = [w["end"] for w in words]
    assert all(any(m["last_word_end"] == pytest.approx(end, abs=0.01) for end in ends) for m in utterance_ends), (utterance_ends, ends)
    assert utterance_ends[-1]["last_word_end"] == pytest.approx(words[-1]["end"], abs=1.5)
    metadata = received[-1]
    assert metadata["duration"] == pytest.approx(11.0, abs=0.01) and metadata["channels"] == 1
    assert results[0]["metadata"]["request_id"] == metadata["request_id"]
    # the stream was a live session like any other: stored, with the same text
    (stored,) = await deepgram_sessions(client)
    assert stored["id"].removeprefix("sess_") == metadata["request_id"].replace("-", "")
    assert wer(text, stored["text"]) == 0.0


async def test_the_sdk_transcribes_a_prerecorded_file(client):
    response = await sdk(client).listen.v1.media.transcribe_file(request=audio_path(JFK).read_bytes(), model="nova-3", punctuate=True)
    alternative = response.results.channels[0].alternatives[0]
    assert wer(reference(JFK), alternative.transcript) <= 0.15, alternative.transcript
    assert alternative.words[0].start < alternative.words[-1].end <= 11.1 and 0 < alternative.confidence <= 1
    assert response.metadata.duration == pytest.approx(11.0, abs=0.05) and response.metadata.channels == 1



async def test_a_url_body_is_a_clear_400_as_the_server_fetches_nothing(client):
    with pytest.raises(ApiError) as refused:
        await sdk(client).listen.v1.media.transcribe_url(url="https://example.com/audio.wav", model="nova-3")
    assert refused.value.status_code == 400
    assert refused.value.body["err_code"] == "Bad Request" and "URL" in refused.value.body["err_msg"]


LIVE = f"{URL}?model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true&punctuate=true"


async def converse(ws, audio: bytes, *, midway: list[str | dict] = (), at: float = 0.5) -> list[dict]:
    """Send `audio` with `midway` text messages once `at` of it is sent, then CloseStream; every
    message that comes back until the server closes."""
    received: list[dict] = []

    async def read() -> None:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                received.append(json.loads(message.data))

    reader = asyncio.ensure_future(read())
    split = int(len(audio) * at) // CHUNK * CHUNK
    await send_paced(ws.send_bytes, audio[:split])
    for text in midway:
        await ws.send_str(text if isinstance(text, str) else json.dumps(text))
    await send_paced(ws.send_bytes, audio[split:])
    await ws.send_str(json.dumps({"type": "CloseStream"}))
    await asyncio.wait_for(reader, 60)
    return received


async def handshake(client, url: str, headers: dict[str, str] = AUTH):
    """An upgrade request read as plain HTTP: a refused one's status, headers and body."""
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    return await client.get(url, headers=headers | upgrade | {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})


def final_text(received: list[dict], channel: int = 0) -> str:
    finals = [m for m in received if m["type"] == "Results" and m["is_final"] and m["channel_index"][0] == channel]
    return " ".join(m["channel"]["alternatives"][0]["transcript"] for m in finals).strip()


async def test_an_unsupported_encoding_is_refused_in_deepgrams_shape(client):
    with pytest.raises(ApiError) as refused:
        async with sdk(client).listen.v1.connect(model="nova-3", encoding="opus", sample_rate=48000):
            pass
    assert refused.value.status_code == 400
    response = await handshake(client, f"{URL}?encoding=opus")
    body = await response.json()
    assert response.status == 400 and body["err_code"] == "Bad Request" and "opus" in body["err_msg"]
    assert response.headers["dg-error"] == body["err_msg"] and body["request_id"] == response.headers["dg-request-id"]


async def test_an_error_quoting_a_newline_is_still_a_deepgram_400(client):
    """The fuzzer's find: the message (quoting the parameter) went into the `dg-error` header as it was."""
    response = await handshake(client, f"{URL}?encoding=op%0Aus")
    body = await response.json()
    assert response.status == 400 and "op\nus" in body["err_msg"]
    assert "\n" not in response.headers["dg-error"]


async def test_a_wrong_key_is_refused_and_the_right_one_then_streams_by_the_token_subprotocol_past_bad_messages(client):
    """The stream a browser's key opens goes on past bad text messages (an unknown type, bad
    JSON, a non-object) sent midway, each answered with Deepgram's error."""
    with pytest.raises(ApiError) as refused:
        async with sdk(client, key="wrong").listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000):
            pass
    assert refused.value.status_code == 401
    response = await handshake(client, LIVE, {"Authorization": "Token wrong"})
    assert response.status == 401 and (await response.json())["err_code"] == "INVALID_AUTH"
    ws = await client.ws_connect(LIVE, protocols=("token", "k1"))  # as a browser sends its key
    assert ws.protocol == "token"
    bad = ['{"type": "Bogus"}', "not json {", "[1, 2]"]
    received = await converse(ws, jfk(), midway=bad)
    errors = [m for m in received if m["type"] == "Error"]
    assert [e["message"] for e in errors] == bad
    assert all(e["variant"] == "SchemaError" and e["description"] for e in errors), errors
    assert received[-1]["type"] == "Metadata" and ws.close_code == 1000
    assert wer(reference(JFK), final_text(received)) <= 0.25, final_text(received)


async def test_finalize_answers_with_a_from_finalize_result_and_the_stream_goes_on(client):
    ws = await client.ws_connect(LIVE, headers=AUTH)
    bearer = {"Authorization": "Bearer k1"}
    (live,) = (await (await client.get("/v1/audio/sessions", headers=bearer)).json())["data"]
    assert live["status"] == "live" and live["protocol"] == "deepgram" and live["requested_model"] == "nova-3"
    feed = asyncio.ensure_future(client.get(f"/v1/audio/sessions/{live['id']}/events", headers=bearer))
    received = await converse(ws, jfk(), midway=[{"type": "Finalize"}], at=0.6)
    finalized = [m for m in received if m["type"] == "Results" and m["from_finalize"]]
    assert finalized and all(m["is_final"] and not m["speech_final"] for m in finalized)
    assert received[-1]["type"] == "Metadata" and wer(reference(JFK), final_text(received)) <= 0.3, final_text(received)
    # an observer followed the same session on its event feed
    lines = [line[6:] for line in (await (await feed).text()).splitlines() if line.startswith("data: {")]
    done = json.loads(lines[-1])
    assert done["type"] == "transcript.text.done" and wer(done["text"], final_text(received)) == 0.0


@pytest.fixture
def quick_idle(settings):
    return replace(settings, idle_timeout_s=2.0)


async def test_a_silent_client_is_closed_with_net_0001_and_its_text_is_kept(aiohttp_client, quick_idle, speech_model):
    client = await aiohttp_client(create_app(quick_idle, model=speech_model))
    ws = await client.ws_connect(LIVE, headers=AUTH)
    await send_paced(ws.send_bytes, jfk()[: 5 * 32000])  # "And so my fellow Americans, ask not", then nothing
    received = []
    while (message := await ws.receive()).type == WSMsgType.TEXT:
        received.append(json.loads(message.data))
    assert message.type == WSMsgType.CLOSE and (message.data, message.extra[:8]) == (1011, "NET-0001")
    assert "americans" in final_text(received).lower()
    (stored,) = await deepgram_sessions(client)
    assert "americans" in stored["text"].lower()


async def test_keepalive_holds_a_quiet_stream_open(aiohttp_client, quick_idle, speech_model):
    client = await aiohttp_client(create_app(quick_idle, model=speech_model))
    ws = await client.ws_connect(LIVE, headers=AUTH)
    for _ in range(8):  # 4 s with no audio: twice the idle timeout
        await ws.send_str('{"type": "KeepAlive"}')
        await asyncio.sleep(0.5)
    received = await converse(ws, jfk())
    assert received[-1]["type"] == "Metadata" and ws.close_code == 1000
    assert not [m for m in received if m["type"] == "Error"]


async def test_a_stream_beyond_capacity_is_refused_with_429(aiohttp_client, settings, speech_model):
    client = await aiohttp_client(create_app(replace(settings, max_streams=1), model=speech_model))
    first = await client.ws_connect(LIVE, headers=AUTH)
    with pytest.raises(ApiError) as refused:
        async with sdk(client).listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000):
            pass
    assert refused.value.status_code == 429
    response = await handshake(client, LIVE)
    assert response.status == 429 and (await response.json())["err_code"] == "TOO_MANY_REQUESTS"
    assert int(response.headers["Retry-After"]) >= 1
    received = await converse(first, jfk())  # the admitted stream is untouched
    assert received[-1]["type"] == "Metadata" and wer(reference(JFK), final_text(received)) <= 0.25


STEREO = "en_stereo_L61-70968-0000_R260-libritts.wav"
LEFT = "He began a confused complaint against the wizard who had vanished behind the curtain on the left."
RIGHT = "The horizon seems extremely distant."


async def test_multichannel_audio_gets_results_per_channel(client):
    stereo = decode_channels(audio_path(STEREO).read_bytes())
    audio = (stereo.T.clip(-1, 1) * 32767).astype("<i2").tobytes()
    ws = await client.ws_connect(f"{LIVE}&channels=2&multichannel=true", headers=AUTH)
    received = await converse(ws, audio + bytes(2 * 32000))  # and a second of silence after
    indexes = {tuple(m["channel_index"]) for m in received if m["type"] == "Results"}
    assert indexes == {(0, 2), (1, 2)}
    assert wer(LEFT, final_text(received, 0)) <= 0.25 and wer(RIGHT, final_text(received, 1)) <= 0.25
    assert received[-1]["channels"] == 2
