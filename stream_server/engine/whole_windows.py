"""Audio that arrives faster than real time, decoded the way a file is.

A stream that holds a whole file (its client said so up front) is decoded at its end in one
call, exactly as without `stream` (faster-whisper's own windows, VAD and prompts over the whole
file), each segment published as soon as it is decoded. Audio whose end is not known yet:

the audio is cut into whole windows of WINDOW_S, each decoded as a file's audio is
(service.whole_window_options: beam 5, Whisper's hotter retries, its VAD filter) with the text
before it as the prompt. A window's last segment may be cut off by the window's end, so unless
the audio ends there it is left to the next window, which starts where the last word kept ends:
what Whisper's own seek does inside a file. Each kept segment is published at once as an
utterance of its own (speech start, its delta, speech stop, utterance done); nothing is partial.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.engine.stability import normalise, without_overlap
from stream_server.engine.stream import WindowDecoder
from stream_server.engine.worker import DecodeWorker
from stream_server.events import (
    Event,
    SpeechStarted,
    SpeechStopped,
    StreamFailed,
    TextCommitted,
    UtteranceDone,
)

WINDOW_S = 30.0
"""Whisper's own window: the encoder always reads 30 s, so a shorter one buys nothing."""
LONE_SEGMENT_TAIL_S = 5.0
"""A window decoded as one segment (speech with no break) keeps its words up to this long
before the window's end; the rest wait for the next window, which hears how they go on."""
SILENT_OVERLAP_S = 1.0
"""After a window with no words, the next starts this much before its end (a word may start there)."""
MAX_FILE_S = 1800.0
"""A whole file longer than this (a live upload has no size limit) is decoded in whole windows
from there on, so that a stream never holds more than this much audio."""
PROMPT_CHARS = 600
"""Text before the window given as the prompt: about 130 tokens, inside the 223 Whisper takes."""
PROMPT_RESET_TEMPERATURE = 0.5
"""A segment that needed a retry this hot is not used as a prompt, nor is anything before it
(faster-whisper's prompt_reset_on_temperature, as in a file)."""


class FileDecoder(Protocol):
    def __call__(
        self, audio: np.ndarray, prompt: str | None, on_segment: Callable[[Segment], None], *, deadline: float
    ) -> Awaitable[Transcription]:
        """Decode `audio` as a file; `on_segment` hears each segment as it is decoded, on the loop."""


