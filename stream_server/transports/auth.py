"""Bearer API keys on the API paths and /metrics; the page and /health stay open.

Every request gets its caller as `request[PRINCIPAL]`: the key's principal (key id = sha256 of
the key, admin flag, balance), or the one anonymous principal when no keys are configured.
"""

from __future__ import annotations

from aiohttp import web

from stream_server.errors import Unauthorized
from stream_server.principals import ANONYMOUS, Principal
from stream_server.transports.appkeys import KEYS, PRINCIPAL

PROTECTED_PREFIXES = ("/v1/", "/api/")


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


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
    principal = keys.identify(key) if key is not None else None
    if principal is not None:
        request[PRINCIPAL] = principal
    elif request.path.startswith(PROTECTED_PREFIXES) or request.path in PROTECTED_PATHS:
        if key is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        raise Unauthorized("incorrect API key provided")
    return await handler(request)
