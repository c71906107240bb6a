"""The live transcriber: 16 kHz PCM pushed as it arrives, events published as text firms up.

Per utterance (cut by the VAD), it decodes a rolling window every `step_s` of new speech,
commits what two consecutive decodes agree on, and decodes the whole remaining window once
more when the utterance ends. That last decode starts at the first pause that may end the
utterance (SpeechPause), so its final is out as soon as the silence is confirmed; if speech
resumes, it served as a partial. One decode at a time per stream, in utterance order.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Awaitable, Protocol

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.engine.stability import LocalAgreement, normalise, words_after
from stream_server.engine.telemetry import LagAlarm
from stream_server.engine.worker import DecodeWorker
from stream_server.events import (
    DecodingLag,
    Event,
    SpeechStarted,
    SpeechStopped,
    StreamDone,
    StreamFailed,
    TextCommitted,
    TextPartial,
    UtteranceDone,
)
from stream_server.vad.segmenter import SpeechAudio, SpeechEnd, SpeechPause, SpeechSegmenter, SpeechStart, VadOptions

ARRIVALS_KEPT = 8192
"""Pushes remembered for latency measurement (over 13 minutes of 100 ms chunks)."""
ECHO_CHECK_S = 1.5
MIN_WORDS_PER_S = 1.0
"""A final of at least ECHO_CHECK_S with fewer words a second than this is decoded again
without the stream's text as prompt (slow speech is about 2 words a second)."""
MIN_FINAL_S = 0.1
"""An utterance with less audio of its own is not decoded (one cut mid-speech just before the
stream ended holds a frame or two)."""


@dataclass(frozen=True)
class StreamOptions:
    step_s: float = 0.6
    """Decode the open utterance again once this much new speech has arrived."""
    min_first_decode_s: float = 1.0
    """Speech needed before an utterance's first partial decode."""
    max_window_s: float = 20.0
    """Past this the window is trimmed at a committed word, so cost stays bounded."""
    keep_after_trim_s: float = 5.0
    """Uncommitted audio kept when a long window must be cut without agreement."""
    commit_margin_s: float = 0.5
    """A word is committed only once this much audio follows it in the window."""
    min_commit_probability: float = 0.6
    uncertain_margin_s: float = 3.0
    """A word the decoder gives less than `min_commit_probability` needs this much audio after
    it before it is committed: more context often corrects it ("asked not" -> "ask not what")."""
    sure_probability: float | None = 0.95
    sure_margin_s: float = 0.3
    """A word that no earlier decode saw is committed from one decode if the decoder gives it at
    least `sure_probability` and `sure_margin_s` of audio follows it (None: always wait for a
    second decode to agree). On the virtual clock (1 stream, dev and tune feeds) commit p50 fell
    0.1 s, WER the same or lower; at 0.75-0.9 or margins of 0.5-1.0 s WER rose."""
    cut_context_s: float = 1.0
    """At a cut while the speaker goes on (a finalize mid-speech), each side's decode also hears
    this much audio from the other side and keeps only its own words (the cut utterance those
    centred before the cut, the next one those it did not keep): a window ending or starting
    mid-phrase was decoded badly ("And so am I fellow Americans" for "And so my fellow
    Americans"; "then leisure" as "then" + "it was easier"), and a word across the cut came out
    as two wrong ones ("intense" + "city"). The cut utterance's final waits for this much of
    what follows; the next utterance starts after the last word it kept."""
    partial_decodes: bool = True
    """Decode the open utterance while it lasts, for partials and early commits. Off (a recorder
    that shows no partials), each utterance is decoded once, when it ends: its text comes then,
    at a fraction of the cost."""
    prompt_chars: int = 200
    """Committed text (before the window) given to the decoder as context."""
    hallucination_no_speech_prob: float = 0.4
    hallucination_avg_logprob: float = -0.5
    """A decoded segment above that no-speech probability and below that average log-probability
    is dropped: on the VAD-cut windows of the dev feed every invented segment ("you.",
    "Thanks.", a repeated sentence) fell there and no real one did."""
    max_compression_ratio: float = 2.4
    """A segment whose text compresses better than this is a repetition loop (". . . . .",
    one phrase over and over), Whisper's own threshold for a failed decode: live windows have no
    hotter retry (service.LIVE_HOTTER_RETRIES), so it is dropped."""
    lag_alarm_s: float | None = 4.0
    """A decode whose result comes this long after the last audio it covers arrived tells the
    client the stream is behind (DecodingLag); one within half of it, that it caught up. None:
    never told."""
    vad: VadOptions = field(default_factory=VadOptions)


