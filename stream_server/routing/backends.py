"""The two kinds of backend the router chooses among, and the failover loop over its choice.

A LocalBackend is a TranscriptionService (its own model and decode scheduler); a RemoteBackend
sends the upload to another server. Both report `figures()` for the router and `health()` for
GET /v1/providers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np

from stream_server.decoder.results import Transcription
from stream_server.decoder.whisper import TranscribeOptions, resolve_compute_type, resolve_device
from stream_server.engine.telemetry import MovingAverage
from stream_server.errors import NotReady, ProviderUnavailable, ServiceError
from stream_server.routing.providers import ProviderSpec, is_quantized
from stream_server.routing.remote import UPSTREAM_MODEL, transcribe_remote
from stream_server.routing.router import Figures, model_size_rank, precision_rank
from stream_server.service import TranscriptionService

log = logging.getLogger(__name__)

LOCAL_PRIOR_RTF = 0.3
"""Decode seconds per audio second assumed for a local backend until its scheduler measured one."""
REMOTE_PRIOR_RTF = 0.5
"""Wall seconds per audio second assumed for a remote backend until it answered once (the
upload and the network come on top of its decode)."""
SHORT_AUDIO_S = 5.0
"""A remote answer's latency is divided by at least this much audio: a short clip's fixed
round trip would otherwise read as a slow backend."""
REMOTE_RETRY_S = 30.0
"""A remote backend that failed counts as unhealthy (tried last) this long, or until it answers."""
FAILOVER_ERRORS = (ProviderUnavailable, NotReady)
"""What makes the router try the next backend; any other error is the request's own."""


class LocalBackend:
    def __init__(self, spec: ProviderSpec, service: TranscriptionService):
        self.spec = spec
        self.service = service
        self._compute_type = resolve_compute_type(spec.compute_type, resolve_device(spec.device))
        """What the model will load as (auto resolved), until it has loaded."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def local(self) -> bool:
        return True

    @property
    def compute_type(self) -> str:
        return self.service.model.compute_type if self.service.ready else self._compute_type

    @property
    def model_name(self) -> str:
        return self.service.model.name if self.service.ready else str(self.spec.model)

    def figures(self) -> Figures:
        scheduler = self.service.scheduler
        quantized = is_quantized(self.compute_type)
        return Figures(
            name=self.name,
            local=True,
            regions=self.spec.regions,
            quantized=quantized,
            model_size=model_size_rank(self.model_name),
            precision=precision_rank(self.compute_type, quantized),
            price_per_minute=self.spec.price_per_minute,
            seconds_per_audio_second=scheduler.realtime_factor.value or LOCAL_PRIOR_RTF,
            load=(scheduler.queue_depth + scheduler.busy) / scheduler.slots,
            healthy=self.service.ready,
        )

    def supports(self, language: str | None) -> bool:
        if language is None or not self.service.ready:
            return True  # a backend still loading fails over with NotReady instead
        try:
            self.service.model.check_language(language)
        except ServiceError:
            return False
        return True

    def check_language(self, language: str | None) -> None:
        if self.service.ready:
            self.service.model.check_language(language)

    async def transcribe(
        self, audio: np.ndarray, data: bytes, filename: str | None, options: TranscribeOptions
    ) -> Transcription:
        return await self.service.transcribe_audio(audio, options)

    def health(self) -> dict:
        service = self.service
        status = "ok" if service.ready else ("error" if service.load_error else "loading")
        return {"status": status, "detail": service.load_error}


class RemoteBackend:
    def __init__(self, spec: ProviderSpec, session: aiohttp.ClientSession):
        self.spec = spec
        self._session = session
        self.latency = MovingAverage()
        """Wall seconds per audio second of its recent answers."""
        self.in_flight = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def local(self) -> bool:
        return False

    @property
    def model_name(self) -> str:
        return self.spec.model or UPSTREAM_MODEL

    @property
    def healthy(self) -> bool:
        if self.last_failure is None:
            return True
        recovered = self.last_success is not None and self.last_success > self.last_failure
        return recovered or time.time() - self.last_failure > REMOTE_RETRY_S

    def figures(self) -> Figures:
        quantized = bool(self.spec.quantized)
        return Figures(
            name=self.name,
            local=False,
            regions=self.spec.regions,
            quantized=quantized,
            model_size=model_size_rank(self.spec.model or UPSTREAM_MODEL),
            precision=precision_rank(None, quantized),
            price_per_minute=self.spec.price_per_minute,
            seconds_per_audio_second=self.latency.value or REMOTE_PRIOR_RTF,
            load=float(self.in_flight),
            healthy=self.healthy,
        )

    def supports(self, language: str | None) -> bool:
        return True  # upstream says so itself, as a 400 passed on to the client

    def check_language(self, language: str | None) -> None:
        pass

    async def transcribe(
        self, audio: np.ndarray, data: bytes, filename: str | None, options: TranscribeOptions
    ) -> Transcription:
        started = time.monotonic()
        self.in_flight += 1
        try:
            result = await transcribe_remote(self._session, self.spec, data, filename, options)
        except ProviderUnavailable as exc:
            self.last_failure, self.last_error = time.time(), exc.message
            raise
        finally:
            self.in_flight -= 1
        self.last_success = time.time()
        self.latency.observe((time.monotonic() - started) / max(result.duration, SHORT_AUDIO_S))
        return result

    def health(self) -> dict:
        status = "ok" if self.healthy else "failing"
        if self.last_success is None and self.last_failure is None:
            status = "unknown"
        return {
            "status": status,
            "last_success": _stamp(self.last_success),
            "last_failure": _stamp(self.last_failure),
            "detail": self.last_error if self.last_failure and not self.healthy else None,
        }


def _stamp(when: float | None) -> int | None:
    return None if when is None else int(when)


AnyBackend = LocalBackend | RemoteBackend


@dataclass(frozen=True)
class Routed:
    """A transcription and who made it."""

    result: Transcription
    provider: str
    model: str
    """The model that produced the text (not the name the client asked for)."""
    failed: tuple[str, ...] = ()
    """Backends tried first that failed over."""


async def transcribe_first_available(
    backends: Sequence[AnyBackend], audio: np.ndarray, data: bytes, filename: str | None, options: TranscribeOptions
) -> Routed:
    """Try each backend in order until one answers; only FAILOVER_ERRORS move on. When every one
    fails, the last failure is raised."""
    failed: list[str] = []
    for index, backend in enumerate(backends):
        try:
            result = await backend.transcribe(audio, data, filename, options)
        except FAILOVER_ERRORS as exc:
            failed.append(backend.name)
            if index == len(backends) - 1:
                raise
            log.warning("provider %s failed (%s); trying %s", backend.name, exc.message, backends[index + 1].name)
            continue
        return Routed(result, backend.name, backend.model_name, tuple(failed))
    raise AssertionError("transcribe_first_available needs at least one backend")
