"""GET /v1/audio/sessions: finished live-session transcripts, the caller's own (an admin's: all)."""

from __future__ import annotations

from aiohttp import web

from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import STORAGE
from stream_server.transports.auth import principal_of

routes = web.RouteTableDef()


def session_object(s: SessionRecord) -> dict:
    return {
        "object": "audio.session",
        "id": s.id,
        "model": s.model,
        "language": s.language,
        "text": s.transcript,
        "duration": round(s.duration, 3),
        "created_at": int(s.created_at),
        "ended_at": int(s.ended_at),
        "key_id": s.owner,
        **s.details,
    }


@routes.get("/v1/audio/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.key_id
    sessions = await request.app[STORAGE].list_sessions(owner=owner)
    return web.json_response({"object": "list", "data": [session_object(s) for s in sessions]})
