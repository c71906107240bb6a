"""One stream, decoded the way its audio arrives: live at about real time, as a file when faster.

Audio that arrives at about real time is decoded live (engine/stream.py: utterances cut by the
VAD, text committed as it firms up). Audio that arrives much faster (a file sent whole, a
recording streamed from disk) is decoded the way a file is (engine/whole_windows.py): live
decoding would only lose accuracy on it. The rate is measured over the last RATE_WINDOW_S of wall
time: a live stream at FAST_RATE times real time or more goes over to whole windows; a
whole-window stream under SLOW_RATE goes back to live, once it has been measured over a whole
window since it changed. A stream that says up front that it holds a whole file is decoded as
one when it has all arrived, exactly as without `stream` (engine/whole_windows.py).

A switch loses no word and repeats none: the policies hand over at a point that no decode of the
old one covers, and the new one goes on from there with the text so far as its prompt context.
Live to whole: at the first moment no utterance is open (pushes are sliced until then), from the
end of the last utterance or, if later, from the start of the audio the VAD still holds as its
look-back. Whole to live: once the windows due are decoded, from the end of the last kept word.
Pushes that arrive during a handover wait for it. Each policy runs on its own clock from its first
sample; its events are shifted onto the stream's clock, its utterance ids follow the earlier
ones', and the stream's StreamDone sums all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Word
from stream_server.engine.arrival import ArrivalRate
from stream_server.engine.stream import LatencyObserver, LiveTranscriber, StreamOptions, WindowDecoder, stream_done
from stream_server.engine.whole_windows import FileDecoder, WholeWindowTranscriber
from stream_server.events import (
    Event,
    SpeechStarted,
    SpeechStopped,
    StreamDone,
    StreamFailed,
    TextCommitted,
    TextPartial,
    UtteranceDone,
)

log = logging.getLogger(__name__)

FAST_RATE = 3.5
"""Audio seconds per wall second from which a stream is decoded as a file. A real-time client's
bursts stay well under it (a 2 s burst reads 2x); so do test clients at 2-3x that stand for live
ones. Above it a whole window fills within 30 / 3.5 = 8.6 s, about a live stream's worst commit
delay under load."""
SLOW_RATE = 1.5
"""Under this a whole-window stream goes back to live: at real time a window would take 30 s to fill."""
RATE_WINDOW_S = 2.0
"""Wall seconds the rate is measured over: going whole needs 7 s of audio within them."""
SLICE_S = 0.5
"""While a live stream waits for a pause to go whole, its pushes are fed in pieces this long."""
HELD_MARGIN_S = 0.1
"""Added to the VAD's look-back (plus a partial frame) when handing its held audio over."""

Policy = LiveTranscriber | WholeWindowTranscriber


