"""Live transcription over SSE: the streaming response of POST /v1/audio/transcriptions,
and the observer endpoints of a session (its transcript, its event feed with replay)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
from aiohttp import web

from stream_server.engine.sessions import LiveSession, is_session_id
from stream_server.errors import Forbidden, InvalidRequest, NotFound
from stream_server.events import EventsDropped, SessionStarted, StreamFailed, TextCommitted
from stream_server.live_state import SharedSession
from stream_server.principals import ANONYMOUS_ID
from stream_server.routing.router import RouteRequest
from stream_server.transports.appkeys import LIVE_STATE, SESSIONS, STORAGE
from stream_server.transports.auth import principal_of
from stream_server.transports.channel_params import ChannelRequest
from stream_server.transports.event_json import OPENAI_TYPES, event_json
from stream_server.transports.live_run import end_live_run, session_service, start_live_run
from stream_server.transports.sse import EventStream
from stream_server.transports.stored_sessions import live_session_object, session_object, shared_session_object

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SESSION_HEADER = "X-Session-Id"


async def respond_live(
    request: web.Request,
    pcm: AsyncGenerator[np.ndarray, None],
    *,
    language: str | None,
    prompt: str | None,
    partials: bool,
    logprobs: bool = False,
    route: RouteRequest = RouteRequest(),
    channels: ChannelRequest = ChannelRequest(),
    channel_count: int = 0,
    partial_decodes: bool = True,
    whole: bool = False,
) -> web.StreamResponse:
    """Transcribe `pcm` as it arrives and answer with SSE while it does (`whole`: it is a whole
    file, decoded as one)."""
    audio = await opened(pcm)
    try:
        run = await start_live_run(
            request.app,
            principal_of(request),
            audio,
            language=language,
            prompt=prompt,
            route=route,
            channels=channels,
            channel_count=channel_count,
            partial_decodes=partial_decodes,
            whole=whole,
        )
    except BaseException:  # refused (429, balance): stop the decoding that opening it started
        await pcm.aclose()
        raise
    session = run.session
    count_tokens = run.service.model.count_tokens
    label = _DeltaLabels(session)
    try:
        async with EventStream(request, {SESSION_HEADER: session.id}) as sse:
            async for event in session.follow():
                body = event_json(event, count_tokens, logprobs=logprobs, provider=session.provider)
                if isinstance(event, SessionStarted) and not partials:
                    # Strict OpenAI clients know only deltas and done: an empty delta carries the id.
                    body = {"type": "transcript.text.delta", "delta": "", "session_id": session.id}
                elif not partials and body["type"] not in OPENAI_TYPES and not isinstance(event, StreamFailed):
                    continue
                elif not partials and isinstance(event, TextCommitted) and event.channel is not None:
                    body["delta"] = label(event)
                await sse.send(body)  # no `id:`: this stream cannot be resumed (`seq` is in the body)
            await sse.send("[DONE]")
            return sse.response
    finally:
        await end_live_run(request.app, run)


async def opened(pcm: AsyncGenerator[np.ndarray, None]) -> AsyncIterator[np.ndarray]:
    """`pcm` once its first piece is in: audio that cannot be opened at all (not audio, no audio
    track, empty) fails here, as a 400 before any event, like the same upload without stream=true."""
    first = await anext(pcm, None)

    async def chained() -> AsyncIterator[np.ndarray]:
        if first is not None:
            yield first
        async for piece in pcm:
            yield piece

    return chained()


class _DeltaLabels:
    """A strict client reads only the deltas' text: in a multichannel stream, a delta from
    another channel than the one before starts a new line with that channel's label."""

    def __init__(self, session: LiveSession):
        self._session = session
        self._last: int | None = None

    def __call__(self, event: TextCommitted) -> str:
        if event.channel == self._last:
            return event.delta
        new_line = "" if self._last is None else "\n"
        self._last = event.channel
        return f"{new_line}[{self._session.channel(event.channel).name}] {event.delta.lstrip()}"


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
    if session is not None:
        return web.json_response(live_session_object(session))
    record = await request.app[STORAGE].get_session(_session_id(request))  # finished (here, or on any replica)
    if record is not None:
        _check_owner(request, record.owner)
        return web.json_response(session_object(record))
    shared = await _shared_session(request)  # live on another replica
    if shared is None:
        raise _not_found(request)
    return web.json_response(shared_session_object(shared))


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