class StreamTotals(Protocol):
    """What a stream's transcriber has done, for its StreamDone."""

    text: str
    received_seconds: float
    speech_seconds: float
    prompt_tokens: int


def stream_done(totals: StreamTotals) -> StreamDone:
    return StreamDone(
        text=totals.text,
        duration=totals.received_seconds,
        speech_seconds=totals.speech_seconds,
        prompt_tokens=totals.prompt_tokens,
    )


class WindowDecoder(Protocol):
    def __call__(
        self, audio: np.ndarray, prompt: str | None, *, final: bool, deadline: float
    ) -> Awaitable[Transcription]: ...


class LatencyObserver(Protocol):
    """Told, in wall seconds, how long after its audio arrived the text was shown."""

    def partial(self, delay: float) -> None:
        """A partial was published: delay since the audio at its end arrived."""

    def committed(self, delays: Sequence[float]) -> None:
        """Words were committed: per word, delay since the audio at its end arrived."""


@dataclass(frozen=True)
class _FinalDecode:
    """A final-quality decode of an utterance's window, started at a pause."""

    audio_start: float
    samples: int
    words: list[Word]


@dataclass
class _Utterance:
    id: int
    start: float
    audio: np.ndarray
    audio_start: float
    """Stream time of `audio[0]`; moves forward when the window is trimmed."""
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    end: float | None = None
    trailing_silence: float = 0.0
    """Seconds of non-speech at the end of `audio` when it closed."""
    continued: bool = False
    """Cut mid-speech: the next utterance starts where this one ends."""
    closed_at: float = 0.0
    """Wall time it closed."""
    context_samples: int = 0
    """Samples at the start of `audio` that the previous utterance decoded: context heard
    across a mid-speech cut."""
    heard_before: list[Word] = field(default_factory=list)
    """That utterance's words within that audio: decoded again here, they are dropped, and
    they are left out of the prompt, which must end where the window starts."""
    pause_samples: int | None = None
    """Length of `audio` at the latest SpeechPause: a final-quality decode is due there."""
    early_final: _FinalDecode | None = None
    decoded_samples: int = 0
    """Samples of `audio` the last decode saw."""
    waiting_since: float | None = None
    """Wall time the oldest undecoded audio arrived: the decode deadline."""

    @property
    def audio_end(self) -> float:
        return self.audio_start + len(self.audio) / SAMPLE_RATE

    def undecoded_seconds(self) -> float:
        return (len(self.audio) - max(self.decoded_samples, self.context_samples)) / SAMPLE_RATE

    def early_final_due(self) -> bool:
        covered = self.early_final.samples if self.early_final is not None else 0
        return self.pause_samples is not None and covered < self.pause_samples

    def reusable_final(self) -> list[Word] | None:
        """The early final's words, if all the audio after it is the silence that closed the
        utterance (so decoding the whole window again would hear nothing new)."""
        early = self.early_final
        silence_from = len(self.audio) - int(self.trailing_silence * SAMPLE_RATE)
        if early is None or early.audio_start != self.audio_start or early.samples < silence_from:
            return None
        return early.words