class AdaptiveTranscriber:
    """What the transports feed: the LiveTranscriber interface (push, finalize_utterance,
    finish, cancel, and the counters), over whichever policy the stream needs now."""

    def __init__(
        self,
        live_decode: WindowDecoder,
        whole_decode: WindowDecoder,
        file_decode: FileDecoder,
        publish: Callable[[Event], None],
        options: StreamOptions = StreamOptions(),
        prompt: str | None = None,
        observer: LatencyObserver | None = None,
        slot_free: Callable[[], bool] = lambda: True,
        *,
        whole: bool = False,
        arrivals_pushed: bool = True,
        now: Callable[[], float] = time.monotonic,
    ):
        """`observer` and `slot_free` are the live policy's. `whole`: the audio is a whole file,
        decoded as one at its end (unless it turns out to arrive slowly: then it goes live, and
        later perhaps whole windows). `arrivals_pushed`:
        pushes are the audio's arrivals; False when a queue between paces them and reports the
        arrivals itself through `arrived`."""
        self._live_decode, self._whole_decode, self._file_decode = live_decode, whole_decode, file_decode
        self._publish = publish
        self.options = options
        self._prompt = prompt
        self._observer, self._slot_free = observer, slot_free
        self._arrivals_pushed = arrivals_pushed
        self._now = now
        self._rate = ArrivalRate(RATE_WINDOW_S, now)
        self._held_samples = round(
            ((options.vad.pre_speech_ms + options.vad.start_ms) / 1000 + HELD_MARGIN_S) * SAMPLE_RATE
        )
        self._recent = np.zeros(0, np.float32)
        """The last audio pushed, as much as the VAD may hold before an utterance starts."""
        self._text = ""
        self._utterances = 0
        self._in_speech = False
        self._quiet_since = 0.0
        """Stream time of the last utterance's end: no live utterance holds audio after it."""
        self._pending: list[np.ndarray | Callable[[], None]] = []
        self._switching: asyncio.Task | None = None
        self._earlier_speech_seconds = 0.0
        self._earlier_prompt_tokens = 0
        self._failed = False
        self.received_seconds = 0.0
        self.switches = 0
        """Times the stream changed policy."""
        self._policy, self._offset, self._since = self._start(whole, 0.0, file=whole), 0.0, now()

    @property
    def whole(self) -> bool:
        """Whether the stream is decoded the way a file is now (whole windows, or a whole file)."""
        return isinstance(self._policy, WholeWindowTranscriber)

    @property
    def text(self) -> str:
        return self._text

    @property
    def failed(self) -> bool:
        return self._failed or self._policy.failed

    @property
    def speech_seconds(self) -> float:
        return self._earlier_speech_seconds + self._policy.speech_seconds

    @property
    def prompt_tokens(self) -> int:
        return self._earlier_prompt_tokens + self._policy.prompt_tokens

    @property
    def backlog_seconds(self) -> float:
        pending = sum(len(p) for p in self._pending if isinstance(p, np.ndarray)) / SAMPLE_RATE
        return self._policy.backlog_seconds + pending

    def arrived(self, seconds: float) -> None:
        """Audio reached the server (it may be pushed later: the policy for it is chosen by the
        rate it arrived at, whenever it is pushed)."""
        self._rate.add(seconds)

    def push(self, pcm: np.ndarray) -> None:
        """Take 16 kHz mono float32 audio; never blocks on decoding."""
        if self._arrivals_pushed:
            self.arrived(len(pcm) / SAMPLE_RATE)
        if self.whole or self._switching is not None or not self._fast(self.received_seconds + len(pcm) / SAMPLE_RATE):
            self._take(pcm)
            return
        size = round(SLICE_S * SAMPLE_RATE)
        for start in range(0, len(pcm), size):
            self._take(pcm[start : start + size])

    def finalize_utterance(self) -> None:
        if self._switching is not None:
            self._pending.append(lambda: self._policy.finalize_utterance())
        else:
            self._policy.finalize_utterance()

    async def finish(self, *, done: bool = True) -> None:
        """End of audio: the current policy decodes the rest; one StreamDone for the stream
        (not with `done` off: the input failed, and the caller publishes why after the text)."""
        while self._switching is not None:
            await asyncio.shield(self._switching)
        await self._policy.finish()
        if done and not self.failed:
            self._publish(stream_done(self))

    async def cancel(self) -> None:
        if self._switching is not None:
            self._switching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._switching
        await self._policy.cancel()

    def _fast(self, position: float) -> bool:
        """Whether the audio at `position` arrived fast enough to be decoded as a file."""
        return self._rate.rate_at(position) >= FAST_RATE

    def _slow(self, position: float) -> bool:
        """Whether it arrived slowly enough to go live, measured over a whole window since the
        stream last changed policy."""
        return self._now() - self._since >= RATE_WINDOW_S and self._rate.rate_at(position) < SLOW_RATE

    def _take(self, pcm: np.ndarray) -> None:
        self.received_seconds += len(pcm) / SAMPLE_RATE
        self._recent = np.concatenate([self._recent, pcm])[-self._held_samples :]
        if self._switching is not None:
            self._pending.append(pcm)
        elif self.failed:
            self._policy.push(pcm)
        elif self.whole and self._slow(self.received_seconds):
            self._pending.append(pcm)
            self._switching = asyncio.ensure_future(self._hand_over(to_whole=False))
        else:
            self._policy.push(pcm)
            if not self.whole and not self._in_speech and self._fast(self.received_seconds):
                at = max(self._quiet_since, self.received_seconds - self._held_samples / SAMPLE_RATE)
                held = self._recent[len(self._recent) - round((self.received_seconds - at) * SAMPLE_RATE) :]
                self._switching = asyncio.ensure_future(self._hand_over(to_whole=True, at=at, audio=held))

    async def _hand_over(self, *, to_whole: bool, at: float = 0.0, audio: np.ndarray | None = None) -> None:
        old = self._policy
        await old.drain()
        if not to_whole:
            start, audio = old.undecoded()
            at = self._offset + start
        if not old.failed:  # a failed stream ends with its error: nothing to hand over
            self._earlier_speech_seconds += old.speech_seconds
            self._earlier_prompt_tokens += old.prompt_tokens
            self._policy, self._offset, self._since = self._start(to_whole, at), at, self._now()
            self._in_speech, self._quiet_since = False, at
            self.switches += 1
            log.info("stream goes %s at %.2f s of audio", "whole" if to_whole else "live", at)
        pending, self._pending, self._switching = self._pending, [], None
        for item in [audio, *pending]:
            if callable(item):
                item()
            elif item is not None and len(item):
                self._policy.push(item)

    def _start(self, whole: bool, at: float, file: bool = False) -> Policy:
        publish = self._publisher(at, self._utterances)
        if whole:
            file_decode = self._file_decode if file else None
            return WholeWindowTranscriber(self._whole_decode, publish, self._prompt, self._text, file_decode)
        return LiveTranscriber(
            self._live_decode, publish, self.options, self._prompt, self._observer, self._slot_free, context=self._text
        )

    def _publisher(self, offset: float, first_id: int) -> Callable[[Event], None]:
        def publish(event: Event) -> None:
            if isinstance(event, StreamDone):
                return  # the live policy's own: the stream's comes from finish
            event = on_stream_clock(event, offset, first_id)
            if isinstance(event, TextCommitted):
                delta = "".join(w.text for w in event.words)  # as LiveTranscriber joins them
                event = dataclasses.replace(event, delta=delta if self._text else delta.lstrip())
                self._text += event.delta
            elif isinstance(event, SpeechStarted):
                self._in_speech = True
            elif isinstance(event, SpeechStopped):
                self._in_speech, self._quiet_since = False, event.time
            elif isinstance(event, UtteranceDone):
                self._utterances = event.utterance_id + 1
            elif isinstance(event, StreamFailed):
                self._failed = True
            self._publish(event)

        return publish


def on_stream_clock(event: Event, offset: float, first_id: int) -> Event:
    """A policy's event with its times moved by `offset` and its utterance id by `first_id`."""
    if offset == 0 and first_id == 0:
        return event
    if isinstance(event, (SpeechStarted, SpeechStopped)):
        return dataclasses.replace(event, time=event.time + offset)
    if isinstance(event, TextPartial):
        return dataclasses.replace(event, start=event.start + offset, end=event.end + offset, words=_shifted(event.words, offset))
    if isinstance(event, TextCommitted):
        return dataclasses.replace(event, start=event.start + offset, end=event.end + offset, words=_shifted(event.words, offset))
    if isinstance(event, UtteranceDone):
        return dataclasses.replace(
            event,
            utterance_id=event.utterance_id + first_id,
            start=event.start + offset,
            end=event.end + offset,
            words=_shifted(event.words, offset),
        )
    return event


def _shifted(words: tuple[Word, ...], offset: float) -> tuple[Word, ...]:
    return tuple(w.later(offset) for w in words)
