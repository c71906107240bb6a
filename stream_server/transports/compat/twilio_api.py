"""Twilio Media Streams: GET /v1/twilio/stream, the WebSocket a `<Connect><Stream>` (or
`<Start><Stream>`) opens. Twilio sends JSON messages (`connected`, `start`, `media`, `mark`,
`dtmf`, `stop`); each call becomes a live multichannel session, one channel per track
(`inbound`: the caller, `outbound`: what the call plays back, the agent), followed like any
other at /v1/audio/sessions/{id}/events and stored when it ends.

Twilio cannot set headers: the API key comes in the URL (`?api_key=`) or as the stream's
`<Parameter name="api_key">`. Bad input gets an `error` message and a close code (1008), and
never loses what was sent before it: the audio received is decoded to the end and stored. The
socket closing, with or without `stop`, ends the audio the same way.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Mapping

from aiohttp import WSCloseCode, WSMsgType, web

from stream_server.audio.live import RawFormat
from stream_server.audio.tracks import TrackAligner
from stream_server.errors import InvalidRequest, ServiceError, Unauthorized
from stream_server.principals import Principal
from stream_server.transports.appkeys import KEYS, SETTINGS
from stream_server.transports.live.audio_inbox import AudioInbox
from stream_server.transports.auth import TWILIO_PATH, presented_key, principal_of
from stream_server.transports.channel_params import ChannelRequest
from stream_server.transports.errors import service_error_body
from stream_server.transports.forms import UploadStalled
from stream_server.transports.limits import LimitedWebSocket, check_auth_allowed, note_failed_auth
from stream_server.transports.live.live_run import LiveRun, end_live_run, start_live_run
from stream_server.transports.compat.twilio_signature import SIGNATURE_HEADER, signature_valid
from stream_server.transports.live.websocket_api import HEARTBEAT_S, MAX_MESSAGE_BYTES, WEBSOCKETS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

TRACKS = ("inbound", "outbound")
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
"""What Twilio streams, and all this endpoint takes: G.711 µ-law, 8 kHz, one channel a track."""
IGNORED_EVENTS = frozenset({"connected", "mark", "dtmf"})


class TwilioError(InvalidRequest):
    pass


@routes.get(TWILIO_PATH)
async def twilio_stream(request: web.Request) -> web.StreamResponse:
    ws = LimitedWebSocket(request, heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(f"{TWILIO_PATH} speaks WebSocket (Twilio Media Streams)", code="websocket_required")
    await ws.prepare(request)
    request.app[WEBSOCKETS].add(ws)
    # the decoding of what arrived, and its storing, outlive the socket: Twilio may close at once
    await asyncio.shield(asyncio.ensure_future(_Call(request, ws).serve()))
    return ws


class _Call:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse):
        self.request, self.ws = request, ws
        self.run: LiveRun | None = None
        self.inbox: AudioInbox | None = None
        self.aligner: TrackAligner | None = None
        self.stream_sid: str | None = None

    async def serve(self) -> None:
        error: ServiceError | None = None
        try:
            token = self.request.app[SETTINGS].twilio_auth_token
            if token and not signature_valid(self.request, token):
                raise Unauthorized(f"{SIGNATURE_HEADER} does not match this URL and the auth token", code="invalid_signature")
            await self._receive()
        except ServiceError as exc:
            error = exc
        except Exception:
            log.exception("Twilio stream %s failed", self.stream_sid)
            error = ServiceError("internal server error", code="internal_error")
        if error is not None:
            await self._send({"event": "error", "streamSid": self.stream_sid, **service_error_body(error)})
        await self._finish()
        if error is None:
            await self.ws.close(code=WSCloseCode.OK, message=b"done")
        else:
            code = WSCloseCode.INTERNAL_ERROR if error.error_type == "server_error" else WSCloseCode.POLICY_VIOLATION
            await self.ws.close(code=code, message=(error.code or "error").encode()[:120])

    async def _receive(self) -> None:
        """Until `stop` or the socket's end; a bad message raises its error."""
        idle_s = self.request.app[SETTINGS].idle_timeout_s
        while not self.ws.closed:
            try:
                message = await self.ws.receive(timeout=idle_s)
            except asyncio.TimeoutError:
                raise UploadStalled(f"no message arrived for {idle_s:g} s; the stream was ended") from None
            if message.type != WSMsgType.TEXT:
                if message.type == WSMsgType.BINARY:
                    raise TwilioError("Twilio Media Streams messages are JSON text", code="invalid_message")
                return  # closed
            if await self._handle(_parse(message.data)) == "stop":
                return

    async def _handle(self, message: Mapping) -> str:
        event = message.get("event")
        if event == "start":
            await self._start(message)
        elif event == "media":
            self._media(message)
        elif event not in IGNORED_EVENTS and event != "stop":
            raise TwilioError(f"unknown event {event!r}", param="event", code="unknown_event")
        return str(event)

    async def _start(self, message: Mapping) -> None:
        if self.run is not None:
            raise TwilioError("a second 'start' on one stream", param="event", code="duplicate_start")
        start = _object(message, "start")
        self.stream_sid = str(message.get("streamSid") or start.get("streamSid") or "") or None
        tracks = start.get("tracks") or ["inbound"]
        if not isinstance(tracks, list) or not tracks or any(t not in TRACKS for t in tracks) or len(set(tracks)) < len(tracks):
            raise TwilioError(f"'tracks' must name {' and/or '.join(TRACKS)}", param="start.tracks", code="unknown_track")
        media_format = start.get("mediaFormat") or MEDIA_FORMAT
        if {k: media_format.get(k) for k in MEDIA_FORMAT} != MEDIA_FORMAT:
            raise TwilioError(f"only {MEDIA_FORMAT} is supported", param="start.mediaFormat", code="unsupported_media_format")
        parameters = start.get("customParameters") or {}
        language = str(parameters.get("language") or self.request.query.get("language") or "").lower() or None
        fmt = RawFormat("mulaw", MEDIA_FORMAT["sampleRate"])
        self.aligner = TrackAligner(tracks, fmt)
        self.inbox = AudioInbox(self.request.app[SETTINGS].stream_max_queue_s)
        details = {"call_sid": str(start.get("callSid") or ""), "stream_sid": self.stream_sid or ""}
        self.run = await start_live_run(
            self.request.app,
            self._principal(parameters),
            self.inbox.pcm(),
            language=language,
            prompt=None,
            channels=ChannelRequest(True, tuple(tracks)),
            channel_count=len(tracks),
            details=details,
        )
        run = self.run
        self.inbox.pace_by(lambda: run.transcriber.backlog_seconds)  # only its decoding channels count

    def _principal(self, parameters: Mapping) -> Principal:
        """The caller: by the stream's `api_key` parameter, else the key in the URL."""
        keys = self.request.app[KEYS]
        if not keys.enabled:
            return principal_of(self.request)
        check_auth_allowed(self.request)
        key = parameters.get("api_key") or presented_key(self.request)
        principal = keys.identify(str(key)) if key else None
        if principal is None:
            note_failed_auth(self.request)
            problem = "incorrect API key provided" if key else "missing API key"
            raise Unauthorized(f'{problem}: give it as <Parameter name="api_key" value="..."/> or ?api_key=')
        return principal

    def _media(self, message: Mapping) -> None:
        if self.aligner is None or self.inbox is None:
            raise TwilioError("'media' before 'start'", param="event", code="media_before_start")
        media = _object(message, "media")
        track = media.get("track", "inbound")
        if track not in self.aligner.tracks:
            raise TwilioError(
                f"unknown track {track!r}; this stream has {', '.join(self.aligner.tracks)}", param="media.track", code="unknown_track"
            )
        try:
            payload = base64.b64decode(str(media.get("payload", "")), validate=True)
            timestamp = float(media.get("timestamp", 0))
        except (binascii.Error, ValueError):
            raise TwilioError("'media' needs a base64 'payload' and a numeric 'timestamp'", param="media.payload", code="invalid_payload") from None
        self.inbox.put(self.aligner.add(track, timestamp, payload))

    async def _finish(self) -> None:
        """End the audio (what the tracks hold, padded to one length), decode it all, store it."""
        run = self.run
        if run is None or self.inbox is None or self.aligner is None:
            return
        self.inbox.put(self.aligner.flush())
        self.inbox.end()
        try:
            if run.feeding is not None:
                await run.feeding
        finally:
            await end_live_run(self.request.app, run)

    async def _send(self, body: dict) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_str(json.dumps(body, ensure_ascii=False))
            except ConnectionError:
                pass


def _parse(text: str) -> Mapping:
    try:
        message = json.loads(text)
    except ValueError:
        raise TwilioError("a message must be a JSON object", code="invalid_message") from None
    if not isinstance(message, dict):
        raise TwilioError("a message must be a JSON object", code="invalid_message")
    return message


def _object(message: Mapping, name: str) -> Mapping:
    value = message.get(name)
    if not isinstance(value, dict):
        raise TwilioError(f"'{name}' must be an object", param=name, code="invalid_message")
    return value
