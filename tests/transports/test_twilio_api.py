"""Twilio Media Streams: the shared call replayed as Twilio's messages (two tracks, 20 ms
frames of base64 µ-law, a lost packet), followed by an SSE observer; and bad input."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace

import pytest
from aiohttp import WSMsgType

from stream_server.app import create_app
from stream_server.transports.compat.twilio_signature import twilio_signature
from tests.calls import CALL_RATE, call_s16, mulaw
from tests.speech import channel_references, leaked_words, offline_call_wer, wer

URL = "/v1/twilio/stream"
FRAME = CALL_RATE // 50  # 20 ms of 8 kHz µ-law: Twilio's media frame
SPEED = 4.0
LOST_CHUNK = 1500
"""The inbound chunk (at 30 s, mid-sentence) that never arrives."""
STREAM_SID, CALL_SID = "MZ0123456789abcdef0123456789abcdef", "CA0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(settings):
    """The calls here are replayed as fast as they can be sent, far past Twilio's 100 messages a
    second: the message-rate bound is lifted for them (tests/transports/test_limits.py has it)."""
    return replace(settings, stream_max_queue_s=120.0, api_keys=("k1",), max_messages_per_s=1e6)


def start(tracks=("inbound", "outbound"), **parameters) -> dict:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": STREAM_SID,
        "start": {
            "accountSid": "AC0",
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": list(tracks),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": parameters,
        },
    }


def media(track: str, chunk: int, payload: bytes | str) -> dict:
    encoded = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"track": track, "chunk": str(chunk), "timestamp": str(chunk * 20), "payload": encoded},
    }


def call_tracks() -> dict[str, bytes]:
    """The call as Twilio carries it: inbound is the caller (the customer, the call's right
    channel), outbound the agent (left)."""
    rows = call_s16()
    return {"inbound": mulaw(rows[1:2]), "outbound": mulaw(rows[0:1])}


async def completed(client) -> list[dict]:
    listed = await (await client.get("/v1/audio/sessions", headers={"Authorization": "Bearer k1"})).json()
    return [s for s in listed["data"] if s.get("call_sid") == CALL_SID and s["status"] == "completed"]


async def events_of(ws) -> list[dict]:
    return [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]


async def test_the_call_replayed_as_twilio_messages(client, speech_model):
    ws = await client.ws_connect(URL)
    await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await ws.send_json(start(api_key="k1"))
    tracks = call_tracks()
    loop = asyncio.get_running_loop()
    began, observer = loop.time(), None
    for chunk in range(len(tracks["inbound"]) // FRAME):
        for track, data in tracks.items():
            if not (track == "inbound" and chunk == LOST_CHUNK):
                await ws.send_json(media(track, chunk, data[chunk * FRAME : (chunk + 1) * FRAME]))
        if chunk == 100:  # a supervisor finds the call and follows it
            listed = await (await client.get("/v1/audio/sessions", headers={"Authorization": "Bearer k1"})).json()
            (live,) = [s for s in listed["data"] if s.get("call_sid") == CALL_SID]
            assert live["status"] == "live" and live["stream_sid"] == STREAM_SID
            observer = asyncio.ensure_future(
                client.get(f"/v1/audio/sessions/{live['id']}/events", headers={"Authorization": "Bearer k1"})
            )
        if chunk % 50 == 0:
            await ws.send_json({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": f"m{chunk}"}})
        await asyncio.sleep(max(0.0, began + (chunk + 1) * 0.02 / SPEED - loop.time()))
    await ws.send_json({"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": CALL_SID}})
    await ws.close()  # as Twilio does: at once; the server still finishes and stores the call
    feed = await observer
    lines = [line[6:] for line in (await feed.text()).splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    done = events[-1]
    assert done["type"] == "transcript.text.done", done
    assert [(c["channel"], c["label"]) for c in done["channels"]] == [(0, "inbound"), (1, "outbound")]
    refs, offline = channel_references(), offline_call_wer(speech_model)
    texts = {1: done["channels"][0]["text"], 0: done["channels"][1]["text"]}  # call channel -> text
    for channel, other in ((0, 1), (1, 0)):
        assert not leaked_words(texts[channel], refs[channel], refs[other]), (channel, texts[channel])
        live_wer = wer(refs[channel], texts[channel])
        print(f"twilio call channel {channel}: live WER {live_wer:.3f}, offline alone {offline[channel]:.3f}")
        assert live_wer <= 1.3 * offline[channel] + 0.02, (channel, texts[channel])
    # the customer's (inbound's) last turn ends at 84.7 s: the lost packet did not shift its clock
    late = [e for e in events if e["type"] == "transcript.utterance.done" and e["channel"] == 0 and e["start"] > 80]
    assert late and late[-1]["end"] == pytest.approx(84.7, abs=1.0)
    async with asyncio.timeout(20):
        while not (stored := await completed(client)):
            await asyncio.sleep(0.2)
    assert stored[0]["channels"] == done["channels"] and stored[0]["stream_sid"] == STREAM_SID


async def short_call(client, messages: list[dict | str], query: str = "?api_key=k1", **kwargs) -> tuple[list[dict], object]:
    """Send `messages` after 4 s of the call on both tracks; what comes back, and the close code."""
    ws = await client.ws_connect(URL + query, **kwargs)
    tracks = call_tracks()
    await ws.send_json(start())
    for chunk in range(200):
        for track, data in tracks.items():
            await ws.send_json(media(track, chunk, data[chunk * FRAME : (chunk + 1) * FRAME]))
    for message in messages:
        await (ws.send_str(message) if isinstance(message, str) else ws.send_json(message))
    async with asyncio.timeout(120):
        received = await events_of(ws)
    return received, ws.close_code


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (media("inbound_track", 200, b"\xff" * FRAME), "unknown_track"),
        (media("inbound", 200, "not base64!"), "invalid_payload"),
        ("{not json", "invalid_message"),
    ],
)
async def test_bad_input_gets_an_error_and_a_close_code_and_keeps_the_transcript(client, message, code):
    received, close_code = await short_call(client, [message])
    assert close_code == 1008
    assert [e["event"] for e in received] == ["error"] and received[0]["error"]["code"] == code
    assert received[0]["streamSid"] == STREAM_SID
    async with asyncio.timeout(20):
        while not (stored := await completed(client)):
            await asyncio.sleep(0.1)
    assert stored[0]["call_sid"] == CALL_SID
    assert "john dashwood" in stored[0]["channels"][1]["text"].lower()  # the agent's first words, kept


async def test_media_before_start_is_an_error(client):
    ws = await client.ws_connect(URL + "?api_key=k1")
    await ws.send_json(media("inbound", 0, b"\xff" * FRAME))
    received = await events_of(ws)
    assert ws.close_code == 1008 and received[0]["error"]["code"] == "media_before_start"


async def test_the_key_may_come_as_a_stream_parameter_and_a_wrong_one_is_refused(client):
    ws = await client.ws_connect(URL)
    await ws.send_json(start(api_key="wrong"))
    received = await events_of(ws)
    assert ws.close_code == 1008 and received[0]["error"]["code"] == "invalid_api_key"


class TestSignature:
    @pytest.fixture
    async def signed(self, aiohttp_client, settings, speech_model):
        return await aiohttp_client(create_app(replace(settings, twilio_auth_token="secret"), model=speech_model))

    async def test_a_wrong_signature_is_refused_in_band(self, signed):
        ws = await signed.ws_connect(URL + "?api_key=k1", headers={"X-Twilio-Signature": "bm9wZQ=="})
        received = await events_of(ws)
        assert ws.close_code == 1008 and received[0]["error"]["code"] == "invalid_signature"

    async def test_a_valid_signature_is_accepted(self, signed):
        url = f"wss://{signed.host}:{signed.port}{URL}?api_key=k1"
        received, close_code = await short_call(
            signed, [{"event": "stop"}], headers={"X-Twilio-Signature": twilio_signature("secret", url)}
        )
        assert close_code == 1000 and received == []
