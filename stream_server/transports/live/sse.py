"""Server-Sent Events: the headers proxies need, newline-safe framing, periodic keep-alives,
and a bound on a client that stops reading: aiohttp holds at most about 64 KiB unsent before a
write waits, and a write that waits longer than `--sse-send-timeout` drops the client."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from stream_server.transports.appkeys import SETTINGS


class EventStream:
    def __init__(self, request: web.Request, headers: dict[str, str] | None = None):
        self._request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                **(headers or {}),
            }
        )
        self._keepalive_s = request.app[SETTINGS].sse_keepalive_s
        self._send_timeout_s = request.app[SETTINGS].sse_send_timeout_s
        self._lock = asyncio.Lock()
        self._keepalive: asyncio.Task | None = None

    async def __aenter__(self) -> "EventStream":
        await self.response.prepare(self._request)
        self._keepalive = asyncio.ensure_future(self._ping())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._keepalive

    async def send(self, data: dict | str, event_id: int | None = None) -> None:
        """One event; JSON has no raw newlines, so one `data:` line always suffices."""
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        frame = (f"id: {event_id}\n" if event_id is not None else "") + f"data: {payload}\n\n"
        await self._write(frame)

    async def _write(self, frame: str) -> None:
        """ConnectionResetError once the client is gone, or reads nothing for the send timeout."""
        async with self._lock:
            try:
                await asyncio.wait_for(self.response.write(frame.encode()), self._send_timeout_s)
            except asyncio.TimeoutError:
                if self._request.transport is not None:
                    self._request.transport.abort()
                raise ConnectionResetError(
                    f"the client read nothing for {self._send_timeout_s:g} s and was dropped"
                ) from None

    async def _ping(self) -> None:
        """A lone comment line, no blank line after it: it joins the next event's block and is
        ignored there. A blank line would end a block of its own, which decoders that keep the
        last event id (the openai SDK's) dispatch as an event with empty data."""
        while True:
            await asyncio.sleep(self._keepalive_s)
            await self._write(": keepalive\n")
