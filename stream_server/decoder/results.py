"""Typed results of a decode. Times are seconds from the start of the audio given."""

from __future__ import annotations

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
