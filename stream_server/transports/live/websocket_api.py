"""Live audio over a WebSocket: GET /v1/audio/stream (docs/PROTOCOL_WEBSOCKET.md).

Binary messages are audio in the format the query names; text messages are JSON controls
(`finalize`, `close`, `keepalive`). The server sends the same event objects as the SSE stream,
one per text message. Everything that can be refused is refused before the upgrade, as an HTTP
error; after it, failures end the stream with an `error` event and a close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from stream_server.audio.live import RawDecoder, RawFormat
from stream_server.errors import FieldTooLong, InvalidRequest, Overloaded, ServiceError
from stream_server.events import StreamDone, StreamFailed
from stream_server.routing.router import RouteRequest
from stream_server.transports.appkeys import SESSIONS, SETTINGS
from stream_server.transports.live.audio_inbox import AudioInbox
from stream_server.transports.auth import STREAM_PATH, principal_of
from stream_server.transports.channel_params import ChannelRequest, parse_channels
from stream_server.transports.errors import error_body, service_error_body
from stream_server.transports.event_json import event_json
from stream_server.transports.forms import FIELD_LIMIT, Form, UploadStalled, parse_bool
from stream_server.transports.limits import LimitedWebSocket
from stream_server.transports.live.live_run import LiveRun, end_live_run, live_backend, start_live_run
from stream_server.transports.route_params import parse_route
from stream_server.transports.served_models import not_served, served_model_names

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SUBPROTOCOL = "stream-server"
"""The subprotocol the server answers with; a client sending its key as `bearer.<key>` must
offer this one too, since a browser refuses an answer naming none of those it offered."""
ENCODINGS = {"pcm_s16le": "s16le", "pcm_f32le": "f32le", "mulaw": "mulaw", "alaw": "alaw"}
"""The `encoding` query values and the RawFormat encoding each names."""
PARTIAL_TYPES = frozenset({"transcript.text.partial", "speech.started", "speech.stopped"})
"""Left out with partials=false: what remains is session.created, deltas, utterances, done, error."""
HEARTBEAT_S = 20.0
"""Ping interval; a peer that stops answering is treated as gone."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BAD_CONTROLS = 10
"""Invalid control messages in a row before the stream is closed with 1008."""
SHUTDOWN_GRACE_S = 1.0
"""On shutdown, how long the sockets get to send their last event and close by themselves."""
WARN_FRACTION = 1 / 3
"""Queued audio past this fraction of the limit draws a `falling_behind` warning."""

WEBSOCKETS = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse])
"""Open live sockets, closed with 1001 (going away) on shutdown."""


@dataclass(frozen=True)
class StreamParams:
    model: str
    language: str | None
    audio: RawFormat
    partials: bool
    prompt: str | None
    route: RouteRequest = RouteRequest()
    channels: ChannelRequest = ChannelRequest()


def parse_stream_params(request: web.Request) -> StreamParams:
    query = request.query
    served = served_model_names(request)
    model = query.get("model") or served[0]
    if model not in served:
        raise not_served(model, served)
    language = (query.get("language") or "").strip().lower() or None
    form = Form.from_query(request)
    route = parse_route(form)
    live_backend(request.app, route).check_language(language)  # here too, so a plain GET hears of it
    encoding = query.get("encoding") or "pcm_s16le"
    if encoding not in ENCODINGS:
        raise InvalidRequest(
            f"encoding must be one of {', '.join(ENCODINGS)}", param="encoding", code="invalid_encoding"
        )
    audio = RawFormat(ENCODINGS[encoding], _int(query, "sample_rate", 16000), _int(query, "channels", 1))
    partials = parse_bool(query.get("partials"), "partials") if query.get("partials") else True
    prompt = query.get("prompt") or None
    if prompt is not None and len(prompt) > FIELD_LIMIT:
        raise FieldTooLong("prompt is too long", param="prompt", limit=FIELD_LIMIT)
    return StreamParams(model, language, audio, partials, prompt, route, parse_channels(form))


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer", param=name) from None


def close_code(failure: StreamFailed) -> int:
    """The close code that ends a stream after this error event."""
    if failure.code == "server_shutdown":
        return WSCloseCode.GOING_AWAY
    if failure.error_type == "rate_limit_error":
        return WSCloseCode.TRY_AGAIN_LATER
    if failure.error_type == "server_error":
        return WSCloseCode.INTERNAL_ERROR
    return WSCloseCode.POLICY_VIOLATION


