"""Helpers for live-stream tests: paced uploads and an SSE reader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
from aiohttp import ClientResponse

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file
from tests.conftest import audio_path

RAW_S16LE = "audio/pcm;encoding=s16le;rate=16000"


def pcm16k(name: str) -> np.ndarray:
    return decode_file(audio_path(name).read_bytes())


def s16le(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


@dataclass
class PacedUpload:
    """An async body that sends `data` in chunks at `speed` times real time."""

    data: bytes
    bytes_per_second: float
    speed: float = 4.0
    chunk: int = 3200
    finished_at: float | None = None
    stall_after: int | None = None
    """Stop sending (but keep the request open) after this many bytes."""
    hold_open: asyncio.Event | None = None
    """After the data, go on sending silence (zero bytes) until this is set, for at most
    HOLD_OPEN_MAX_S of audio: a slow machine's first text then still comes before the end."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        started = time.monotonic()
        tail = 0 if self.hold_open is None else int(HOLD_OPEN_MAX_S * self.bytes_per_second)
        for offset in range(0, len(self.data) + tail, self.chunk):
            if self.stall_after is not None and offset >= self.stall_after:
                await asyncio.sleep(3600)
            if offset >= len(self.data) and (self.hold_open is None or self.hold_open.is_set()):
                break
            yield self.data[offset : offset + self.chunk] if offset < len(self.data) else bytes(self.chunk)
            due = started + (offset + self.chunk) / self.bytes_per_second / self.speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        self.finished_at = time.monotonic()


HOLD_OPEN_MAX_S = 120.0


@dataclass
class SseEvent:
    id: int | None
    data: dict | str
    received_at: float = field(default_factory=time.monotonic)

    @property
    def type(self) -> str | None:
        return self.data.get("type") if isinstance(self.data, dict) else None


async def read_sse(
    response: ClientResponse, limit: int | None = None, on_event: Callable[[SseEvent], object] = lambda event: None
) -> list[SseEvent]:
    """Parse an SSE body until [DONE], the end of the body, or `limit` events (each told to
    `on_event` as it comes)."""
    events: list[SseEvent] = []
    event_id: int | None = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            payload = line[6:]
            events.append(SseEvent(event_id, payload if payload == "[DONE]" else json.loads(payload)))
            on_event(events[-1])
            event_id = None
            if payload == "[DONE]" or (limit is not None and len(events) >= limit):
                break
    return events


def of_type(events: list[SseEvent], kind: str) -> list[dict]:
    return [e.data for e in events if e.type == kind]