class LiveTranscriber:
    def __init__(
        self,
        decode: WindowDecoder,
        publish: Callable[[Event], None],
        options: StreamOptions = StreamOptions(),
        prompt: str | None = None,
        observer: LatencyObserver | None = None,
        slot_free: Callable[[], bool] = lambda: True,
        context: str = "",
    ):
        """`slot_free` says whether a decode asked for now would start at once (the scheduler
        has an idle slot)."""
        self._decode = decode
        self._slot_free = slot_free
        self._observer = observer
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=ARRIVALS_KEPT)
        """(stream time at the end of a push, wall time it arrived), in order."""
        self._publish = publish
        self.options = options
        self._user_prompt = prompt
        self._segmenter = SpeechSegmenter(options.vad)
        self._open: _Utterance | None = None
        self._closed: deque[_Utterance] = deque()
        self._worker = DecodeWorker(self._decode_next, self._decode_due, self._decoding_failed)
        self._lag = LagAlarm(options.lag_alarm_s) if options.lag_alarm_s is not None else None
        self._partial_in_flight = False
        """The worker awaits a plain partial decode (not one at a pause)."""
        self._next_id = 0
        self._text = ""
        self._context = context
        """Committed text that is no longer inside any window: the decoder's prompt (at first,
        the text a stream committed before this transcriber took it over)."""
        self.received_seconds = 0.0
        self.speech_seconds = 0.0
        self.prompt_tokens = 0

    @property
    def text(self) -> str:
        return self._text

    @property
    def backlog_seconds(self) -> float:
        """Speech received but not yet decoded where a decode is due: how far decoding lags
        behind the audio. The open utterance counts only while a decode runs or one of it is
        due: without partial decodes, or in the first silence of a pause, it waits for more
        audio, and a source paced by this backlog must not hold that audio back."""
        closed = sum(len(u.audio) for u in self._closed) / SAMPLE_RATE
        utterance = self._open
        if utterance is None or not self.options.partial_decodes:
            return closed
        if not (self.decoding or self._partial_due(utterance)):
            return closed
        return closed + utterance.undecoded_seconds()

    @property
    def decoding(self) -> bool:
        """A decode is under way (so the backlog will shrink without more audio)."""
        return self._worker.busy

    @property
    def failed(self) -> bool:
        return self._worker.failed

    def push(self, pcm: np.ndarray) -> None:
        """Take 16 kHz mono float32 audio; never blocks on decoding."""
        self.received_seconds += len(pcm) / SAMPLE_RATE
        self._arrivals.append((self.received_seconds, time.monotonic()))
        self._segment(self._segmenter.push(pcm))

    def finalize_utterance(self) -> None:
        """Close the open utterance now (a client's 'finalize'): its final comes next. Speech that
        goes on opens the next utterance from exactly this point."""
        self._segment(self._segmenter.cut())

    async def finish(self, *, done: bool = True) -> None:
        """End of audio: close the last utterance, wait for every decode, publish StreamDone
        (not with `done` off: the input failed, and the caller publishes why after the text)."""
        self._segment(self._segmenter.flush())
        await self.drain()
        if done and not self.failed:
            self._publish(stream_done(self))

    async def drain(self) -> None:
        """Wait until every decode that is due has run: called between utterances, the closed
        ones' finals. The audio the segmenter holds that no utterance took is left undecoded."""
        await self._worker.drain()

    async def cancel(self) -> None:
        """The client went away: stop decoding for it."""
        await self._worker.cancel()

    def _segment(self, events: list) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                self._open = _Utterance(self._next_id, event.time, np.zeros(0, np.float32), event.time)
                self._next_id += 1
                self._publish(SpeechStarted(time=event.time))
            elif isinstance(event, SpeechAudio) and self._open is not None:
                self._open.audio = np.concatenate([self._open.audio, event.samples])
                self._open.waiting_since = self._open.waiting_since or time.monotonic()
                self.speech_seconds += len(event.samples) / SAMPLE_RATE
            elif isinstance(event, SpeechPause) and self._open is not None:
                self._open.pause_samples = len(self._open.audio)
                self._abandon_partial()
            elif isinstance(event, SpeechEnd) and self._open is not None:
                self._close(event.time, event.trailing_silence, event.continued)
        self._kick()

    def _close(self, end: float, trailing_silence: float, continued: bool) -> None:
        utterance, self._open = self._open, None
        utterance.end, utterance.trailing_silence, utterance.continued = end, trailing_silence, continued
        utterance.closed_at = time.monotonic()
        utterance.waiting_since = utterance.waiting_since or utterance.closed_at
        self._closed.append(utterance)
        self._publish(SpeechStopped(time=end))
        if continued:  # its final waits for the lookahead, but no longer than it takes in real time
            asyncio.get_running_loop().call_later(self.options.cut_context_s, self._kick)
        self._kick()

    def _abandon_partial(self) -> None:
        """The speaker paused while a partial decodes and a slot is free: the partial's result
        would come only to be overtaken by the pause's final decode, which instead starts now
        on that slot (one stream alone: its final is out a whole decode sooner), and the
        partial is cancelled. Under load (no free slot) the partial stays: queued, it may share
        a call with other streams' windows, which a final decode never does."""
        if self._partial_in_flight and self._slot_free() and self.decoding:
            self._worker.interrupt()
            self._partial_in_flight = False

    def _kick(self) -> None:
        self._worker.kick()

    def _decode_due(self) -> bool:
        return self._final_due() or (not self._closed and self._open is not None and self._partial_due(self._open))

    def _final_due(self) -> bool:
        """The oldest closed utterance can be decoded: if it was cut mid-speech, once the
        lookahead it needs has arrived, the next utterance closed too, or the lookahead's
        length has passed in real time (a client that finalized and waits sends nothing more)."""
        if not self._closed:
            return False
        head, wait = self._closed[0], self.options.cut_context_s
        return (
            not head.continued
            or len(self._closed) > 1
            or self._open is None
            or self._open.audio_end - head.audio_end >= wait
            or time.monotonic() - head.closed_at >= wait
        )

    def _partial_due(self, utterance: _Utterance) -> bool:
        if not self.options.partial_decodes:
            return False
        if utterance.early_final_due():
            return True
        if self._segmenter.trailing_silence * 1000 >= self.options.vad.pause_ms / 2:
            return False  # the speaker paused: keep the decoder free for the pause's final decode
        needed = self.options.step_s if utterance.decoded_samples else self.options.min_first_decode_s
        return utterance.undecoded_seconds() >= needed

    async def _decode_next(self) -> None:
        """The oldest closed utterance's final, else a partial of the open one."""
        if self._final_due():
            await self._final(self._closed[0])
            self._closed.popleft()
        else:
            self._partial_in_flight = not self._open.early_final_due()
            await self._partial(self._open)
            self._partial_in_flight = False

    def _decoding_failed(self, exc: Exception) -> None:
        self._publish(StreamFailed(message=f"decoding failed: {exc}", code="decode_failed", error_type="server_error"))

    async def _run_decode(self, utterance: _Utterance, final: bool, lookahead: np.ndarray | None = None) -> list[Word]:
        audio = utterance.audio
        deadline = utterance.waiting_since or time.monotonic()
        utterance.decoded_samples, utterance.waiting_since = len(audio), None
        if lookahead is not None:
            audio = np.concatenate([audio, lookahead])
        context = self._context
        if utterance.heard_before:  # the window says those words itself: the prompt is what came before
            context = context.removesuffix(_join(utterance.heard_before).strip()).rstrip()
        prompt = " ".join(p for p in (self._user_prompt, context[-self.options.prompt_chars :]) if p)
        window_end = utterance.audio_start + len(audio) / SAMPLE_RATE
        words = await self._words(utterance, audio, prompt or None, final, deadline)
        self._note_lag(window_end)
        seconds = len(audio) / SAMPLE_RATE
        if final and context and seconds >= ECHO_CHECK_S and len(words) < seconds * MIN_WORDS_PER_S:
            # Whisper can take the window's first words for the prompt's last ones and skip them
            # (prompted with "... can do for you", it heard only "country." of "Ask what you can
            # do for your country."): decode such a final again without the stream's text
            alone = await self._words(utterance, audio, self._user_prompt, final, deadline)
            words = alone if len(alone) > len(words) else words
        return words

    def _note_lag(self, window_end: float) -> None:
        """A result is in for the audio up to `window_end`: tell the client if that changed
        whether the stream is behind."""
        if self._lag is None:
            return
        lag = time.monotonic() - self._arrived_at(window_end)
        if self._lag.observe(lag):
            self._publish(DecodingLag(behind=self._lag.behind, lag_s=round(lag, 3)))

    async def _words(
        self, utterance: _Utterance, audio: np.ndarray, prompt: str | None, final: bool, deadline: float
    ) -> list[Word]:
        """The window's words on the stream's clock, less invented segments and copied sentences."""
        result = await self._decode(audio, prompt, final=final, deadline=deadline)
        self.prompt_tokens += result.prompt_tokens
        offset, seen = utterance.audio_start, _sentences(prompt or "")
        words = []
        for segment in result.segments:
            if not self._is_speech(segment):
                continue
            for sentence in _split_sentences(segment.words):
                text = _normalised(_join(sentence))
                if text in seen and len(text.split()) >= MIN_COPIED_WORDS:
                    continue  # a copy of a sentence from the prompt or earlier in the window
                seen.add(text)
                words += [
                    w.later(offset)
                    for w in sentence
                    if normalise(w.text)  # punctuation alone is not a word
                ]
        return words_after(words, utterance.heard_before) if utterance.heard_before else words

    def _is_speech(self, segment: Segment) -> bool:
        invented = (
            segment.no_speech_prob > self.options.hallucination_no_speech_prob
            and segment.avg_logprob < self.options.hallucination_avg_logprob
        )
        return not invented and segment.compression_ratio <= self.options.max_compression_ratio

    async def _partial(self, utterance: _Utterance) -> None:
        early = utterance.early_final_due()
        audio_start, samples = utterance.audio_start, len(utterance.audio)
        words = await self._run_decode(utterance, final=early)
        if early:
            utterance.early_final = _FinalDecode(audio_start, samples, words)
        window_end = utterance.audio_end
        settled = lambda word: self._settled(word, window_end)  # noqa: E731
        sure = (lambda word: self._sure(word, window_end)) if self.options.sure_probability is not None else None
        self._commit(utterance.agreement.update(words, settled, sure))
        self._bound_window(utterance)
        self._publish_tail(utterance.agreement.tail)

    def _settled(self, word: Word, window_end: float) -> bool:
        """Whisper is least reliable about a window's last words, and about words it gives a low
        probability: those wait until enough audio follows them, or for the utterance's final."""
        options = self.options
        sure = word.probability >= options.min_commit_probability
        return word.end <= window_end - (options.commit_margin_s if sure else options.uncertain_margin_s)

    def _sure(self, word: Word, window_end: float) -> bool:
        options = self.options
        return word.probability >= options.sure_probability and word.end <= window_end - options.sure_margin_s

    def _publish_tail(self, tail: list[Word]) -> None:
        if tail:
            text = _join(tail).strip()
            self._publish(TextPartial(text=text, start=tail[0].start, end=tail[-1].end, words=tuple(tail)))
            if self._observer is not None:
                self._observer.partial(time.monotonic() - self._arrived_at(tail[-1].end))

    async def _final(self, utterance: _Utterance) -> None:
        if len(utterance.audio) - utterance.context_samples >= MIN_FINAL_S * SAMPLE_RATE:
            if utterance.continued:
                words = await self._final_at_cut(utterance)
            else:
                words = utterance.reusable_final()
                if words is None:
                    words = await self._run_decode(utterance, final=True)
            self._commit(utterance.agreement.commit_all(words))
        committed = utterance.agreement.committed
        text = _join(committed).strip()
        in_window = [w for w in committed if w.end > utterance.audio_start]
        self._context = f"{self._context} {_join(in_window).strip()}".strip()
        self._publish(
            UtteranceDone(
                utterance_id=utterance.id,
                text=text,
                start=utterance.start,
                end=utterance.end if utterance.end is not None else utterance.audio_end,
                words=tuple(committed),
            )
        )

    async def _final_at_cut(self, utterance: _Utterance) -> list[Word]:
        """The final of an utterance cut mid-speech, decoded with `cut_context_s` of what follows.
        The next utterance (not decoded yet: finals come first) then starts after the last word
        kept here, with at least `cut_context_s` of this one's audio before the cut as context."""
        successor = self._closed[1] if len(self._closed) > 1 else self._open
        context = int(self.options.cut_context_s * SAMPLE_RATE)
        lookahead = successor.audio[:context] if successor is not None else None
        words = await self._run_decode(utterance, final=True, lookahead=lookahead)
        cut = utterance.audio_end
        kept = [w for w in words if (w.start + w.end) / 2 < cut]
        if successor is not None and abs(successor.audio_start - cut) < 1e-3:
            final_words = [*utterance.agreement.committed, *utterance.agreement.unseen(kept)]
            resume = final_words[-1].end if final_words else utterance.audio_start
            # from the last word kept, or from `cut_context_s` before the cut if that is earlier:
            # what this final did not keep, the next utterance hears
            start = max(min(resume, cut - self.options.cut_context_s), utterance.audio_start)
            before = utterance.audio[int(round((start - utterance.audio_start) * SAMPLE_RATE)) :]
            successor.audio, successor.context_samples = np.concatenate([before, successor.audio]), len(before)
            successor.audio_start -= len(before) / SAMPLE_RATE
            successor.heard_before = [w for w in final_words if w.end > successor.audio_start]
            successor.start = min(max(resume, successor.audio_start), cut)
        return kept

    def _commit(self, words: list[Word]) -> None:
        if not words:
            return
        delta = _join(words)
        if not self._text:
            delta = delta.lstrip()
        self._text += delta
        self._publish(TextCommitted(delta=delta, start=words[0].start, end=words[-1].end, words=tuple(words)))
        if self._observer is not None:
            now = time.monotonic()
            self._observer.committed([now - self._arrived_at(w.end) for w in words])

    def _arrived_at(self, stream_time: float) -> float:
        """Wall time the audio at `stream_time` arrived (the oldest remembered, if forgotten)."""
        if not self._arrivals:
            return time.monotonic()
        index = bisect.bisect_left(self._arrivals, (stream_time,))
        return self._arrivals[min(index, len(self._arrivals) - 1)][1]

    def _bound_window(self, utterance: _Utterance) -> None:
        """Cut a long window at a committed word so each decode stays well inside 30 s."""
        length = utterance.audio_end - utterance.audio_start
        if length <= self.options.max_window_s:
            return
        agreement = utterance.agreement
        self._commit(agreement.commit_tail_before(utterance.audio_end - self.options.keep_after_trim_s))
        if agreement.tail or agreement.committed_end > utterance.audio_start:
            cut = agreement.committed_end  # never drop audio whose words are not committed yet
        else:
            cut = utterance.audio_end - self.options.max_window_s  # the decoder heard no words in it
        if cut <= utterance.audio_start:
            return
        inside = [w for w in agreement.committed if w.end > utterance.audio_start and w.end <= cut]
        self._context = f"{self._context} {_join(inside).strip()}".strip()
        drop = int((cut - utterance.audio_start) * SAMPLE_RATE)
        utterance.audio = utterance.audio[drop:]
        utterance.audio_start = cut
        utterance.decoded_samples = max(0, utterance.decoded_samples - drop)
        utterance.context_samples, utterance.heard_before = max(0, utterance.context_samples - drop), []


MIN_COPIED_WORDS = 3
"""A decoded sentence of at least this many words that repeats one of the prompt's, or one
before it in the same window, is dropped: prompted with the text before, Whisper (base
especially) echoes its sentences on short windows ("The blind man counted his old coins."
four times)."""


def _normalised(text: str) -> str:
    return " ".join(normalise(w) for w in text.split() if normalise(w))


def _split_sentences(words: tuple[Word, ...]) -> list[list[Word]]:
    sentences: list[list[Word]] = [[]]
    for word in words:
        sentences[-1].append(word)
        if word.text.rstrip().endswith((".", "!", "?")):
            sentences.append([])
    return [s for s in sentences if s]


def _sentences(text: str) -> set[str]:
    return {_normalised(s) for s in re.split(r"(?<=[.!?])\s+", text) if _normalised(s)}


def _join(words: list[Word] | tuple[Word, ...]) -> str:
    return "".join(w.text for w in words)
