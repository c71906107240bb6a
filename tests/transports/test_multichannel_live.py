"""multichannel=true on live streams: the shared call over the WebSocket (interleaved PCM) and
the live HTTP upload, each channel transcribed on its own."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from aiohttp import WSMsgType

from stream_server.app import create_app
from stream_server.transports.appkeys import ADMISSION
from tests.calls import CALL_RATE, call_s16, interleaved_pcm
from tests.conftest import audio_path
from tests.live_helpers import PacedUpload, of_type, read_sse
from tests.speech import channel_references, leaked_words, offline_call_wer, wer

CALL_BOUND_S = 400
"""Hang guard for one 87 s call at several times real time on a shared machine."""
SPEED = 20.0
"""Far faster than real time to keep the test short (pacing is not the subject): the inbox, big
enough for the whole call, hands it to the channels as they decode it."""


@pytest.fixture
def settings(settings):
    """100 ms frames at SPEED are 200 messages a second, the default bound itself, which a sender
    catching up on a loaded machine goes past (closed 1008, too_many_messages): the bound is lifted
    here (tests/transports/test_limits.py has it)."""
    return replace(settings, stream_max_queue_s=120.0, max_messages_per_s=1e6)


async def stream_call(client, query: str) -> list[dict]:
    """The call sent over the WebSocket as interleaved 16-bit PCM, in 100 ms frames at SPEED
    times real time, then `close`."""
    data = interleaved_pcm(call_s16())
    url = f"/v1/audio/stream?encoding=pcm_s16le&sample_rate={CALL_RATE}&channels=2&multichannel=true{query}"
    ws = await client.ws_connect(url)
    events: list[dict] = []

    async def receive() -> None:
        async for message in ws:
            assert message.type == WSMsgType.TEXT, message
            events.append(json.loads(message.data))

    received = asyncio.ensure_future(receive())
    frame = CALL_RATE // 10 * 2 * 2  # 100 ms of two channels, 2 bytes a sample
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(CALL_BOUND_S):
        for number, offset in enumerate(range(0, len(data), frame), start=1):
            if ws.closed:
                break
            await ws.send_bytes(data[offset : offset + frame])
            await asyncio.sleep(max(0.0, started + number * 0.1 / SPEED - loop.time()))
        if not ws.closed:
            await ws.send_str(json.dumps({"type": "close"}))
        await received
    assert ws.close_code == 1000, events[-1]
    return events


async def test_the_call_over_the_websocket_gives_each_channel_its_own_words(client, speech_model):
    """Interleaved PCM; the same call in µ-law, two channels, is the Twilio replay's
    (test_twilio_api.py), and µ-law frames over this WebSocket are test_websocket_api.py's."""
    events = await stream_call(client, "&channel_labels=agent,customer")
    assert events[0]["type"] == "session.created" and events[0]["channel_labels"] == ["agent", "customer"]
    done = events[-1]
    assert done["type"] == "transcript.text.done"
    texts = {c["channel"]: c["text"] for c in done["channels"]}
    assert [c.get("label") for c in done["channels"]] == ["agent", "customer"]
    refs, offline = channel_references(), offline_call_wer(speech_model)
    for channel, other in ((0, 1), (1, 0)):
        assert not leaked_words(texts[channel], refs[channel], refs[other]), (channel, texts[channel])
        live_wer = wer(refs[channel], texts[channel])
        print(f"pcm_s16le channel {channel}: live WER {live_wer:.3f}, offline alone {offline[channel]:.3f}")
        assert live_wer <= 1.3 * offline[channel] + 0.02, (channel, texts[channel])
        deltas = "".join(e["delta"] for e in events if e["type"] == "transcript.text.delta" and e["channel"] == channel)
        assert deltas.strip() == texts[channel]
    for kind in ("transcript.text.delta", "transcript.utterance.done", "speech.started", "transcript.text.partial"):
        assert {e.get("channel") for e in events if e["type"] == kind} == {0, 1}, kind
    utterances = [e for e in events if e["type"] == "transcript.utterance.done"]
    first_customer = min(u["start"] for u in utterances if u["channel"] == 1)
    assert first_customer == pytest.approx(8.8, abs=1.0)  # the customer's first turn, on the call's clock
    assert done["text"].startswith("[agent] ") and "\n[customer] " in done["text"]
    session = await (await client.get(f"/v1/audio/sessions/{events[0]['session_id']}")).json()
    assert [c["text"] for c in session["channels"]] == [texts[0], texts[1]]
    async with asyncio.timeout(10):  # the transcript is stored just after the socket closes
        while not (stored := (await (await client.get("/v1/audio/sessions")).json())["data"]):
            await asyncio.sleep(0.1)
    assert [s["channels"] for s in stored] == [done["channels"]]


STEREO = "en_stereo_L61-70968-0000_R260-libritts.wav"  # two speakers, one per channel, 5 s


async def test_a_live_stereo_upload_labels_the_strict_deltas(client):
    data = audio_path(STEREO).read_bytes()
    url = "/v1/audio/transcriptions?model=whisper-1&stream=true&multichannel=true&channel_labels=left,right"
    response = await client.post(url, data=PacedUpload(data, 64000, speed=4.0), headers={"Content-Type": "audio/wav"})
    assert response.status == 200
    events = await read_sse(response)
    assert {e.type for e in events if e.type} == {"transcript.text.delta", "transcript.text.done"}
    text = "".join(d["delta"] for d in of_type(events, "transcript.text.delta"))
    assert text.startswith("[") and "[left] " in text and "[right] " in text, text
    done = of_type(events, "transcript.text.done")[0]
    assert "wizard" in done["channels"][0]["text"].lower() and "horizon" in done["channels"][1]["text"].lower()


async def test_a_two_channel_call_takes_one_place(aiohttp_client, settings, speech_model):
    """A fresh server admits the call, as one stream: with room for one, a second is refused."""
    client = await aiohttp_client(create_app(replace(settings, max_streams=1), model=speech_model))
    ws = await client.ws_connect("/v1/audio/stream?encoding=pcm_s16le&sample_rate=8000&channels=2&multichannel=true")
    assert json.loads((await ws.receive()).data)["type"] == "session.created"
    assert client.app[ADMISSION].active == 1
    refused = await client.ws_connect("/v1/audio/stream")
    message = json.loads((await refused.receive()).data)
    assert message["type"] == "error" and message["error"]["code"] == "overloaded"
    await ws.send_bytes(interleaved_pcm(call_s16()[:, : 2 * CALL_RATE]))
    await ws.send_str(json.dumps({"type": "close"}))
    async for _ in ws:
        pass
    assert ws.close_code == 1000
