"""The sessions resource: GET /v1/audio/sessions (the caller's live sessions, a dashboard
watching calls, then its finished transcripts; an admin's: everyone's), one session's
transcript, and its event feed with replay."""

from __future__ import annotations

from aiohttp import web

from stream_server.engine.sessions import LiveSession, is_session_id
from stream_server.errors import Forbidden, InvalidRequest, NotFound
from stream_server.principals import ANONYMOUS_ID
from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import SESSIONS, STORAGE
from stream_server.transports.auth import principal_of
from stream_server.transports.event_json import event_json
from stream_server.transports.live.live_run import session_error, session_service, stored_details
from stream_server.transports.live.sse import EventStream
from stream_server.transports.live.sse_api import SESSION_HEADER

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


@routes.get("/v1/audio/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.key_id
    live = [live_session_object(s) for s in request.app[SESSIONS].live() if principal.may_access(s.owner or ANONYMOUS_ID)]
    sessions = await request.app[STORAGE].list_sessions(owner=owner)
    finished = [session_object(s) for s in sessions]
    return web.json_response({"object": "list", "data": live + finished})


def _not_found(request: web.Request) -> NotFound:
    session_id = request.match_info["session_id"]
    return NotFound(f"no session '{session_id}'", param="session_id", code="session_not_found")


def _session_id(request: web.Request) -> str:
    """The id in the path, checked to be a session id's exact form (else 404) before any lookup."""
    session_id = request.match_info["session_id"]
    if not is_session_id(session_id):
        raise _not_found(request)
    return session_id


def _live_session(request: web.Request) -> LiveSession | None:
    """The session if this process still holds it; another key's session is a 403."""
    session = request.app[SESSIONS].get(_session_id(request))
    if session is not None and not principal_of(request).may_access(session.owner or ANONYMOUS_ID):
        raise Forbidden("this session belongs to another API key", param="session_id", code="forbidden")
    return session


@routes.get("/v1/audio/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    session = _live_session(request)
    if session is None:  # finished before a restart: the stored transcript
        record = await request.app[STORAGE].get_session(_session_id(request))
        if record is None:
            raise _not_found(request)
        if not principal_of(request).may_access(record.owner):
            raise Forbidden("this session belongs to another API key", param="session_id", code="forbidden")
        return web.json_response(session_object(record))
    return web.json_response(live_session_object(session))


@routes.get("/v1/audio/sessions/{session_id}/events")
async def follow_session(request: web.Request) -> web.StreamResponse:
    """Every event of a session, partials included; `Last-Event-ID` resumes after that event."""
    session = _live_session(request)
    if session is None:
        raise _not_found(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "-1"
    try:
        after = int(last)
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an event id (an integer)", param="Last-Event-ID") from None
    count_tokens = session_service(request.app, session).model.count_tokens
    async with EventStream(request, {SESSION_HEADER: session.id}) as sse:
        async for event in session.follow(after):
            await sse.send(event_json(event, count_tokens, logprobs=True, provider=session.provider), event.seq)
        await sse.send("[DONE]")
    return sse.response
