"""Every failure is OpenAI-shaped JSON with the right status, and never leaks a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from aiohttp import FormData, WSServerHandshakeError
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.app import create_app
from stream_server.errors import InvalidRequest
from stream_server.audio import SAMPLE_RATE
from stream_server.audio.wav import wav_bytes
from stream_server.audio.decode import decode_file
from stream_server.file_jobs import MeteredTranscriber
from stream_server.settings import Settings
from stream_server.transports.rest import openai_api
from stream_server.transports.forms import FIELD_LIMIT, FORM_OVERHEAD, read_rest
from tests.conftest import audio_path, serve_in_thread
from tests.live_helpers import read_sse

normalise = EnglishTextNormalizer()
URL = "/v1/audio/transcriptions"
SMALL_LIMIT = 100_000
JFK = "ask not what your country can do for you"


async def assert_error(response, status: int, *, code: str | None = None, param: str | None = None) -> dict:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def form(*, model: str | None = "whisper-1", file: bytes | None = None, filename: str = "a.wav", **fields: str) -> FormData:
    data = FormData(default_to_multipart=True)
    if model is not None:
        data.add_field("model", model)
    for name, value in fields.items():
        data.add_field(name, value)
    if file is not None:
        data.add_field("file", file, filename=filename, content_type="application/octet-stream")
    return data


MULTIPART = "multipart/form-data; boundary=b"


def multipart_body(file: bytes, model: str = "whisper-1", **fields: bytes) -> bytes:
    """A complete multipart body by hand, for requests aiohttp's client would not send; `fields`
    come first, in order."""
    return (
        b"".join(_field(name, value) for name, value in fields.items())
        + _field("model", model.encode())
        + b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + file
        + b"\r\n--b--\r\n"
    )


def _field(name: str, value: bytes) -> bytes:
    return f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"


def jfk() -> bytes:
    return audio_path("en_jfk_16k.wav").read_bytes()


@pytest.fixture
async def make_client(aiohttp_client, settings, speech_model):
    """A client on an app built with some settings changed (keys, limits)."""

    async def make(**changes):
        return await aiohttp_client(create_app(replace(settings, **changes), model=speech_model))

    return make


# 400


async def test_missing_model(client):
    await assert_error(await client.post(URL, data=form(model=None, file=jfk())), 400, code="missing_field", param="model")


async def test_missing_file(client):
    await assert_error(await client.post(URL, data=form()), 400, code="missing_field", param="file")


async def test_unknown_response_format(client):
    response = await client.post(URL, data=form(file=jfk(), response_format="docx"))
    await assert_error(response, 400, code="invalid_response_format", param="response_format")


@pytest.mark.parametrize("name", ["timestamp_granularities[]", "timestamp_granularities"])
async def test_granularities_need_verbose_json(client, name):
    data = form(file=jfk(), response_format="json")
    data.add_field(name, "word")
    error = await assert_error(await client.post(URL, data=data), 400, param="timestamp_granularities")
    assert "verbose_json" in error["message"]


@pytest.mark.parametrize("temperature", ["1.5", "-0.1", "hot", "nan"])
async def test_temperature_out_of_range(client, temperature):
    response = await client.post(URL, data=form(file=jfk(), temperature=temperature))
    await assert_error(response, 400, param="temperature")


@pytest.mark.parametrize(
    "payload, filename",
    [
        (bytes(range(256)) * 64, "noise.wav"),
        (b"these are the minutes of the meeting\n" * 50, "notes.txt"),
        (b"", "empty.wav"),
    ],
)
async def test_undecodable_audio(client, payload, filename):
    response = await client.post(URL, data=form(file=payload, filename=filename))
    error = await assert_error(response, 400, code="invalid_audio", param="file")
    assert filename in error["message"]


async def test_not_multipart(client):
    response = await client.post(URL, json={"model": "whisper-1"})
    error = await assert_error(response, 400, code="invalid_content_type")
    assert "multipart/form-data" in error["message"]


async def test_malformed_part_header(client):
    body = b"--b\r\nthis is not a header\r\n\r\nx\r\n--b--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    response = await client.post(URL, data=body, headers=headers)
    await assert_error(response, 400, code="invalid_multipart")


# 401


async def test_api_keys(make_client):
    client = await make_client(api_keys=("k1",))
    error = await assert_error(await client.get("/v1/models"), 401, code="invalid_api_key")
    assert "Bearer" in error["message"]
    wrong = await client.get("/v1/models", headers={"Authorization": "Bearer k2"})
    await assert_error(wrong, 401, code="invalid_api_key")
    posted = await client.post(URL, data=form(file=jfk()), headers={"Authorization": "Bearer nope"})
    await assert_error(posted, 401, code="invalid_api_key")
    assert (await client.get("/health")).status == 200
    ok = await client.get("/v1/models", headers={"Authorization": "Bearer k1"})
    assert ok.status == 200
    assert "whisper-1" in [m["id"] for m in (await ok.json())["data"]]


# 404


async def test_unknown_model(client):
    response = await client.post(URL, data=form(model="whisper-9", file=jfk()))
    error = await assert_error(response, 404, code="model_not_found", param="model")
    assert "whisper-9" in error["message"]
    await assert_error(await client.get("/v1/models/whisper-9"), 404, code="model_not_found")


async def test_a_model_not_served_is_a_404_on_every_route(client):
    """One status, OpenAI's, wherever a model is named: the WebSocket before its upgrade and
    Deepgram's routes (in Deepgram's shape) as on the OpenAI ones (v2: test_transcribe_v2.py)."""
    await assert_error(await client.get("/v1/audio/stream?model=gpt-9"), 404, code="model_not_found", param="model")
    for route in ("/v1/audio/stream", "/v1/listen"):
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect(f"{route}?model=gpt-9&encoding=linear16&sample_rate=16000")
        assert refused.value.status == 404
    response = await client.post("/v1/listen?model=gpt-9", data=jfk())
    assert response.status == 404 and "gpt-9" in (await response.json())["err_msg"]


async def test_unknown_route(client):
    await assert_error(await client.get("/v1/nowhere"), 404, code="not_found")


# 413


async def test_oversize_with_content_length(make_client):
    client = await make_client(max_upload_bytes=SMALL_LIMIT)
    big = jfk()  # ~350 kB
    assert len(big) > 2 * SMALL_LIMIT
    response = await client.post(URL, data=form(file=big))
    error = await assert_error(response, 413, code="file_too_large", param="file")
    assert f"{SMALL_LIMIT} byte limit" in error["message"]  # the real limit, not "0 MB"
    assert (await client.get("/health")).status == 200


async def test_oversize_chunked_without_length(make_client):
    """No Content-Length: the limit must hold while the file part is read."""
    client = await make_client(max_upload_bytes=SMALL_LIMIT)
    body = multipart_body(jfk())

    async def chunks():
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    response = await client.post(URL, data=chunks(), headers={"Content-Type": MULTIPART})
    assert "Content-Length" not in response.request_info.headers
    await assert_error(response, 413, code="file_too_large", param="file")


@pytest.mark.parametrize("stream", [b"false", b"true"])
async def test_the_declared_length_is_checked_before_any_field_is_read(make_client, stream):
    """A Content-Length over the limit is a 413 before the fields are read, streaming or not: a
    text field over its own 64 KiB limit in front would otherwise answer 400 first."""
    client = await make_client(max_upload_bytes=SMALL_LIMIT)
    body = multipart_body(b"\0" * SMALL_LIMIT, prompt=b"x" * (FIELD_LIMIT + 1), stream=stream)
    assert len(body) > SMALL_LIMIT + FORM_OVERHEAD
    response = await client.post(URL, data=body, headers={"Content-Type": MULTIPART})
    await assert_error(response, 413, code="file_too_large", param="file")


async def test_a_streamed_file_keeps_the_upload_limit_without_a_length(make_client):
    """stream=true, chunked: the text streams, and the file is cut off at --max-upload-mb with
    an error event (a raw body or a WebSocket has no such limit: it runs as long as the speech).
    The file is longer than FFmpeg's probe (5 MB), so the cut comes after decoding began."""
    limit = 6 * 1024 * 1024
    client = await make_client(max_upload_bytes=limit)
    speech = decode_file(jfk())
    audio = np.concatenate([speech, np.zeros(limit // 2 + SAMPLE_RATE * 10, np.float32)])
    body = multipart_body(wav_bytes(audio), stream=b"true")
    assert len(body) > limit + FORM_OVERHEAD

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await client.post(URL, data=chunks(), headers={"Content-Type": MULTIPART})
    assert response.status == 200 and "Content-Length" not in response.request_info.headers
    events = [e.data for e in await read_sse(response) if isinstance(e.data, dict)]
    assert [e["error"]["code"] for e in events if "error" in e] == ["file_too_large"]
    assert JFK in normalise("".join(e.get("delta", "") for e in events)), "the text before the cut is kept"


async def test_within_limit_still_works(make_client):
    client = await make_client(max_upload_bytes=len(jfk()))
    response = await client.post(URL, data=form(file=jfk()))
    assert response.status == 200
    assert "ask not" in (await response.json())["text"].lower()


# truncated upload


def test_truncated_upload_is_not_a_server_error(settings, speech_model, caplog, monkeypatch):
    """The client announces more than it sends, then closes: a 400 (nobody hears it), no
    traceback. On a real server: aiohttp's test server cancels the handler instead."""
    outcomes: list[BaseException | None] = []

    async def watched_read_rest(*args, **kwargs):
        try:
            form = await read_rest(*args, **kwargs)
        except BaseException as exc:
            outcomes.append(exc)
            raise
        outcomes.append(None)
        return form

    monkeypatch.setattr(openai_api, "read_rest", watched_read_rest)
    body = multipart_body(jfk())
    head = f"POST {URL} HTTP/1.1\r\nHost: test\r\nContent-Type: {MULTIPART}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with serve_in_thread(settings, speech_model) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(head.encode() + body[: len(body) // 3])
        for _ in range(100):
            if outcomes:
                break
            time.sleep(0.05)
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], InvalidRequest) and outcomes[0].code == "incomplete_upload"
        with urllib.request.urlopen(url + "/health") as health:
            assert json.load(health)["status"] == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# 500


async def test_internal_error_leaks_nothing(client, monkeypatch):
    async def explode(self, *args, **kwargs):
        raise RuntimeError("secret detail /srv/private/path")

    monkeypatch.setattr(MeteredTranscriber, "transcribe", explode)
    response = await client.post(URL, data=form(file=jfk()))
    error = await assert_error(response, 500, code="internal_error")
    assert error["message"] == "internal server error"
    assert "secret" not in await response.text()


# no hallucinations on non-speech


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(5 * SAMPLE_RATE, dtype=np.float32),
        np.random.default_rng(0).normal(0.0, 0.1, 5 * SAMPLE_RATE).astype(np.float32),
    ],
    ids=["silence", "white-noise"],
)
async def test_non_speech_gives_empty_text(client, samples):
    response = await client.post(URL, data=form(file=wav_bytes(samples), response_format="verbose_json"))
    assert response.status == 200
    body = await response.json()
    assert body["text"] == ""
    assert body["segments"] == []
    assert body["duration"] == pytest.approx(5.0)


# 503


async def test_health_reports_a_failed_model_load(aiohttp_client, tmp_path):
    settings = Settings(model=str(tmp_path / "no-such-model"), data_dir=tmp_path)
    client = await aiohttp_client(create_app(settings))
    for _ in range(100):
        response = await client.get("/health")
        body = await response.json()
        if body["status"] != "loading":
            break
        await asyncio.sleep(0.05)
    assert response.status == 503
    assert body["status"] == "error"
    assert "no-such-model" in body["detail"] and "does not exist" in body["detail"]
    posted = await client.post(URL, data=form(file=jfk()))
    error = await assert_error(posted, 503, code="model_not_ready")
    assert "does not exist" in error["message"]
