"""OpenAI Realtime transcription sessions with the real `openai` SDK (its realtime client, on the
`websockets` package), unchanged but for the base URL, on the real model and a shared clip sent
as OpenAI's 24 kHz pcm: with server VAD, with manual commits, in the beta shape, and each bad
input. Every server event is checked against OpenAI's published schema."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import replace

import pytest
from aiohttp import WSMsgType
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.app import create_app
from tests.live_helpers import read_sse
from tests.speech import reference, wer
from tests.transports.realtime_schemas import validate
from tests.transports.test_websocket_api import encode, speech

JFK = "en_jfk_16k.wav"
PCM_BYTES_PER_S = 24000 * 2
SPEED = 4.0
CHUNK_S = 0.1
BOUND_S = 120
"""A hang guard: no session here takes this long."""
MAX_WER = 0.25
"""tiny.en over VAD-cut turns of the clip (the native live protocol's own tests allow as much)."""
SPLIT_S = 4.9
"""A pause in the clip, between "... fellow Americans, ask not" and "what your country can do".
Bad input comes here, mid-session; manual turns end here."""
TAIL_SILENCE_S = 1.2
"""Silence after the clip, so the server VAD ends its last turn."""
normalise = EnglishTextNormalizer()
GA_VAD = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
        }
    },
    "include": ["item.input_audio_transcription.logprobs"],
}
GA_MANUAL = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}


@pytest.fixture(scope="module")
def jfk_24k() -> bytes:
    return encode(speech(JFK), "pcm_s16le", 24000) + bytes(int(TAIL_SILENCE_S * PCM_BYTES_PER_S))


def sdk(client, api_key: str = "unused") -> AsyncOpenAI:
    """The SDK as a user configures it for this server: only the base URL is ours."""
    return AsyncOpenAI(api_key=api_key, websocket_base_url=str(client.make_url("/v1")).replace("http", "ws", 1), max_retries=0)


def connect(client, api_key: str = "unused", **kwargs):
    return sdk(client, api_key).realtime.connect(extra_query={"intent": "transcription"}, **kwargs)


class Session:
    """One SDK connection's server events, each validated against its schema as it arrives."""

    def __init__(self, connection):
        self.connection = connection
        self.events: list[dict] = []
        self.arrived = asyncio.Event()
        self.close_code: int | None = None
        """The server's close code, once `read` saw the close."""

    async def next(self) -> dict:
        raw = await self.connection.recv_bytes()
        event = json.loads(raw)
        validate(event)
        assert self.connection.parse_event(raw).type == event["type"]  # the SDK reads it as its own type
        self.events.append(event)
        self.arrived.set()
        return event

    async def read(self) -> None:
        """Until the server closes."""
        try:
            while True:
                await self.next()
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None

    async def until(self, done) -> None:
        async with asyncio.timeout(BOUND_S):
            while not done(self):
                self.arrived.clear()
                await self.arrived.wait()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def completed(self) -> list[dict]:
        return self.of("conversation.item.input_audio_transcription.completed")

    def settled(self) -> bool:
        """Every turn committed and completed (server VAD: and none still open)."""
        started = len(self.of("input_audio_buffer.speech_started"))
        committed = len(self.of("input_audio_buffer.committed"))
        return committed > 0 and committed == len(self.completed) and started <= committed

    def errors(self) -> list[dict]:
        return [e["error"] for e in self.of("error")]

    def text(self) -> str:
        return " ".join(c["transcript"] for c in self.completed)


async def send_audio(connection, data: bytes, bytes_per_second: int = PCM_BYTES_PER_S, speed: float = SPEED) -> None:
    """Append `data` in 100 ms events at `speed` times real time."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    size = int(bytes_per_second * CHUNK_S)
    for offset in range(0, len(data), size):
        await connection.input_audio_buffer.append(audio=base64.b64encode(data[offset : offset + size]).decode())
        await asyncio.sleep(max(0.0, began + (offset + size) / bytes_per_second / speed - loop.time()))


def check_items(session: Session) -> None:
    """Each item's deltas, in order, concatenate to its completed transcript; each delta comes
    after its item's `committed` and before its `completed`; `previous_item_id` chains them."""
    events = session.events
    committed = session.of("input_audio_buffer.committed")
    assert committed, [e["type"] for e in events]
    previous = None
    for commit in committed:
        assert commit["previous_item_id"] == previous
        previous = commit["item_id"]
        indices = [i for i, e in enumerate(events) if e.get("item_id") == commit["item_id"]]
        mine = [events[i] for i in indices]
        kinds = [e["type"] for e in mine]
        done = kinds.index("conversation.item.input_audio_transcription.completed")
        deltas = [e for e in mine if e["type"].endswith(".delta")]
        assert all(events.index(d) > events.index(commit) for d in deltas) and done == len(mine) - 1
        assert "".join(d["delta"] for d in deltas) == mine[done]["transcript"]
        assert all(d["content_index"] == 0 for d in deltas) and mine[done]["content_index"] == 0
        assert mine[done]["usage"]["type"] == "duration" and mine[done]["usage"]["seconds"] > 0


