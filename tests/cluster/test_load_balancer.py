"""deploy/haproxy.cfg in front of two replicas: health-checked, SSE and WebSocket streamed
through unbuffered, and a replica that gets SIGTERM leaves the rotation while its stream
drains, its text kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from scripts.cluster import HAPROXY_CONFIG, Replica, haproxy_env
from scripts.services import free_port, haproxy_server
from tests.cluster.test_replicas import JFK_WORDS, LIVE_URL, auth, jfk_upload, live_headers, session_on
from tests.conftest import audio_path
from tests.live_helpers import of_type, pcm16k, read_sse, s16le

normalise = EnglishTextNormalizer()


@pytest.fixture(scope="module")
def balancer(replicas: tuple[Replica, Replica]) -> Iterator[str]:
    port = free_port()
    with haproxy_server(HAPROXY_CONFIG, haproxy_env(port, *replicas), port):
        yield f"http://127.0.0.1:{port}"


async def test_an_sse_stream_through_the_balancer_gets_text_while_it_uploads(balancer):
    upload = jfk_upload(speed=1.0)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{balancer}/health") as health:
            assert health.status == 200
        response = await http.post(f"{balancer}{LIVE_URL}", data=upload, headers=live_headers("follow"))
        events = await read_sse(response)
    deltas = [e for e in events if e.type == "transcript.text.delta" and e.data["delta"]]
    assert deltas and deltas[0].received_at < upload.finished_at, "events must pass through as they come"
    assert JFK_WORDS in normalise(of_type(events, "transcript.text.done")[0]["text"])


async def test_a_websocket_through_the_balancer(balancer):
    audio = s16le(pcm16k("en_jfk_16k.wav"))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{balancer}/v1/audio/stream?model=whisper-1", headers=auth("follow")) as ws:
            for offset in range(0, len(audio), 3200):
                await ws.send_bytes(audio[offset : offset + 3200])
            await ws.send_str(json.dumps({"type": "close"}))
            events = [json.loads(m.data) async for m in ws]
    assert events[0]["type"] == "session.created"
    assert JFK_WORDS in normalise(next(e["text"] for e in events if e["type"] == "transcript.text.done"))


async def test_a_replica_stopped_with_sigterm_drains_out_of_rotation(balancer, replicas):
    async with aiohttp.ClientSession() as http:
        draining = await http.post(f"{balancer}{LIVE_URL}", data=jfk_upload(repeat=3, speed=1.0), headers=live_headers("drain"))
        assert draining.status == 200
        session_id = draining.headers["X-Session-Id"]
        first = []
        while JFK_WORDS not in normalise("".join(e.data["delta"] for e in first if e.type == "transcript.text.delta")):
            first += await read_sse(draining, limit=1)  # the first clip's text, then more is coming
        views = [await session_on(http, r, session_id, "drain") for r in replicas]
        owner = next(r for r, view in zip(replicas, views) if "utterances" in view)  # its own, not the registry's
        owner.process.terminate()  # SIGTERM: stop listening, drain the live stream

        async def through_balancer() -> int:
            async with http.post(f"{balancer}/v1/audio/transcriptions", data=_jfk_form(), headers=auth("follow")) as r:
                return r.status

        statuses = await asyncio.gather(*(through_balancer() for _ in range(4)))  # all on the other replica
        assert statuses == [200] * 4, statuses
        rest = await read_sse(draining)
        owner.process.wait(60)
        ending = [e for e in first + rest if e.type in ("transcript.text.done", "error")]
        assert ending and (ending[-1].type == "transcript.text.done" or ending[-1].data["error"]["code"] == "server_shutdown"), [
            e.data for e in ending
        ]
        sent = "".join(e.data["delta"] for e in first + rest if e.type == "transcript.text.delta")
        stored = await session_on(http, next(r for r in replicas if r is not owner), session_id, "drain")
        assert stored["text"] == sent and JFK_WORDS in normalise(sent), (stored, sent)


def _jfk_form() -> aiohttp.FormData:
    form = aiohttp.FormData({"model": "whisper-1"})
    form.add_field("file", audio_path("en_jfk_16k.wav").read_bytes(), filename="jfk.wav")
    return form
