"""OpenAI Realtime server events for a transcription session, made from the live stream's own
events (engine/stream.py), each to its `RealtimeServerEvent...` schema in OpenAI's OpenAPI
document.

An item is one turn: with server VAD an utterance the VAD found (`speech_started` names its
item, `speech_stopped` and `committed` end it); with manual turns the audio between two
`input_audio_buffer.commit`s, however many utterances the VAD found inside it. Only committed
text is sent, as `...transcription.delta` events appended to the item's text, so none is ever
taken back, and their concatenation is the `...transcription.completed` transcript. OpenAI
transcribes an item once it is committed, and a client may expect no delta of an item before its
`committed`: deltas of text committed earlier wait for it.

Engine events are matched to utterances by order: the n-th SpeechStarted, SpeechStopped and
UtteranceDone are the n-th utterance's, and a TextCommitted belongs to the oldest utterance not
done yet (utterances are decoded one at a time, in order).
"""

from __future__ import annotations

import math
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from stream_server.decoder.results import Word
from stream_server.events import Event, SpeechStarted, SpeechStopped, StreamFailed, TextCommitted, UtteranceDone

CONTENT_INDEX = 0
"""An input audio item has one content part."""
MIN_COMMIT_S = 0.1
"""The least audio a manual commit takes, as OpenAI (`input_audio_buffer_commit_empty`)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def server_event(kind: str, **fields) -> dict:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(
    message: str, error_type: str = "invalid_request_error", code: str | None = None, param: str | None = None, event_id: str | None = None
) -> dict:
    """`RealtimeServerEventError`; `event_id` inside is the client event that caused it."""
    error = {"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id}
    return server_event("error", error=error)


COMMIT_EMPTY = "input_audio_buffer_commit_empty"


def commit_empty_message(seconds: float) -> str:
    return (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        f"but buffer only has {seconds * 1000:.2f}ms of audio."
    )


def commit_empty(seconds: float, event_id: str | None) -> dict:
    return error_event(commit_empty_message(seconds), code=COMMIT_EMPTY, event_id=event_id)


def logprobs(words: Iterable[Word]) -> list[dict]:
    """`LogProbProperties` per word: the decoder gives word probabilities, not token ones."""
    return [
        {"token": w.text, "logprob": math.log(max(w.probability, 1e-12)), "bytes": list(w.text.encode("utf-8"))}
        for w in words
    ]


@dataclass
class _Item:
    id: str
    first: int
    """Index of its first utterance."""
    end: int
    """One past its last utterance (first == end: a turn with no speech in it)."""
    audio_start: float = 0.0
    audio_end: float = 0.0
    seconds: float | None = None
    """A manual turn's audio; a VAD turn's is audio_end - audio_start."""
    committed: bool = False
    completed: bool = False
    text: str = ""
    words: list[Word] = field(default_factory=list)


class ItemTracker:
    """Turns the live stream's events, and the client's commits and clears (each at its place in
    the audio), into Realtime server events."""

    def __init__(self, manual: bool):
        self.manual = manual
        self.logprobs = False
        self._items: dict[int, _Item] = {}
        """Utterance index -> its item; absent: not in an item yet (manual) or cleared."""
        self._cleared: set[int] = set()
        """Utterances dropped by input_audio_buffer.clear before they were committed."""
        self._waiting: defaultdict[int, list[TextCommitted]] = defaultdict(list)
        """Committed text of utterances whose item is not committed yet."""
        self._started = self._stopped = self._done = 0
        self._next_manual = 0
        """First utterance that no manual commit or clear has taken yet."""
        self._last_item: str | None = None
        self._open: list[_Item] = []
        """Committed items not completed yet, in order."""

    def event(self, event: Event) -> list[dict]:
        if isinstance(event, SpeechStarted):
            return self._speech_started(event)
        if isinstance(event, SpeechStopped):
            return self._speech_stopped(event)
        if isinstance(event, TextCommitted):
            return self._text(event)
        if isinstance(event, UtteranceDone):
            return self._utterance_done()
        return []

    def commit(self, seconds: float, event_id: str | None) -> list[dict]:
        """The client committed the buffer; the stream has seen every event before this point in
        the audio, and the open utterance (if any) is being cut here. A manual turn of
        `seconds` of audio becomes an item; with server VAD, the utterance the cut ends is
        committed by its own SpeechStopped, and a buffer with no speech is an error."""
        if not self.manual:
            return [] if self._started > self._stopped else [commit_empty(0.0, event_id)]
        item = _Item(new_id("item"), self._next_manual, self._started, seconds=seconds)
        for index in range(item.first, item.end):
            self._items[index] = item
        self._next_manual = item.end
        return self._commit(item)

    def clear(self) -> None:
        """The client cleared the buffer: the utterances not committed yet are dropped."""
        if self.manual:
            dropped = range(self._next_manual, self._started)
            self._next_manual = self._started
        else:
            dropped = range(self._stopped, self._started)
        for index in dropped:
            self._items.pop(index, None)
            self._waiting.pop(index, None)
            self._cleared.add(index)

    def failed(self, failure: StreamFailed) -> list[dict]:
        """The stream ended in an error: each committed item not completed failed with it."""
        error = {"type": failure.error_type, "code": failure.code, "message": failure.message}
        events = [
            server_event(
                "conversation.item.input_audio_transcription.failed", item_id=item.id, content_index=CONTENT_INDEX, error=error
            )
            for item in self._open
        ]
        self._open.clear()
        return events

    def _speech_started(self, event: SpeechStarted) -> list[dict]:
        index, self._started = self._started, self._started + 1
        if self.manual:
            return []
        item = _Item(new_id("item"), index, index + 1, audio_start=event.time)
        self._items[index] = item
        return [server_event("input_audio_buffer.speech_started", audio_start_ms=_ms(event.time), item_id=item.id)]

    def _speech_stopped(self, event: SpeechStopped) -> list[dict]:
        index, self._stopped = self._stopped, self._stopped + 1
        item = self._items.get(index)
        if self.manual or item is None:
            return []
        item.audio_end = event.time
        stopped = server_event("input_audio_buffer.speech_stopped", audio_end_ms=_ms(event.time), item_id=item.id)
        return [stopped, *self._commit(item)]

    def _text(self, event: TextCommitted) -> list[dict]:
        index = self._done
        if index in self._cleared:
            return []
        item = self._items.get(index)
        if item is None or not item.committed:
            self._waiting[index].append(event)
            return []
        return self._delta(item, event)

    def _utterance_done(self) -> list[dict]:
        index, self._done = self._done, self._done + 1
        item = self._items.get(index)
        if item is not None and item.committed and self._done >= item.end:
            return self._complete(item)
        return []

    def _commit(self, item: _Item) -> list[dict]:
        item.committed = True
        events = [server_event("input_audio_buffer.committed", previous_item_id=self._last_item, item_id=item.id)]
        self._last_item = item.id
        self._open.append(item)
        for index in range(item.first, item.end):
            for text in self._waiting.pop(index, []):
                events += self._delta(item, text)
        if self._done >= item.end:
            events += self._complete(item)
        return events

    def _delta(self, item: _Item, event: TextCommitted) -> list[dict]:
        delta = event.delta if item.text else event.delta.lstrip()
        item.words += event.words
        if not delta:
            return []
        item.text += delta
        fields = {"logprobs": logprobs(event.words)} if self.logprobs else {}
        return [
            server_event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=CONTENT_INDEX,
                delta=delta,
                **fields,
            )
        ]

    def _complete(self, item: _Item) -> list[dict]:
        item.completed = True
        self._open.remove(item)
        for index in range(item.first, item.end):  # every one is done: nothing more comes for them
            self._items.pop(index, None)
        seconds = item.seconds if item.seconds is not None else max(0.0, item.audio_end - item.audio_start)
        fields = {"logprobs": logprobs(item.words)} if self.logprobs else {}
        return [
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item.id,
                content_index=CONTENT_INDEX,
                transcript=item.text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
                **fields,
            )
        ]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