async def stored(client, session_id: str, **request) -> dict:
    """The session once kept (the server decodes and stores it after the socket closes)."""
    async with asyncio.timeout(BOUND_S):
        while True:
            response = await client.get(f"/v1/audio/sessions/{session_id}", **request)
            body = await response.json()
            if response.status == 200 and body.get("status") != "live":
                usage = await (await client.get("/v1/usage", **request)).json()
                if usage["data"]:
                    return body | {"usage": usage["data"][0]}
            await asyncio.sleep(0.1)


async def test_the_sdk_streams_the_clip_with_server_vad(client, jfk_24k):
    async with connect(client) as connection:
        session = Session(connection)
        created = await session.next()
        assert created["type"] == "session.created" and created["session"]["type"] == "transcription"
        session_id = created["session"]["id"]
        await connection.session.update(session=GA_VAD)
        updated = await session.next()
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
        assert updated["session"]["include"] == ["item.input_audio_transcription.logprobs"]
        reader = asyncio.ensure_future(session.read())
        await send_audio(connection, jfk_24k)
        # a second client follows the same session over the native event feed
        feed = await client.get(f"/v1/audio/sessions/{session_id}/events")
        observer = asyncio.ensure_future(read_sse(feed))
        await session.until(Session.settled)
    await reader
    check_items(session)
    assert len(session.completed) >= 2 and not session.errors()
    started, stopped = session.of("input_audio_buffer.speech_started"), session.of("input_audio_buffer.speech_stopped")
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped] == [e["item_id"] for e in session.of("input_audio_buffer.committed")]
    assert all(a["audio_start_ms"] < b["audio_end_ms"] for a, b in zip(started, stopped))
    assert all(c["logprobs"] and all(p["logprob"] <= 0 for p in c["logprobs"]) for c in session.completed if c["transcript"])
    assert wer(reference(JFK), session.text()) <= MAX_WER, session.text()
    followed = [e.data for e in await asyncio.wait_for(observer, BOUND_S) if isinstance(e.data, dict)]
    (done,) = [e for e in followed if e["type"] == "transcript.text.done"]
    assert normalise(done["text"]) == normalise(session.text())
    kept = await stored(client, session_id)
    assert normalise(kept["text"]) == normalise(session.text()) and kept["protocol"] == "openai_realtime"
    assert kept["usage"]["audio_seconds"] == pytest.approx(len(jfk_24k) / PCM_BYTES_PER_S, abs=0.2)


async def manual_turns(client, jfk_24k: bytes, between, turns: int) -> Session:
    """A session with manual turns: the clip's first part, `between(connection)`, the rest, a
    commit; until `turns` items are completed."""
    split = int(SPLIT_S * PCM_BYTES_PER_S)
    async with connect(client) as connection:
        session = Session(connection)
        await session.next()
        await connection.session.update(session=GA_MANUAL)
        assert (await session.next())["session"]["audio"]["input"]["turn_detection"] is None
        reader = asyncio.ensure_future(session.read())
        await send_audio(connection, jfk_24k[:split])
        await between(connection)
        await send_audio(connection, jfk_24k[split:])
        await connection.input_audio_buffer.commit()
        await session.until(lambda s: len(s.completed) == turns)
    await reader
    return session


async def test_the_sdk_commits_turns_by_hand(client, jfk_24k):
    session = await manual_turns(client, jfk_24k, lambda connection: connection.input_audio_buffer.commit(event_id="first-turn"), 2)
    check_items(session)
    assert not session.of("input_audio_buffer.speech_started") and not session.errors()
    first, second = (normalise(c["transcript"]) for c in session.completed)
    assert "fellow americans" in first and "country" not in first
    assert "what your country can do for you" in second
    assert wer(reference(JFK), session.text()) <= MAX_WER, session.text()
    assert [c["usage"]["seconds"] for c in session.completed] == pytest.approx([SPLIT_S, len(jfk_24k) / PCM_BYTES_PER_S - SPLIT_S], abs=0.05)


