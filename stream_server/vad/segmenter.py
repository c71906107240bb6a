"""Utterance segmentation: frames classified as speech or not (vad/frames.py), padding kept
before speech, a hang-over after it that shortens as an utterance grows long, and a cut at
the longest an utterance may run."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.vad.frames import VAD_ENGINES, frame_classifier


@dataclass(frozen=True)
class VadOptions:
    engine: str = "silero"
    """`silero` (Silero VAD v6) or `webrtc` (webrtcvad)."""
    threshold: float = 0.5
    """Silero: speech probability from which a frame is speech."""
    aggressiveness: int = 2
    """webrtcvad mode 0 (keeps most) .. 3 (drops most non-speech)."""
    start_ms: int = 240
    """Look-back over which speech frames decide that speech started."""
    start_ratio: float = 0.7
    """Share of speech frames within `start_ms` that starts an utterance."""
    pre_speech_ms: int = 500
    """Audio kept before the `start_ms` look-back that detected speech, so the first syllable
    is not clipped (a quiet first word may be too faint to count toward the start)."""
    hangover_ms: int = 500
    """Silence that ends an utterance (and the audio kept after the last speech frame)."""
    pause_ms: int = 240
    """Silence after speech that announces a possible end (SpeechPause), so the utterance's final
    decode can start before the hang-over confirms it."""
    long_utterance_s: float = 8.0
    """Past this length the silence that ends an utterance shrinks, linearly, to
    `min_hangover_ms` at `max_utterance_s`: a caption reader wants the sentence ended at the
    speaker's next breath rather than 30 s later."""
    min_hangover_ms: int = 150
    max_utterance_s: float = 14.0
    """An utterance this long is cut (mid-speech if it must: no audio is lost, engine/stream.py
    decodes across the cut), so none runs past 15 s with its lead-in."""

    def __post_init__(self) -> None:
        if self.engine not in VAD_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(VAD_ENGINES)}")
        if not 0 < self.pause_ms <= self.hangover_ms:
            raise ValueError("pause_ms must be positive and at most hangover_ms")
        if not 0 < self.min_hangover_ms <= self.hangover_ms:
            raise ValueError("min_hangover_ms must be positive and at most hangover_ms")
        if not 0 < self.long_utterance_s < self.max_utterance_s:
            raise ValueError("long_utterance_s must be positive and under max_utterance_s")


@dataclass(frozen=True)
class SpeechStart:
    time: float


@dataclass(frozen=True)
class SpeechAudio:
    start: float
    samples: np.ndarray


@dataclass(frozen=True)
class SpeechPause:
    """Enough silence so far that the utterance may end here (a SpeechEnd follows if the
    silence lasts the hang-over)."""

    time: float


@dataclass(frozen=True)
class SpeechEnd:
    time: float
    trailing_silence: float
    """Seconds of non-speech at the end of the utterance's audio."""
    continued: bool = False
    """Cut while the speaker went on: the next utterance starts right here (a SpeechStart at
    the same time follows), and a word at the cut may be clipped on both sides of it."""


SegmentEvent = SpeechStart | SpeechAudio | SpeechPause | SpeechEnd


