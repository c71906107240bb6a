"""The one module that touches faster-whisper's model. Every call here blocks: run it in an executor."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import restore_speech_timestamps
from faster_whisper.vad import VadOptions as WhisperVadOptions
from faster_whisper.vad import collect_chunks, get_speech_timestamps

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.decoder.skipped import skipped_speech
from stream_server.errors import InvalidRequest
from stream_server.models import ModelSource

log = logging.getLogger(__name__)

TEMPERATURE_STEP = 0.2
"""Whisper's fallback schedule: retry hotter by this step when a decode looks degenerate."""
MAX_TEMPERATURE = 1.0
"""The hottest retry, and the highest temperature a request may ask for."""


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    """ISO-639-1 code; None detects it."""
    prompt: str | None = None
    """Text the decoder is conditioned on (names, spelling, the text before)."""
    temperature: float = 0.0
    """First temperature of the fallback schedule; 0 is greedy/beam first."""
    hotter_retries: int | None = None
    """Re-decode at most this many times, each TEMPERATURE_STEP hotter, while the result looks
    degenerate (a repetition loop, a low log-probability). None: up to MAX_TEMPERATURE, Whisper's
    own schedule; 0: one pass, so a decode costs one pass."""
    max_new_tokens: int | None = None
    """Cap on tokens per 30 s window: bounds a repetition loop's text and its cost."""
    word_timestamps: bool = False
    beam_size: int = 5
    vad_filter: bool = True
    """Skip non-speech (Silero VAD): no words are invented on silence or noise."""
    one_window: bool = False
    """Decode the first 30 s window only, in one encoder pass. When a window's text ends before
    its audio does, faster-whisper seeks to the last word and encodes a whole 30 s window again
    for the fraction of a second left: on live windows (never over 30 s) that was 61 % of calls,
    and what it found there was mostly a breath decoded as "Good." or " ."."""


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class SpeechModel:
    """A loaded Whisper model, shared by every request."""

    def __init__(
        self,
        source: ModelSource,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        num_workers: int = 1,
    ):
        self.name = source.name
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.num_workers = num_workers
        self._model = _WhisperModel(
            source.location,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads or (os.cpu_count() or 1),
            num_workers=num_workers,
        )
        log.info(
            "loaded model %s (%s) on %s/%s", source.name, source.origin, self.device, self.compute_type
        )

    @property
    def is_multilingual(self) -> bool:
        return self._model.model.is_multilingual

    @property
    def supported_languages(self) -> list[str]:
        return list(self._model.supported_languages)

    def check_language(self, language: str | None) -> None:
        """Refuse a language the model cannot transcribe rather than guessing English."""
        if language is None:
            return
        if language not in self.supported_languages:
            if not self.is_multilingual:
                message = f"model '{self.name}' transcribes English only; it cannot do '{language}'"
            else:
                message = f"'{language}' is not a language model '{self.name}' knows (ISO-639-1 codes)"
            raise InvalidRequest(message, param="language", code="unsupported_language")

    def count_tokens(self, text: str | None) -> int:
        return len(self._model.hf_tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        """Decode a whole recording (16 kHz mono float32); `on_segment` hears of each segment,
        in time order, as it is decoded (a progress bar, a stream of deltas).

        With `vad_filter`, the decoder sees only the speech the VAD heard, as faster-whisper's
        own filter does; speech that the decode then passes over is decoded again on its own
        (decoder/skipped.py)."""
        self.check_language(options.language)
        speech = _speech_chunks(audio) if options.vad_filter else []
        heard = np.concatenate(collect_chunks(audio, speech)[0]) if options.vad_filter else audio
        raw_segments, info = self._decode(heard, options)
        if speech:
            raw_segments = restore_speech_timestamps(raw_segments, speech, SAMPLE_RATE)
        spans = [(chunk["start"] / SAMPLE_RATE, chunk["end"] / SAMPLE_RATE) for chunk in speech]
        decoded: list[Segment] = []

        def emit(segment: Segment) -> None:
            decoded.append(replace(segment, id=len(decoded) + 1))
            if on_segment:
                on_segment(decoded[-1])

        def decode_skipped(before: float) -> None:
            stretch = skipped_speech(spans, decoded[-1].end if decoded else 0.0, before)
            if stretch is None:
                return
            start, end = stretch
            prompt = "".join(s.text for s in decoded).strip() or options.prompt
            again = replace(options, language=options.language or info.language, prompt=prompt)
            cut, _ = self._decode(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], again)
            for raw in cut:
                emit(_segment(raw).later(start))

        for raw in raw_segments:
            segment = _segment(raw)
            decode_skipped(segment.start)
            emit(segment)
        decode_skipped(len(audio) / SAMPLE_RATE)
        return Transcription(
            language=info.language,
            duration=len(audio) / SAMPLE_RATE,
            segments=tuple(decoded),
            prompt_tokens=self.count_tokens(options.prompt),
        )

    def _decode(self, audio: np.ndarray, options: TranscribeOptions) -> tuple[Iterator[Any], Any]:
        """faster-whisper's lazy segments and its info, over all of `audio` (no VAD of its own)."""
        segments, info = self._model.transcribe(
            audio,
            language=options.language,
            initial_prompt=options.prompt,
            temperature=temperature_schedule(options.temperature, options.hotter_retries),
            word_timestamps=options.word_timestamps,
            beam_size=options.beam_size,
            vad_filter=False,
            max_new_tokens=options.max_new_tokens,
        )
        return (self._model.first_window(segments) if options.one_window else segments), info


