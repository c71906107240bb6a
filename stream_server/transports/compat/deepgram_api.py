"""Deepgram's `/v1/listen` (docs/PROTOCOL_DEEPGRAM.md): the live WebSocket and the
pre-recorded POST, so a `deepgram-sdk` client works with only its base URL changed.

Live: binary messages are audio in the query's `encoding`; text messages are `KeepAlive`,
`Finalize` and `CloseStream`. Each stream is a live session like the native WebSocket's
(admission, balance, the session log at /v1/audio/sessions/{id}/events, storage); its events are
sent as Deepgram's messages (transports/compat/deepgram_results.py). What is refused before the upgrade
is an HTTP error in Deepgram's shape (`err_code`, `err_msg`, `request_id`, and a `dg-error`
header); after it, a bad text message gets an `Error` message and the stream goes on, and a
failure closes the socket with 1008 or 1011 and a reason, as Deepgram's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from stream_server.audio.live import RawDecoder, RawFormat
from stream_server.audio.wav import wav_bytes
from stream_server.decoder.results import Word
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.errors import InvalidRequest, Overloaded, ServiceError, Unauthorized
from stream_server.events import Event, StreamDone, StreamFailed
from stream_server.principals import Principal
from stream_server.transports.compat import deepgram_messages as messages
from stream_server.transports.appkeys import KEYS, SETTINGS, TRANSCRIBER
from stream_server.transports.live.audio_inbox import AudioInbox
from stream_server.transports.auth import DEEPGRAM_PATH, presented_key, principal_of
from stream_server.transports.compat.deepgram_params import ListenParams, parse_listen_params
from stream_server.transports.compat.deepgram_results import DeepgramResults
from stream_server.transports.forms import body_chunks, read_bounded, too_large
from stream_server.transports.limits import LimitedWebSocket, check_auth_allowed, note_failed_auth
from stream_server.transports.live.sse_api import SESSION_HEADER
from stream_server.transports.live.live_run import LiveRun, end_live_run, server_vad, start_live_run
from stream_server.transports.live.websocket_api import (
    HEARTBEAT_S,
    MAX_BAD_CONTROLS,
    MAX_MESSAGE_BYTES,
    WEBSOCKETS,
    SerialSocket,
    control_type,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

IDLE_S = 10.0
"""Deepgram closes a stream that sent no audio and no KeepAlive for this long (NET-0001)."""
IDLE_REASON = "NET-0001: no audio or KeepAlive arrived within the timeout window"
SUBPROTOCOLS = ("token", "bearer")
"""A browser sends its key as the second of two subprotocols, `token, <key>`; the first is echoed."""
CHECK_S = 0.1
"""How often the sender looks for a due UtteranceEnd while no event arrives."""
CONTROLS = frozenset({"KeepAlive", "Finalize", "CloseStream"})


def deepgram_key(request: web.Request) -> str | None:
    """`Authorization: Token <key>` (or Bearer), a `token, <key>` subprotocol pair, else what the
    native endpoints take (a `bearer.<key>` subprotocol, `?api_key=`)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in SUBPROTOCOLS and token.strip():
        return token.strip()
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if len(protocols) >= 2 and protocols[0].lower() in SUBPROTOCOLS and protocols[1]:
        return protocols[1]
    return presented_key(request)


def caller(request: web.Request) -> Principal:
    keys = request.app[KEYS]
    if not keys.enabled:
        return principal_of(request)
    check_auth_allowed(request)  # an address that failed too often is refused before any check
    key = deepgram_key(request)
    principal = keys.identify(key) if key else None
    if principal is None:
        if key:
            note_failed_auth(request)
        raise Unauthorized("Invalid credentials." if key else "missing API key: send 'Authorization: Token <key>'")
    return principal