class SerialSocket:
    """The response with sends serialised: events and control replies come from two tasks."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, body: dict) -> None:
        async with self._lock:
            if not self.ws.closed:
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(json.dumps(body, ensure_ascii=False))

    async def close(self, code: int, reason: str) -> None:
        async with self._lock:
            with contextlib.suppress(ConnectionError):
                await self.ws.close(code=code, message=reason.encode()[:120])


@routes.get(STREAM_PATH)
async def stream_audio(request: web.Request) -> web.StreamResponse:
    params = parse_stream_params(request)
    ws = LimitedWebSocket(request, protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(
            f"{STREAM_PATH} speaks WebSocket: open it with a WebSocket client", code="websocket_required"
        )
    settings = request.app[SETTINGS]
    inbox = AudioInbox(settings.stream_max_queue_s)
    try:
        run = await start_live_run(
            request.app,
            principal_of(request),
            inbox.pcm(),
            language=params.language,
            prompt=params.prompt,
            route=params.route,
            channels=params.channels,
            channel_count=params.audio.channels,
            partial_decodes=params.partials,
            paced=True,
        )
    except Overloaded as exc:  # a browser cannot read a refused handshake's status: say it in band
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "error", **service_error_body(exc)}))
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=(exc.code or "overloaded").encode())
        return ws
    # a call counts only its decoding channels' backlog: a channel waiting for the audio that ends a pause gets it
    inbox.pace_by(lambda: run.transcriber.backlog_seconds, arrived=run.transcriber.arrived)
    try:
        await ws.prepare(request)
        request.app[WEBSOCKETS].add(ws)
        socket = SerialSocket(ws)
        sender = asyncio.ensure_future(_send_events(socket, run, params.partials, run.service.model.count_tokens))
        try:
            decoder = RawDecoder(params.audio, split=params.channels.multichannel)
            await _receive(socket, run, inbox, decoder, settings.idle_timeout_s)
            if run.session.outcome is not None:
                await sender  # it sends the last events and closes
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    finally:
        await end_live_run(request.app, run)
    return ws


async def _send_events(socket: SerialSocket, run: LiveRun, partials: bool, count_tokens: Callable[[str], int]) -> None:
    """Forward the session's events; after the terminal one, close with the matching code."""
    async for event in run.session.follow():
        body = event_json(event, count_tokens, provider=run.session.provider)
        if partials or body["type"] not in PARTIAL_TYPES:
            await socket.send(body)
        if isinstance(event, StreamDone):
            await socket.close(WSCloseCode.OK, "done")
        elif isinstance(event, StreamFailed):
            await socket.close(close_code(event), event.code)


async def _receive(socket: SerialSocket, run: LiveRun, inbox: AudioInbox, decoder: RawDecoder, idle_s: float) -> None:
    """Read until the socket closes: audio into the inbox, controls acted on."""
    ws, session = socket.ws, run.session
    warn_at = inbox.limit_s * WARN_FRACTION
    warned = ending = False
    bad_controls = 0
    while not ws.closed:
        try:
            # once the client said `close` it only waits for the last finals: no idle limit then
            message = await ws.receive(timeout=None if ending else idle_s)
        except asyncio.TimeoutError:
            _fail(run, UploadStalled(f"no audio or keepalive arrived for {idle_s:g} s; the stream was ended"))
            continue
        except ServiceError as exc:  # too many messages a second
            _fail(run, exc)
            continue
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        if session.outcome is not None or (ending and message.type == WSMsgType.BINARY):
            continue  # ended, or audio after `close`: ignored
        try:
            if message.type == WSMsgType.BINARY:
                inbox.put(decoder.decode(message.data))
                if not warned and inbox.queued_seconds > warn_at:
                    await socket.send(_warning(inbox))
                warned = inbox.queued_seconds > (warn_at / 2 if warned else warn_at)
                continue
            try:
                kind = control_type(message.data)
            except InvalidRequest as exc:
                bad_controls += 1
                if bad_controls > MAX_BAD_CONTROLS:
                    _fail(run, InvalidRequest("too many invalid control messages", code="too_many_invalid_messages"))
                else:
                    await socket.send({"type": "error"} | error_body(exc.message, exc.error_type, exc.param, exc.code))
                continue
            bad_controls = 0
            if kind == "close" and not ending:
                ending = True
                inbox.put(decoder.flush())
                inbox.end()
            elif kind == "finalize":
                inbox.then(run.transcriber.finalize_utterance)
        except ServiceError as exc:  # the inbox is full (falling_behind), or the audio is not audio
            _fail(run, exc)
        except Exception:
            log.exception("live socket for session %s failed", session.id)
            session.publish(StreamFailed(message="internal server error", code="internal_error", error_type="server_error"))


CONTROLS = frozenset({"finalize", "close", "keepalive"})


def control_type(text: str, controls: frozenset[str] = CONTROLS) -> str:
    """The control a JSON text message names (its `type`), one of `controls`; InvalidRequest
    for anything else."""
    try:
        control = json.loads(text or "")
    except ValueError:
        raise InvalidRequest("a text message must be a JSON control object", code="invalid_message") from None
    kind = control.get("type") if isinstance(control, dict) else None
    if kind not in controls:
        raise InvalidRequest(
            f"unknown control {kind!r}; use one of {', '.join(sorted(controls))}", param="type", code="unknown_control"
        )
    return kind


def _warning(inbox: AudioInbox) -> dict:
    return {
        "type": "warning",
        "code": "falling_behind",
        "message": f"{inbox.queued_seconds:.1f} s of audio is waiting to be transcribed; "
        f"past {inbox.limit_s:g} s the stream is closed (1013)",
        "queued_seconds": round(inbox.queued_seconds, 3),
    }


def _fail(run: LiveRun, error: ServiceError) -> None:
    """End the session with this error; the sender forwards it and closes the socket."""
    run.session.publish(StreamFailed(message=error.message, code=error.code or "invalid_request", error_type=error.error_type))


async def close_all(app: web.Application) -> None:
    """on_shutdown, after live_run.stop_live_runs ended the sessions (each socket's sender then
    sends the error event and closes with 1001): after a moment close whatever socket is still open."""
    sockets = list(app[WEBSOCKETS])
    app[SESSIONS].close_all("the server is shutting down")  # any session no run carries
    for _ in range(round(SHUTDOWN_GRACE_S / 0.05)):
        if all(ws.closed for ws in sockets):
            break
        await asyncio.sleep(0.05)
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def setup(app: web.Application) -> None:
    app[WEBSOCKETS] = weakref.WeakSet()
    app.add_routes(routes)
    app.on_shutdown.append(close_all)
