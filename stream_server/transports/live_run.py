"""One live stream from start to end, whatever carries it (SSE, WebSocket): the session, its
transcriber fed from a PCM iterator, the caller's balance, and what is kept afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from stream_server.audio import SAMPLE_RATE
from stream_server.engine.admission import Ticket
from stream_server.engine.channels import MultiChannelTranscriber
from stream_server.engine.sessions import LiveSession
from stream_server.engine.stream import LiveTranscriber, StreamOptions
from stream_server.errors import InsufficientBalance, ServiceError
from stream_server.events import Event, StreamFailed
from stream_server.principals import ANONYMOUS_ID, Principal
from stream_server.routing.backends import LocalBackend
from stream_server.routing.router import RouteRequest
from stream_server.service import TranscriptionService
from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import (
    ADMISSION,
    LATENCY,
    LOCAL_SERVICES,
    METER,
    ROUTER,
    SERVICE,
    SESSIONS,
    SETTINGS,
    STORAGE,
)
from stream_server.transports.channel_params import ChannelRequest
from stream_server.vad.segmenter import VadOptions

log = logging.getLogger(__name__)


@dataclass
class LiveRun:
    session: LiveSession
    transcriber: LiveTranscriber | MultiChannelTranscriber
    principal: Principal
    ticket: Ticket
    """Its place under admission control; given back by end_live_run."""
    service: TranscriptionService
    """The local backend's service the stream decodes on, chosen at its start."""
    feeding: asyncio.Task | None = None

    @property
    def billed_seconds(self) -> float:
        """Audio transcribed: every channel of a multichannel stream counts."""
        transcriber = self.transcriber
        if isinstance(transcriber, MultiChannelTranscriber):
            return transcriber.channel_seconds
        return transcriber.received_seconds


def stream_options(app: web.Application, partial_decodes: bool = True, vad: VadOptions | None = None) -> StreamOptions:
    """The live streams' options from the settings; `vad` (a transport's own turn detection,
    built on `server_vad(app)`) replaces the server's VAD options."""
    settings = app[SETTINGS]
    return StreamOptions(
        step_s=settings.stream_step_s,
        partial_decodes=partial_decodes,
        uncertain_margin_s=settings.unsure_word_wait_s,
        vad=vad or server_vad(app),
    )


def server_vad(app: web.Application) -> VadOptions:
    """The VAD options the settings give every live stream."""
    settings = app[SETTINGS]
    return VadOptions(engine=settings.vad, aggressiveness=settings.vad_aggressiveness)


async def start_live_run(
    app: web.Application,
    principal: Principal,
    pcm: AsyncIterator[np.ndarray],
    *,
    language: str | None,
    prompt: str | None,
    route: RouteRequest = RouteRequest(),
    channels: ChannelRequest = ChannelRequest(),
    channel_count: int = 0,
    details: dict[str, str] | None = None,
    partial_decodes: bool = True,
    vad: VadOptions | None = None,
    session_id: str | None = None,
) -> LiveRun:
    """Choose a local backend, check the caller may stream, admit it (or raise StreamRefused:
    HTTP 429, WebSocket 1013), open a session, and start feeding it in the background. Every run
    that this returns must end in end_live_run, which gives its admission back.

    `partial_decodes` off: a client that asked for no partials gets each utterance decoded once.
    `vad` replaces the server's VAD options (see stream_options); `session_id` names the session
    (a transport that told its client the id before the stream began), else one is made.

    With `channels.multichannel`, `pcm` yields (channels, samples) arrays and each channel gets
    its own transcriber (`channel_count` of them made up front, if known). A call is admitted as
    one stream: its measured cost is the decode time of all its channels per second of the call,
    and since people take turns that is about one continuous stream's."""
    backend = live_backend(app, route)
    service = backend.service
    model = service.model
    model.check_language(language)
    meter = app[METER]
    await meter.check_balance(principal)
    allowance = await meter.remaining_seconds(principal)
    ticket = app[ADMISSION].admit(None if principal.key_id == ANONYMOUS_ID else principal.key_id)
    try:
        labels = channels.labels if channels.multichannel else None
        session = app[SESSIONS].create(
            model.name,
            language,
            owner=principal.key_id,
            provider=backend.name,
            channel_labels=labels,
            details=details,
            session_id=session_id,
        )
        decode = service.window_decoder(model, language)

        def transcriber_for(publish: Callable[[Event], None]) -> LiveTranscriber:
            return LiveTranscriber(
                decode,
                publish,
                stream_options(app, partial_decodes, vad),
                prompt,
                observer=app[LATENCY],
                slot_free=lambda: service.scheduler.busy < service.scheduler.slots,
            )

        transcriber: LiveTranscriber | MultiChannelTranscriber = transcriber_for(session.publish)
        if labels is not None:
            transcriber = MultiChannelTranscriber(transcriber_for, session.publish, labels, channel_count)
    except BaseException:
        ticket.release()
        raise
    run = LiveRun(session, transcriber, principal, ticket, service)
    run.feeding = asyncio.ensure_future(_feed(pcm, run, allowance))
    return run


