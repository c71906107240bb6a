"""The bounds on what one client may hold or send, one test (at least) per bound, through the
real server: requests open per key and per address, failed key checks per address, the
WebSocket message rate (ours and Twilio's), the session log, the sessions kept, a slow SSE
reader, a live body's undecoded audio (raw or a container). Waits are bounded hang guards, never timing assertions."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from dataclasses import replace

import numpy as np
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError

from stream_server.app import create_app
from stream_server.audio import SAMPLE_RATE
from stream_server.audio.live import PIPE_BYTES
from stream_server.audio.wav import wav_bytes
from stream_server.events import TextPartial
from stream_server.transports.live import sse_api
from stream_server.transports.appkeys import SESSIONS
from stream_server.transports.live.audio_inbox import BODY_SLICE_S, MAX_DECODER_BACKLOG_S, AudioInbox
from stream_server.transports.limits import LIMITS, FailedAuth, MessageRate
from stream_server.transports.live.live_run import LIVE_RUNS
from stream_server.transports.rest import openai_api
from tests.live_helpers import RAW_S16LE, PacedUpload, of_type, pcm16k, read_sse, s16le
from tests.speech import reference, wer
from tests.transports.test_twilio_api import media, start

BOUND_S = 60
"""Hang guard for each wait below."""
VAD_RELEASE_S = 4.0
"""More than the VAD holds back (look-back, hangover) before handing an utterance's audio on."""
WAV_BYTES_PER_S = 2 * SAMPLE_RATE
"""A 16 kHz s16 mono WAV's data."""
K1, K2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}


@pytest.fixture
def make_client(aiohttp_client, settings, speech_model):
    async def make(**changes):
        return await aiohttp_client(create_app(replace(settings, **changes), model=speech_model))

    return make


async def until(condition) -> None:
    async with asyncio.timeout(BOUND_S):
        while not condition():
            await asyncio.sleep(0.02)


async def refused_status(client, path: str, **kwargs) -> tuple[int, dict]:
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(path, **kwargs)
    return refused.value.status, dict(refused.value.headers or {})


# requests open per address and per key


async def test_an_address_may_hold_only_so_many_requests(make_client):
    client = await make_client(max_connections_per_address=2)
    held = [await client.ws_connect("/v1/audio/stream") for _ in range(2)]
    status, _ = await refused_status(client, "/v1/audio/stream")
    assert status == 429
    response = await client.get("/v1/models")  # any request counts, and is refused the same way
    assert response.status == 429 and (await response.json())["error"]["code"] == "too_many_connections"
    await held[0].close()
    await until(lambda: client.app[LIMITS].per_address._open.get("127.0.0.1", 0) < 2)
    assert (await client.get("/v1/models")).status == 200
    await held[1].close()
    assert client.app[LIMITS].refused["per_address"] == 2


async def test_a_key_may_hold_only_so_many_requests_and_another_key_is_not_affected(make_client):
    client = await make_client(api_keys=("k1", "k2"), max_connections_per_key=2, max_connections_per_address=0)
    held = [await client.ws_connect("/v1/audio/stream", headers=K1) for _ in range(2)]
    status, _ = await refused_status(client, "/v1/audio/stream", headers=K1)
    assert status == 429
    other = await client.ws_connect("/v1/audio/stream", headers=K2)
    for ws in (*held, other):
        await ws.close()
    assert client.app[LIMITS].refused["per_key"] == 1


async def test_the_defaults_fit_eight_streams_from_one_key_on_one_address(make_client):
    """With their observers and a dashboard polling: real use is not refused."""
    client = await make_client(api_keys=("k1",), estimate_capacity=False)
    sockets = [await client.ws_connect("/v1/audio/stream", headers=K1) for _ in range(8)]
    created = [json.loads((await ws.receive()).data) for ws in sockets]
    assert [c["type"] for c in created] == ["session.created"] * 8
    feeds = [await client.get(f"/v1/audio/sessions/{c['session_id']}/events", headers=K1) for c in created]
    assert [f.status for f in feeds] == [200] * 8
    assert (await client.get("/v1/audio/sessions", headers=K1)).status == 200
    for ws in sockets:
        await ws.close()
    for feed in feeds:
        feed.close()
    assert sum(client.app[LIMITS].refused.values()) == 0


# failed key checks per address


async def test_an_address_that_guesses_keys_gets_429_after_a_burst(make_client):
    client = await make_client(api_keys=("k1",), max_failed_auth=3)
    for _ in range(5):  # a missing key is no guess: never counted
        assert (await client.get("/v1/models")).status == 401
    for guess in ("a", "b", "c"):
        assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {guess}"})).status == 401
    blocked = await client.get("/v1/models", headers=K1)  # even the right key, while blocked
    assert blocked.status == 429
    body = await blocked.json()
    assert body["error"]["code"] == "too_many_failed_auth" and body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert (await client.get("/health")).status == 200, "open routes stay open"
    status, _ = await refused_status(client, "/v1/audio/stream", headers=K1)
    assert status == 429