class _NextWindow(Exception):
    """The decode asked for another window's encoder pass past its budget."""


class _WhisperModel(WhisperModel):
    """faster-whisper's model, whose segments can be cut off after the first window's pass."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._passes_left = threading.local()
        """Per decoding thread: encoder passes the segments being iterated may still make."""

    def first_window(self, segments: Iterator[Any]) -> Iterator[Any]:
        """`segments` (lazy, from `transcribe`, whose language detection is done by now) up to
        the end of the first window: its encoder pass is the last one allowed. A decode nested
        in the iteration (skipped speech decoded again) leaves the outer one's budget as it was."""
        outer = getattr(self._passes_left, "value", None)
        self._passes_left.value = 1
        try:
            yield from segments
        except _NextWindow:
            return
        finally:
            self._passes_left.value = outer

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        left = getattr(self._passes_left, "value", None)
        if left is not None:
            if left == 0:
                raise _NextWindow
            self._passes_left.value = left - 1
        return super().encode(features)


def _speech_chunks(audio: np.ndarray) -> list[dict]:
    """Where faster-whisper's Silero VAD, with its file defaults, hears speech (in samples)."""
    return get_speech_timestamps(audio, WhisperVadOptions())


def temperature_schedule(first: float, retries: int | None = None) -> tuple[float, ...]:
    """`first`, then up to `retries` (None: any number) hotter by TEMPERATURE_STEP, never past MAX_TEMPERATURE."""
    steps = max(int((MAX_TEMPERATURE - first) / TEMPERATURE_STEP + 1e-9), 0)  # floor, float-safe
    if retries is not None:
        steps = min(steps, retries)
    return tuple(round(first + i * TEMPERATURE_STEP, 2) for i in range(steps + 1))


def _segment(s) -> Segment:  # faster_whisper.transcribe.Segment
    return Segment(
        id=s.id,
        seek=s.seek,
        start=s.start,
        end=s.end,
        text=s.text,
        tokens=tuple(s.tokens),
        temperature=s.temperature,
        avg_logprob=s.avg_logprob,
        compression_ratio=s.compression_ratio,
        no_speech_prob=s.no_speech_prob,
        words=tuple(Word(w.start, w.end, w.word, w.probability) for w in s.words or ()),
    )