def header_text(text: str) -> str:
    """`text` fit for a header value: ASCII, no control characters (a message may quote the
    client's input, newlines included)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text.encode("ascii", "replace").decode())


def error_response(error: ServiceError, request: str) -> web.Response:
    status, body = messages.http_error_body(error, request)
    headers = {"dg-request-id": request, "dg-error": header_text(error.message)}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return web.json_response(body, status=status, headers=headers)


@routes.get(DEEPGRAM_PATH)
async def listen_live(request: web.Request) -> web.StreamResponse:
    ws = LimitedWebSocket(request, protocols=SUBPROTOCOLS, heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    try:
        principal = caller(request)
        params = parse_listen_params(request, live=True)
        if not ws.can_prepare(request).ok:
            raise InvalidRequest(f"GET {DEEPGRAM_PATH} speaks WebSocket; POST audio for a pre-recorded transcript")
        inbox = AudioInbox(request.app[SETTINGS].stream_max_queue_s)
        run = await start_live_run(
            request.app,
            principal,
            inbox.pcm(),
            language=params.language,
            prompt=None,
            channels=params.channels,
            channel_count=params.audio.channels,
            details={"protocol": "deepgram", "requested_model": params.model},
            partial_decodes=params.interim_results,
            vad=params.adjust_vad(server_vad(request.app)),
        )
    except ServiceError as exc:
        return error_response(exc, str(uuid.uuid4()))
    try:
        stream = _LiveStream(request, ws, params, run, inbox)
        ws.headers.update({"dg-request-id": stream.request, SESSION_HEADER: run.session.id})
        await ws.prepare(request)
        request.app[WEBSOCKETS].add(ws)
        await stream.serve()
    finally:
        await end_live_run(request.app, run)
    return ws


class _LiveStream:
    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, params: ListenParams, run: LiveRun, inbox: AudioInbox
    ):
        self.socket, self.params, self.run, self.inbox = SerialSocket(ws), params, run, inbox
        self.request = messages.request_id(run.session.id)
        self.model = messages.ModelInfo(run.service.model.name)
        self.idle_s = min(IDLE_S, request.app[SETTINGS].idle_timeout_s)
        assert params.audio is not None  # the live endpoint requires an encoding
        self.channels = params.audio.channels if params.channels.multichannel else 1
        self.decoder = RawDecoder(params.audio, split=params.channels.multichannel)
        self.results = DeepgramResults(params, self.request, self.model, self.channels)
        self.sha256 = hashlib.sha256()
        self.ending = False
        self.idle = False

    async def serve(self) -> None:
        sender = asyncio.ensure_future(self._send_events())
        try:
            await self._receive()
            if self.run.session.outcome is not None or self.ending:
                await sender  # it sends the last results and closes
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _receive(self) -> None:
        ws, session = self.socket.ws, self.run.session
        bad = 0
        while not ws.closed:
            try:
                message = await ws.receive(timeout=None if self.ending else self.idle_s)
            except asyncio.TimeoutError:
                self.idle = True
                self._end_audio()
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if session.outcome is not None or self.ending:
                continue  # ended, or sent after CloseStream: ignored
            try:
                if message.type == WSMsgType.BINARY:
                    self._audio(message.data)
                    continue
                try:
                    kind = control_type(message.data, CONTROLS)
                except InvalidRequest as exc:
                    bad += 1
                    if bad > MAX_BAD_CONTROLS:
                        self._fail(InvalidRequest("too many invalid messages", code="too_many_invalid_messages"))
                    else:
                        await self.socket.send(messages.error_message(exc, message.data))
                    continue
                bad = 0
                if kind == "Finalize":
                    self.inbox.then(self._finalize)
                elif kind == "CloseStream":
                    self._end_audio()
            except ServiceError as exc:  # the inbox is full (falling_behind)
                self._fail(exc)
            except Exception:
                log.exception("Deepgram stream %s failed", session.id)
                failure = StreamFailed(message="internal server error", code="internal_error", error_type="server_error")
                session.publish(failure)

    def _audio(self, data: bytes) -> None:
        if not data:  # Deepgram's old way to close a stream: an empty binary message
            self._end_audio()
            return
        self.sha256.update(data)
        self.inbox.put(self.decoder.decode(data))

    def _finalize(self) -> None:
        """At its place in the audio: cut the open utterance; what that publishes is from_finalize."""
        events = self.run.session.events
        before = len(events)
        self.run.transcriber.finalize_utterance()
        self.results.finalized(range(before, len(events)))

    def _end_audio(self) -> None:
        """CloseStream (or the idle timeout): decode what arrived to its end, then close."""
        if self.ending:
            return
        self.ending = True
        self.inbox.put(self.decoder.flush())
        self.inbox.then(lambda: self.results.closing(len(self.run.session.events)))
        self.inbox.end()

    def _fail(self, error: ServiceError) -> None:
        failure = StreamFailed(message=error.message, code=error.code or "invalid_request", error_type=error.error_type)
        self.run.session.publish(failure)

    async def _send_events(self) -> None:
        """Forward the session's events as Deepgram messages; at its end, the last ones and the close."""
        queue: asyncio.Queue[Event] = asyncio.Queue()

        async def follow() -> None:
            async for event in self.run.session.follow():
                queue.put_nowait(event)

        follower = asyncio.ensure_future(follow())
        try:
            while True:
                batch = await _batch(queue, CHECK_S)
                for body in self.results.translate(batch):
                    await self.socket.send(body)
                end = next((e for e in batch if isinstance(e, (StreamDone, StreamFailed))), None)
                if end is not None:
                    await self._end(end)
                    return
                for body in self.results.utterance_ends(self.run.transcriber.received_seconds):
                    await self.socket.send(body)
        finally:
            follower.cancel()

    async def _end(self, end: Event) -> None:
        if isinstance(end, StreamFailed):
            await self.socket.send(messages.error_message(ServiceError(end.message, code=end.code)))
            code = WSCloseCode.INTERNAL_ERROR if end.error_type == "server_error" else WSCloseCode.POLICY_VIOLATION
            if end.code == "server_shutdown":
                code = WSCloseCode.GOING_AWAY
            await self.socket.close(code, f"{end.code}: {end.message}")
            return
        for body in self.results.utterance_ends(self.run.transcriber.received_seconds, ended=True):
            await self.socket.send(body)
        if self.idle:
            await self.socket.close(WSCloseCode.INTERNAL_ERROR, IDLE_REASON)
            return
        created, duration = self.run.session.created_at, self.run.transcriber.received_seconds
        sha256 = self.sha256.hexdigest()
        await self.socket.send(messages.metadata(self.request, sha256, created, duration, self.channels, self.model))
        await self.socket.close(WSCloseCode.OK, "")


