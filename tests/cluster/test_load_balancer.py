"""deploy/haproxy.cfg in front of two replicas: health-checked, SSE and WebSocket streamed
through unbuffered (test_stopped_replica.py has a replica that gets SIGTERM)."""

from __future__ import annotations

import json

import aiohttp
from whisper_normalizer.english import EnglishTextNormalizer

from tests.cluster.test_replicas import JFK_WORDS, LIVE_URL, auth, jfk_upload, live_headers
from tests.live_helpers import of_type, pcm16k, read_sse, s16le

normalise = EnglishTextNormalizer()


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
