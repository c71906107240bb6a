"""Bearer API keys on the API paths; the page and /health stay open."""

from __future__ import annotations

import hmac

from aiohttp import web

from stream_server.errors import Unauthorized
from stream_server.transports.appkeys import SETTINGS

PROTECTED_PREFIXES = ("/v1/", "/api/")


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_is_valid(key: str | None, keys: tuple[str, ...]) -> bool:
    return key is not None and any(hmac.compare_digest(key, k) for k in keys)


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    keys = request.app[SETTINGS].api_keys
    if keys and request.path.startswith(PROTECTED_PREFIXES):
        key = presented_key(request)
        if key is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        if not key_is_valid(key, keys):
            raise Unauthorized("incorrect API key provided")
    return await handler(request)