async def test_clear_drops_the_uncommitted_audio(client, jfk_24k):
    session = await manual_turns(client, jfk_24k, lambda connection: connection.input_audio_buffer.clear(), 1)
    assert len(session.of("input_audio_buffer.cleared")) == 1
    (only,) = session.completed
    assert "fellow americans" not in normalise(only["transcript"]) and "your country" in normalise(only["transcript"])


async def test_a_commit_of_an_empty_buffer_is_an_error(client):
    async with connect(client) as connection:
        session = Session(connection)
        await session.next()
        await connection.session.update(session=GA_MANUAL)
        await session.next()
        await connection.input_audio_buffer.commit(event_id="empty")
        error = await session.next()
    assert error["type"] == "error" and error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "empty"


async def test_the_beta_shape_with_mulaw(client):
    """`transcription_session.update` (what clients of the beta interface send) on G.711 µ-law."""
    data = encode(speech(JFK), "mulaw", 8000) + b"\xff" * int(TAIL_SILENCE_S * 8000)
    async with connect(client, extra_headers={"OpenAI-Beta": "realtime=v1"}) as connection:
        session = Session(connection)
        created = await session.next()
        assert created["type"] == "transcription_session.created"
        assert created["session"]["input_audio_format"] == "pcm16" and created["session"]["turn_detection"]["type"] == "server_vad"
        update = {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
            "include": ["item.input_audio_transcription.logprobs"],
        }
        await connection.send({"type": "transcription_session.update", "session": update})
        updated = await session.next()
        assert updated["type"] == "transcription_session.updated" and updated["session"]["input_audio_format"] == "g711_ulaw"
        reader = asyncio.ensure_future(session.read())
        await send_audio(connection, data, 8000)
        await session.until(Session.settled)
    await reader
    check_items(session)
    assert wer(reference(JFK), session.text()) <= MAX_WER, session.text()


async def interrupted(client, jfk_24k: bytes, *bad: dict | str, configure: dict | None = GA_VAD) -> Session:
    """Half the clip, the bad input (each answered with an error), the rest: the session goes
    on and keeps all its text."""
    split = int(SPLIT_S * PCM_BYTES_PER_S)
    async with connect(client) as connection:
        session = Session(connection)
        await session.next()
        if configure is not None:
            await connection.session.update(session=configure)
            await session.next()
        reader = asyncio.ensure_future(session.read())
        await send_audio(connection, jfk_24k[:split])
        for event in bad:
            await (connection.send_raw(event) if isinstance(event, str) else connection.send(event))
        await session.until(lambda s: len(s.errors()) == len(bad))
        await send_audio(connection, jfk_24k[split:])
        await session.until(Session.settled)
        session_id = session.events[0]["session"]["id"]
    await reader
    check_items(session)
    text = normalise(session.text())
    assert "fellow americans" in text and "what your country can do for you" in text, text
    kept = await stored(client, session_id)
    assert normalise(kept["text"]) == text
    return session


