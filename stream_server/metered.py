"""A file transcription that is routed to a backend, checked against the key's balance and
recorded as usage."""

from __future__ import annotations

from stream_server.audio import SAMPLE_RATE
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
        backends = self.router.choose(route)
        usable = [b for b in backends if b.supports(options.language)]
        if not usable:
            backends[0].check_language(options.language)  # raises: no eligible backend knows it
        audio = await self.service.decode(data, filename)
        async with self.meter.hold(principal, len(audio) / SAMPLE_RATE):
            routed = await transcribe_first_available(usable or backends, audio, data, filename, options)
            result = routed.result
            await self.meter.record(
                principal,
                model=model,
                kind="file",
                audio_seconds=result.duration,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
        return routed