def test_failed_key_checks_age_out_and_the_table_is_bounded():
    failures = FailedAuth(limit=3, window_s=60)
    for t in (0, 1, 2):
        failures.record("a", t)
    assert failures.retry_after("a", 3) == pytest.approx(57)
    assert failures.retry_after("a", 60.5) is None, "the oldest failure aged out"
    assert failures.retry_after("b", 3) is None
    for i in range(20_000):
        failures.record(f"10.0.{i // 256}.{i % 256}", 100)
    assert len(failures._failures) == 10_000


# the WebSocket message rate


def test_the_default_rate_fits_a_twilio_call():
    rate = MessageRate(200)
    assert all(rate.take(now=i / 100) for i in range(100 * 60)), "100 messages a second for a minute"
    flood = MessageRate(200)
    assert sum(flood.take(now=0.0) for _ in range(1000)) == 200


async def test_a_socket_that_floods_messages_is_closed_1008(make_client):
    client = await make_client(max_messages_per_s=20)
    ws = await client.ws_connect("/v1/audio/stream")
    silence = np.zeros(160, "<i2").tobytes()  # 10 ms a message
    for _ in range(100):
        await ws.send_bytes(silence)
    events = [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]
    assert ws.close_code == 1008
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "too_many_messages"
    assert client.app[LIMITS].refused["message_rate"] == 1


async def test_a_twilio_stream_that_floods_messages_is_closed_1008(make_client):
    client = await make_client(max_messages_per_s=20)
    ws = await client.ws_connect("/v1/twilio/stream")
    await ws.send_json(start(tracks=("inbound",)))
    for chunk in range(100):
        await ws.send_json(media("inbound", chunk, b"\xff" * 160))
    received = [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]
    assert ws.close_code == 1008
    assert [e["event"] for e in received] == ["error"] and received[0]["error"]["code"] == "too_many_messages"


# the session log and the sessions kept


async def test_a_replay_past_the_event_bound_says_what_it_lost_and_keeps_the_text(make_client):
    """Over HTTP: the log is trimmed, the replay accounts for every seq (kept or reported
    dropped), and the transcript is whole (which events go first is tests/engine/test_sessions.py's)."""
    client = await make_client(max_session_events=10)
    upload = PacedUpload(s16le(pcm16k("en_jfk_16k.wav")), 2 * SAMPLE_RATE, speed=2.0)
    response = await client.post(
        "/v1/audio/transcriptions?stream=true&model=whisper-1&partials=true", data=upload, headers={"Content-Type": RAW_S16LE}
    )
    done = of_type(await read_sse(response), "transcript.text.done")[0]
    session = client.app[SESSIONS].get(response.headers["X-Session-Id"])
    assert session.dropped > 0 and len(session.events) <= 10
    replay = [e.data for e in await read_sse(await client.get(f"/v1/audio/sessions/{session.id}/events"))][:-1]
    covered = []
    for event in replay:
        first = event["first_seq"] if event["type"] == "session.events_dropped" else event["seq"]
        covered += range(first, event["seq"] + 1)
    assert covered == list(range(session.published)), "each seq is replayed or reported dropped, in order"
    assert replay[0]["type"] == "session.created"
    assert replay[-1] == {**done, "seq": replay[-1]["seq"]} and replay[-1]["text"] == session.text


async def test_only_so_many_ended_sessions_stay_in_memory_and_the_rest_come_from_storage(make_client):
    client = await make_client(max_finished_sessions=1)
    silence = np.zeros(16000, "<i2").tobytes()
    ids = []
    for _ in range(3):
        response = await client.post(
            "/v1/audio/transcriptions?stream=true&model=whisper-1", data=silence, headers={"Content-Type": RAW_S16LE}
        )
        await read_sse(response)
        ids.append(response.headers["X-Session-Id"])
    await until(lambda: not client.app[SESSIONS].live())
    assert client.app[SESSIONS].held <= 2
    assert client.app[SESSIONS].get(ids[0]) is None
    first = await (await client.get(f"/v1/audio/sessions/{ids[0]}")).json()
    assert (first.get("id"), first.get("status")) == (ids[0], "completed"), first


# a slow SSE reader