def live_backend(app: web.Application, route: RouteRequest) -> LocalBackend:
    """The best eligible local backend whose model is in (the first one, raising NotReady, if
    none is). Remote backends take no live streams: the router refuses a route left with only those."""
    backends = [b for b in app[ROUTER].choose(route, live=True) if isinstance(b, LocalBackend)]
    return next((b for b in backends if b.service.ready), backends[0])


def session_service(app: web.Application, session: LiveSession) -> TranscriptionService:
    """The service a session decodes on (its tokenizer counts its tokens)."""
    return app[LOCAL_SERVICES].get(session.provider) or app[SERVICE]


async def _feed(pcm: AsyncIterator[np.ndarray], run: LiveRun, allowance: float | None) -> None:
    transcriber, session = run.transcriber, run.session
    try:
        async for chunk in pcm:
            transcriber.push(chunk)
            run.ticket.heard(chunk.shape[-1] / SAMPLE_RATE)
            if allowance is not None and run.billed_seconds > allowance:
                raise InsufficientBalance("insufficient balance: the key's audio seconds ran out during the stream")
        await transcriber.finish()
    except ServiceError as exc:
        await transcriber.cancel()
        session.publish(StreamFailed(message=exc.message, code=exc.code or "invalid_request", error_type=exc.error_type))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        await transcriber.cancel()
        session.fail(f"the upload broke off: {exc or type(exc).__name__}", "upload_incomplete")
    except asyncio.CancelledError:
        await transcriber.cancel()
        raise
    except Exception:
        log.exception("live stream %s failed", session.id)
        await transcriber.cancel()
        session.publish(StreamFailed(message="internal server error", code="internal_error", error_type="server_error"))


async def end_live_run(app: web.Application, run: LiveRun, reason: str = "the client disconnected") -> None:
    """Stop feeding (if it still runs), end the session, give back its admission, record usage
    and keep the transcript. Safe to call more than once."""
    try:
        if run.feeding is not None and not run.feeding.done():
            run.feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.feeding
        await run.transcriber.cancel()
    finally:
        run.ticket.release()
    session = run.session
    if session.outcome is None:
        session.fail(reason, "client_disconnected")
    await asyncio.shield(_keep(app, run))


def stored_details(session: LiveSession) -> dict:
    """What a stored session keeps beyond its transcript: the transport's details (a call's
    ids) and, for a multichannel one, each channel's text."""
    channel_list = [c.fields() for c in session.channel_texts()] if session.multichannel else None
    return dict(session.details) | ({"channels": channel_list} if channel_list is not None else {})


async def _keep(app: web.Application, run: LiveRun) -> None:
    session, transcriber = run.session, run.transcriber
    try:
        await app[METER].record(
            run.principal,
            model=session.model,
            kind="stream",
            audio_seconds=run.billed_seconds,
            prompt_tokens=transcriber.prompt_tokens,
            completion_tokens=run.service.model.count_tokens(session.text),
        )
        await app[STORAGE].save_session(
            SessionRecord(
                id=session.id,
                owner=session.owner or run.principal.key_id,
                model=session.model,
                language=session.language or "",
                transcript=session.text,
                duration=transcriber.received_seconds,
                created_at=session.created_at,
                ended_at=time.time(),
                details=stored_details(session),
            )
        )
    except Exception:
        log.exception("could not keep session %s", session.id)
