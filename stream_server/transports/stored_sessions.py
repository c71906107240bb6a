"""Session objects, and GET /v1/audio/sessions: the caller's live sessions (a dashboard
watching calls), then its finished transcripts (an admin's: everyone's)."""

from __future__ import annotations

from aiohttp import web

from stream_server.engine.sessions import LiveSession
from stream_server.live_state import SharedSession
from stream_server.principals import ANONYMOUS_ID
from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import SESSIONS, STORAGE
from stream_server.transports.auth import principal_of
from stream_server.transports.live_run import session_error, stored_details

routes = web.RouteTableDef()


def session_object(s: SessionRecord) -> dict:
    """A stored (finished) session; a failed one carries its error."""
    return {
        "object": "audio.session",
        "id": s.id,
        "status": s.status,
        "model": s.model,
        "language": s.language,
        "text": s.transcript,
        "duration": round(s.duration, 3),
        "created_at": int(s.created_at),
        "ended_at": int(s.ended_at),
        "key_id": s.owner,
        **s.details,
    } | ({"error": s.error} if s.error else {})


def live_session_object(session: LiveSession) -> dict:
    """A session this process holds: live, or finished and not yet forgotten."""
    body = {
        "id": session.id,
        "object": "audio.session",
        "status": session.status,
        "model": session.model,
        "provider": session.provider,
        "language": session.language,
        "created_at": int(session.created_at),
        "text": session.text,
        "utterances": [
            {"id": u.utterance_id, "text": u.text, "start": round(u.start, 3), "end": round(u.end, 3)}
            for u in session.utterances
        ],
    }
    body |= stored_details(session)
    if error := session_error(session):
        body["error"] = error
    return body


def shared_session_object(s: SharedSession) -> dict:
    """A session live on another replica, as the replicas' registry has it."""
    return {
        "id": s.id,
        "object": "audio.session",
        "status": s.status,
        "model": s.model,
        "provider": s.provider,
        "language": s.language or None,
        "created_at": int(s.created_at),
        "text": s.text,
        "replica": s.replica,
    }


@routes.get("/v1/audio/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.key_id
    live = [live_session_object(s) for s in request.app[SESSIONS].live() if principal.may_access(s.owner or ANONYMOUS_ID)]
    sessions = await request.app[STORAGE].list_sessions(owner=owner)
    finished = [session_object(s) for s in sessions]
    return web.json_response({"object": "list", "data": live + finished})