class WholeWindowTranscriber:
    """Push 16 kHz mono float32 audio; each whole window is decoded as soon as it is there,
    and the rest when the stream ends (or at a finalize)."""

    def __init__(
        self,
        decode: WindowDecoder,
        publish: Callable[[Event], None],
        prompt: str | None = None,
        context: str = "",
        file_decode: FileDecoder | None = None,
    ):
        """With `file_decode`, the stream is a whole file: nothing is decoded before its end."""
        self._decode, self._file_decode = decode, file_decode
        self._publish = publish
        self._user_prompt = prompt
        self._context = context
        """Committed text the next window's prompt ends with."""
        self._pieces: list[np.ndarray] = []
        """Audio not decoded for good yet, from stream time `_start`, as pushed: an upload
        arrives in thousands of pieces, and joining each onto the rest copied the whole file
        each time (2.2 s for a 140 s file, growing with the square of its length)."""
        self._samples = 0
        """Samples in `_pieces`."""
        self._start = 0.0
        self._final_samples = 0
        """Samples at the head of the audio to decode to their end (a finalize, the stream's end)."""
        self._waiting_since: float | None = None
        self._decoded_until = 0.0
        """Stream time up to which audio went to the decoder: speech_seconds counts it once."""
        self._committed: list[Word] = []
        self._text = ""
        self._next_id = 0
        self._worker = DecodeWorker(self._window, self._due, self._failed)
        self.received_seconds = 0.0
        self.speech_seconds = 0.0
        self.prompt_tokens = 0

    @property
    def text(self) -> str:
        return self._text

    @property
    def failed(self) -> bool:
        return self._worker.failed

    @property
    def backlog_seconds(self) -> float:
        """Audio waiting beyond the window being filled or decoded."""
        return max(0.0, self._samples / SAMPLE_RATE - WINDOW_S)

    def undecoded(self) -> tuple[float, np.ndarray]:
        """Where the audio no kept word covers starts, and that audio: what a policy taking
        the stream over goes on from (after `drain`)."""
        return self._start, self._audio()

    def push(self, pcm: np.ndarray) -> None:
        self.received_seconds += len(pcm) / SAMPLE_RATE
        self._pieces.append(pcm.astype(np.float32, copy=False))
        self._samples += len(pcm)
        self._waiting_since = self._waiting_since or time.monotonic()
        if self._samples > MAX_FILE_S * SAMPLE_RATE:
            self._file_decode = None
        self._worker.kick()

    def finalize_utterance(self) -> None:
        """Decode everything received so far to its end now, without waiting for a whole window."""
        self._final_samples = self._samples
        self._worker.kick()

    async def finish(self) -> None:
        """End of audio: decode the rest. The stream's StreamDone is its owner's to publish."""
        self.finalize_utterance()
        await self.drain()

    async def drain(self) -> None:
        """Wait until every window that is due has been decoded."""
        await self._worker.drain()

    async def cancel(self) -> None:
        await self._worker.cancel()

    def _due(self) -> bool:
        whole_window = self._file_decode is None and self._samples >= WINDOW_S * SAMPLE_RATE
        return self._final_samples > 0 or whole_window

    def _failed(self, exc: Exception) -> None:
        self._publish(StreamFailed(message=f"decoding failed: {exc}", code="decode_failed", error_type="server_error"))

    async def _window(self) -> None:
        whole = int(WINDOW_S * SAMPLE_RATE)
        final = 0 < self._final_samples <= whole or self._file_decode is not None
        samples = self._final_samples if final else whole
        audio, start = self._audio()[:samples], self._start
        end = start + samples / SAMPLE_RATE
        prompt = " ".join(p for p in (self._user_prompt, self._context[-PROMPT_CHARS:]) if p) or None
        deadline = self._waiting_since or time.monotonic()
        if self._file_decode is not None:  # each segment is committed as soon as it is decoded
            result = await self._file_decode(audio, prompt, lambda s: self._commit(s, _words(s, start), in_file=True), deadline=deadline)
            resume = end
        else:
            result = await self._decode(audio, prompt, final=True, deadline=deadline)
            kept, resume = _kept([(s, w) for s in result.segments if (w := _words(s, start))], end, final)
            for segment, words in kept:
                self._commit(segment, words)
        self.prompt_tokens += result.prompt_tokens
        self.speech_seconds += max(0.0, end - max(start, self._decoded_until))
        self._decoded_until = max(self._decoded_until, end)
        drop = min(samples, max(0, round((resume - start) * SAMPLE_RATE)))
        rest = self._audio()[drop:]
        self._pieces, self._samples, self._start = [rest] if len(rest) else [], len(rest), start + drop / SAMPLE_RATE
        self._final_samples = max(0, self._final_samples - drop)
        self._waiting_since = time.monotonic() if self._samples else None

    def _audio(self) -> np.ndarray:
        """The audio not decoded for good yet, joined into one array (kept so)."""
        if len(self._pieces) != 1:
            self._pieces = [np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)]
        return self._pieces[0]

    def _commit(self, segment: Segment, words: list[Word], in_file: bool = False) -> None:
        """`in_file`: a segment of a file's decode, after which nothing decodes its words again."""
        words = without_overlap(words, self._committed)  # the window starts at a kept word's end
        if not words:
            return
        delta = "".join(w.text for w in words)
        if not self._text:
            delta = delta.lstrip()
        self._text += delta
        # a file's next segment follows this one: a word it repeats was said again ("go forward
        # ten meters" twice over lost its second time, 5.55 % WER against 5.26 % as a file)
        self._committed = [] if in_file else [*self._committed, *words][-8:]
        start, end = words[0].start, words[-1].end
        text = "".join(w.text for w in words).strip()
        self._context = "" if segment.temperature > PROMPT_RESET_TEMPERATURE else f"{self._context} {text}".strip()
        self._publish(SpeechStarted(time=start))
        self._publish(TextCommitted(delta=delta, start=start, end=end, words=tuple(words)))
        self._publish(SpeechStopped(time=end))
        self._publish(UtteranceDone(utterance_id=self._next_id, text=text, start=start, end=end, words=tuple(words)))
        self._next_id += 1


def _words(segment: Segment, offset: float) -> list[Word]:
    """The segment's words on the stream's clock, spread over it when it was decoded without
    word timestamps; punctuation alone is not a word."""
    return [w.later(offset) for w in segment.words or segment.spread_words() if normalise(w.text)]


def _kept(spoken: list[tuple[Segment, list[Word]]], end: float, final: bool) -> tuple[list[tuple[Segment, list[Word]]], float]:
    """The segments a window keeps, and the stream time the next window starts at."""
    if final:
        return spoken, end
    if not spoken:
        return [], end - SILENT_OVERLAP_S
    if len(spoken) > 1:
        kept, following = spoken[:-1], spoken[-1][1][0]
        return kept, min(kept[-1][1][-1].end, following.start)
    segment, words = spoken[0]
    settled = list(itertools.takewhile(lambda w: w.end <= end - LONE_SEGMENT_TAIL_S, words))
    if settled:
        following = words[len(settled)].start if len(settled) < len(words) else end
        return [(segment, settled)], min(settled[-1].end, following)
    window_start = end - WINDOW_S
    return [], max(words[0].start - SILENT_OVERLAP_S, window_start + WINDOW_S / 2)