async def _batch(queue: asyncio.Queue[Event], wait_s: float) -> list[Event]:
    """The events there are once one arrives (none after `wait_s`): those published together
    (an utterance's last commit and its end) come in one batch."""
    try:
        batch = [await asyncio.wait_for(queue.get(), wait_s)]
    except asyncio.TimeoutError:
        return []
    while not queue.empty():
        batch.append(queue.get_nowait())
    return batch


@routes.post(DEEPGRAM_PATH)
async def listen_prerecorded(request: web.Request) -> web.Response:
    """A raw audio body (any container, or the raw `encoding` named) -> Deepgram's pre-recorded
    response. A JSON body names a URL to fetch, which this server never does: a 400."""
    request_id, created = str(uuid.uuid4()), time.time()
    try:
        principal = caller(request)
        if request.content_type == "application/json":
            raise InvalidRequest(
                "this server does not fetch audio from URLs: send the audio itself as the request body", param="url"
            )
        params = parse_listen_params(request, live=False)
        settings = request.app[SETTINGS]
        limit = settings.max_upload_bytes
        data = await read_bounded(body_chunks(request, settings.idle_timeout_s), limit, too_large(limit))
        sha256 = hashlib.sha256(data).hexdigest()
        if params.audio is not None:
            data = _as_wav(data, params.audio, params.channels.multichannel)
        words, duration, model = await _transcribe(request, principal, params, data)
    except ServiceError as exc:
        return error_response(exc, request_id)
    metadata = messages.metadata_fields(request_id, sha256, created, duration, len(words), messages.ModelInfo(model))
    body = messages.prerecorded(metadata, words, params.punctuate)
    return web.json_response(body, headers={"dg-request-id": request_id})


def _as_wav(data: bytes, fmt: RawFormat, split: bool) -> bytes:
    decoder = RawDecoder(fmt, split)
    return wav_bytes(np.concatenate([decoder.decode(data), decoder.flush()], axis=-1))


async def _transcribe(
    request: web.Request, principal: Principal, params: ListenParams, data: bytes
) -> tuple[list[tuple[Word, ...]], float, str]:
    """Each channel's words (one list for mono), the audio's duration, the model that decoded."""
    transcriber = request.app[TRANSCRIBER]
    options = TranscribeOptions(language=params.language, word_timestamps=True)
    model = transcriber.service.model.name
    if params.channels.multichannel:
        per_channel = await transcriber.transcribe_channels(principal, data, None, options, model=model)
        results = [channel.result for channel, _ in per_channel]
        return [r.words for r in results], results[0].duration, per_channel[0][1].model
    routed = await transcriber.transcribe(principal, data, None, options, model=model)
    return [routed.result.words], routed.result.duration, routed.model
