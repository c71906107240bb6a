"""Which backend serves a request: filter by the request's constraints, order by its preference.

Nothing here knows HTTP or models: a backend is anything with a `name` and `figures()`, the
live figures it has now (measured speed, queue, health) beside its declared attributes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from stream_server.errors import InvalidRequest, NoEligibleProvider

BALANCED, SPEED, QUALITY, COST = "balanced", "speed", "quality", "cost"
PREFERENCES = (BALANCED, SPEED, QUALITY, COST)
EU = "eu"
"""The region tag `eu_native` requires."""

_SIZES = (("large", 5), ("turbo", 5), ("medium", 4), ("small", 3), ("base", 2), ("tiny", 1))
_HOSTED = {"whisper-1": 5, "gpt-4o-transcribe": 6, "gpt-4o-mini-transcribe": 5, "gpt-4o-transcribe-diarize": 6}
"""OpenAI's hosted names: whisper-1 is large-v2; the gpt-4o models rank above it."""
_PRECISION = {"float32": 4, "float16": 3, "bfloat16": 3, "int16": 2, "int8_float32": 2, "int8_float16": 2, "int8_bfloat16": 2, "int8": 1}


def model_size_rank(model: str | None) -> int:
    """Whisper size from a model name or path (tiny 1 .. large 5); 0 when the name does not say."""
    if not model:
        return 0
    if model in _HOSTED:
        return _HOSTED[model]
    words = set(re.split(r"[^a-z0-9]+", model.lower()))
    return next((rank for size, rank in _SIZES if size in words), 0)


def precision_rank(compute_type: str | None, quantized: bool) -> int:
    """float32 4, float16 3, int8 with float compute 2, int8 1; unknown: by `quantized`."""
    if compute_type in _PRECISION:
        return _PRECISION[compute_type]
    return 1 if quantized else 3


@dataclass(frozen=True)
class RouteRequest:
    """The routing fields of one request."""

    preference: str = BALANCED
    allowed_providers: frozenset[str] | None = None
    """Only these backends (None: any)."""
    eu_native: bool = False
    """Only backends tagged "eu"."""
    allow_quantization: bool = True
    """False leaves out backends with quantized weights (int8 ...)."""


@dataclass(frozen=True)
class Figures:
    """One backend as the router sees it now."""

    name: str
    local: bool
    regions: tuple[str, ...]
    quantized: bool
    model_size: int
    """model_size_rank of its model."""
    precision: int
    """precision_rank of its weights."""
    price_per_minute: float | None
    seconds_per_audio_second: float
    """Expected wall seconds per second of audio when idle: a local backend's measured real-time
    factor, a remote one's recent latency (its upload included), or a prior until measured."""
    load: float
    """How busy it is now: a local backend's queued and running decodes per slot, a remote
    one's requests in flight."""
    healthy: bool

    @property
    def expected_seconds(self) -> float:
        """Seconds per audio second once the work ahead of it is done too."""
        return self.seconds_per_audio_second * (1.0 + self.load)

    @property
    def cost(self) -> float:
        """Price per minute; an unpriced local backend is free (own hardware), an unpriced remote
        one ranks after every priced one."""
        if self.price_per_minute is not None:
            return self.price_per_minute
        return 0.0 if self.local else math.inf


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    def figures(self) -> Figures: ...


B = TypeVar("B", bound=Backend)


def _speed(f: Figures) -> tuple:
    return (f.expected_seconds,)


def _quality(f: Figures) -> tuple:
    return (-f.model_size, f.quantized, -f.precision)


def _cost(f: Figures) -> tuple:
    return (f.cost,)


def _ranks(figures: Sequence[Figures], key: Callable[[Figures], tuple]) -> dict[str, int]:
    """Competition ranks (ties share the better rank) by `key`."""
    keys = {f.name: key(f) for f in figures}
    ordered = sorted(keys.values())
    return {name: ordered.index(k) for name, k in keys.items()}


def order_by_preference(figures: Sequence[Figures], preference: str) -> list[str]:
    """Names, best first. Unhealthy backends go last (tried only when the rest failed).
    `balanced` sums each backend's rank in the speed, quality and cost orders; every preference
    breaks ties by speed, then by the order of the config."""
    position = {f.name: i for i, f in enumerate(figures)}
    if preference == BALANCED:
        ranks = [_ranks(figures, key) for key in (_speed, _quality, _cost)]
        primary: Callable[[Figures], tuple] = lambda f: (sum(r[f.name] for r in ranks),)
    else:
        primary = {SPEED: _speed, QUALITY: _quality, COST: _cost}[preference]
    return [
        f.name
        for f in sorted(figures, key=lambda f: (not f.healthy, primary(f), _speed(f), _quality(f), position[f.name]))
    ]


class Router(Generic[B]):
    """The backends in config order; `choose` returns the eligible ones, best first: the first is
    tried, the rest are the failover order."""

    def __init__(self, backends: Sequence[B]):
        if not backends:
            raise ValueError("a router needs at least one backend")
        self.backends = list(backends)
        self._by_name = {b.name: b for b in self.backends}

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> B | None:
        return self._by_name.get(name)

    def choose(self, route: RouteRequest, *, live: bool = False) -> list[B]:
        """Eligible backends in preference order; NoEligibleProvider naming the constraint that
        left none. A live stream can only run on a local backend."""
        if route.preference not in PREFERENCES:
            raise InvalidRequest(
                f"preference must be one of {', '.join(PREFERENCES)}", param="preference", code="invalid_preference"
            )
        figures = [b.figures() for b in self.backends]
        figures = self._allowed(figures, route.allowed_providers)
        if route.eu_native:
            figures = _keep(figures, lambda f: EU in f.regions, "eu_native", "no allowed provider is tagged 'eu'")
        if not route.allow_quantization:
            figures = _keep(
                figures, lambda f: not f.quantized, "allow_quantization", "every remaining provider is quantized"
            )
        if live:
            remote = ", ".join(f.name for f in figures)
            figures = _keep(
                figures,
                lambda f: f.local,
                "stream",
                f"live streams run only on local providers, and the eligible ones ({remote}) are remote",
            )
        return [self._by_name[name] for name in order_by_preference(figures, route.preference)]

    def _allowed(self, figures: list[Figures], allowed: frozenset[str] | None) -> list[Figures]:
        if allowed is None:
            return figures
        unknown = sorted(allowed - set(self._by_name))
        if unknown:
            raise InvalidRequest(
                f"unknown provider {', '.join(unknown)}; this server has {', '.join(self._by_name)}",
                param="allowed_providers",
                code="unknown_provider",
            )
        return _keep(figures, lambda f: f.name in allowed, "allowed_providers", "allowed_providers names none")


def _keep(figures: list[Figures], test: Callable[[Figures], bool], param: str, why: str) -> list[Figures]:
    kept = [f for f in figures if test(f)]
    if not kept:
        raise NoEligibleProvider(f"no provider meets every constraint: {param} left none ({why})", param=param)
    return kept