async def test_an_sse_reader_that_reads_nothing_is_dropped_and_the_session_goes_on(make_client, caplog):
    """The observer's socket fills (aiohttp keeps ~64 KiB unsent), its write waits past
    --sse-send-timeout, and it is dropped; the session and another observer are unharmed."""
    client = await make_client(sse_send_timeout_s=1.0)
    session = client.app[SESSIONS].create("tiny.en", "en")
    for i in range(4000):  # ~8 MB of replay: more than any socket buffer holds
        session.publish(TextPartial(text=f"{i} " + "x" * 2000, start=0.0, end=1.0))
    limits = client.app[LIMITS]
    with socket.create_connection((client.server.host, client.server.port)) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(f"GET /v1/audio/sessions/{session.id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await until(lambda: limits.per_address._open.get("127.0.0.1", 0) == 1)
        await until(lambda: limits.per_address._open.get("127.0.0.1", 0) == 0)  # its handler ended
    assert session.outcome is None, "the session is unharmed"
    session.publish(TextPartial(text="after", start=1.0, end=2.0))
    session.fail("test over", "test_over")
    replay = await read_sse(await client.get(f"/v1/audio/sessions/{session.id}/events"))
    assert len(of_type(replay, "transcript.text.partial")) == 4001
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a dropped client is no server error"


async def test_a_live_body_sent_faster_than_it_is_decoded_is_read_only_as_the_decoder_takes_it(make_client, monkeypatch):
    """A chunked raw body is read through an inbox of --stream-max-queue-s: once that holds the
    bound, the body is not read further (HTTP's flow control holds the client back) until the
    decoder takes more. The server never holds more undecoded audio than the bound and the
    decoder's own backlog, and every word still arrives."""
    held: list[float] = []

    class Recorded(AudioInbox):
        def _append(self, pcm) -> None:
            super()._append(pcm)
            held.append(self.queued_seconds)

    monkeypatch.setattr(sse_api, "AudioInbox", Recorded)
    client = await make_client(stream_max_queue_s=3.0)
    names = ("en_jfk_16k.wav", "en_ls_1995-1837-0001.wav", "en_librivox_sense_and_sensibility_01-0870.wav")
    pause = np.zeros(SAMPLE_RATE, np.float32)
    data = s16le(np.concatenate([part for name in names for part in (pcm16k(name), pause)]))

    async def at_once():
        for offset in range(0, len(data), 3200):
            yield data[offset : offset + 3200]

    backlog: list[float] = []

    async def watch() -> None:
        while True:
            backlog.extend(run.transcriber.backlog_seconds for run in client.app[LIVE_RUNS])
            await asyncio.sleep(0.05)

    watching = asyncio.ensure_future(watch())
    try:
        async with asyncio.timeout(BOUND_S * 3):
            response = await client.post(
                "/v1/audio/transcriptions?stream=true", data=at_once(), headers={"Content-Type": RAW_S16LE}
            )
            events = await read_sse(response)
    finally:
        watching.cancel()
    assert max(held) <= 3.0 and max(held) > 2.0  # the bound was reached, and held
    # the decoder's own backlog is paced too: it may pass the pacing mark by the slice handed on
    # last and the audio the VAD held back and hands on at once when an utterance closes
    assert max(backlog) <= MAX_DECODER_BACKLOG_S + BODY_SLICE_S + VAD_RELEASE_S
    text = of_type(events, "transcript.text.done")[0]["text"]
    assert wer(" ".join(reference(name) for name in names), text) < 0.1, text


async def test_a_container_body_sent_faster_than_it_is_decoded_is_read_only_as_the_decoder_takes_it(
    make_client, monkeypatch
):
    """A chunked WAV body goes through FFmpeg before the inbox: once the inbox holds its bound,
    FFmpeg's thread waits and the body is not read past the pipe's bytes, so the server holds
    no more of the body than the bound, the pipe and the read in hand; every word arrives. The
    speech comes first and a long pause after it: read whole, the body would be far ahead."""
    read, appended = [0], [0.0]
    reads: list[int] = []
    ahead: list[float] = []
    """Seconds of the body read but not yet in the inbox, at each piece put in."""

    class Recorded(AudioInbox):
        def _append(self, pcm) -> None:
            super()._append(pcm)
            appended[0] += pcm.shape[-1] / SAMPLE_RATE
            ahead.append(read[0] / WAV_BYTES_PER_S - appended[0])

    async def counted(request, idle_timeout):
        async for chunk in body_chunks(request, idle_timeout):
            read[0] += len(chunk)
            reads.append(len(chunk))
            yield chunk

    body_chunks = openai_api.body_chunks
    monkeypatch.setattr(sse_api, "AudioInbox", Recorded)
    monkeypatch.setattr(openai_api, "body_chunks", counted)
    client = await make_client(stream_max_queue_s=3.0)
    names = ("en_jfk_16k.wav", "en_ls_1995-1837-0001.wav", "en_librivox_sense_and_sensibility_01-0870.wav")
    pause = np.zeros(SAMPLE_RATE, np.float32)
    speech = [part for name in names for part in (pcm16k(name), pause)]
    data = wav_bytes(np.concatenate([*speech, np.zeros(90 * SAMPLE_RATE, np.float32)]))

    async def at_once():
        for offset in range(0, len(data), 3200):
            yield data[offset : offset + 3200]

    async with asyncio.timeout(BOUND_S * 3):
        response = await client.post("/v1/audio/transcriptions?stream=true", data=at_once(), headers={"Content-Type": "audio/wav"})
        events = await read_sse(response)
    # past the inbox's bound: the pipe (or the one read it holds), the read in hand, FFmpeg's
    # own buffer and pieces (a loopback upload comes in large reads)
    held_s = 3.0 + (max(PIPE_BYTES, max(reads)) + max(reads)) / WAV_BYTES_PER_S + 2.0
    assert len(data) / WAV_BYTES_PER_S > held_s + 30  # read whole, it would be far past the bound
    assert max(ahead) <= held_s, (max(ahead), max(reads))
    text = of_type(events, "transcript.text.done")[0]["text"]
    assert wer(" ".join(reference(name) for name in names), text) < 0.1, text
