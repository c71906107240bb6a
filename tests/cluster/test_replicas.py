"""Two replicas behind nothing but their ports, sharing PostgreSQL, Redis and a blob directory:
what one replica stored or streams, the other serves; a key's balance and stream cap hold over
both; a replica killed mid-stream leaves its session failed with its text, and its place freed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.wav import wav_bytes
from scripts.cluster import Replica
from tests.cluster.conftest import KEYS, LEASE_S, PER_KEY, STREAMS_BALANCE_SECONDS
from tests.conftest import audio_path
from tests.live_helpers import RAW_S16LE, PacedUpload, SseEvent, of_type, pcm16k, read_sse, s16le

normalise = EnglishTextNormalizer()
LIVE_URL = "/v1/audio/transcriptions?model=whisper-1&stream=true"
JFK_WORDS = "ask not what your country can do for you"


def auth(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key]}", **more}


def live_headers(key: str) -> dict[str, str]:
    return auth(key, **{"Content-Type": RAW_S16LE})


def jfk_upload(repeat: int = 1, speed: float = 2.0) -> PacedUpload:
    return PacedUpload(s16le(np.concatenate([pcm16k("en_jfk_16k.wav")] * repeat)), 2 * SAMPLE_RATE, speed=speed)


async def session_on(http: aiohttp.ClientSession, replica: Replica, session_id: str, key: str) -> dict:
    async with http.get(f"{replica.url}/v1/audio/sessions/{session_id}", headers=auth(key)) as response:
        return await response.json() | {"http_status": response.status}


async def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


async def events_on(http: aiohttp.ClientSession, replica: Replica, session_id: str, key: str, after: int | None = None) -> list[SseEvent]:
    headers = auth(key) | ({"Last-Event-ID": str(after)} if after is not None else {})
    async with http.get(f"{replica.url}/v1/audio/sessions/{session_id}/events", headers=headers) as response:
        assert response.status == 200, await response.text()
        return await read_sse(response)


async def test_a_file_uploaded_on_one_replica_is_transcribed_by_id_on_the_other(replicas):
    a, b = replicas
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData({"purpose": "user_data"})
        form.add_field("file", audio_path("en_jfk_16k.wav").read_bytes(), filename="jfk.wav")
        async with http.post(f"{a.url}/v1/files", data=form, headers=auth("follow")) as response:
            assert response.status == 200, await response.text()
            file_id = (await response.json())["id"]
        data = {"model": "whisper-1", "file_id": file_id}
        async with http.post(f"{b.url}/v1/audio/transcriptions", data=data, headers=auth("follow")) as response:
            assert response.status == 200, await response.text()
            assert JFK_WORDS in normalise((await response.json())["text"])
        async with http.get(f"{b.url}/v1/files/{file_id}/content", headers=auth("follow")) as response:
            assert await response.read() == audio_path("en_jfk_16k.wav").read_bytes()


async def test_a_live_stream_on_one_replica_is_followed_on_the_other_with_replay(replicas):
    a, b = replicas
    async with aiohttp.ClientSession() as http:
        streaming = await http.post(f"{a.url}{LIVE_URL}", data=jfk_upload(), headers=live_headers("follow"))
        assert streaming.status == 200
        session_id = streaming.headers["X-Session-Id"]
        await until(lambda: _status_is(http, b, session_id, "live"), 10, "the session showing on B")
        followed_live, streamed = await asyncio.gather(events_on(http, b, session_id, "follow"), read_sse(streaming))
        assert JFK_WORDS in normalise(of_type(streamed, "transcript.text.done")[0]["text"])

        on_a = await events_on(http, a, session_id, "follow")  # the owner's own log, for reference
        assert [(e.id, e.data) for e in followed_live] == [(e.id, e.data) for e in on_a]
        seqs = [e.id for e in followed_live[:-1]]
        assert seqs == list(range(len(seqs))) and followed_live[-1].data == "[DONE]"
        middle = seqs[len(seqs) // 2]
        resumed = await events_on(http, b, session_id, "follow", after=middle)  # after the end, still there
        assert [(e.id, e.data) for e in resumed] == [(e.id, e.data) for e in followed_live if e.id is None or e.id > middle]
        stored = await session_on(http, b, session_id, "follow")
        assert stored["status"] == "completed" and JFK_WORDS in normalise(stored["text"])


async def _status_is(http, replica, session_id, status) -> bool:
    return (await session_on(http, replica, session_id, "follow")).get("status") == status


async def test_one_balance_spent_from_both_replicas_is_never_overspent(replicas):
    """60 s of balance, ten concurrent 20 s requests over both replicas: exactly three succeed."""
    clip = wav_bytes(pcm16k("en_mfa_acoustic_corpus_spontaneous.wav")[: 20 * SAMPLE_RATE])

    async def transcribe(http: aiohttp.ClientSession, replica: Replica) -> tuple[int, dict]:
        form = aiohttp.FormData({"model": "whisper-1"})
        form.add_field("file", clip, filename="twenty.wav")
        async with http.post(f"{replica.url}/v1/audio/transcriptions", data=form, headers=auth("balance")) as response:
            return response.status, await response.json()

    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(transcribe(http, replicas[i % 2]) for i in range(10)))
        async with http.get(f"{replicas[1].url}/v1/usage", headers=auth("balance")) as response:
            usage = await response.json()
    succeeded = [body for status, body in answers if status == 200]
    refused = [body for status, body in answers if status != 200]
    assert len(succeeded) == 3 and all(body["text"].strip() for body in succeeded)
    assert len(refused) == 7 and {body["error"]["code"] for body in refused} == {"insufficient_balance"}
    assert usage["balance"]["remaining_seconds"] < 1


async def test_live_streams_on_both_replicas_hold_the_balance_as_they_go(replicas):
    """A 15 s balance and an 11 s stream on each replica at once: one runs to its end, the other
    is stopped at what is left (or refused up front); together they never spend more than 15 s."""
    async with aiohttp.ClientSession() as http:
        responses = await asyncio.gather(
            *(http.post(f"{r.url}{LIVE_URL}", data=jfk_upload(speed=1.0), headers=live_headers("streams")) for r in replicas)
        )
        outcomes = []
        for response in responses:
            if response.status != 200:
                outcomes.append((await response.json())["error"]["code"])
                continue
            events = await read_sse(response)
            outcomes.append("completed" if of_type(events, "transcript.text.done") else of_type(events, "error")[0]["error"]["code"])
        async with http.get(f"{replicas[0].url}/v1/usage", headers=auth("streams")) as response:
            usage = await response.json()
    assert sorted(outcomes) == ["completed", "insufficient_balance"], outcomes
    assert sum(day["audio_seconds"] for day in usage["data"]) <= STREAMS_BALANCE_SECONDS


async def test_a_keys_stream_cap_holds_across_replicas(replicas):
    a, b = replicas
    assert PER_KEY == 2
    async with aiohttp.ClientSession() as http:
        first, second = [
            await http.post(f"{r.url}{LIVE_URL}", data=jfk_upload(repeat=3, speed=1.0), headers=live_headers("cap")) for r in replicas
        ]
        assert (first.status, second.status) == (200, 200)
        async with http.post(f"{b.url}{LIVE_URL}", data=jfk_upload(), headers=live_headers("cap")) as third:
            body = await third.json()
            assert third.status == 429 and body["error"]["code"] == "too_many_streams", body
        async with http.get(f"{b.url}/metrics", headers=auth("cap")) as response:
            metrics = await response.text()
        assert "stream_server_cluster_live_streams 2" in metrics and "stream_server_replica_info{" in metrics
        first.close()  # its place (on A) is given back at once, on every replica

        async def admitted_on_b():
            response = await http.post(f"{b.url}{LIVE_URL}", data=jfk_upload(speed=8.0), headers=live_headers("cap"))
            if response.status != 200:
                response.close()
                return None
            return response

        again = await until(admitted_on_b, 10, "the key's place coming back")
        assert JFK_WORDS in normalise(of_type(await read_sse(again), "transcript.text.done")[0]["text"])
        second.close()


async def test_a_replica_killed_mid_stream_leaves_its_session_failed_with_its_text_and_its_place_free(
    replicas, replica
):
    b, lost = replicas[1], replica("lost")
    async with aiohttp.ClientSession() as http:
        holding = await http.post(f"{b.url}{LIVE_URL}", data=jfk_upload(repeat=4, speed=1.0), headers=live_headers("lost"))
        assert holding.status == 200  # the key's other place (of 2), held throughout
        streaming = await http.post(f"{lost.url}{LIVE_URL}", data=jfk_upload(repeat=4, speed=1.0), headers=live_headers("lost"))
        session_id = streaming.headers["X-Session-Id"]
        committed = ""
        while JFK_WORDS not in normalise(committed):  # the first JFK clip committed, more to come
            events = await read_sse(streaming, limit=1)
            assert events and events[0].type != "transcript.text.done"
            committed += events[0].data.get("delta", "") if events[0].type == "transcript.text.delta" else ""
        lost.kill()

        failed = await until(
            lambda: _failed(http, b, session_id), LEASE_S * 3 + 60, "the lost session ending failed on B"
        )
        assert failed["error"]["code"] == "replica_lost"
        assert normalise(committed) in normalise(failed["text"])
        events = await events_on(http, b, session_id, "lost")
        assert events[-2].type == "error" and events[-2].data["error"]["code"] == "replica_lost"
        assert [e.id for e in events[:-1]] == list(range(len(events) - 1))

        response = await http.post(f"{b.url}{LIVE_URL}", data=jfk_upload(speed=8.0), headers=live_headers("lost"))
        assert response.status == 200, "the lost replica's place under the key's cap of 2 must be free"
        assert JFK_WORDS in normalise(of_type(await read_sse(response), "transcript.text.done")[0]["text"])
        holding.close()


async def _failed(http, replica, session_id) -> dict | None:
    body = await session_on(http, replica, session_id, "lost")
    return body if body.get("status") == "failed" else None
