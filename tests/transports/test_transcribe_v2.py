"""POST /api/v2/Audio/transcribe/file: validation, ownership, languages of errors, cost."""

import json
import uuid
from dataclasses import replace

import pytest

from stream_server.transports.rest.transcribe_v2 import prefers_text
from tests.conftest import audio_path
from tests.transports.test_files_api import K1, K2, SHORT, upload

PATH = "/api/v2/Audio/transcribe/file"


@pytest.fixture
def settings(settings):
    return replace(
        settings,
        api_keys=("k1", "k2"),
        admin_keys=("adm",),
        prompt_price_per_million=1000.0,
        completion_price_per_million=2000.0,
        currency="EUR",
    )


async def post(client, body, *, culture=None, headers=K1, content_type="application/json", accept=None):
    headers = {**headers, "Content-Type": content_type, **({"Accept": accept} if accept else {})}
    params = {"culture": culture} if culture else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.post(PATH, data=data, headers=headers, params=params)


async def test_transcribes_a_stored_file_with_tokens_and_cost(client):
    stored = await upload(client)
    response = await post(client, {"modelId": "whisper-1", "fileId": stored["id"], "user": "ana"})
    assert response.status == 200, await response.text()
    body = await response.json()
    uuid.UUID(body["instanceId"])
    assert "only platforms 1 and 3" in body["transcript"].lower()
    assert body["metadata"] == {"language": "en", "duration": "00:00:04.464"}
    usage = body["tokenUsage"]
    assert usage["promptTokens"] == 0 and usage["completionTokens"] > 5
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"]
    assert body["cost"] == {
        "completion": pytest.approx(usage["completionTokens"] * 0.002),
        "prompt": 0.0,
        "total": pytest.approx(usage["completionTokens"] * 0.002),
        "currency": "EUR",
    }


@pytest.mark.parametrize("content_type", ["text/json", "application/problem+json", "application/json; charset=utf-8"])
async def test_json_media_types_and_plain_text_answer(client, content_type):
    stored = await upload(client)
    body = {"modelId": "tiny.en", "fileId": stored["id"]}
    response = await post(client, body, content_type=content_type, accept="text/plain")
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    assert "only platforms 1 and 3" in (await response.text()).lower()


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"modelId": "m" * 257, "fileId": "file-x"}, "modelId", "field_too_long"),
        ({"modelId": "whisper-1", "fileId": "f" * 257}, "fileId", "field_too_long"),
        ({"modelId": "whisper-1", "fileId": "file-x", "user": "u" * 101}, "user", "field_too_long"),
        ({"fileId": "file-x"}, "modelId", "missing_field"),
        ({"modelId": "whisper-1", "fileId": 7}, "fileId", "invalid_type"),
        ("{not json", None, "invalid_json"),
        ("[1, 2]", None, "invalid_json"),
    ],
)
async def test_validation_errors_in_english_and_spanish(client, body, param, code):
    english = await post(client, body)
    assert english.status == 400
    error = (await english.json())["error"]
    assert (error["param"], error["code"]) == (param, code)
    spanish = (await (await post(client, body, culture="es")).json())["error"]
    assert spanish["code"] == code and spanish["message"] != error["message"]
    if code == "field_too_long":
        assert spanish["message"] == f"el campo '{param}' admite como máximo {256 if param != 'user' else 100} caracteres"


async def test_status_codes_and_spanish_messages(client):
    stored = await upload(client)
    ok = {"modelId": "whisper-1", "fileId": stored["id"]}

    response = await post(client, ok, headers={}, culture="es")
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "falta la clave de API o es incorrecta"
    response = await post(client, ok, headers={"Authorization": "Bearer nope"})
    assert response.status == 401

    response = await post(client, ok, headers=K2, culture="es")
    assert response.status == 403
    assert (await response.json())["error"]["message"] == "el archivo pertenece a otra clave de API"

    response = await post(client, {**ok, "fileId": "file-missing"}, culture="es-MX")
    assert response.status == 404
    assert (await response.json())["error"]["message"] == "no existe el archivo indicado"
    response = await post(client, {**ok, "modelId": "no-such-model"}, culture="es")
    assert response.status == 404
    assert (await response.json())["error"]["message"] == "el modelo indicado no se sirve aquí"
    response = await post(client, {**ok, "modelId": "no-such-model"}, culture="en")
    assert "is not served here" in (await response.json())["error"]["message"]

    response = await post(client, ok, content_type="text/plain")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_content_type"


async def test_unexpected_failure_is_a_bare_500(client, monkeypatch):
    stored = await upload(client)
    from stream_server.service import TranscriptionService

    async def boom(self, audio, options):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(TranscriptionService, "transcribe_audio", boom)
    response = await post(client, {"modelId": "whisper-1", "fileId": stored["id"]}, culture="es")
    assert response.status == 500
    text = await response.text()
    assert "secret detail" not in text and "Traceback" not in text
    assert json.loads(text)["error"]["message"] == "error interno del servidor"


async def test_transcribe_uploaded_audio_still_works_without_file_id(client):
    data = {"model": "whisper-1", "file": audio_path(SHORT).open("rb")}
    response = await client.post("/v1/audio/transcriptions", data=data, headers=K1)
    assert response.status == 200


@pytest.mark.parametrize(
    ("accept", "text"),
    [
        ("", False),
        ("*/*", False),  # a tie: JSON
        ("text/plain", True),
        ("application/json", False),
        ("application/json;q=0, */*", True),  # JSON refused outright: the wildcard does not bring it back
        ("application/json;q=0, text/*", True),
        ("text/plain;q=0.5, application/json;q=0.9", False),
        ("text/plain;q=0.9, application/json;q=0.5", True),
        ("text/*;q=0.8, */*;q=0.1", True),
        ("text/plain;q=0, */*", False),
    ],
)
def test_accept_gives_each_type_the_q_of_its_most_specific_range(accept, text):
    assert prefers_text(accept) is text
