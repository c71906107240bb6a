"""Typed events a live stream emits. Times are seconds of stream audio; `seq` orders them.

The engine makes them; transports serialise them (transports/event_json.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_server.channels import ChannelText
from stream_server.decoder.results import Word


@dataclass(frozen=True)
class Event:
    seq: int = field(default=-1, kw_only=True)
    """Set by the session when the event is published; strictly increasing per session."""
    channel: int | None = field(default=None, kw_only=True)
    """The audio channel (0-based) it is about, in a multichannel stream; None otherwise."""


@dataclass(frozen=True)
class SessionStarted(Event):
    session_id: str
    model: str
    language: str | None
    provider: str = ""
    """The backend the stream runs on, chosen at its start."""
    channel_labels: tuple[str, ...] | None = None
    """A multichannel stream's names for its channels (empty if none given); None: mono."""


@dataclass(frozen=True)
class SpeechStarted(Event):
    time: float


@dataclass(frozen=True)
class SpeechStopped(Event):
    time: float


@dataclass(frozen=True)
class TextCommitted(Event):
    """Newly final text, appended to what came before and never revised."""

    delta: str
    start: float
    end: float
    words: tuple[Word, ...]


@dataclass(frozen=True)
class TextPartial(Event):
    """The current unstable tail after the committed text; replaces the previous partial."""

    text: str
    start: float
    end: float
    words: tuple[Word, ...] = ()
    """The tail's words, timed like committed ones (a Deepgram interim result carries them)."""


@dataclass(frozen=True)
class UtteranceDone(Event):
    utterance_id: int
    text: str
    start: float
    end: float
    words: tuple[Word, ...]


@dataclass(frozen=True)
class DecodingLag(Event):
    """The stream's decoding fell behind its audio (`behind`), or caught up again: a result
    came `lag_s` after the last audio it covers arrived. Behind, partials come less often,
    commits later, and several streams' windows share model calls."""

    behind: bool
    lag_s: float


@dataclass(frozen=True)
class StreamDone(Event):
    text: str
    duration: float
    """Seconds of audio received."""
    speech_seconds: float
    """Seconds of audio that went to the decoder."""
    prompt_tokens: int
    """Prompt tokens fed to the decoder over the stream."""
    channels: tuple[ChannelText, ...] = ()
    """A multichannel stream's text per channel; `text` is then the labelled conversation."""


@dataclass(frozen=True)
class StreamFailed(Event):
    message: str
    code: str
    error_type: str = "invalid_request_error"


@dataclass(frozen=True)
class EventsDropped(Event):
    """Told to one observer, never logged: `count` events from seq `first` on were dropped
    from the session's bounded log before it read them (its `seq` is the last of them)."""

    count: int
    first: int


TERMINAL_EVENTS = (StreamDone, StreamFailed)
