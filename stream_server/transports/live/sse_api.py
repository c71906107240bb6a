"""Live transcription over SSE: the streaming response of POST /v1/audio/transcriptions."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
from aiohttp import web

from stream_server.engine.sessions import LiveSession
from stream_server.events import SessionStarted, StreamFailed, TextCommitted
from stream_server.routing.router import RouteRequest
from stream_server.transports.auth import principal_of
from stream_server.transports.channel_params import ChannelRequest
from stream_server.transports.event_json import OPENAI_TYPES, event_json
from stream_server.transports.live.live_run import end_live_run, start_live_run
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
