"""The files API and transcription by file id, through the openai SDK and plain HTTP."""

import asyncio
import errno
import io
import os
import socket
import time
import json
from dataclasses import replace

import aiohttp
import openai
import pytest

from stream_server.principals import key_id
from stream_server.storage import blobs
from stream_server.transports.appkeys import STORAGE
from tests.conftest import audio_path, serve_in_thread

SHORT = "en_cheetah_test_en.wav"  # "Today only platforms one and three are used."
K1, K2, ADMIN = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}, {"Authorization": "Bearer adm"}


@pytest.fixture
def settings(settings):
    return replace(settings, api_keys=("k1", "k2"), admin_keys=("adm",))


async def upload(client, name=SHORT, headers=K1, purpose="user_data", filename=None):
    data = {"purpose": purpose, "file": audio_path(name).open("rb")}
    if filename:
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", audio_path(name).read_bytes(), filename=filename)
        data = form
    response = await client.post("/v1/files", data=data, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


def test_sdk_files_round_trip_and_ownership(settings, speech_model):
    wav = audio_path(SHORT)
    with serve_in_thread(settings, speech_model) as url:
        owner = openai.OpenAI(base_url=f"{url}/v1", api_key="k1")
        other = openai.OpenAI(base_url=f"{url}/v1", api_key="k2")
        admin = openai.OpenAI(base_url=f"{url}/v1", api_key="adm")

        created = owner.files.create(file=wav.open("rb"), purpose="user_data")
        assert created.id.startswith("file-")
        assert (created.filename, created.bytes, created.purpose, created.status) == (
            SHORT, wav.stat().st_size, "user_data", "processed"
        )
        assert [f.id for f in owner.files.list()] == [created.id]
        assert owner.files.retrieve(created.id).filename == SHORT
        assert owner.files.content(created.id).content == wav.read_bytes()

        with pytest.raises(openai.PermissionDeniedError):
            other.files.retrieve(created.id)
        with pytest.raises(openai.PermissionDeniedError):
            other.files.delete(created.id)
        assert list(other.files.list()) == []
        assert [f.id for f in admin.files.list()] == [created.id]
        assert admin.files.retrieve(created.id).id == created.id

        deleted = owner.files.delete(created.id)
        assert (deleted.id, deleted.deleted) == (created.id, True)
        with pytest.raises(openai.NotFoundError):
            owner.files.retrieve(created.id)
        assert list(owner.files.list()) == []


def test_sdk_accepts_any_purpose_and_filters(settings, speech_model):
    with serve_in_thread(settings, speech_model) as url:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k1")
        a = sdk.files.create(file=audio_path(SHORT).open("rb"), purpose="user_data")
        b = sdk.files.create(file=audio_path(SHORT).open("rb"), purpose="meeting-notes")  # not in the SDK's list
        assert b.purpose == "meeting-notes"
        assert [f.id for f in sdk.files.list(purpose="user_data")] == [a.id]
        assert [f.id for f in sdk.files.list(order="asc")] == [a.id, b.id]
        assert [f.id for f in sdk.files.list(order="desc", limit=1)] == [b.id, a.id]  # pages through `after`


@pytest.mark.parametrize(
    ("response_format", "expect"),
    [
        ("json", lambda body: json.loads(body)["text"]),
        ("text", lambda body: body),
        ("verbose_json", lambda body: json.loads(body)["segments"][0]["text"]),
        ("srt", lambda body: body.split("\n", 2)[2] if body.startswith("1\n") else ""),
        ("vtt", lambda body: body if body.startswith("WEBVTT") else ""),
    ],
)
async def test_transcribe_by_file_id_in_each_format(client, response_format, expect):
    stored = await upload(client)
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in (("model", "whisper-1"), ("file_id", stored["id"]), ("response_format", response_format)):
        data.add_field(name, value)
    response = await client.post("/v1/audio/transcriptions", data=data, headers=K1)
    assert response.status == 200, await response.text()
    text = expect(await response.text()).lower()
    assert "only platforms 1 and 3" in text


async def test_transcribe_by_file_id_urlencoded_checks_owner_and_existence(client):
    stored = await upload(client)
    form = {"model": "whisper-1", "file_id": stored["id"]}
    response = await client.post("/v1/audio/transcriptions", data=form, headers=K2)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    response = await client.post("/v1/audio/transcriptions", data=form, headers=ADMIN)
    assert response.status == 200
    response = await client.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1", "file_id": "file-nope"}, headers=K1
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "file_not_found"
    both = {"model": "whisper-1", "file_id": stored["id"], "file": audio_path(SHORT).open("rb")}
    response = await client.post("/v1/audio/transcriptions", data=both, headers=K1)
    assert response.status == 400


async def test_http_errors(client):
    assert (await client.get("/v1/files")).status == 401
    assert (await client.get("/v1/files", headers={"Authorization": "Bearer wrong"})).status == 401
    for path in ("/v1/files/file-missing", "/v1/files/file-missing/content"):
        response = await client.get(path, headers=K1)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "file_not_found"
    assert (await client.delete("/v1/files/file-missing", headers=K1)).status == 404

    not_audio = {"purpose": "user_data", "file": io.BytesIO(b"this is not audio at all" * 10)}
    response = await client.post("/v1/files", data=not_audio, headers=K1)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_audio"
    response = await client.post("/v1/files", data={"file": audio_path(SHORT).open("rb")}, headers=K1)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "purpose"
    assert (await client.get("/v1/files", headers=K1)).status == 200
    assert (await (await client.get("/v1/files", headers=K1)).json())["data"] == []


async def test_upload_limit_is_enforced_while_reading(aiohttp_client, settings, speech_model):
    from stream_server.app import create_app

    client = await aiohttp_client(create_app(replace(settings, max_upload_bytes=100_000), model=speech_model))
    response = await client.post(
        "/v1/files", data={"purpose": "p", "file": audio_path("en_jfk_16k.wav").open("rb")}, headers=K1
    )
    assert response.status == 413
    assert (await (await client.get("/v1/files", headers=K1)).json())["data"] == []


async def test_concurrent_uploads_of_the_same_filename(client):
    short, other = audio_path(SHORT).read_bytes(), audio_path("en_LDC93S1.wav").read_bytes()
    results = await asyncio.gather(
        upload(client, SHORT, filename="same.wav"), upload(client, "en_LDC93S1.wav", filename="same.wav")
    )
    ids = {r["id"] for r in results}
    assert len(ids) == 2
    listed = (await (await client.get("/v1/files", headers=K1)).json())["data"]
    assert {f["id"] for f in listed} == ids and {f["filename"] for f in listed} == {"same.wav"}
    contents = {await (await client.get(f"/v1/files/{i}/content", headers=K1)).read() for i in ids}
    assert contents == {short, other}


def test_client_abort_mid_upload_leaves_nothing(settings, speech_model, caplog):
    """A real server (as `serve` runs it): the client dies after part of the body."""
    body_start = (
        b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.wav\"\r\n"
        b"Content-Type: audio/wav\r\n\r\n" + audio_path(SHORT).read_bytes()[:50_000]
    )
    head = (
        "POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer k1\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 500000\r\n\r\n"
    ).encode()
    with serve_in_thread(settings, speech_model) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body_start)
            time.sleep(0.3)
        time.sleep(0.5)
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k1")
        assert list(sdk.files.list()) == []
        assert list((settings.storage_dir / "files").iterdir()) == []
    assert "unhandled error" not in caplog.text  # a client going away is not a server fault


