"""A file transcription that is checked against the key's balance and recorded as usage."""

from __future__ import annotations

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Transcription
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.principals import Principal
from stream_server.service import TranscriptionService
from stream_server.usage import UsageMeter


class MeteredTranscriber:
    def __init__(self, service: TranscriptionService, meter: UsageMeter):
        self.service = service
        self.meter = meter

    async def transcribe(
        self,
        principal: Principal,
        data: bytes,
        filename: str | None,
        options: TranscribeOptions,
        *,
        model: str,
    ) -> Transcription:
        """Decode, refuse if the balance cannot cover the audio, transcribe, record usage."""
        self.service.model.check_language(options.language)
        audio = await self.service.decode(data, filename)
        async with self.meter.hold(principal, len(audio) / SAMPLE_RATE):
            result = await self.service.transcribe_audio(audio, options)
            await self.meter.record(
                principal,
                model=model,
                kind="file",
                audio_seconds=result.duration,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
            )
        return result