class SpeechSegmenter:
    """Push 16 kHz mono float32 PCM of any length; get speech starts, speech audio and ends."""

    def __init__(self, options: VadOptions = VadOptions()):
        self.options = options
        self._classifier = frame_classifier(options.engine, aggressiveness=options.aggressiveness, threshold=options.threshold)
        self.frame_samples = self._classifier.frame_samples
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = 0
        self._recent: deque[tuple[np.ndarray, bool]] = deque(
            maxlen=self.frames(options.pre_speech_ms) + self.frames(options.start_ms)
        )
        self._in_speech = False
        self._silent_frames = 0
        self._started_at = 0.0
        self._paused = False
        """A SpeechPause was announced for the current silence."""

    def frames(self, ms: float) -> int:
        """Whole frames in `ms` milliseconds (at least one)."""
        return max(1, int(ms * SAMPLE_RATE / 1000 // self.frame_samples))

    @property
    def time(self) -> float:
        """Stream time of the audio consumed so far (whole frames)."""
        return self._frames_seen * self.frame_samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def trailing_silence(self) -> float:
        """Seconds of non-speech since the open utterance's last speech frame."""
        return self._silent_frames * self.frame_samples / SAMPLE_RATE if self._in_speech else 0.0

    def push(self, pcm: np.ndarray) -> list[SegmentEvent]:
        self._pending = np.concatenate([self._pending, pcm.astype(np.float32, copy=False)])
        size = self.frame_samples
        whole = len(self._pending) // size * size
        frames, self._pending = self._pending[:whole].reshape(-1, size), self._pending[whole:]
        events: list[SegmentEvent] = []
        for frame, speech in zip(frames, self._classifier.speech(frames)):
            events += self._frame(frame, speech)
        return _merge_audio(events)

    def cut(self) -> list[SegmentEvent]:
        """End the open utterance here (a client's finalize, a forced cut of a long one). If the
        speaker had not paused, the next utterance starts at once at the cut, so the audio after
        it goes on into that one and none is dropped; after a pause, speech is awaited as usual."""
        if not self._in_speech:
            return []
        if self._silent_frames >= self.frames(self.options.pause_ms):
            end = SpeechEnd(self.time, self.trailing_silence)
            self._in_speech = False
            return [end]
        self._started_at = self.time
        return [SpeechEnd(self.time, self.trailing_silence, continued=True), SpeechStart(self.time)]

    def flush(self) -> list[SegmentEvent]:
        """End of stream: pad the last partial frame, close an open utterance."""
        events: list[SegmentEvent] = []
        if len(self._pending):
            frame = np.zeros((1, self.frame_samples), dtype=np.float32)
            frame[0, : len(self._pending)] = self._pending
            self._pending = self._pending[:0]
            events += self._frame(frame[0], self._classifier.speech(frame)[0])
        if self._in_speech:
            events.append(SpeechEnd(self.time, self.trailing_silence))
            self._in_speech = False
        return _merge_audio(events)

    def _frame(self, frame: np.ndarray, speech: bool) -> list[SegmentEvent]:
        start = self.time
        self._frames_seen += 1
        if self._in_speech:
            return self._continue(frame, start, speech)
        self._recent.append((frame, speech))
        window = list(self._recent)[-self.frames(self.options.start_ms) :]
        if len(window) < self.frames(self.options.start_ms):
            return []
        if sum(v for _, v in window) < self.options.start_ratio * len(window):
            return []
        kept = list(self._recent)
        begin = self.time - len(kept) * self.frame_samples / SAMPLE_RATE
        self._recent.clear()
        self._in_speech, self._silent_frames, self._started_at, self._paused = True, 0, begin, False
        return [SpeechStart(begin), SpeechAudio(begin, np.concatenate([f for f, _ in kept]))]

    def _continue(self, frame: np.ndarray, start: float, speech: bool) -> list[SegmentEvent]:
        self._silent_frames = 0 if speech else self._silent_frames + 1
        events: list[SegmentEvent] = [SpeechAudio(start, frame)]
        hangover = self._hangover_frames()
        if speech:
            self._paused = False
        elif not self._paused and self._silent_frames >= min(self.frames(self.options.pause_ms), hangover):
            self._paused = True
            events.append(SpeechPause(self.time))
        if self._silent_frames >= hangover:
            events.append(SpeechEnd(self.time, self.trailing_silence))
            self._in_speech = False
        elif self.time - self._started_at >= self.options.max_utterance_s:
            events += self.cut()
        return events

    def _hangover_frames(self) -> int:
        """The silence that ends the open utterance now: shorter the longer it has run."""
        options = self.options
        length = self.time - self._started_at
        over = (length - options.long_utterance_s) / (options.max_utterance_s - options.long_utterance_s)
        ms = options.hangover_ms - (options.hangover_ms - options.min_hangover_ms) * min(max(over, 0.0), 1.0)
        return self.frames(ms)


def _merge_audio(events: list[SegmentEvent]) -> list[SegmentEvent]:
    """Join consecutive audio pieces so callers handle one array per run of speech."""
    merged: list[SegmentEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, SpeechAudio) and isinstance(last, SpeechAudio):
            merged[-1] = SpeechAudio(last.start, np.concatenate([last.samples, event.samples]))
        else:
            merged.append(event)
    return merged