async def test_ownership_is_by_key_hash(client, settings):
    stored = await upload(client)
    assert "k1" not in (settings.storage_dir / "catalog.sqlite3").read_bytes().decode("latin-1")
    retrieved = await (await client.get(f"/v1/files/{stored['id']}", headers=K1)).json()
    assert retrieved["id"] == stored["id"]
    usage = await (await client.get("/v1/usage", headers=K1)).json()
    assert usage["key_id"] == key_id("k1")


async def test_a_full_disk_is_a_507_and_leaves_no_partial_file(client, monkeypatch):
    """The blob's bytes are written, then the disk fills before they are durable: the answer is
    OpenAI-shaped, nothing is listed, and no temp file is left (a tmpfs stand-in: os.fsync)."""
    storage = client.app[STORAGE]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs.os, "fsync", full)
    data = {"purpose": "user_data", "file": audio_path(SHORT).open("rb")}
    response = await client.post("/v1/files", data=data, headers=K1)
    monkeypatch.undo()
    assert response.status == 507
    assert await response.json() == {
        "error": {
            "message": "the server's disk is full: the file was not stored",
            "type": "server_error",
            "param": None,
            "code": "insufficient_storage",
        }
    }
    assert await storage.list_files() == []
    assert os.listdir(storage.root / "files") == []
    assert (await upload(client))["status"] == "processed", "with room again, uploads work"


@pytest.mark.parametrize("file_id", ["..%2F..%2Fcatalog.sqlite3", "file-x' OR '1'='1", "file-" + "0" * 23, "FILE-" + "a" * 24])
async def test_a_file_id_not_of_the_exact_form_is_a_404_before_any_lookup(client, monkeypatch, file_id):
    storage = client.app[STORAGE]
    looked_up = []
    original = storage.get_file
    monkeypatch.setattr(storage, "get_file", lambda i: looked_up.append(i) or original(i))
    for method, path in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        response = await client.request(method, f"/v1/files/{file_id}{path}", headers=K1)
        assert response.status == 404 and (await response.json())["error"]["code"] == "file_not_found"
    response = await client.post("/v1/audio/transcriptions", data={"model": "whisper-1", "file_id": file_id}, headers=K1)
    assert response.status == 404
    assert looked_up == []
