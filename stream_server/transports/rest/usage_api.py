"""GET /v1/usage: transcription usage per key and UTC day (a key sees its own, an admin all)."""

from __future__ import annotations

from aiohttp import web

from stream_server.storage import UsageSummary
from stream_server.transports.appkeys import METER, STORAGE
from stream_server.transports.auth import principal_of

routes = web.RouteTableDef()


def usage_object(u: UsageSummary) -> dict:
    return {
        "object": "usage.day",
        "key_id": u.key_id,
        "date": u.day,
        "requests": u.requests,
        "audio_seconds": round(u.audio_seconds, 3),
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


@routes.get("/v1/usage")
async def usage(request: web.Request) -> web.Response:
    principal = principal_of(request)
    key_id = request.query.get("key_id") if principal.is_admin else principal.key_id
    report = await request.app[STORAGE].usage_report(key_id=key_id or None)
    remaining = await request.app[METER].remaining_seconds(principal)
    balance = None
    if principal.balance_seconds is not None and remaining is not None:
        balance = {"limit_seconds": principal.balance_seconds, "remaining_seconds": round(remaining, 3)}
    return web.json_response(
        {"object": "list", "key_id": principal.key_id, "balance": balance, "data": [usage_object(u) for u in report]}
    )
