"""Bounds on what one client may hold or send, shared by every transport so that a new one gets
them without copying: requests open at once per API key and per address, failed key checks per
address (both in `limits_middleware` and the auth middleware), and the message rate of a live
WebSocket (`LimitedWebSocket`, the response class every socket route makes)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from stream_server.errors import InvalidRequest, Overloaded
from stream_server.principals import ANONYMOUS_ID
from stream_server.settings import Settings
from stream_server.transports.appkeys import PRINCIPAL

AUTH_WINDOW_S = 60.0
"""Failed key checks are counted over this window."""
MAX_TRACKED_ADDRESSES = 10_000
"""Addresses whose failed key checks are remembered; past it the longest quiet are forgotten,
so a spray from many addresses cannot grow the table without bound."""


class OpenCounts:
    """How many requests each name (a key id, an address) has open; a name at 0 is forgotten."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def full(self, name: str) -> bool:
        return bool(self.limit) and self._open.get(name, 0) >= self.limit

    def add(self, name: str) -> None:
        self._open[name] = self._open.get(name, 0) + 1

    def remove(self, name: str) -> None:
        left = self._open.get(name, 0) - 1
        if left > 0:
            self._open[name] = left
        else:
            self._open.pop(name, None)


class FailedAuth:
    """Failed key checks per address over the last `window_s`; `limit` of them blocks it."""

    def __init__(self, limit: int, window_s: float = AUTH_WINDOW_S):
        self.limit, self.window_s = limit, window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, now: float) -> float | None:
        """Seconds until `address` may try again, or None if it is not blocked."""
        failures = self._failures.get(address)
        if not self.limit or failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures[0] + self.window_s - now if len(failures) >= self.limit else None

    def record(self, address: str, now: float) -> None:
        if not self.limit:
            return
        failures = self._failures.setdefault(address, deque(maxlen=self.limit))
        failures.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)


@dataclass
class ClientLimits:
    per_key: OpenCounts
    per_address: OpenCounts
    failed_auth: FailedAuth
    max_messages_per_s: float
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))
    """Requests refused by each bound since start (for /metrics)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(
            OpenCounts(settings.max_connections_per_key),
            OpenCounts(settings.max_connections_per_address),
            FailedAuth(settings.max_failed_auth),
            settings.max_messages_per_s,
        )

    @contextmanager
    def hold(self, key_id: str | None, address: str) -> Iterator[None]:
        """Count one open request for the key (None: no keys configured) and the address, or
        refuse it with Overloaded when either already holds its limit."""
        if self.per_address.full(address):
            self.refused["per_address"] += 1
            raise Overloaded(
                f"this address has {self.per_address.limit} requests open, the most allowed; close one first",
                code="too_many_connections",
            )
        if key_id is not None and self.per_key.full(key_id):
            self.refused["per_key"] += 1
            raise Overloaded(
                f"this API key has {self.per_key.limit} requests open, the most allowed; close one first",
                code="too_many_connections",
            )
        self.per_address.add(address)
        if key_id is not None:
            self.per_key.add(key_id)
        try:
            yield
        finally:
            self.per_address.remove(address)
            if key_id is not None:
                self.per_key.remove(key_id)


REFUSALS = ("per_key", "per_address", "failed_auth", "message_rate")
LIMITS = web.AppKey("limits", ClientLimits)


def client_address(request: web.Request) -> str:
    """The peer's address (behind a proxy, the proxy's: limit there, or run one per client)."""
    return request.remote or "unknown"


def check_auth_allowed(request: web.Request) -> None:
    """Refuse, before any key is looked at, an address that failed too many key checks lately."""
    limits = request.app[LIMITS]
    wait = limits.failed_auth.retry_after(client_address(request), time.monotonic())
    if wait is not None:
        limits.refused["failed_auth"] += 1
        raise Overloaded(
            "too many requests with a missing or wrong API key from this address; retry later",
            code="too_many_failed_auth",
            retry_after=wait,
        )


def note_failed_auth(request: web.Request) -> None:
    request.app[LIMITS].failed_auth.record(client_address(request), time.monotonic())


@web.middleware
async def limits_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Count every request against its key's and its address's open-request limits."""
    principal = request.get(PRINCIPAL)
    key_id = principal.key_id if principal is not None and principal.key_id != ANONYMOUS_ID else None
    with request.app[LIMITS].hold(key_id, client_address(request)):
        return await handler(request)


class MessageRate:
    """A token bucket: `rate` messages a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class TooManyMessages(InvalidRequest):
    default_code = "too_many_messages"


class LimitedWebSocket(web.WebSocketResponse):
    """A live socket whose client may send at most `--max-messages-per-second` (bursts of as
    many): past it `receive` raises TooManyMessages, which the transport turns into its error
    message and a 1008 close, as for any other bad input."""

    def __init__(self, request: web.Request, **kwargs):
        super().__init__(**kwargs)
        self._limits = request.app[LIMITS]
        self._rate = MessageRate(self._limits.max_messages_per_s)
        self._exceeded = False

    async def receive(self, timeout: float | None = None):
        message = await super().receive(timeout)
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not self._rate.take():
            if not self._exceeded:  # one socket counts once, however long it goes on sending
                self._exceeded = True
                self._limits.refused["message_rate"] += 1
            raise TooManyMessages(
                f"more than {self._rate.rate:g} messages a second; send audio in larger messages", param=None
            )
        return message
