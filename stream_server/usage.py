"""Metering: balance checks before work, one usage record after it.

The streaming transports use the same meter (`request.app[METER]`, the caller from
`principal_of(request)`): `await meter.check_balance(principal, seconds)` before starting
(seconds may be 0 when the length is not known yet), again as audio arrives if they want to
stop at the limit, and `await meter.record(principal, model=..., kind="stream",
audio_seconds=..., prompt_tokens=..., completion_tokens=...)` when a stream or session ends.
`async with meter.hold(principal, seconds):` checks and holds a known length while it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stream_server.errors import InsufficientBalance
from stream_server.principals import Principal
from stream_server.storage import Storage, UsageRecord

USAGE_KINDS = ("file", "stream", "session")


HOLD_TTL_S = 3600.0
"""A balance hold lapses this long after it was taken if nothing released it (a replica that
crashed mid-request): longer than any file transcription takes."""
STREAM_SLICE_S = 30.0
"""A live stream holds its key's balance this many seconds at a time, as its audio arrives."""
STREAM_HOLD_TTL_S = 12 * 3600.0
"""A live stream's slices lapse this long after they were taken (longer than a call lasts): a
replica that crashed mid-stream never recorded the audio they stand for."""


class UsageMeter:
    def __init__(self, storage: Storage):
        self._storage = storage

    async def remaining_seconds(self, principal: Principal) -> float | None:
        """Audio seconds left on the key's balance (less what is held in flight, on any replica
        that shares the database); None: no balance."""
        if principal.balance_seconds is None:
            return None
        used = await self._storage.used_seconds(principal.key_id)
        held = await self._storage.held_seconds(principal.key_id)
        return max(0.0, principal.balance_seconds - used - held)

    async def check_balance(self, principal: Principal, seconds: float = 0.0) -> None:
        """Refuse up front a request of `seconds` of audio the balance cannot cover.

        With `seconds` 0 (length unknown), refuse only an exhausted balance."""
        remaining = await self.remaining_seconds(principal)
        if remaining is not None and (remaining <= 0 or seconds > remaining):
            raise _insufficient(seconds, remaining)

    @asynccontextmanager
    async def hold(self, principal: Principal, seconds: float) -> AsyncIterator[None]:
        """Check the balance and hold `seconds` of it while the work runs, in one transaction of
        the database, so that concurrent requests (on any replica) cannot together spend more
        than the balance. Record usage inside the block."""
        if principal.balance_seconds is None:
            yield
            return
        hold = await self._storage.hold_balance(
            principal.key_id, seconds, principal.balance_seconds, ttl_s=HOLD_TTL_S
        )
        if hold.id is None:
            raise _insufficient(seconds, hold.remaining)
        try:
            yield
        finally:
            await asyncio.shield(self._storage.release_hold(hold.id))

    def stream_allowance(self, principal: Principal) -> StreamAllowance:
        return StreamAllowance(self._storage, principal)

    async def record(
        self,
        principal: Principal,
        *,
        model: str,
        kind: str,
        audio_seconds: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> UsageRecord:
        if kind not in USAGE_KINDS:
            raise ValueError(f"usage kind must be one of {USAGE_KINDS}, not {kind!r}")
        record = UsageRecord(
            key_id=principal.key_id,
            model=model,
            kind=kind,
            audio_seconds=audio_seconds,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            created_at=time.time(),
        )
        await self._storage.record_usage(record)
        return record


class StreamAllowance:
    """A live stream's share of its key's balance, held a slice at a time as the audio comes
    (a stream's length is not known up front), so that streams and requests on every replica
    together never spend more than the balance. Record the stream's usage, then `release()`."""

    def __init__(self, storage: Storage, principal: Principal):
        self._storage = storage
        self._principal = principal
        self._holds: list[str] = []
        self.held = 0.0
        """Seconds held so far."""

    async def cover(self, seconds: float) -> bool:
        """Whether `seconds` of audio in all are covered, holding another slice (or what is
        left, if less) when they are not yet; False once the balance cannot."""
        limit = self._principal.balance_seconds
        while limit is not None and seconds > self.held:
            key = self._principal.key_id
            hold = await self._storage.hold_balance(key, STREAM_SLICE_S, limit, ttl_s=STREAM_HOLD_TTL_S)
            size = STREAM_SLICE_S
            if hold.id is None and hold.remaining > 0:  # less than a slice left: hold the rest
                size = hold.remaining
                hold = await self._storage.hold_balance(key, size, limit, ttl_s=STREAM_HOLD_TTL_S)
            if hold.id is None:
                return False
            self._holds.append(hold.id)
            self.held += size
        return True

    async def release(self) -> None:
        holds, self._holds = self._holds, []
        for hold_id in holds:
            await self._storage.release_hold(hold_id)


def _insufficient(seconds: float, remaining: float) -> InsufficientBalance:
    return InsufficientBalance(
        f"insufficient balance: this request needs {seconds:.1f} s of audio and the key has {remaining:.1f} s left"
    )
