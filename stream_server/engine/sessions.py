"""Live sessions: each keeps its ordered event log so any number of observers can follow it,
and one that reconnects can replay what it missed. Finished sessions are kept for a while.

Both are bounded: a session's log keeps at most `max_events` (the oldest partials go first,
then the oldest of the rest), and the hub keeps at most `keep_finished` ended sessions. An
observer whose replay reaches events that were dropped is told how many with EventsDropped."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from stream_server.channels import Channel, ChannelText, channels, conversation, turns
from stream_server.events import (
    TERMINAL_EVENTS,
    Event,
    EventsDropped,
    SessionStarted,
    StreamDone,
    StreamFailed,
    TextCommitted,
    TextPartial,
    UtteranceDone,
)

MAX_EVENTS = 20_000
"""Events kept per session for replay by default (about 2 hours of speech with partials, many
more without them, since the oldest partials go first)."""
KEEP_FINISHED = 100
"""Ended sessions kept in memory by default, for their replay; their transcripts are stored."""
_SESSION_ID = re.compile(r"sess_[0-9a-f]{32}")


def new_session_id() -> str:
    return f"sess_{uuid.uuid4().hex}"


def is_session_id(value: str) -> bool:
    """Whether `value` has the exact form of a session id (anything else is refused unlooked-up)."""
    return _SESSION_ID.fullmatch(value) is not None


@dataclass
class LiveSession:
    id: str
    model: str
    language: str | None
    owner: str | None = None
    provider: str = ""
    """The backend the stream runs on, chosen at its start and kept to its end."""
    channel_labels: tuple[str, ...] | None = None
    """A multichannel session's channel names (empty if none given); None: mono."""
    details: dict[str, str] = field(default_factory=dict)
    """What the transport knows of the stream's origin (a call's `call_sid`, `stream_sid`)."""
    created_at: float = field(default_factory=time.time)
    events: list[Event] = field(default_factory=list)
    text: str = ""
    """The committed text; a multichannel session's is its conversation, one labelled turn a line."""
    channel_text: dict[int, str] = field(default_factory=dict)
    """A multichannel session's committed text per channel."""
    utterances: list[UtteranceDone] = field(default_factory=list)
    outcome: Event | None = None
    """The StreamDone or StreamFailed that ended it; None while live."""
    max_events: int = MAX_EVENTS
    """Events kept for replay; past it the oldest partials are dropped, then the oldest others."""
    published: int = 0
    """Events published in all: the next event's seq."""
    mirrored_seq: int | None = None
    """The last event a shared log (live_state.py) holds; None: no shared log mirrors it."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _mirror_moved: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def status(self) -> str:
        if self.outcome is None:
            return "live"
        return "completed" if isinstance(self.outcome, StreamDone) else "failed"

    def publish(self, event: Event) -> Event:
        if self.outcome is not None:
            return event  # nothing follows the end
        event = dataclasses.replace(event, seq=self.published)
        self.published += 1
        self.events.append(event)
        if len(self.events) > self.max_events:
            self._trim()
        if isinstance(event, TextCommitted) and event.channel is not None:
            text = self.channel_text.get(event.channel, "")
            self.channel_text[event.channel] = text + (event.delta if text else event.delta.lstrip())
        elif isinstance(event, TextCommitted):
            self.text += event.delta
        elif isinstance(event, UtteranceDone):
            self.utterances.append(event)
            if event.channel is not None:
                self.text = conversation(turns((self.channel(u.channel), u.start, u.end, u.text) for u in self.utterances))
        elif isinstance(event, TERMINAL_EVENTS):
            self.outcome = event
            if isinstance(event, StreamDone) and event.channels:
                self.text = event.text
        self._changed.set()
        self._changed = asyncio.Event()
        return event

    def mirror_to(self, seq: int | None) -> None:
        """The shared log holds every event up to `seq` (-1: none yet; None: it stopped, and
        followers no longer wait for it)."""
        self.mirrored_seq = seq
        self._mirror_moved.set()
        self._mirror_moved = asyncio.Event()

    async def _until_mirrored(self, seq: int) -> None:
        while self.mirrored_seq is not None and self.mirrored_seq < seq:
            await self._mirror_moved.wait()

    @property
    def multichannel(self) -> bool:
        return self.channel_labels is not None

    def channel_texts(self) -> tuple[ChannelText, ...]:
        """Each channel's text: final once the stream is done, committed so far before."""
        if isinstance(self.outcome, StreamDone) and self.outcome.channels:
            return self.outcome.channels
        return tuple(ChannelText(self.channel(i), self.channel_text[i]) for i in sorted(self.channel_text))

    def channel(self, index: int | None) -> Channel:
        return channels((index or 0) + 1, self.channel_labels or ())[index or 0]

    @property
    def dropped(self) -> int:
        """Events dropped from the log so far."""
        return self.published - len(self.events)

    def _trim(self) -> None:
        """Drop the oldest partials, a quarter of the log's room at once so that trimming is
        rare; with too few partials, the oldest other events (never the first or the last)."""
        room = max(1, self.max_events // 4)
        middle = range(1, len(self.events) - 1)
        partials = [i for i in middle if isinstance(self.events[i], TextPartial)]
        others = [i for i in middle if not isinstance(self.events[i], TextPartial)]
        drop = set((partials + others)[:room])
        self.events = [e for i, e in enumerate(self.events) if i not in drop]

    def fail(self, message: str, code: str) -> None:
        self.publish(StreamFailed(message=message, code=code))

    async def follow(self, after: int = -1, *, unmirrored: bool = False) -> AsyncIterator[Event]:
        """Every event with seq > `after`, then each new one as it comes, until the end. Where
        events it should have had were dropped from the log, an EventsDropped comes first.
        While a shared log mirrors the session, each event comes once the log holds it, so that
        what a client was shown survives this replica's crash (`unmirrored`: at once, for the
        mirror itself)."""
        wanted = after + 1
        while True:
            changed = self._changed
            position = bisect_left(self.events, wanted, key=lambda e: e.seq)
            while position < len(self.events):
                event = self.events[position]
                if event.seq > wanted:
                    yield EventsDropped(count=event.seq - wanted, first=wanted, seq=event.seq - 1)
                if not unmirrored:
                    await self._until_mirrored(event.seq)
                yield event
                wanted = event.seq + 1
                position = bisect_left(self.events, wanted, key=lambda e: e.seq)
            if self.outcome is not None:
                return
            await changed.wait()


class SessionHub:
    def __init__(self, keep_finished: int = KEEP_FINISHED, max_events: int = MAX_EVENTS):
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._keep_finished = keep_finished
        self._max_events = max_events

    def create(
        self,
        model: str,
        language: str | None,
        owner: str | None = None,
        provider: str = "",
        *,
        channel_labels: tuple[str, ...] | None = None,
        details: dict[str, str] | None = None,
        session_id: str | None = None,
    ) -> LiveSession:
        """`session_id`: an id made beforehand with new_session_id (else one is made here)."""
        self._forget_old()
        session = LiveSession(
            id=session_id or new_session_id(),
            model=model,
            language=language,
            owner=owner,
            provider=provider,
            channel_labels=channel_labels,
            details=dict(details or {}),
            max_events=self._max_events,
        )
        self._sessions[session.id] = session
        started = SessionStarted(
            session_id=session.id, model=model, language=language, provider=provider, channel_labels=channel_labels
        )
        session.publish(started)
        return session

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    @property
    def held(self) -> int:
        """Sessions in memory: the live ones and the ended ones kept for replay."""
        return len(self._sessions)

    def live(self) -> list[LiveSession]:
        return [s for s in self._sessions.values() if s.outcome is None]

    def close_all(self, message: str) -> None:
        for session in self.live():
            session.fail(message, "server_shutdown")

    def _forget_old(self) -> None:
        finished = [s for s in self._sessions.values() if s.outcome is not None]
        for session in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._sessions[session.id]
