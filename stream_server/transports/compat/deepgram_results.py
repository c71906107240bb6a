"""Engine events -> Deepgram live messages, per channel:

- a partial (the unstable tail) is an interim `Results` (`is_final: false`);
- committed words are a final `Results` (`is_final: true`), contiguous with the one before;
- an utterance's end is a final `Results` with `speech_final: true` when the VAD's silence (the
  stream's `endpointing`) ended it; one cut by `Finalize` is `from_finalize: true` instead, and
  one cut mid-speech (an utterance at its longest) or by the end of the stream is neither;
- a speech start is `SpeechStarted` (not the restart after a mid-speech cut);
- `UtteranceEnd` at a gap of `utterance_end_ms` after the last word heard: before the next
  word that comes after such a gap, or once that much audio has passed with no speech started
  that could still fill it.

The commit that closes an utterance and its end are published together, so a batch (the events
available at once) is translated as a whole: they become one final `Results`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stream_server.decoder.results import Word
from stream_server.events import Event, SpeechStarted, SpeechStopped, TextCommitted, TextPartial, UtteranceDone
from stream_server.transports.compat import deepgram_messages as messages
from stream_server.transports.compat.deepgram_params import ListenParams


@dataclass
class _Utterance:
    start: float
    """Where the VAD heard its speech start: none of its words is earlier."""
    stopped_seq: int | None = None
    """Seq of the SpeechStopped that closed it."""
    continued: bool = False
    """Cut while the speaker went on: the next utterance starts at its end."""


@dataclass
class _Channel:
    index: int
    cursor: float = 0.0
    """End of the last final Results: the next one starts here."""
    open: dict[int, _Utterance] = field(default_factory=dict)
    """Utterances started and not done yet, by id (ids count the channel's speech starts)."""
    started: int = 0
    pending: list[Word] = field(default_factory=list)
    """Committed words of this batch not sent yet."""
    last: Event | None = None
    """The channel's previous event in the stream."""
    last_word_end: float | None = None
    words_since_end: bool = False
    """Words were sent since the last UtteranceEnd."""


class DeepgramResults:
    def __init__(self, params: ListenParams, request: str, model: messages.ModelInfo, channels: int):
        self.params = params
        self._request, self._model = request, model
        self._count = channels
        self._channels: dict[int, _Channel] = {}
        self._finalize_seqs: set[int] = set()
        self._closing_seq: int | None = None

    def finalized(self, seqs: Iterable[int]) -> None:
        """Events with these seqs came of a client's Finalize."""
        self._finalize_seqs.update(seqs)

    def closing(self, seq: int) -> None:
        """From this seq on, events come of the end of the stream (CloseStream, idle timeout)."""
        self._closing_seq = seq

    def translate(self, batch: Iterable[Event]) -> list[dict]:
        out: list[dict] = []
        for event in batch:
            channel = self._channel(event.channel)
            out += self._event(channel, event)
            channel.last = event
        for channel in self._channels.values():
            out += self._flush(channel)
        return out

    def utterance_ends(self, audio_seconds: float, ended: bool = False) -> list[dict]:
        """The UtteranceEnd messages due with `audio_seconds` of audio pushed: the gap has passed
        and no utterance that started within it is still to be decoded (all of them at the
        stream's end: nothing more can be said)."""
        out = []
        for channel in self._channels.values():
            horizon = self._horizon(channel)
            if horizon is None:
                continue
            within = any(u.start < horizon for u in channel.open.values())
            if ended or (audio_seconds >= horizon and not within):
                out += self._utterance_end(channel)
        return out

    def _horizon(self, channel: _Channel) -> float | None:
        """Where the gap after the channel's last word ends, if an UtteranceEnd may be due."""
        gap_ms = self.params.utterance_end_ms
        if gap_ms is None or not channel.words_since_end or channel.last_word_end is None:
            return None
        return channel.last_word_end + gap_ms / 1000

    def _utterance_end(self, channel: _Channel) -> list[dict]:
        channel.words_since_end = False
        return [messages.utterance_end(self._index(channel), channel.last_word_end or 0.0)]

    def _channel(self, index: int | None) -> _Channel:
        index = index or 0
        if index not in self._channels:
            self._channels[index] = _Channel(index)
        return self._channels[index]

    def _index(self, channel: _Channel) -> tuple[int, int]:
        return channel.index, max(self._count, channel.index + 1)

    def _event(self, channel: _Channel, event: Event) -> list[dict]:
        if isinstance(event, SpeechStarted):
            last = channel.last
            restart = isinstance(last, SpeechStopped) and abs(last.time - event.time) < 1e-6
            if restart and channel.started - 1 in channel.open:
                channel.open[channel.started - 1].continued = True
            channel.open[channel.started] = _Utterance(event.time)
            channel.started += 1
            if self.params.vad_events and not restart:
                return [messages.speech_started(self._index(channel), event.time)]
        elif isinstance(event, SpeechStopped):
            if channel.started - 1 in channel.open:
                channel.open[channel.started - 1].stopped_seq = event.seq
        elif isinstance(event, TextCommitted):
            channel.pending += event.words
        elif isinstance(event, TextPartial):
            out = self._flush(channel)
            if self.params.interim_results and event.words:
                out += self._results(channel, list(event.words), max(channel.cursor, event.end), is_final=False)
            return out
        elif isinstance(event, UtteranceDone):
            return self._utterance_done(channel, event)
        return []

    def _utterance_done(self, channel: _Channel, event: UtteranceDone) -> list[dict]:
        utterance = channel.open.pop(event.utterance_id, _Utterance(event.start))
        seq = utterance.stopped_seq
        from_finalize = seq in self._finalize_seqs
        by_silence = seq is not None and (self._closing_seq is None or seq < self._closing_seq)
        speech_final = self.params.endpointing and by_silence and not utterance.continued and not from_finalize
        words, channel.pending = channel.pending, []
        end = max([channel.cursor, event.end, *(w.end for w in words)])
        return self._final(channel, words, end, speech_final=speech_final, from_finalize=from_finalize)

    def _flush(self, channel: _Channel) -> list[dict]:
        """The batch's commits that no utterance end follows: a final Results of their own."""
        if not channel.pending:
            return []
        words, channel.pending = channel.pending, []
        return self._final(channel, words, max(channel.cursor, words[-1].end))

    def _final(self, channel: _Channel, words: list[Word], end: float, **flags: bool) -> list[dict]:
        out = self._results(channel, words, end, is_final=True, **flags)
        channel.cursor = end
        return out

    def _results(self, channel: _Channel, words: list[Word], end: float, **flags: bool) -> list[dict]:
        """A Results message; an UtteranceEnd before it if its words come after the gap."""
        out = []
        if words:
            horizon = self._horizon(channel)
            if horizon is not None and words[0].start >= horizon:
                out = self._utterance_end(channel)
            channel.last_word_end = max(channel.last_word_end or 0.0, words[-1].end)
            channel.words_since_end = True
        body = messages.results(
            words,
            channel=self._index(channel),
            start=channel.cursor,
            end=end,
            punctuate=self.params.punctuate,
            request=self._request,
            model=self._model,
            **flags,
        )
        return [*out, body]