async def test_bad_events_are_errors_and_the_session_goes_on(client, jfk_24k):
    """An unknown event type, a conversation event, bad JSON, an untyped event, bad base64 and an
    unsupported format, mid-session, each answered with its error. (One test: each session here
    is a live decode of the clip.)"""
    unknown = {"type": "input_audio_buffer.flush", "event_id": "evt_1"}
    bad_base64 = json.dumps({"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "evt_2"})
    bad_format = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}
    session = await interrupted(client, jfk_24k, unknown, {"type": "response.create"}, "{not json", {"audio": ""}, bad_base64, bad_format)
    unknown_type, conversation, not_json, untyped, base64_error, format_error = session.errors()
    assert (unknown_type["type"], unknown_type["code"], unknown_type["param"], unknown_type["event_id"]) == (
        "invalid_request_error",
        "invalid_value",
        "type",
        "evt_1",
    )
    assert conversation["code"] == "invalid_value" and "transcription session" in conversation["message"]
    assert not_json["code"] == "invalid_json" and untyped["code"] == "invalid_event"
    assert (base64_error["code"], base64_error["param"], base64_error["event_id"]) == ("invalid_value", "audio", "evt_2")
    assert format_error["param"] == "session.audio.input.format.rate" and format_error["code"] == "invalid_value"
    assert len(session.of("session.updated")) == 1  # the configuration's, not the refused one's


async def test_an_unsupported_beta_format_is_an_error(client):
    async with connect(client, extra_headers={"OpenAI-Beta": "realtime=v1"}) as connection:
        session = Session(connection)
        await session.next()
        await connection.send({"type": "transcription_session.update", "session": {"input_audio_format": "opus"}})
        error = await session.next()
    assert error["type"] == "error" and error["error"]["param"] == "session.input_audio_format"


async def test_audio_before_the_session_is_configured_gets_the_defaults(client, jfk_24k):
    """No update at all: pcm at 24 kHz and server VAD, as OpenAI. A later update may change
    `include`, not the turn detection the stream started with."""
    change = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}}}
    session = await interrupted(client, jfk_24k, change, configure=None)
    (error,) = session.errors()
    assert error["param"] == "session" and "cannot change once audio" in error["message"]
    assert session.of("input_audio_buffer.speech_started")
    assert wer(reference(JFK), session.text()) <= MAX_WER, session.text()


async def test_a_wrong_key_is_the_protocols_error(aiohttp_client, settings, speech_model):
    client = await aiohttp_client(create_app(replace(settings, api_keys=("k1",)), model=speech_model))
    async with connect(client, api_key="wrong") as connection:
        session = Session(connection)
        error = await session.next()
        with pytest.raises(ConnectionClosed) as closed:
            await connection.recv_bytes()
    assert error["type"] == "error" and error["error"]["code"] == "invalid_api_key"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    # the right key, as a browser sends it: in a subprotocol beside `realtime`
    ws = await client.ws_connect("/v1/realtime?intent=transcription", protocols=("realtime", "openai-insecure-api-key.k1"))
    assert ws.protocol == "realtime"
    greeting = await ws.receive_json()
    await ws.close()
    assert greeting["type"] == "session.created"
    async with connect(client, api_key="k1") as connection:  # and in the SDK's Bearer header
        assert (await Session(connection).next())["type"] == "session.created"
    plain = await client.get("/v1/realtime?intent=transcription")
    assert plain.status == 401


async def test_a_session_without_the_transcription_intent_is_refused(client):
    ws = await client.ws_connect("/v1/realtime?model=gpt-realtime")
    error = await ws.receive_json()
    closing = await ws.receive()
    assert error["type"] == "error" and error["error"]["param"] == "intent"
    assert closing.type == WSMsgType.CLOSE and closing.data == 1008


async def test_at_capacity_a_session_is_refused_with_try_again_later(aiohttp_client, settings, speech_model, jfk_24k):
    client = await aiohttp_client(create_app(replace(settings, max_streams=1), model=speech_model))
    async with connect(client) as first:
        holder = Session(first)
        await holder.next()
        await send_audio(first, jfk_24k[: PCM_BYTES_PER_S], speed=20)  # its stream now holds the one place
        await asyncio.sleep(0.2)
        async with connect(client) as second:
            refused = Session(second)
            error = await refused.next()
            with pytest.raises(ConnectionClosed) as closed:
                await second.recv_bytes()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert error["error"]["code"] == "overloaded" and closed.value.rcvd.code == 1013


async def test_audio_sent_faster_than_it_is_transcribed_ends_the_session(aiohttp_client, settings, speech_model, jfk_24k):
    """Past the queue limit the stream ends as the native one does: the committed turns not
    completed fail, then an `error` and a 1013 close."""
    client = await aiohttp_client(create_app(replace(settings, stream_max_queue_s=2.0), model=speech_model))
    async with connect(client) as connection:
        session = Session(connection)
        await session.next()
        reader = asyncio.ensure_future(session.read())
        with contextlib.suppress(ConnectionClosed):  # the server may close while audio is still going out
            await send_audio(connection, jfk_24k * 3, speed=200)
        await asyncio.wait_for(reader, BOUND_S)
    (error,) = session.errors()
    assert (error["type"], error["code"]) == ("rate_limit_error", "falling_behind")
    assert session.events[-1]["type"] == "error" and session.close_code == 1013
    assert {e["item_id"] for e in session.of("conversation.item.input_audio_transcription.failed")} <= {
        c["item_id"] for c in session.of("input_audio_buffer.committed")
    }
