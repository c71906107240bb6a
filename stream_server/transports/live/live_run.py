"""One live stream from start to end, whatever carries it (SSE, WebSocket): the session, its
transcriber fed from a PCM iterator, the caller's balance, and what is kept afterwards.

On shutdown (SIGTERM) every run stops taking audio, decodes what it was given (for at most
`--shutdown-drain` seconds), and then its session ends with `server_shutdown`: clients hear the text of
all the audio they sent, and it is stored, whatever transport carries them."""

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
from stream_server.engine.adaptive import AdaptiveTranscriber
from stream_server.engine.admission import Ticket
from stream_server.engine.channels import MultiChannelTranscriber
from stream_server.engine.sessions import LiveSession, new_session_id
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
    LIVE_STATE,
    LOCAL_SERVICES,
    METER,
    ROUTER,
    SERVICE,
    SESSIONS,
    SETTINGS,
    STORAGE,
)
from stream_server.transports.channel_params import ChannelRequest
from stream_server.transports.event_json import event_json
from stream_server.usage import StreamAllowance
from stream_server.vad.segmenter import VadOptions

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LiveRun:
    session: LiveSession
    transcriber: AdaptiveTranscriber | MultiChannelTranscriber
    principal: Principal
    ticket: Ticket
    """Its place under admission control; given back by end_live_run."""
    service: TranscriptionService
    """The local backend's service the stream decodes on, chosen at its start."""
    allowance: StreamAllowance
    """The key's balance the stream holds as it goes; released once its usage is recorded."""
    feeding: asyncio.Task | None = None
    stopping: bool = False
    """Set on shutdown: the feed stops, and what was received is still decoded."""

    @property
    def billed_seconds(self) -> float:
        """Audio transcribed: every channel of a multichannel stream counts."""
        transcriber = self.transcriber
        if isinstance(transcriber, MultiChannelTranscriber):
            return transcriber.channel_seconds
        return transcriber.received_seconds


LIVE_RUNS = web.AppKey("live_runs", set[LiveRun])
"""The runs not yet ended (stopped and drained on shutdown)."""


def stream_options(app: web.Application, partial_decodes: bool = True, vad: VadOptions | None = None) -> StreamOptions:
    """The live streams' options from the settings; `vad` (a transport's own turn detection,
    built on `server_vad(app)`) replaces the server's VAD options."""
    settings = app[SETTINGS]
    return StreamOptions(
        step_s=settings.stream_step_s,
        partial_decodes=partial_decodes,
        uncertain_margin_s=settings.unsure_word_wait_s,
        lag_alarm_s=settings.lag_alarm_s or None,
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
    whole: bool = False,
    paced: bool = False,
    vad: VadOptions | None = None,
    session_id: str | None = None,
) -> LiveRun:
    """Choose a local backend, check the caller may stream, admit it (or raise StreamRefused:
    HTTP 429, WebSocket 1013), open a session, and start feeding it in the background. Every run
    that this returns must end in end_live_run, which gives its admission back.

    `partial_decodes` off: a client that asked for no partials gets each utterance decoded once.
    `whole`: the audio is a whole file, decoded as one from the start (engine/adaptive.py);
    `paced`: a queue paces `pcm` and reports the audio's arrivals to the transcriber itself.
    `vad` replaces the server's VAD options (see stream_options); `session_id` names the session
    (a transport that told its client the id before the stream began), else one is made.

    With `channels.multichannel`, `pcm` yields (channels, samples) arrays and each channel gets
    its own live transcriber (`channel_count` of them made up front, if known), whatever the
    audio's rate: a call is decoded live. A call is admitted as one stream: its measured cost is
    the decode time of all its channels per second of the call, and since people take turns that
    is about one continuous stream's."""
    backend = live_backend(app, route)
    service = backend.service
    model = service.model
    model.check_language(language)
    meter = app[METER]
    await meter.check_balance(principal)
    allowance = meter.stream_allowance(principal)
    ticket = app[ADMISSION].admit(None if principal.key_id == ANONYMOUS_ID else principal.key_id)
    session_id = session_id or new_session_id()
    try:
        await _claim_shared_place(app, principal, session_id)
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
        if LIVE_STATE in app:
            app[LIVE_STATE].publish(session, lambda e: event_json(e, model.count_tokens, logprobs=True, provider=backend.name))
        options = stream_options(app, partial_decodes, vad)

        def slot_free() -> bool:
            return service.scheduler.busy < service.scheduler.slots

        transcriber: AdaptiveTranscriber | MultiChannelTranscriber
        if labels is None:
            decoders = service.stream_decoders(model, language)
            transcriber = AdaptiveTranscriber(
                decoders.live,
                decoders.whole,
                decoders.file,
                session.publish,
                options,
                prompt,
                observer=app[LATENCY],
                slot_free=slot_free,
                whole=whole,
                arrivals_pushed=not paced,
            )
        else:
            decode = service.window_decoder(model, language)

            def transcriber_for(publish: Callable[[Event], None]) -> LiveTranscriber:
                return LiveTranscriber(decode, publish, options, prompt, observer=app[LATENCY], slot_free=slot_free)

            transcriber = MultiChannelTranscriber(transcriber_for, session.publish, labels, channel_count)
    except BaseException:
        await _release(app, ticket, session_id)
        raise
    run = LiveRun(session, transcriber, principal, ticket, service, allowance)
    run.feeding = asyncio.ensure_future(_feed(pcm, run))
    app[LIVE_RUNS].add(run)
    return run


