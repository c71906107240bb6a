"""OpenAI Realtime transcription sessions: GET /v1/realtime?intent=transcription, the WebSocket
the `openai` SDK's `client.realtime.connect(extra_query={"intent": "transcription"})` opens
(docs/PROTOCOL_OPENAI_REALTIME.md).

Client events are JSON text messages: `session.update` (GA, `session.type = "transcription"`)
or `transcription_session.update` (beta), `input_audio_buffer.append` (base64 audio),
`.commit` and `.clear`. The server answers in OpenAI's shapes (transports/compat/realtime_events.py)
with committed text only. The stream is a live session like the native protocol's: it starts at
the first audio, with the configuration then in force (later updates may change the audio
format and `include`, not what the stream was built with), is followed at
/v1/audio/sessions/{id}/events under the `id` of `session.created`, and is metered and stored
when the socket closes, once the audio received is decoded.

A bad client event gets an `error` event and the session goes on, as OpenAI's does. A refusal
(wrong key, capacity, balance) is an `error` event after the upgrade, so browsers can read it,
then a close: 1008, or 1013 (try again later) at capacity.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from stream_server.audio.live import RawDecoder
from stream_server.engine.sessions import new_session_id
from stream_server.errors import InvalidRequest, ServiceError, Unauthorized
from stream_server.events import StreamDone, StreamFailed
from stream_server.principals import ANONYMOUS_ID, Principal
from stream_server.routing.router import RouteRequest
from stream_server.transports.appkeys import ADMISSION, METER, PRINCIPAL, SETTINGS
from stream_server.transports.live.audio_inbox import AudioInbox
from stream_server.transports.auth import REALTIME_PATH, presented_key
from stream_server.transports.limits import LimitedWebSocket, check_auth_allowed, note_failed_auth
from stream_server.transports.live.live_run import LiveRun, end_live_run, live_backend, server_vad, start_live_run
from stream_server.transports.error_texts import localized_message
from stream_server.transports.served_models import not_served, served_model_names
from stream_server.transports.compat.realtime_config import (
    GA_FORMATS,
    REALTIME_TRANSCRIPTION_MODELS,
    RealtimeError,
    SessionConfig,
    parse_beta_update,
    parse_ga_update,
)
from stream_server.transports.compat.realtime_events import (
    COMMIT_EMPTY,
    MIN_COMMIT_S,
    ItemTracker,
    commit_empty_message,
    error_event,
    server_event,
)
from stream_server.transports.live.websocket_api import HEARTBEAT_S, MAX_MESSAGE_BYTES, WEBSOCKETS, SerialSocket, close_code

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SUBPROTOCOL = "realtime"
"""What a browser offers beside `openai-insecure-api-key.<key>`; the server answers with it."""
BETA_HEADER = "OpenAI-Beta"
"""`realtime=v1` in it: a beta client, greeted with `transcription_session.created`."""
UNSUPPORTED_EVENTS = frozenset(
    {
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)
"""Realtime client events of conversation sessions: a transcription session has no use for them."""
CLIENT_EVENTS = ("session.update", "transcription_session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear")


@dataclass(frozen=True)
class _Marker:
    """A commit or clear at its place in the audio: the stream had published `boundary` events
    when the audio before it had all been handed to the transcriber."""

    kind: str
    boundary: int
    seconds: float
    event_id: str | None


@routes.get(REALTIME_PATH)
async def realtime(request: web.Request) -> web.StreamResponse:
    ws = LimitedWebSocket(request, protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        _principal(request)  # a plain GET with a wrong key hears 401 first
        raise InvalidRequest(f"{REALTIME_PATH} speaks WebSocket (OpenAI Realtime)", code="websocket_required")
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    # the audio received is decoded and stored after the socket closes: the protocol has no end
    # message, a client just closes
    await asyncio.shield(asyncio.ensure_future(_Connection(request, ws).serve()))
    return ws


def _principal(request: web.Request) -> Principal:
    """The caller, by the Bearer header or the `openai-insecure-api-key.<key>` subprotocol (the
    auth middleware leaves this path to it); Unauthorized without a valid key."""
    if PRINCIPAL in request:  # a valid key, or no keys configured (anonymous)
        return request[PRINCIPAL]
    check_auth_allowed(request)  # an address that failed too often is refused before any check
    if presented_key(request) is None:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>', or the subprotocol 'openai-insecure-api-key.<key>'"
        )
    note_failed_auth(request)
    raise Unauthorized("Incorrect API key provided.")


class _Connection:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse):
        self.request, self.ws, self.app = request, ws, request.app
        self.socket = SerialSocket(ws)
        """Sends serialised: the receiver and the follower both send."""
        self.session_id = new_session_id()
        self.beta = "realtime=v1" in request.headers.get(BETA_HEADER, "").replace(" ", "")
        self.defaults = SessionConfig.defaults(server_vad(self.app))
        self.config = self.defaults
        self.models = frozenset(served_model_names(request)) | REALTIME_TRANSCRIPTION_MODELS
        self.principal: Principal | None = None
        self.model_name = ""
        self.run: LiveRun | None = None
        self.inbox: AudioInbox | None = None
        self.decoder: RawDecoder | None = None
        self.tracker: ItemTracker | None = None
        self.follower: asyncio.Task | None = None
        self.queue: asyncio.Queue = asyncio.Queue()
        self.buffered_s = 0.0
        """Audio appended since the last commit or clear."""

    async def serve(self) -> None:
        try:
            try:
                await self._open()
            except ServiceError as exc:
                await self._refuse(exc)
                return
            await self._receive()
        except Exception:
            log.exception("realtime session %s failed", self.session_id)
            await self._send(error_event("internal server error", "server_error", "internal_error"))
            await self._close(WSCloseCode.INTERNAL_ERROR, "internal_error")
        finally:
            await self._finish()

    async def _open(self) -> None:
        """Check the caller may stream here at all (the same checks a stream's start makes, so a
        refusal comes before any audio), then greet it with the session."""
        query = self.request.query
        self.principal = _principal(self.request)
        if query.get("intent") != "transcription":
            raise InvalidRequest(
                "this server holds transcription sessions only: connect with ?intent=transcription",
                param="intent",
                code="invalid_value",
            )
        model = query.get("model")
        if model is not None and model not in self.models:
            raise not_served(model, sorted(self.models))
        backend = live_backend(self.app, RouteRequest())
        self.model_name = backend.service.model.name  # NotReady while the model loads
        await self.app[METER].check_balance(self.principal)
        key_id = self.principal.key_id
        self.app[ADMISSION].check(None if key_id == ANONYMOUS_ID else key_id)
        await self._send_session("transcription_session.created" if self.beta else "session.created")

    async def _refuse(self, error: ServiceError) -> None:
        """The protocol's error event, then a close: 1013 (try again later) when the server is
        at capacity or not ready, 1008 otherwise."""
        await self._send(error_event(localized_message(error, None), error.error_type, error.code, error.param))
        busy = error.error_type == "rate_limit_error" or error.code == "model_not_ready"
        code = WSCloseCode.TRY_AGAIN_LATER if busy else WSCloseCode.POLICY_VIOLATION
        await self._close(code, error.code or "refused")

    async def _receive(self) -> None:
        """Client events until the socket closes (the client's, or ours after a failure)."""
        while not self.ws.closed:
            message = await self.ws.receive()
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if self.run is not None and self.run.session.outcome is not None:
                continue  # the stream ended (an error): the follower is closing the socket
            event: Mapping = {}
            try:
                if message.type != WSMsgType.TEXT:
                    raise RealtimeError("Realtime client events are JSON text messages", code="invalid_event")
                event = _parse(message.data)
                await self._handle(event)
            except RealtimeError as exc:
                await self._send(error_event(exc.message, exc.error_type, exc.code, exc.param, _client_id(event)))
            except ServiceError as exc:  # the stream could not start: refused
                await self._refuse(exc)
                return

    async def _handle(self, event: Mapping) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            await self._append(event)
        elif kind == "input_audio_buffer.commit":
            self._commit(_client_id(event))
        elif kind == "input_audio_buffer.clear":
            await self._clear(_client_id(event))
        elif kind in ("session.update", "transcription_session.update"):
            await self._update(event)
        elif kind in UNSUPPORTED_EVENTS:
            raise RealtimeError(f"{kind!r} is not supported in a transcription session", param="type", code="invalid_value")
        elif not isinstance(kind, str) or not kind:
            raise RealtimeError("The 'type' field is missing.", param="type", code="invalid_event")
        else:
            raise RealtimeError(
                f"Invalid value: {kind!r}. Supported values are: {', '.join(map(repr, CLIENT_EVENTS))}.",
                param="type",
                code="invalid_value",
            )

    async def _update(self, event: Mapping) -> None:
        beta = event["type"] == "transcription_session.update"
        parse = parse_beta_update if beta else parse_ga_update
        config = parse(event.get("session"), self.config, self.models, self.defaults)
        if config.language != self.config.language:
            try:
                live_backend(self.app, RouteRequest()).check_language(config.language)
            except InvalidRequest as exc:
                param = "session.input_audio_transcription.language" if beta else "session.audio.input.transcription.language"
                raise RealtimeError(exc.message, param=param, code=exc.code) from None
        if self.run is not None and config.fixed_part() != self.config.fixed_part():
            raise RealtimeError(
                "the transcription model, language, prompt and turn detection cannot change once audio "
                "has been sent; the audio format and include can",
                param="session",
                code="invalid_value",
            )
        if self.run is not None and config.format != self.config.format:
            self._switch_decoder(config)
        self.config = config
        if self.tracker is not None:
            self.tracker.logprobs = config.logprobs
        await self._send_session("transcription_session.updated" if beta else "session.updated")

    async def _send_session(self, kind: str) -> None:
        beta = kind.startswith("transcription_session.")
        session = self.config.beta_session if beta else self.config.ga_session
        await self._send(server_event(kind, session=session(self.session_id, self.model_name)))

    async def _append(self, event: Mapping) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("Missing required parameter: 'audio' (base64-encoded audio bytes).", param="audio", code="missing_required_parameter")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("Invalid 'audio'. Expected base64-encoded audio bytes.", param="audio", code="invalid_value") from None
        if not data:
            return
        run = self.run or await self._start()
        assert self.decoder is not None and self.inbox is not None
        fmt = self.config.raw_format
        self.buffered_s += len(data) / (fmt.sample_rate * (2 if fmt.encoding == "s16le" else 1))
        try:
            self.inbox.put(self.decoder.decode(data))
        except ServiceError as exc:  # the inbox is full (falling_behind): the stream ends
            run.session.publish(StreamFailed(message=exc.message, code=exc.code or "invalid_request", error_type=exc.error_type))

    async def _start(self) -> LiveRun:
        """The live stream, at the first audio, with the configuration now in force."""
        config = self.config
        assert self.principal is not None
        inbox = AudioInbox(self.app[SETTINGS].stream_max_queue_s)
        run = await start_live_run(
            self.app,
            self.principal,
            inbox.pcm(),
            language=config.language,
            prompt=config.prompt,
            vad=config.vad_options(server_vad(self.app)),
            session_id=self.session_id,
            details={"protocol": "openai_realtime"},
            paced=True,  # and no arrivals reported: a Realtime stream stays live, its turns the VAD's or the commits'
        )
        inbox.pace_by(lambda: run.transcriber.backlog_seconds)
        self.run, self.inbox = run, inbox
        self.decoder = RawDecoder(config.raw_format)
        self.tracker = ItemTracker(config.manual)
        self.tracker.logprobs = config.logprobs
        self.follower = asyncio.ensure_future(self._follow())
        return run

    def _switch_decoder(self, config: SessionConfig) -> None:
        """A format change mid-stream: what the old decoder holds is handed on first."""
        assert self.decoder is not None and self.inbox is not None
        with contextlib.suppress(ServiceError):
            self.inbox.put(self.decoder.flush())
        self.decoder = RawDecoder(GA_FORMATS[config.format])

    def _commit(self, event_id: str | None) -> None:
        if self.inbox is None or (self.config.manual and self.buffered_s < MIN_COMMIT_S):
            raise RealtimeError(commit_empty_message(self.buffered_s), code=COMMIT_EMPTY)
        seconds, self.buffered_s = self.buffered_s, 0.0
        self.inbox.then(lambda: self._mark("commit", seconds, event_id))

    async def _clear(self, event_id: str | None) -> None:
        self.buffered_s = 0.0
        if self.inbox is not None:
            self.inbox.then(lambda: self._mark("clear", 0.0, event_id))
        await self._send(server_event("input_audio_buffer.cleared"))

    def _mark(self, kind: str, seconds: float, event_id: str | None) -> None:
        """Run by the stream at this point in the audio: note how far its events went, then cut
        the open utterance there (its final follows; speech that goes on opens the next)."""
        run = self.run
        assert run is not None
        self.queue.put_nowait(_Marker(kind, len(run.session.events), seconds, event_id))
        run.transcriber.finalize_utterance()

    async def _follow(self) -> None:
        """The session's events and the client's commits and clears, in the stream's order, to
        the client as Realtime server events; after a failure, close."""
        run, tracker = self.run, self.tracker
        assert run is not None and tracker is not None
        forward = asyncio.ensure_future(self._forward())
        waiting: list[_Marker] = []
        handled = 0
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, _Marker):
                    waiting.append(item)
                elif item is None:
                    return
                else:
                    for body in tracker.event(item):
                        await self._send(body)
                    handled = item.seq + 1
                    if isinstance(item, StreamFailed):
                        await self._failed(item)
                        return
                    if isinstance(item, StreamDone):
                        return
                while waiting and waiting[0].boundary <= handled:
                    marker = waiting.pop(0)
                    if marker.kind == "clear":
                        tracker.clear()
                    else:
                        for body in tracker.commit(marker.seconds, marker.event_id):
                            await self._send(body)
        finally:
            forward.cancel()

    async def _forward(self) -> None:
        assert self.run is not None
        async for event in self.run.session.follow():
            self.queue.put_nowait(event)
        self.queue.put_nowait(None)

    async def _failed(self, failure: StreamFailed) -> None:
        assert self.tracker is not None
        for body in self.tracker.failed(failure):
            await self._send(body)
        await self._send(error_event(failure.message, failure.error_type, failure.code))
        await self._close(close_code(failure), failure.code)

    async def _finish(self) -> None:
        """The socket closed: decode what arrived to the end, then meter and store the session."""
        run = self.run
        if run is None or self.inbox is None or self.decoder is None:
            return
        with contextlib.suppress(ServiceError):
            self.inbox.put(self.decoder.flush())
        self.inbox.end()
        try:
            if run.feeding is not None and run.session.outcome is None:  # after a failure: no more decoding
                await run.feeding
            if self.follower is not None:
                await self.follower
        finally:
            await end_live_run(self.app, run)

    async def _send(self, body: dict) -> None:
        await self.socket.send(body)

    async def _close(self, code: int, reason: str) -> None:
        await self.socket.close(code, reason)


def _parse(text: str) -> Mapping:
    try:
        event = json.loads(text)
    except ValueError:
        raise RealtimeError("We could not parse the JSON body of your request.", code="invalid_json") from None
    if not isinstance(event, dict):
        raise RealtimeError("A client event is a JSON object.", code="invalid_event")
    return event


def _client_id(event: Mapping) -> str | None:
    event_id = event.get("event_id")
    return event_id if isinstance(event_id, str) else None


def setup(app: web.Application) -> None:
    app.add_routes(routes)
