"""Keys compared in constant time and never logged, CORS explicit and off by default, ids
checked before any lookup, security headers on the page."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestServer

from stream_server import principals
from stream_server.app import create_app
from stream_server.principals import KeyRing, key_id
from stream_server.transports.access_log import AccessLogger, redact
from stream_server.transports.appkeys import STORAGE

SECRET = "sk-very-secret-key-1234"
ORIGIN = "https://app.example.com"


def test_every_configured_key_is_compared_in_constant_time(monkeypatch):
    calls = []

    def counted(a, b):
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(principals.hmac, "compare_digest", counted)
    ring = KeyRing(["k1", "k2"], ["adm"])
    for presented, expected in [("k1", key_id("k1")), ("adm", key_id("adm")), ("nope", None)]:
        calls.clear()
        found = ring.identify(presented)
        assert (found.key_id if found else None) == expected
        assert len(calls) == 3, "every key is compared, the right one found or not"


def test_the_access_log_hides_a_key_in_the_query():
    assert redact("/v1/audio/stream?model=whisper-1&api_key=sk-1&x=2") == "/v1/audio/stream?model=whisper-1&api_key=***&x=2"
    assert redact("/v1/twilio/stream?API_KEY=sk-1") == "/v1/twilio/stream?API_KEY=***"
    assert redact("/v1/models") == "/v1/models"


async def test_no_key_reaches_any_log(aiohttp_client, settings, speech_model, caplog):
    caplog.set_level(logging.DEBUG)
    app = create_app(replace(settings, api_keys=(SECRET,)), model=speech_model)
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger)  # as `stream-server serve` runs it
    client = await aiohttp_client(server)
    bearer = {"Authorization": f"Bearer {SECRET}"}
    assert (await client.get("/v1/models", headers=bearer)).status == 200
    assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {SECRET}-wrong"})).status == 401
    feed = await client.get(f"/v1/audio/sessions/sess_{'0' * 32}/events?api_key={SECRET}")
    assert feed.status == 404
    ws = await client.ws_connect(f"/v1/audio/stream?api_key={SECRET}")
    await ws.close()
    with pytest.raises(WSServerHandshakeError):
        await client.ws_connect("/v1/audio/stream", protocols=(f"bearer.{SECRET}-wrong", "stream-server"))
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("api_key=***" in line for line in access)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_without_cors_origins_no_browser_origin_is_let_in(client):
    headers = {"Origin": ORIGIN}
    plain = await client.get("/v1/models", headers=headers)
    preflight = await client.options(
        "/v1/audio/transcriptions", headers=headers | {"Access-Control-Request-Method": "POST"}
    )
    for response in (plain, preflight):
        assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert preflight.status != 204


async def test_an_allowed_origin_gets_its_preflight_and_readable_answers(aiohttp_client, settings, speech_model):
    app = create_app(replace(settings, cors_origins=(ORIGIN,), api_keys=("k1",)), model=speech_model)
    client = await aiohttp_client(app)
    preflight = await client.options(
        "/v1/audio/transcriptions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    ok = await client.get("/v1/models", headers={"Origin": ORIGIN, "Authorization": "Bearer k1"})
    refused = await client.get("/v1/models", headers={"Origin": ORIGIN})  # errors are readable too
    assert (ok.status, refused.status) == (200, 401)
    for response in (ok, refused):
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN and response.headers["Vary"] == "Origin"
    other = await client.get("/v1/models", headers={"Origin": "https://evil.example", "Authorization": "Bearer k1"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_the_page_and_its_files_carry_security_headers(client):
    for path in ("/", "/web/app.js", "/web/style.css"):
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert f"ws://{client.server.host}:{client.server.port}" in policy
    forged = await client.get("/", headers={"Host": "evil.example; script-src *"})
    assert "script-src *" not in forged.headers["Content-Security-Policy"]


@pytest.mark.parametrize("session_id", ["sess_" + "0" * 31, "sess_../../etc", "sess_' OR 1=1 --", "SESS_" + "a" * 32])
async def test_a_session_id_not_of_the_exact_form_is_a_404_before_any_lookup(client, monkeypatch, session_id):
    looked_up = []
    storage = client.app[STORAGE]
    original = storage.get_session
    monkeypatch.setattr(storage, "get_session", lambda i: looked_up.append(i) or original(i))
    for path in (f"/v1/audio/sessions/{session_id}", f"/v1/audio/sessions/{session_id}/events"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"]["code"] in {"session_not_found", "not_found"}
    assert looked_up == []
