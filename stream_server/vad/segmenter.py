"""Utterance segmentation with webrtcvad: padding before speech, a hang-over after it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from stream_server.audio import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    aggressiveness: int = 2
    """webrtcvad mode 0 (keeps most) .. 3 (drops most non-speech)."""
    frame_ms: int = 30
    """webrtcvad frame: 10, 20 or 30 ms."""
    start_ms: int = 240
    """Look-back over which voiced frames decide that speech started."""
    start_ratio: float = 0.7
    """Share of voiced frames within `start_ms` that starts an utterance."""
    pre_speech_ms: int = 500
    """Audio kept before the detected start, so the first syllable is not clipped."""
    hangover_ms: int = 500
    """Silence that ends an utterance (and the audio kept after the last voiced frame)."""
    pause_ms: int = 240
    """Silence after speech that announces a possible end (SpeechPause), so the utterance's final
    decode can start before `hangover_ms` confirms it."""

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30")
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError("aggressiveness must be 0..3")
        if not 0 < self.pause_ms <= self.hangover_ms:
            raise ValueError("pause_ms must be positive and at most hangover_ms")

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000

    def frames(self, ms: int) -> int:
        return max(1, ms // self.frame_ms)


@dataclass(frozen=True)
class SpeechStart:
    time: float


@dataclass(frozen=True)
class SpeechAudio:
    start: float
    samples: np.ndarray


@dataclass(frozen=True)
class SpeechPause:
    """`pause_ms` of silence so far: the utterance may end here (a SpeechEnd follows if the
    silence lasts `hangover_ms`)."""

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
        self._vad = webrtcvad.Vad(options.aggressiveness)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = 0
        self._recent: deque[tuple[np.ndarray, bool]] = deque(
            maxlen=max(options.frames(options.pre_speech_ms), options.frames(options.start_ms))
        )
        self._in_speech = False
        self._silent_frames = 0

    @property
    def time(self) -> float:
        """Stream time of the audio consumed so far (whole frames)."""
        return self._frames_seen * self.options.frame_samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def trailing_silence(self) -> float:
        """Seconds of non-speech since the open utterance's last voiced frame."""
        return self._silent_frames * self.options.frame_ms / 1000 if self._in_speech else 0.0

    def push(self, pcm: np.ndarray) -> list[SegmentEvent]:
        self._pending = np.concatenate([self._pending, pcm.astype(np.float32, copy=False)])
        size = self.options.frame_samples
        whole = len(self._pending) // size * size
        frames, self._pending = self._pending[:whole], self._pending[whole:]
        events: list[SegmentEvent] = []
        for frame in frames.reshape(-1, size):
            events += self._frame(frame)
        return _merge_audio(events)

    def cut(self) -> list[SegmentEvent]:
        """End the open utterance here (a client's finalize, a forced cut of a long one). If the
        speaker had not paused, the next utterance starts at once at the cut, so the audio after
        it goes on into that one and none is dropped; after a pause, speech is awaited as usual."""
        if not self._in_speech:
            return []
        if self._silent_frames >= self.options.frames(self.options.pause_ms):
            end = SpeechEnd(self.time, self.trailing_silence)
            self._in_speech = False
            return [end]
        return [SpeechEnd(self.time, self.trailing_silence, continued=True), SpeechStart(self.time)]

    def flush(self) -> list[SegmentEvent]:
        """End of stream: pad the last partial frame, close an open utterance."""
        events: list[SegmentEvent] = []
        if len(self._pending):
            frame = np.zeros(self.options.frame_samples, dtype=np.float32)
            frame[: len(self._pending)] = self._pending
            self._pending = self._pending[:0]
            events += self._frame(frame)
        if self._in_speech:
            events.append(SpeechEnd(self.time, self.trailing_silence))
            self._in_speech = False
        return _merge_audio(events)

    def _frame(self, frame: np.ndarray) -> list[SegmentEvent]:
        start = self.time
        self._frames_seen += 1
        pcm16 = (np.clip(frame, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        voiced = self._vad.is_speech(pcm16, SAMPLE_RATE)
        if self._in_speech:
            return self._continue(frame, start, voiced)
        self._recent.append((frame, voiced))
        window = list(self._recent)[-self.options.frames(self.options.start_ms) :]
        if len(window) < self.options.frames(self.options.start_ms):
            return []
        if sum(v for _, v in window) < self.options.start_ratio * len(window):
            return []
        kept = list(self._recent)[-self.options.frames(self.options.pre_speech_ms) :]
        begin = self.time - len(kept) * self.options.frame_ms / 1000
        self._recent.clear()
        self._in_speech, self._silent_frames = True, 0
        return [SpeechStart(begin), SpeechAudio(begin, np.concatenate([f for f, _ in kept]))]

    def _continue(self, frame: np.ndarray, start: float, voiced: bool) -> list[SegmentEvent]:
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        events: list[SegmentEvent] = [SpeechAudio(start, frame)]
        if self._silent_frames == self.options.frames(self.options.pause_ms):
            events.append(SpeechPause(self.time))
        if self._silent_frames >= self.options.frames(self.options.hangover_ms):
            events.append(SpeechEnd(self.time, self.trailing_silence))
            self._in_speech = False
        return events


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
