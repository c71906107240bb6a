"""Metering: balance checks before work, one usage record after it.

The streaming transports call the same two methods:
`await meter.check_balance(principal, seconds)` before starting (seconds may be 0 when the
length is not known yet) and `await meter.record(principal, model=..., kind="stream",
audio_seconds=..., prompt_tokens=..., completion_tokens=...)` when a stream or session ends.
"""

from __future__ import annotations

import time

from stream_server.errors import InsufficientBalance
from stream_server.principals import Principal
from stream_server.storage import Storage, UsageRecord

USAGE_KINDS = ("file", "stream", "session")


class UsageMeter:
    def __init__(self, storage: Storage):
        self._storage = storage

    async def remaining_seconds(self, principal: Principal) -> float | None:
        """Audio seconds left on the key's balance; None when it has no balance."""
        if principal.balance_seconds is None:
            return None
        used = await self._storage.used_seconds(principal.key_id)
        return max(0.0, principal.balance_seconds - used)

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
