"""Live transcription over SSE: the streaming response of POST /v1/audio/transcriptions,
and the observer endpoints of a session (its transcript, its event feed with replay)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
from aiohttp import web

from stream_server.engine.sessions import LiveSession
from stream_server.engine.stream import LiveTranscriber, StreamOptions
from stream_server.errors import InvalidRequest, NotFound, ServiceError
from stream_server.events import SessionStarted, StreamFailed
from stream_server.transports.appkeys import SERVICE, SESSIONS, SETTINGS
from stream_server.transports.errors import service_error_body
from stream_server.transports.event_json import OPENAI_TYPES, event_json
from stream_server.transports.sse import EventStream
from stream_server.vad.segmenter import VadOptions

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SESSION_HEADER = "X-Session-Id"


def stream_options(request: web.Request) -> StreamOptions:
    settings = request.app[SETTINGS]
    return StreamOptions(step_s=settings.stream_step_s, vad=VadOptions(aggressiveness=settings.vad_aggressiveness))


async def respond_live(
    request: web.Request,
    pcm: AsyncIterator[np.ndarray],
    *,
    language: str | None,
    prompt: str | None,
    partials: bool,
    logprobs: bool = False,
) -> web.StreamResponse:
    """Transcribe `pcm` as it arrives and answer with SSE while it does."""
    service = request.app[SERVICE]
    model = service.model
    model.check_language(language)
    session = request.app[SESSIONS].create(model.name, language)
    transcriber = LiveTranscriber(
        service.window_decoder(model, language), session.publish, stream_options(request), prompt
    )
    feeding = asyncio.ensure_future(_feed(pcm, transcriber, session))
    try:
        async with EventStream(request, {SESSION_HEADER: session.id}) as sse:
            async for event in session.follow():
                body = event_json(event, model.count_tokens, logprobs=logprobs)
                if isinstance(event, SessionStarted) and not partials:
                    # Strict OpenAI clients know only deltas and done: an empty delta carries the id.
                    body = {"type": "transcript.text.delta", "delta": "", "session_id": session.id}
                elif not partials and body["type"] not in OPENAI_TYPES and not isinstance(event, StreamFailed):
                    continue
                await sse.send(body, event.seq)
            await sse.send("[DONE]")
            return sse.response
    except (ConnectionError, asyncio.CancelledError):
        session.fail("the client disconnected", "client_disconnected")
        raise
    finally:
        if not feeding.done():
            feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        await transcriber.cancel()


async def _feed(pcm: AsyncIterator[np.ndarray], transcriber: LiveTranscriber, session: LiveSession) -> None:
    try:
        async for chunk in pcm:
            transcriber.push(chunk)
        await transcriber.finish()
    except ServiceError as exc:
        await transcriber.cancel()
        session.publish(StreamFailed(message=exc.message, code=exc.code or "invalid_request", error_type=exc.error_type))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        await transcriber.cancel()
        session.fail(f"the upload broke off: {exc or type(exc).__name__}", "upload_incomplete")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("live stream %s failed", session.id)
        await transcriber.cancel()
        session.publish(StreamFailed(message="internal server error", code="internal_error", error_type="server_error"))


def _session(request: web.Request) -> LiveSession:
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None:
        raise NotFound(f"no session '{request.match_info['session_id']}'", param="session_id", code="session_not_found")
    return session


@routes.get("/v1/audio/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    session = _session(request)
    body = {
        "id": session.id,
        "object": "audio.session",
        "status": session.status,
        "model": session.model,
        "language": session.language,
        "created_at": int(session.created_at),
        "text": session.text,
        "utterances": [
            {"id": u.utterance_id, "text": u.text, "start": round(u.start, 3), "end": round(u.end, 3)}
            for u in session.utterances
        ],
    }
    if isinstance(session.outcome, StreamFailed):
        body["error"] = service_error_body(ServiceError(session.outcome.message, code=session.outcome.code))["error"]
    return web.json_response(body)


@routes.get("/v1/audio/sessions/{session_id}/events")
async def follow_session(request: web.Request) -> web.StreamResponse:
    """Every event of a session, partials included; `Last-Event-ID` resumes after that event."""
    session = _session(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "-1"
    try:
        after = int(last)
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an event id (an integer)", param="Last-Event-ID") from None
    count_tokens = request.app[SERVICE].model.count_tokens
    async with EventStream(request, {SESSION_HEADER: session.id}) as sse:
        async for event in session.follow(after):
            await sse.send(event_json(event, count_tokens, logprobs=True), event.seq)
        await sse.send("[DONE]")
    return sse.response