async def _claim_shared_place(app: web.Application, principal: Principal, session_id: str) -> None:
    """With shared live state, a place among every replica's streams, the key's cap counted over
    them all (this replica's Admission counted only its own)."""
    if LIVE_STATE not in app:
        return
    per_key = 0 if principal.key_id == ANONYMOUS_ID else app[SETTINGS].max_streams_per_key
    held = await app[LIVE_STATE].claim(session_id, principal.key_id, per_key)
    if held is not None:
        app[ADMISSION].refuse_per_key(held)


async def _release(app: web.Application, ticket: Ticket, session_id: str) -> None:
    """Give back a stream's admission, and its shared place if it has one."""
    ticket.release()
    if LIVE_STATE in app:
        await asyncio.shield(app[LIVE_STATE].release(session_id))


def live_backend(app: web.Application, route: RouteRequest) -> LocalBackend:
    """The best eligible local backend whose model is in (the first one, raising NotReady, if
    none is). Remote backends take no live streams: the router refuses a route left with only those."""
    backends = [b for b in app[ROUTER].choose(route, live=True) if isinstance(b, LocalBackend)]
    return next((b for b in backends if b.service.ready), backends[0])


def session_service(app: web.Application, session: LiveSession) -> TranscriptionService:
    """The service a session decodes on (its tokenizer counts its tokens)."""
    return app[LOCAL_SERVICES].get(session.provider) or app[SERVICE]


async def _feed(pcm: AsyncIterator[np.ndarray], run: LiveRun) -> None:
    transcriber, session = run.transcriber, run.session
    try:
        async for chunk in pcm:
            transcriber.push(chunk)
            run.ticket.heard(chunk.shape[-1] / SAMPLE_RATE)
            if not await run.allowance.cover(run.billed_seconds):
                raise InsufficientBalance("insufficient balance: the key's audio seconds ran out during the stream")
        await transcriber.finish()
    except ServiceError as exc:  # the input's fault (too large, not audio, balance): keep what came before it
        await transcriber.finish(done=False)
        session.publish(StreamFailed(message=exc.message, code=exc.code or "invalid_request", error_type=exc.error_type))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        await transcriber.cancel()
        session.fail(f"the upload broke off: {exc or type(exc).__name__}", "upload_incomplete")
    except asyncio.CancelledError:
        if run.stopping:  # shutdown: no more audio, but what came is decoded
            await transcriber.finish(done=False)
        else:
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
        app[LIVE_RUNS].discard(run)
        await _release(app, run.ticket, run.session.id)
    session = run.session
    if session.outcome is None:
        session.fail(reason, "client_disconnected")
    await asyncio.shield(_keep(app, run))


def session_error(session: LiveSession) -> dict | None:
    """A failed session's error object, as its error event carried it; None otherwise."""
    failure = session.outcome
    if not isinstance(failure, StreamFailed):
        return None
    return {"message": failure.message, "type": failure.error_type, "param": None, "code": failure.code}


async def stop_live_runs(app: web.Application) -> None:
    """on_shutdown, before the transports close their sockets: stop every run's feed, let each
    decode what it received (all together, for at most `shutdown_drain_s`), then end the
    sessions with `server_shutdown` (each transport closes its clients on that event)."""
    runs = [run for run in app[LIVE_RUNS] if run.feeding is not None and not run.feeding.done()]
    for run in runs:
        run.stopping = True
        run.feeding.cancel()
    if runs:
        await asyncio.wait([run.feeding for run in runs], timeout=app[SETTINGS].shutdown_drain_s)
    app[SESSIONS].close_all("the server is shutting down")


def setup(app: web.Application) -> None:
    app[LIVE_RUNS] = set()
    app.on_shutdown.append(stop_live_runs)


def stored_details(session: LiveSession) -> dict:
    """What a stored session keeps beyond its transcript: its provider, its utterances, the
    transport's details (a call's ids) and, for a multichannel one, each channel's text."""
    utterances = [
        {"id": u.utterance_id, "text": u.text, "start": round(u.start, 3), "end": round(u.end, 3)}
        for u in session.utterances
    ]
    channel_list = [c.fields() for c in session.channel_texts()] if session.multichannel else None
    kept = {"provider": session.provider or None, "utterances": utterances, **session.details}
    return kept | ({"channels": channel_list} if channel_list is not None else {})


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
                status=session.status,
                error=session_error(session),
            )
        )
    except Exception:
        log.exception("could not keep session %s", session.id)
    try:
        await run.allowance.release()
    except Exception:
        log.exception("session %s: could not release its balance holds (they lapse on their own)", session.id)
