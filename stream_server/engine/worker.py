"""A stream's decoding task: one at a time, started when work is due, drained, cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class DecodeWorker:
    def __init__(self, step: Callable[[], Awaitable[None]], due: Callable[[], bool], failed: Callable[[Exception], None]):
        """`step` decodes once, while `due()`; an exception ends the stream: `failed` is told
        (it publishes the error) and nothing is decoded after it."""
        self._step, self._due, self._on_failure = step, due, failed
        self._task: asyncio.Task | None = None
        self._cancelled = False
        self.failed = False

    @property
    def busy(self) -> bool:
        """A decode is under way."""
        return self._task is not None and not self._task.done()

    def kick(self) -> None:
        """Start decoding if work is due and nothing decodes now."""
        if self.failed or self._cancelled or self.busy:
            return
        if self._due():
            self._task = asyncio.ensure_future(self._run())

    def interrupt(self) -> None:
        """Stop the decode under way (its result is no longer wanted); the next kick decodes
        whatever is due then."""
        if self.busy:
            self._task.cancel()
            self._task = None

    async def drain(self) -> None:
        """Wait until no work is due."""
        while self.busy:
            await asyncio.shield(self._task)
            self.kick()

    async def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        try:
            while self._due():
                await self._step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("decoding failed")
            self.failed = True
            self._on_failure(exc)
