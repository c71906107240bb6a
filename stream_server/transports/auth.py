"""Bearer API keys on the API paths and /metrics; the page and /health stay open.

Every request gets its caller as `request[PRINCIPAL]`: the key's principal (key id = sha256 of
the key, admin flag, balance), or the one anonymous principal when no keys are configured.

Browsers cannot set headers on a WebSocket or an EventSource, so on those GETs the key may also
come as a `bearer.<key>` WebSocket subprotocol (or `openai-insecure-api-key.<key>`, what OpenAI's
Realtime clients send) or an `api_key` query parameter.
"""

from __future__ import annotations

from aiohttp import web

from stream_server.errors import Unauthorized
from stream_server.principals import ANONYMOUS, Principal
from stream_server.transports.appkeys import KEYS, PRINCIPAL
from stream_server.transports.limits import check_auth_allowed, note_failed_auth

STREAM_PATH = "/v1/audio/stream"
"""The live-audio WebSocket (transports/live/websocket_api.py)."""
TWILIO_PATH = "/v1/twilio/stream"
"""Twilio Media Streams (transports/compat/twilio_api.py): its key may also come inside the stream's
`start` message, so the endpoint checks it itself."""
DEEPGRAM_PATH = "/v1/listen"
"""Deepgram's live WebSocket and pre-recorded POST (transports/compat/deepgram_api.py): its keys come
as `Token <key>` or a `token` subprotocol, and its errors have Deepgram's shape, so the
endpoint checks the key itself."""
REALTIME_PATH = "/v1/realtime"
"""OpenAI Realtime transcription sessions (transports/compat/realtime_api.py): it answers a missing or
wrong key in the protocol's own way, an `error` event after the upgrade, so it checks keys itself."""
KEY_CHECKED_BY_ENDPOINT = (TWILIO_PATH, DEEPGRAM_PATH, REALTIME_PATH)
SESSIONS_PATH = "/v1/audio/sessions/"
"""Under it, `{id}/events` is a session's SSE feed, which browsers open with EventSource."""

PROTECTED_PREFIXES = ("/v1/", "/api/")
SUBPROTOCOL_KEY_PREFIXES = ("bearer.", "openai-insecure-api-key.")
"""A WebSocket client may offer `bearer.<key>` (or OpenAI's `openai-insecure-api-key.<key>`)
among its subprotocols; it is never echoed."""
QUERY_KEY_PARAM = "api_key"


def presented_key(request: web.Request) -> str | None:
    """The key the request presents: the Authorization header, else (browser-made GETs only)
    a `bearer.` subprotocol token or the `api_key` query parameter."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.method != "GET" or not _browser_stream(request):
        return None
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        for prefix in SUBPROTOCOL_KEY_PREFIXES:
            if protocol.startswith(prefix) and len(protocol) > len(prefix):
                return protocol[len(prefix) :]
    return request.query.get(QUERY_KEY_PARAM) or None


def _browser_stream(request: web.Request) -> bool:
    """A WebSocket upgrade or an event feed: what a browser opens without custom headers.
    Elsewhere a key in the URL would only end up in logs and histories."""
    is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    is_feed = request.path.startswith(SESSIONS_PATH) and request.path.endswith("/events")
    return is_upgrade or is_feed or request.path == STREAM_PATH


def principal_of(request: web.Request) -> Principal:
    """The caller; anonymous on open paths when no key was presented."""
    return request.get(PRINCIPAL, ANONYMOUS)


PROTECTED_PATHS = ("/metrics",)
"""Paths outside the prefixes that also need a key when keys are configured."""


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    keys = request.app[KEYS]
    if not keys.enabled:
        request[PRINCIPAL] = ANONYMOUS
        return await handler(request)
    key = presented_key(request)
    protected = _protected(request.path) and request.path not in KEY_CHECKED_BY_ENDPOINT
    if protected:
        check_auth_allowed(request)  # an address that failed too often is refused before any check
    principal = keys.identify(key) if key is not None else None
    if principal is not None:
        request[PRINCIPAL] = principal
    elif protected:
        if key is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        note_failed_auth(request)  # a wrong key is a guess; a missing one is not counted
        raise Unauthorized("incorrect API key provided")
    return await handler(request)


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path in PROTECTED_PATHS
