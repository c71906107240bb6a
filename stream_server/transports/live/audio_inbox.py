"""A bounded queue of decoded audio between a socket or a request body and a live run, paced
by the decoder.

The transcriber takes pushed audio at once and decodes it later, so without pacing a client
that sends faster than real time would pile audio up inside it, uncounted. Audio is handed on
only while the transcriber's undecoded backlog is small; the rest waits here, where it is
counted in seconds and bounded. A socket's audio past the bound ends the stream (`put`); a
request body is simply not read further until there is room (`fill_from`): HTTP's own flow
control then slows the client to the decoder's pace.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.errors import Overloaded

MAX_DECODER_BACKLOG_S = 6.0
"""Undecoded speech the transcriber may hold before the inbox stops handing it more."""
PACE_POLL_S = 0.05
"""How often a paused inbox looks at the transcriber's backlog again."""
BODY_SLICE_S = 1.0
"""A body's reads are queued in slices of at most this (or the bound, if smaller): one read
may hold many seconds that arrived while the server was busy."""


class AudioInbox:
    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self._chunks: deque[np.ndarray | Callable[[], None]] = deque()
        self._queued_samples = 0
        self._ended = False
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._backlog: Callable[[], float] = lambda: 0.0
        self._report_arrival: Callable[[float], None] = lambda seconds: None

    @property
    def queued_seconds(self) -> float:
        return self._queued_samples / SAMPLE_RATE

    def pace_by(self, backlog: Callable[[], float], arrived: Callable[[float], None] = lambda seconds: None) -> None:
        """Hold audio back while `backlog()` (the decoder's undecoded seconds) is large, and
        tell `arrived` the seconds of each piece put in: the pace the client sends at."""
        self._backlog, self._report_arrival = backlog, arrived

    def put(self, pcm: np.ndarray) -> None:
        """Queue 16 kHz audio (mono, or one row per channel); Overloaded when more than
        `limit_s` would be waiting."""
        if not self._ended and self._over_limit(pcm.shape[-1]):
            raise Overloaded(
                f"audio is arriving faster than it can be transcribed: more than {self.limit_s:g} s "
                "is waiting; send it at real-time speed or retry later",
                code="falling_behind",
            )
        self._append(pcm)

    async def fill_from(self, source: AsyncIterator[np.ndarray]) -> None:
        """Queue `source`'s audio slice by slice, each once the queue has room for it, taking
        the next piece from `source` only when all of the last one is in; then end. What
        `source` raises comes out of `pcm()` after the audio queued before it."""
        step = max(1, round(min(BODY_SLICE_S, self.limit_s) * SAMPLE_RATE))
        try:
            async for pcm in source:
                for start in range(0, pcm.shape[-1], step):
                    piece = pcm[..., start : start + step]
                    while self._chunks and self._over_limit(piece.shape[-1]):
                        self._taken.clear()
                        await self._taken.wait()
                    self._append(piece)
        except Exception as exc:  # the input's fault (broken upload, stalled, not audio): the run decides
            self.then(partial(_raise, exc))
        self.end()

    def _over_limit(self, samples: int) -> bool:
        return self.queued_seconds + samples / SAMPLE_RATE > self.limit_s

    def _append(self, pcm: np.ndarray) -> None:
        samples = pcm.shape[-1]
        if self._ended or not samples:
            return
        self._chunks.append(pcm)
        self._queued_samples += samples
        self._report_arrival(samples / SAMPLE_RATE)
        self._arrived.set()

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` once the audio queued before it has been handed on (a control such as
        `finalize` applies at its place in the audio, not where the paced decoder is now)."""
        if not self._ended:
            self._chunks.append(action)
            self._arrived.set()

    def end(self) -> None:
        """No more audio: the iterator ends once the queue is drained."""
        self._ended = True
        self._arrived.set()

    async def pcm(self) -> AsyncIterator[np.ndarray]:
        while True:
            while self._backlog() > MAX_DECODER_BACKLOG_S:
                await asyncio.sleep(PACE_POLL_S)
            if self._chunks:
                item = self._chunks.popleft()
                if callable(item):
                    item()
                    continue
                self._queued_samples -= item.shape[-1]
                self._taken.set()
                yield item
            elif self._ended:
                return
            else:
                self._arrived.clear()
                await self._arrived.wait()


def _raise(exc: Exception) -> None:
    raise exc
