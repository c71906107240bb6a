"""The OpenAPI document against the app: every route is in it, and the real answers of each
route, success and error, match it (schemathesis' checks; SSE and WebSocket events too)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import aiohttp
import pytest
import requests
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from stream_server.app import create_app
from stream_server.events import DecodingLag, Event, EventsDropped
from stream_server.settings import Settings
from stream_server.transports.event_json import event_json
from stream_server.transports.openapi import build_spec
from stream_server.transports.rest.static_page import web_dir
from tests.broken_audio import corpus
from tests.conftest import audio_path, serve_in_thread
from tests.contract import Contract, sse_events

JFK = "en_jfk_16k.wav"
IGNORED_METHODS = {"HEAD"}
"""aiohttp adds a HEAD to every GET; OpenAPI's GET covers it."""


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app registers."""
    routes = set()
    for route in app.router.routes():
        if route.method in IGNORED_METHODS:
            continue
        resource = route.resource
        if isinstance(resource, web.StaticResource):
            template = resource.canonical + "/{file}"
        else:
            template = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", resource.canonical)
        routes.add((route.method.lower(), template))
    return routes


def described_routes(spec: dict) -> set[tuple[str, str]]:
    return {(method, route) for route, item in spec["paths"].items() for method in item if not method.startswith("x-")}


def test_every_registered_route_is_described_and_nothing_else(tmp_path) -> None:
    """A route added without its piece in transports/openapi/ fails here, named."""
    app = create_app(Settings(data_dir=tmp_path))
    spec = build_spec(keys_enabled=False)
    registered, described = registered_routes(app), described_routes(spec)
    missing = sorted(registered - described)
    assert not missing, f"describe these routes in stream_server/transports/openapi/ (a piece's PATHS): {missing}"
    assert not described - registered, f"the document describes routes the app lacks: {sorted(described - registered)}"


@pytest.mark.parametrize("keys_enabled", [False, True])
def test_the_document_is_valid_openapi_3_1(keys_enabled: bool) -> None:
    spec = build_spec(keys_enabled=keys_enabled)
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert ("security" in spec) is keys_enabled


@pytest.mark.parametrize(
    "event", [DecodingLag(behind=True, lag_s=4.2, seq=7), EventsDropped(count=12, first=40, seq=51)], ids=type
)
def test_events_a_short_stream_rarely_sends_are_described(event: Event) -> None:
    """The load-dependent events (behind, dropped from a bounded log) against StreamEvent."""
    spec = build_spec(keys_enabled=False)
    root = {"$ref": "#/components/schemas/StreamEvent", "components": spec["components"]}
    Draft202012Validator(root).validate(event_json(event, lambda text: 0))


@pytest.fixture(scope="module")
def contract(live_server: str) -> Contract:
    return Contract(live_server)


def test_the_docs_page_lists_every_operation_and_loads_nothing(contract: Contract) -> None:
    page = contract.call("GET", "/docs")
    assert page.headers["Content-Type"].startswith("text/html")
    for method, route in described_routes(contract.spec):
        assert f"{method.upper()} {route}" in page.text
    assert "<script" not in page.text and "http" not in page.text.replace("href='/openapi.json'", "")
    served = contract.call("GET", "/openapi.json").json()
    assert served == json.loads(json.dumps(build_spec(keys_enabled=False)))


def jfk() -> bytes:
    return audio_path(JFK).read_bytes()


def form(**fields: str) -> dict:
    return {"files": {"file": (JFK, jfk(), "audio/wav")}, "data": fields}


def test_health_models_and_operators_routes(contract: Contract) -> None:
    assert contract.call("GET", "/health").json()["status"] == "ok"
    names = [m["id"] for m in contract.call("GET", "/v1/models").json()["data"]]
    assert "whisper-1" in names
    assert contract.call("GET", "/v1/models/{model}", {"model": "whisper-1"}).json()["id"] == "whisper-1"
    error = contract.call("GET", "/v1/models/{model}", {"model": "no-such-model"})
    assert (error.status_code, error.json()["error"]["code"]) == (404, "model_not_found")
    assert contract.call("GET", "/v1/providers").json()["data"][0]["type"] == "local"
    assert contract.call("GET", "/v1/usage").json()["object"] == "list"
    assert "stream_server_decode_slots" in contract.call("GET", "/metrics").text
    assert contract.call("GET", "/").headers["Content-Type"].startswith("text/html")
    page_file = sorted(p.name for p in web_dir().iterdir())[0]
    assert contract.call("GET", "/web/{file}", {"file": page_file}).status_code == 200
    assert contract.call("GET", "/web/{file}", {"file": "missing.js"}).status_code == 404
    refused = requests.patch(contract.base_url + "/v1/models", timeout=30)
    contract.check(refused, "/v1/models", method="GET")
    assert refused.status_code == 405 and "GET" in refused.headers["Allow"]


@pytest.mark.parametrize(
    ("fields", "content_type", "needle"),
    [
        ({}, "application/json", "country"),
        ({"response_format": "verbose_json", "timestamp_granularities[]": "word"}, "application/json", "country"),
        ({"include[]": "logprobs"}, "application/json", "logprob"),
        ({"response_format": "text"}, "text/plain", "country"),
        ({"response_format": "srt"}, "text/plain", "-->"),
        ({"response_format": "vtt"}, "text/vtt", "webvtt"),
    ],
)
def test_each_transcription_format_matches(contract: Contract, fields: dict, content_type: str, needle: str) -> None:
    answer = contract.call("POST", "/v1/audio/transcriptions", **form(model="whisper-1", **fields))
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith(content_type)
    assert needle in answer.text.lower()


def test_a_live_stream_its_session_and_its_feed_match(contract: Contract) -> None:
    answer = contract.call("POST", "/v1/audio/transcriptions", **form(model="whisper-1", stream="true", partials="true"))
    events = sse_events(answer.text)
    assert {"session.created", "transcript.utterance.done", "transcript.text.done"} <= {e["type"] for e in events}
    session_id = answer.headers["X-Session-Id"]
    ids = {"session_id": session_id}
    session = contract.call("GET", "/v1/audio/sessions/{session_id}", ids).json()
    assert "country" in session["text"].lower()
    assert session_id in [s["id"] for s in contract.call("GET", "/v1/audio/sessions").json()["data"]]
    feed = contract.call("GET", "/v1/audio/sessions/{session_id}/events", ids, headers={"Last-Event-ID": "2"})
    assert sse_events(feed.text)[0]["seq"] == 3
    bad = contract.call("GET", "/v1/audio/sessions/{session_id}/events", ids, headers={"Last-Event-ID": "x"})
    assert bad.json()["error"]["param"] == "Last-Event-ID"
    for route in ("/v1/audio/sessions/{session_id}", "/v1/audio/sessions/{session_id}/events"):
        missing = contract.call("GET", route, {"session_id": "sess_missing"})
        assert missing.json()["error"]["code"] == "session_not_found"


def test_a_raw_body_whole_and_live_matches(contract: Contract) -> None:
    headers = {"Content-Type": "audio/wav"}
    whole = contract.call("PUT", "/v1/audio/transcriptions", data=jfk(), headers=headers)
    assert "country" in whole.json()["text"].lower()
    live = contract.call("POST", "/v1/audio/transcriptions", params={"stream": "true"}, data=jfk(), headers=headers)
    assert "country" in sse_events(live.text)[-1]["text"].lower()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (form(), 400, "missing_field"),
        (form(model="nope"), 404, "model_not_found"),
        (form(model="whisper-1", response_format="yaml"), 400, "invalid_response_format"),
        (form(model="whisper-1", stream="true", response_format="srt"), 400, None),
        ({"data": b"not audio", "headers": {"Content-Type": "text/plain"}}, 400, "invalid_content_type"),
        ({"files": {"file": ("x.zip", corpus()["archive.zip"])}, "data": {"model": "whisper-1"}}, 400, "invalid_audio"),
        ({"data": {"model": "whisper-1", "file_id": "file-missing"}}, 404, "file_not_found"),
    ],
)
def test_transcription_errors_match(contract: Contract, kwargs: dict, status: int, code: str | None) -> None:
    answer = contract.call("POST", "/v1/audio/transcriptions", **kwargs)
    assert answer.status_code == status and answer.json()["error"]["code"] == code


def test_the_files_api_and_v2_on_a_stored_file_match(contract: Contract) -> None:
    stored = contract.call("POST", "/v1/files", files={"file": (JFK, jfk())}, data={"purpose": "transcription"}).json()
    ids = {"file_id": stored["id"]}
    assert stored["id"] in [f["id"] for f in contract.call("GET", "/v1/files", params={"limit": "5"}).json()["data"]]
    assert contract.call("GET", "/v1/files/{file_id}", ids).json()["bytes"] == len(jfk())
    assert contract.call("GET", "/v1/files/{file_id}/content", ids).content == jfk()
    by_id = contract.call("POST", "/v1/audio/transcriptions", data={"model": "whisper-1", "file_id": stored["id"]})
    assert "country" in by_id.json()["text"].lower()
    missing = contract.call("POST", "/api/v2/Audio/transcribe/file", json={"modelId": "whisper-1", "fileId": "file-missing"})
    assert missing.json()["error"]["code"] == "file_not_found"
    v2 = contract.call("POST", "/api/v2/Audio/transcribe/file", json={"modelId": "whisper-1", "fileId": stored["id"]})
    assert "country" in v2.json()["transcript"].lower()
    text = contract.call(
        "POST", "/api/v2/Audio/transcribe/file", json={"modelId": "whisper-1", "fileId": stored["id"]}, headers={"Accept": "text/plain"}
    )
    assert text.headers["Content-Type"].startswith("text/plain") and "country" in text.text.lower()
    assert contract.call("DELETE", "/v1/files/{file_id}", ids).json()["deleted"] is True
    for method, route in (("GET", "/v1/files/{file_id}"), ("GET", "/v1/files/{file_id}/content"), ("DELETE", "/v1/files/{file_id}")):
        assert contract.call(method, route, ids).json()["error"]["code"] == "file_not_found"


@pytest.mark.parametrize(
    ("method", "route", "kwargs", "param"),
    [
        ("POST", "/v1/files", {"files": {"file": (JFK, b"")}, "data": {"purpose": "x"}}, "file"),
        ("POST", "/v1/files", {"files": {"file": (JFK, b"RIFF")}}, "purpose"),
        ("GET", "/v1/files", {"params": {"limit": "0"}}, "limit"),
        ("GET", "/v1/files", {"params": {"order": "up"}}, "order"),
        ("POST", "/api/v2/Audio/transcribe/file", {"data": b"{", "headers": {"Content-Type": "application/json"}}, None),
        ("POST", "/api/v2/Audio/transcribe/file", {"json": {"modelId": "whisper-1"}}, "fileId"),
        ("POST", "/api/v2/Audio/transcribe/file", {"json": {"modelId": "whisper-1", "fileId": "x" * 257}}, "fileId"),
        ("GET", "/v1/audio/stream", {}, None),
        ("GET", "/v1/audio/stream", {"params": {"encoding": "mp3"}}, "encoding"),
        ("GET", "/v1/twilio/stream", {}, None),
    ],
)
def test_400s_match(contract: Contract, method: str, route: str, kwargs: dict, param: str | None) -> None:
    answer = contract.call(method, route, **kwargs)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


async def test_websocket_messages_match(contract: Contract) -> None:
    pcm = corpus()["truncated_half.wav"][44:]
    validator = contract.validator("SocketMessage")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(contract.base_url + "/v1/audio/stream?encoding=pcm_s16le") as ws:
            await ws.send_bytes(pcm)
            await ws.send_str('{"type": "nonsense"}')
            await ws.send_str('{"type": "close"}')
            messages = [json.loads(m.data) async for m in ws]
    assert [m["type"] for m in messages][:1] == ["session.created"] and messages[-1]["type"] == "transcript.text.done"
    assert any(m["type"] == "error" and m["error"]["code"] == "unknown_control" for m in messages)
    for message in messages:
        validator.validate(message)


def test_a_keyed_server_states_its_security_and_its_401s_and_403s_match(settings, speech_model) -> None:
    with serve_in_thread(replace(settings, api_keys=("sk-a", "sk-b")), speech_model) as url:
        contract = Contract(url)
        assert contract.spec["security"] == [{"bearer": []}]
        for route in ("/v1/models", "/v1/usage", "/v1/providers", "/v1/audio/sessions", "/metrics"):
            refused = contract.call("GET", route)
            assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
        wrong = contract.call("GET", "/v1/files", headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        assert contract.call("GET", "/health").status_code == 200
        a, b = ({"Authorization": f"Bearer {key}"} for key in ("sk-a", "sk-b"))
        stored = contract.call("POST", "/v1/files", files={"file": (JFK, jfk())}, data={"purpose": "x"}, headers=a).json()
        ids = {"file_id": stored["id"]}
        for method, route in (("GET", "/v1/files/{file_id}"), ("GET", "/v1/files/{file_id}/content"), ("DELETE", "/v1/files/{file_id}")):
            assert contract.call(method, route, ids, headers=b).status_code == 403
        v2 = {"modelId": "whisper-1", "fileId": stored["id"]}
        assert contract.call("POST", "/api/v2/Audio/transcribe/file", json=v2, headers=b).status_code == 403
