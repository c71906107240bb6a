"""Live transcription over SSE: the streaming response of POST /v1/audio/transcriptions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
from aiohttp import web

from stream_server.engine.sessions import LiveSession
from stream_server.events import SessionStarted, StreamFailed, TextCommitted
from stream_server.routing.router import RouteRequest
from stream_server.transports.appkeys import SETTINGS
from stream_server.transports.auth import principal_of
from stream_server.transports.channel_params import ChannelRequest
from stream_server.transports.event_json import OPENAI_TYPES, event_json
from stream_server.transports.live.audio_inbox import AudioInbox
from stream_server.transports.live.live_run import LiveRun, end_live_run, start_live_run
from stream_server.transports.live.sse import EventStream

log = logging.getLogger(__name__)

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
    file, decoded as one). A live body (not `whole`) runs as long as the speech does: it is read
    through an inbox of `--stream-max-queue-s`, and not read further while that is full."""
    audio = await opened(pcm)
    inbox = None if whole else AudioInbox(request.app[SETTINGS].stream_max_queue_s)
    try:
        run = await start_live_run(
            request.app,
            principal_of(request),
            audio if inbox is None else inbox.pcm(),
            language=language,
            prompt=prompt,
            route=route,
            channels=channels,
            channel_count=channel_count,
            partial_decodes=partial_decodes,
            whole=whole,
            paced=inbox is not None,
        )
    except BaseException:  # refused (429, balance): stop the decoding that opening it started
        await pcm.aclose()
        raise
    reading = None if inbox is None else _read_into(inbox, audio, run)
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
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        await end_live_run(request.app, run)
        await pcm.aclose()  # a body held back mid-read: its decoding (FFmpeg's thread) stops now


def _read_into(inbox: AudioInbox, audio: AsyncIterator[np.ndarray], run: LiveRun) -> asyncio.Task:
    """Read the body into `inbox` in the background: its arrivals, not the decoder's pace, are
    what the transcriber measures (a fast upload is still decoded as a file is), and the audio
    is handed on as the decoder takes it."""
    inbox.pace_by(lambda: run.transcriber.backlog_seconds, arrived=run.transcriber.arrived)
    return asyncio.ensure_future(inbox.fill_from(audio))


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
