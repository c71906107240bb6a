"""Broken audio (tests/broken_audio.py) on every input path: a multipart upload, an upload to
/v1/files then a transcription by id, a raw body, stream=true (both), the WebSocket. Audio that
cannot be opened is a 400 in OpenAI's shape, before any event; audio that breaks off after a
while is transcribed up to the break; nothing is a 5xx, hangs, or leaves a task behind."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import WSMsgType

from stream_server.app import create_app
from tests.broken_audio import CLIP, corpus
from tests.live_helpers import RAW_S16LE, PacedUpload, pcm16k, s16le

URL = "/v1/audio/transcriptions"
BOUND_S = 60
"""No request here may take longer: past it the test fails as a hang."""
DECODABLE = {f"truncated_half.{ext}" for ext in ("wav", "mp3", "flac", "ogg")} | {"claims_1e9_samples.wav"}
"""Audio that breaks off after its start: what comes before the break is transcribed."""
CLIP_SECONDS = 3.0
IDLE_TASKS = {"RequestHandler.start"}
"""The server's per-connection task, kept while the client's pooled connection stays open."""


def tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if not t.done() and t.get_coro().__qualname__ not in IDLE_TASKS}


async def back_to(baseline: set[asyncio.Task]) -> None:
    """Wait (bounded) until every task started since `baseline` has ended."""
    async with asyncio.timeout(BOUND_S):
        while tasks() - baseline:
            await asyncio.sleep(0.05)


def multipart(name: str, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in {"model": "whisper-1", **fields}.items():
        form.add_field(key, value)
    form.add_field("file", corpus()[name], filename=name)
    return form


def is_openai_error(body: dict, code: str = "invalid_audio") -> bool:
    error = body["error"]
    return set(error) == {"message", "type", "param", "code"} and (error["type"], error["code"]) == ("invalid_request_error", code)


async def answer(request) -> tuple[int, str]:
    async with asyncio.timeout(BOUND_S):
        response = await request
        return response.status, await response.text()


async def whole_paths(client, name: str) -> list[tuple[str, int, str]]:
    """Each HTTP path's (label, status, body)."""
    raw = {"data": corpus()[name], "headers": {"Content-Type": "application/octet-stream"}}
    out = [
        ("multipart", *await answer(client.post(URL, data=multipart(name, response_format="verbose_json")))),
        ("raw body", *await answer(client.put(f"{URL}?response_format=verbose_json", **raw))),
        ("multipart stream", *await answer(client.post(URL, data=multipart(name, stream="true")))),
        ("raw body, stream", *await answer(client.put(f"{URL}?stream=true", **raw))),
    ]
    form = aiohttp.FormData()
    form.add_field("purpose", "transcription")
    form.add_field("file", corpus()[name], filename=name)
    out.append(("upload", *await answer(client.post("/v1/files", data=form))))
    if out[-1][1] == 200:
        file_id = json.loads(out[-1][2])["id"]
        by_id = {"model": "whisper-1", "file_id": file_id, "response_format": "verbose_json"}
        out.append(("by id", *await answer(client.post(URL, data=by_id))))
    return out


def streamed_text(body: str) -> str:
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert [e["type"] for e in events].count("error") == 0, events
    done = [e for e in events if e["type"] == "transcript.text.done"]
    assert len(done) == 1, events
    return done[0]["text"]


@pytest.mark.parametrize("name", sorted(corpus()))
async def test_every_http_path_answers_broken_audio_cleanly(client, name: str) -> None:
    baseline = tasks()
    results = await whole_paths(client, name)
    for label, status, body in results:
        assert status < 500, (label, status, body)
        if name not in DECODABLE:
            assert status == 400 and is_openai_error(json.loads(body)), (label, body)
        elif "stream" in label:
            assert status == 200 and streamed_text(body).strip(), (label, body)
        else:
            assert status == 200, (label, body)
            result = json.loads(body)
            if label != "upload":  # the file object has no text
                assert result.get("text", "").strip(), (label, result)
            if "duration" in result:  # the samples there are, never what a header claims
                assert 0.5 < result["duration"] <= CLIP_SECONDS, (label, result)
    if name not in DECODABLE:
        assert [label for label, _, _ in results] == ["multipart", "raw body", "multipart stream", "raw body, stream", "upload"]
    await back_to(baseline)


def test_the_header_claiming_a_billion_samples_counts_the_second_there_is() -> None:
    """The claim alone would be 62,500 s: the duration checked above must come from the samples."""
    data = corpus()["claims_1e9_samples.wav"]
    assert int.from_bytes(data[40:44], "little") == 2 * 10**9 and len(data) == 44 + 2 * 16000


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
@pytest.mark.parametrize("name", sorted(corpus()))
async def test_the_websocket_ends_broken_audio_with_its_done_or_error_message(client, name: str, encoding: str) -> None:
    """The socket takes raw PCM, so any bytes are 16-bit samples; as floats, bytes that are no
    numbers (NaN, infinity) are an `invalid_audio` error and close 1008."""
    baseline = tasks()
    data = corpus()[name]
    async with asyncio.timeout(BOUND_S):
        ws = await client.ws_connect(f"/v1/audio/stream?encoding={encoding}&partials=false")
        for offset in range(0, len(data), 3200):
            await ws.send_bytes(data[offset : offset + 3200])
        await ws.send_str('{"type": "close"}')
        messages = [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]
    last = messages[-1]
    if last["type"] == "error":
        assert is_openai_error(last, "invalid_audio") and ws.close_code == 1008, last
        assert encoding == "pcm_f32le"
    else:
        assert last["type"] == "transcript.text.done" and ws.close_code == 1000, last
    await back_to(baseline)


async def test_float_pcm_holding_no_numbers_is_invalid_audio_on_a_raw_body_and_the_websocket(client) -> None:
    nan = b"\x00\x00\xc0\x7f" * 1600  # float32 NaN
    raw = await client.put(f"{URL}?model=whisper-1", data=nan, headers={"Content-Type": "audio/pcm;encoding=f32le"})
    assert raw.status == 400 and is_openai_error(await raw.json()) and (await raw.json())["error"]["param"] == "encoding"
    ws = await client.ws_connect("/v1/audio/stream?encoding=pcm_f32le")
    await ws.send_bytes(nan)
    async with asyncio.timeout(BOUND_S):
        messages = [json.loads(m.data) async for m in ws if m.type == WSMsgType.TEXT]
    assert is_openai_error(messages[-1]) and ws.close_code == 1008


async def test_a_refused_container_stream_stops_the_decoding_its_opening_started(aiohttp_client, settings, speech_model) -> None:
    """stream=true opens the audio before admission; a 429 then must not leave FFmpeg's thread
    or the upload feeder behind."""
    client = await aiohttp_client(create_app(replace(settings, max_streams=1), model=speech_model))
    held = await client.put(f"{URL}?stream=true", data=PacedUpload(s16le(pcm16k(CLIP)), 32000), headers={"Content-Type": RAW_S16LE})
    baseline = tasks()
    refused = await client.post(URL, data=multipart("truncated_half.wav", stream="true"))
    assert refused.status == 429 and (await refused.json())["error"]["type"] == "rate_limit_error"
    await back_to(baseline)
    async with asyncio.timeout(10):
        while any(t.name == "container-decode" for t in threading.enumerate()):
            await asyncio.sleep(0.05)
    held.close()
