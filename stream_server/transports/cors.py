"""CORS, explicit and off by default: only the origins given with `--cors-origin` are let in.

With none, no Access-Control-* header is ever sent and browsers keep other sites' pages away
from the API (the captions page is same-origin and needs none). An allowed origin gets its
answers readable and its preflights answered; any other origin gets nothing extra.
"""

from __future__ import annotations

from aiohttp import web

from stream_server.transports.appkeys import SETTINGS

ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSED_HEADERS = "X-Session-Id, X-Provider, Retry-After"
PREFLIGHT_MAX_AGE_S = 600


@web.middleware
async def cors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Answer an allowed origin's preflight (before auth: preflights carry no key)."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers and _allowed(request):
        return web.Response(status=204, headers=_preflight())
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer to an allowed origin, streamed or an error, is readable by it."""
    if _allowed(request):
        response.headers.update(
            {"Access-Control-Allow-Origin": request.headers["Origin"], "Vary": "Origin", "Access-Control-Expose-Headers": EXPOSED_HEADERS}
        )


def _allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is not None and origin in request.app[SETTINGS].cors_origins


def _preflight() -> dict[str, str]:
    return {
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
    }
