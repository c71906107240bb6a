"""A file transcription that is routed to a backend, checked against the key's balance and
recorded as usage."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.wav import wav_bytes
from stream_server.channels import ChannelTranscription, channels
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.principals import Principal
from stream_server.routing.backends import AnyBackend, Routed, transcribe_first_available
from stream_server.routing.router import RouteRequest, Router
from stream_server.service import TranscriptionService
from stream_server.usage import UsageMeter


class MeteredTranscriber:
    def __init__(self, service: TranscriptionService, meter: UsageMeter, router: Router[AnyBackend]):
        self.service = service
        """The default backend's service: it decodes every upload (the balance needs the duration)."""
        self.meter = meter
        self.router = router

    async def transcribe(
        self,
        principal: Principal,
        data: bytes,
        filename: str | None,
        options: TranscribeOptions,
        *,
        model: str,
        route: RouteRequest = RouteRequest(),
    ) -> Routed:
        """Choose the backends, decode, refuse if the balance cannot cover the audio, transcribe
        (failing over along the router's order), record usage."""
        backends = self._backends(route, options)
        audio = await self.service.decode(data, filename)
        async with self.meter.hold(principal, len(audio) / SAMPLE_RATE):
            routed = await transcribe_first_available(backends, audio, data, filename, options)
            await self._record(principal, model, [routed])
        return routed

    async def transcribe_channels(
        self,
        principal: Principal,
        data: bytes,
        filename: str | None,
        options: TranscribeOptions,
        *,
        model: str,
        labels: Sequence[str] = (),
        route: RouteRequest = RouteRequest(),
    ) -> list[tuple[ChannelTranscription, Routed]]:
        """Each channel decoded and transcribed on its own (at once, as the decode slots allow),
        as if it were a file of its own: nothing is mixed. Every channel's audio counts against
        the balance and in usage. Words are always timed: the turns are ordered by them."""
        options = dataclasses.replace(options, word_timestamps=True)
        backends = self._backends(route, options)
        rows = await self.service.decode_channels(data, filename)
        async with self.meter.hold(principal, rows.size / SAMPLE_RATE):
            routed = await asyncio.gather(
                *(
                    transcribe_first_available(backends, row, wav_bytes(row), f"channel-{i}.wav", options)
                    for i, row in enumerate(rows)
                )
            )
            await self._record(principal, model, routed)
        return [(ChannelTranscription(c, r.result), r) for c, r in zip(channels(len(rows), labels), routed)]

    def _backends(self, route: RouteRequest, options: TranscribeOptions) -> list[AnyBackend]:
        """The router's order, less backends that cannot do the language (its 400 if none can)."""
        backends = self.router.choose(route)
        usable = [b for b in backends if b.supports(options.language)]
        if not usable:
            backends[0].check_language(options.language)  # raises: no eligible backend knows it
        return usable or backends

    async def _record(self, principal: Principal, model: str, routed: Sequence[Routed]) -> None:
        await self.meter.record(
            principal,
            model=model,
            kind="file",
            audio_seconds=sum(r.result.duration for r in routed),
            prompt_tokens=sum(r.result.prompt_tokens for r in routed),
            completion_tokens=sum(r.result.completion_tokens for r in routed),
        )
