"""The transcription service: owns the shared model and the executor its calls run in."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import NamedTuple, TypeVar

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_channels, decode_file
from stream_server.decoder.results import Segment, Transcription
from stream_server.decoder.whisper import SpeechModel, TranscribeOptions
from stream_server.engine.packing import PackOptions
from stream_server.engine.scheduler import BATCH, LIVE, DecodeScheduler
from stream_server.engine.stream import WindowDecoder
from stream_server.engine.whole_windows import FileDecoder
from stream_server.errors import NotReady

log = logging.getLogger(__name__)
T = TypeVar("T")


LIVE_BEAM = 1
"""Live windows, partials and finals alike, decode greedily: streamed on the dev feeds, beam-5
finals were less accurate, not more (tiny.en 6.2 % vs 4.0 % WER, BENCHMARKS.md), and cost more."""


LIVE_HOTTER_RETRIES = 0
"""Live windows, partials and finals alike, decode in one pass, with no hotter retry when the
result looks degenerate: streamed on four feeds, retried finals were no more accurate (mean WER
5.0 % with Whisper's full schedule, 4.1 % with none), sampling made the text vary from run to
run, and the retry chains were a stream's slowest decodes (BENCHMARKS.md, "A live final's
hotter retries"). A partial is replaced within a step anyway, and a window's repetition loop is
bounded by its token cap and dropped by the stream's compression check."""


TOKENS_PER_SECOND_CAP = 8
"""Fast speech is about 4 tokens a second; a window's text beyond twice that is a repetition loop."""


def window_options(language: str | None, prompt: str | None, *, seconds: float) -> TranscribeOptions:
    """A live window of `seconds`: word timestamps for the agreement, no second VAD pass (the
    stream's VAD already cut it), tokens capped by its length, one greedy pass of one encoder
    window (the tail past its last word is heard by the next window, or is the pause)."""
    return TranscribeOptions(
        language=language,
        prompt=prompt,
        word_timestamps=True,
        beam_size=LIVE_BEAM,
        vad_filter=False,
        hotter_retries=LIVE_HOTTER_RETRIES,
        max_new_tokens=int(16 + TOKENS_PER_SECOND_CAP * min(seconds, 30.0)),
        one_window=True,
    )


def whole_window_options(language: str | None, prompt: str | None) -> TranscribeOptions:
    """A window of audio that arrived faster than real time, decoded as a file's audio is
    (beam 5, Whisper's hotter retries, its VAD filter), with word timestamps for the deltas."""
    return TranscribeOptions(language=language, prompt=prompt, word_timestamps=True)


def file_options(language: str | None, prompt: str | None) -> TranscribeOptions:
    """A whole file posted with `stream`: the options of the same request without it, so that its
    text is that request's. No word timestamps: they move faster-whisper's seek, so the text
    would be another, and they cost each window; the deltas' word times are spread over each
    segment (Segment.spread_words)."""
    return TranscribeOptions(language=language, prompt=prompt)


class StreamDecoders(NamedTuple):
    live: WindowDecoder
    """Live windows: partials and utterance finals (engine/stream.py)."""
    whole: WindowDecoder
    """Whole windows of audio that arrived faster than real time (engine/whole_windows.py)."""
    file: FileDecoder
    """A whole file in one call, its segments handed over as they are decoded (ditto)."""


class _Abandoned(Exception):
    """The stream went away: its file is decoded no further."""


class TranscriptionService:
    """Blocking work runs off the event loop: audio decoding on the executor, model calls
    through the decode scheduler, which orders them (live first) onto the same executor."""

    def __init__(self, executor: Executor, decode_slots: int = 1, packing: PackOptions | None = None):
        self._executor = executor
        self.scheduler = DecodeScheduler(executor, decode_slots, packing)
        self._model: SpeechModel | None = None
        self.load_error: str | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def window_decoder(self, model: SpeechModel, language: str | None) -> WindowDecoder:
        """What a live stream decodes its windows with (see stream_decoders)."""
        return self.stream_decoders(model, language).live

    def stream_decoders(self, model: SpeechModel, language: str | None) -> StreamDecoders:
        """What a stream decodes with: live windows, and whole windows or a whole file of audio
        that arrived faster than real time. Without a language, the first final or whole window detects it
        and the stream keeps it: detecting on every short window of a multilingual model
        guesses wrong often enough to ruin the transcript. Partials may be packed with other
        streams' (the scheduler's packing), finals too when the server is behind; whole windows are decoded alone. Audio
        that arrived faster than real time waits for no one: its decodes run at file priority,
        in the capacity the real-time streams leave (a burst must not starve a paced stream)."""
        pinned = language or (None if model.is_multilingual else "en")

        async def run(
            audio: np.ndarray, options: TranscribeOptions, deadline: float, *heard: Callable, priority: int = LIVE
        ) -> Transcription:
            nonlocal pinned
            result = await self.scheduler.run(
                model.transcribe, audio, options, *heard, priority=priority, deadline=deadline, audio_seconds=len(audio) / SAMPLE_RATE
            )
            pinned = pinned or result.language
            return result

        async def live(audio, prompt: str | None, *, final: bool, deadline: float) -> Transcription:
            options = window_options(pinned, prompt, seconds=len(audio) / SAMPLE_RATE)
            if final and pinned is None:  # it detects the stream's language
                return await run(audio, options, deadline)
            return await self.scheduler.run_window(model.transcribe, audio, options, deadline=deadline, final=final)

        async def whole(audio, prompt: str | None, *, final: bool, deadline: float) -> Transcription:
            return await run(audio, whole_window_options(pinned, prompt), deadline, priority=BATCH)

        async def file(audio, prompt: str | None, on_segment: Callable[[Segment], None], *, deadline: float) -> Transcription:
            loop, abandoned = asyncio.get_running_loop(), threading.Event()

            def heard(segment: Segment) -> None:  # on the decoding thread
                if abandoned.is_set():
                    raise _Abandoned()
                loop.call_soon_threadsafe(on_segment, segment)

            try:
                return await run(audio, file_options(pinned, prompt), deadline, heard, priority=BATCH)
            except asyncio.CancelledError:
                abandoned.set()
                raise

        return StreamDecoders(live, whole, file)

    async def load(self, factory: Callable[[], SpeechModel]) -> None:
        try:
            self._model = await self.run(factory)
        except Exception as exc:  # any load failure must surface in /health and the log
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", self.load_error)

    def use(self, model: SpeechModel) -> None:
        self._model = model

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> SpeechModel:
        if self._model is None:
            reason = self.load_error or "the model is still loading; retry shortly"
            raise NotReady(f"not ready: {reason}")
        return self._model

    async def decode(self, data: bytes, filename: str | None) -> np.ndarray:
        """16 kHz mono float32; raises AudioDecodeError for anything that is not audio."""
        return await self.run(decode_file, data, filename)

    async def decode_channels(self, data: bytes, filename: str | None) -> np.ndarray:
        """16 kHz float32, one row per channel, unmixed."""
        return await self.run(decode_channels, data, filename)

    async def transcribe_audio(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        model = self.model
        return await self.scheduler.run(
            model.transcribe, audio, options, priority=BATCH, audio_seconds=len(audio) / SAMPLE_RATE
        )
