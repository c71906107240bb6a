"""The sessions resource: GET /v1/audio/sessions (the caller's live sessions, a dashboard
watching calls, then its finished transcripts; an admin's: everyone's), one session's
transcript, and its event feed with replay."""

from __future__ import annotations

from aiohttp import web

from stream_server.engine.sessions import LiveSession, is_session_id
from stream_server.errors import Forbidden, InvalidRequest, NotFound
from stream_server.events import EventsDropped
from stream_server.live_state import SharedSession
from stream_server.principals import ANONYMOUS_ID
from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import LIVE_STATE, SESSIONS, STORAGE
from stream_server.transports.auth import principal_of
from stream_server.transports.event_json import event_json
from stream_server.transports.live.live_run import session_error, session_service, stored_details
from stream_server.transports.live.sse import EventStream
from stream_server.transports.live.sse_api import SESSION_HEADER

routes = web.RouteTableDef()


def session_object(session: LiveSession | SessionRecord | SharedSession) -> dict:
    """A session in one shape, whether this process holds it, it is stored, or it is live on
    another replica. What one form does not know is null: `duration` and `ended_at` until it is
    stored, `provider` and `utterances` of a session stored before they were kept, `utterances`
    of another replica's (which names its `replica`). A transport adds its details (a call's
    ids), a multichannel session its `channels`, a failed one its `error`."""
    if isinstance(session, SharedSession):
        known = {"text": session.text, "duration": None, "ended_at": None, "key_id": session.owner or ANONYMOUS_ID}
        details, error = {"provider": session.provider, "replica": session.replica}, None
    elif isinstance(session, SessionRecord):
        known = {
            "text": session.transcript,
            "duration": round(session.duration, 3),
            "ended_at": int(session.ended_at),
            "key_id": session.owner,
        }
        details, error = session.details, session.error
    else:
        known = {"text": session.text, "duration": None, "ended_at": None, "key_id": session.owner or ANONYMOUS_ID}
        details, error = stored_details(session), session_error(session)
    body = {
        "object": "audio.session",
        "id": session.id,
        "status": session.status,
        "model": session.model,
        "provider": None,
        "language": session.language or None,
        "created_at": int(session.created_at),
        "utterances": None,
        **known,
    }
    return body | details | ({"error": error} if error else {})


@routes.get("/v1/audio/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    principal = principal_of(request)
    owner = None if principal.is_admin else principal.key_id
    live = [session_object(s) for s in request.app[SESSIONS].live() if principal.may_access(s.owner or ANONYMOUS_ID)]
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
    if session is not None:
        _check_owner(request, session.owner or ANONYMOUS_ID)
    return session


def _check_owner(request: web.Request, owner: str) -> None:
    if not principal_of(request).may_access(owner):
        raise Forbidden("this session belongs to another API key", param="session_id", code="forbidden")


async def _shared_session(request: web.Request) -> SharedSession | None:
    """With --redis-url, the session as the replicas' registry has it (live or recently ended
    on any replica); another key's is a 403."""
    if LIVE_STATE not in request.app:
        return None
    shared = await request.app[LIVE_STATE].session(_session_id(request))
    if shared is not None:
        _check_owner(request, shared.owner or ANONYMOUS_ID)
    return shared


@routes.get("/v1/audio/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    session = _live_session(request)
    if session is None or session.status != "live":  # finished (here or on any replica): the stored record, once written
        record = await request.app[STORAGE].get_session(_session_id(request))
        if record is not None:
            _check_owner(request, record.owner)
            return web.json_response(session_object(record))
    if session is None:
        session = await _shared_session(request)  # live on another replica
    if session is None:
        raise _not_found(request)
    return web.json_response(session_object(session))


@routes.get("/v1/audio/sessions/{session_id}/events")
async def follow_session(request: web.Request) -> web.StreamResponse:
    """Every event of a session, partials included; `Last-Event-ID` resumes after that event."""
    session = _live_session(request)
    shared = await _shared_session(request) if session is None else None
    if session is None and shared is None:
        raise _not_found(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "-1"
    try:
        after = int(last)
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an event id (an integer)", param="Last-Event-ID") from None
    async with EventStream(request, {SESSION_HEADER: _session_id(request)}) as sse:
        if session is not None:
            count_tokens = session_service(request.app, session).model.count_tokens
            async for event in session.follow(after):
                await sse.send(event_json(event, count_tokens, logprobs=True, provider=session.provider), event.seq)
        else:  # another replica's: its shared log
            async for item in request.app[LIVE_STATE].follow(_session_id(request), after):
                if isinstance(item, EventsDropped):
                    await sse.send(event_json(item, len), item.seq)
                else:
                    await sse.send(item[1], item[0])
        await sse.send("[DONE]")
    return sse.response
