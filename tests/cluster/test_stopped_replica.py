"""deploy/haproxy.cfg in front of two replicas: a replica that gets SIGTERM leaves the rotation
while its stream drains, its text kept."""

from __future__ import annotations

import asyncio

import aiohttp
from whisper_normalizer.english import EnglishTextNormalizer

from tests.cluster.test_replicas import JFK_WORDS, LIVE_URL, auth, jfk_upload, live_headers, session_on
from tests.conftest import audio_path
from tests.live_helpers import read_sse

normalise = EnglishTextNormalizer()


async def test_a_replica_stopped_with_sigterm_drains_out_of_rotation(balancer, replicas):
    async with aiohttp.ClientSession() as http:
        draining = await http.post(f"{balancer}{LIVE_URL}", data=jfk_upload(repeat=3), headers=live_headers("drain"))
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
