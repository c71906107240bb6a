"""Typed results of a decode. Times are seconds from the start of the audio given."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    """The word as the model wrote it, with its leading space."""
    probability: float

    def later(self, seconds: float) -> Word:
        return replace(self, start=self.start + seconds, end=self.end + seconds)


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()

    def spread_words(self) -> tuple[Word, ...]:
        """The segment's words as its text splits them (each with its leading space), their
        times estimates: the segment's span shared out by the words' lengths, each word's
        probability the segment's mean token probability. For a decode without word timestamps,
        which places its windows as a file's decode does (word timestamps move Whisper's seek)."""
        texts = re.findall(r"\s*\S+", self.text)
        lengths = [len(t.strip()) for t in texts]
        per_char = (self.end - self.start) / max(sum(lengths), 1)
        probability = min(1.0, math.exp(self.avg_logprob))
        words, start = [], self.start
        for text, length in zip(texts, lengths):
            end = start + length * per_char
            words.append(Word(round(start, 3), round(end, 3), text, probability))
            start = end
        return tuple(words)

    def later(self, seconds: float) -> Segment:
        """The segment timed from `seconds` earlier: a decode of audio cut from a longer recording."""
        return replace(
            self, start=self.start + seconds, end=self.end + seconds, words=tuple(w.later(seconds) for w in self.words)
        )


@dataclass(frozen=True)
class Transcription:
    language: str
    duration: float
    segments: tuple[Segment, ...]
    prompt_tokens: int = 0
    """Tokens of the initial prompt fed to the decoder."""

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)

    @property
    def completion_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.segments)
