"""Per-channel transcripts of one recording (a call: agent on one channel, customer on the
other): what each channel is called, and the conversation they make in time order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stream_server.decoder.results import Segment, Transcription


@dataclass(frozen=True)
class Channel:
    index: int
    """0-based position in the audio (or the track order of a call)."""
    label: str | None = None
    """A name the client gave it (`channel_labels=agent,customer`)."""

    @property
    def name(self) -> str:
        """What a transcript line is labelled with."""
        return self.label or f"channel {self.index}"

    def fields(self) -> dict:
        """`channel`, and `label` when named, as every JSON output carries them."""
        return {"channel": self.index} | ({"label": self.label} if self.label else {})


def channels(count: int, labels: Sequence[str] = ()) -> tuple[Channel, ...]:
    """`count` channels, the first ones named by `labels` (extra labels are ignored)."""
    return tuple(Channel(i, labels[i] if i < len(labels) else None) for i in range(count))


@dataclass(frozen=True)
class ChannelText:
    channel: Channel
    text: str

    def fields(self) -> dict:
        return self.channel.fields() | {"text": self.text}


@dataclass(frozen=True)
class ChannelTranscription:
    """One channel of a file, decoded on its own."""

    channel: Channel
    result: Transcription


@dataclass(frozen=True)
class Turn:
    """Consecutive speech of one channel, before another channel speaks."""

    channel: Channel
    start: float
    end: float
    text: str


def turns(pieces: Iterable[tuple[Channel, float, float, str]]) -> list[Turn]:
    """Pieces of text (segments, utterances) of every channel in time order, a channel's
    consecutive pieces joined into one turn."""
    merged: list[Turn] = []
    for channel, start, end, text in sorted(pieces, key=lambda p: (p[1], p[0].index)):
        text = text.strip()
        if not text:
            continue
        if merged and merged[-1].channel == channel:
            last = merged[-1]
            merged[-1] = Turn(channel, last.start, max(last.end, end), f"{last.text} {text}")
        else:
            merged.append(Turn(channel, start, end, text))
    return merged


def conversation(spoken: Sequence[Turn]) -> str:
    """One turn a line, labelled: `[agent] Hello.`"""
    return "\n".join(f"[{t.channel.name}] {t.text}" for t in spoken)


PHRASE_PAUSE_S = 1.0
"""A pause in one channel's words longer than this ends a phrase: the pieces turns are made of.
Words that overlap another channel's speech stay in their phrase (both speaking at once gives
two turns, not one per word)."""


def file_turns(results: Sequence[ChannelTranscription]) -> list[Turn]:
    """Turns from word timings: a Whisper segment's own times stretch over the silence around
    it (on the shared call one ran from 40.5 s to 79 s, across the customer's whole turn), so
    they cannot order two channels' speech."""
    return turns(piece for r in results for piece in _phrases(r))


def _phrases(r: ChannelTranscription) -> Iterable[tuple[Channel, float, float, str]]:
    words = [w for s in r.result.segments for w in s.words]
    if not words:  # no word timings: the segments are the pieces
        yield from ((r.channel, s.start, s.end, s.text) for s in r.result.segments)
        return
    phrase = [words[0]]
    for word in words[1:]:
        if word.start - phrase[-1].end > PHRASE_PAUSE_S:
            yield r.channel, phrase[0].start, phrase[-1].end, "".join(w.text for w in phrase)
            phrase = []
        phrase.append(word)
    yield r.channel, phrase[0].start, phrase[-1].end, "".join(w.text for w in phrase)


def span(segment: Segment) -> tuple[float, float]:
    """A segment's start and end: its first word's start and last word's end, when it has words."""
    if segment.words:
        return segment.words[0].start, segment.words[-1].end
    return segment.start, segment.end
