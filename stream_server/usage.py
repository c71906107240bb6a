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
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stream_server.errors import InsufficientBalance
from stream_server.principals import Principal
from stream_server.storage import Storage, UsageRecord

USAGE_KINDS = ("file", "stream", "session")


class UsageMeter:
    def __init__(self, storage: Storage):
        self._storage = storage
        self._held: defaultdict[str, float] = defaultdict(float)
        """Seconds of requests admitted but not yet recorded, per key (this process only)."""
        self._admitting = asyncio.Lock()

    async def remaining_seconds(self, principal: Principal) -> float | None:
        """Audio seconds left on the key's balance (less what is in flight); None: no balance."""
        if principal.balance_seconds is None:
            return None
        used = await self._storage.used_seconds(principal.key_id)
        return max(0.0, principal.balance_seconds - used - self._held[principal.key_id])

    async def check_balance(self, principal: Principal, seconds: float = 0.0) -> None:
        """Refuse up front a request of `seconds` of audio the balance cannot cover.

        With `seconds` 0 (length unknown), refuse only an exhausted balance."""
        remaining = await self.remaining_seconds(principal)
        if remaining is None:
            return
        if remaining <= 0 or seconds > remaining:
            raise InsufficientBalance(
                f"insufficient balance: this request needs {seconds:.1f} s of audio and the key has "
                f"{remaining:.1f} s left"
            )

    @asynccontextmanager
    async def hold(self, principal: Principal, seconds: float) -> AsyncIterator[None]:
        """Check the balance and hold `seconds` of it while the work runs, so that concurrent
        requests cannot together spend more than the balance. Record usage inside the block."""
        async with self._admitting:
            await self.check_balance(principal, seconds)
            self._held[principal.key_id] += seconds
        try:
            yield
        finally:
            self._held[principal.key_id] -= seconds
            if self._held[principal.key_id] <= 1e-9:
                del self._held[principal.key_id]

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
