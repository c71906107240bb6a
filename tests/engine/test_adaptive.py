"""The switch between live decoding and whole windows, with scripted fake decoders that know
where each word of the stream lies (the real model is tested end to end)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.engine.adaptive import AdaptiveTranscriber
from stream_server.events import StreamDone, TextCommitted, UtteranceDone
from tests.engine.test_stream import synthetic_options
from tests.vad.test_segmenter import voice

WORD_S, GAP_S, PAUSE_S = 0.3, 0.1, 1.2
"""Each word is a vowel of WORD_S, the words of a sentence GAP_S apart, sentences PAUSE_S."""


class Script:
    """A stream of numbered words ("w0 w1 ..."), and a decoder for each policy that hears
    exactly the words inside the window it is given, a word cut by the window's edge garbled."""

    def __init__(self, sentences: int, words_per_sentence: int = 5, lead_s: float = 0.0):
        rng = np.random.default_rng(7)
        parts, self.spans, t = [self._quiet(lead_s, rng)], [], lead_s
        for _ in range(sentences):
            for _ in range(words_per_sentence):
                parts += [voice(WORD_S, rng), self._quiet(GAP_S, rng)]
                self.spans.append((t, t + WORD_S))
                t += WORD_S + GAP_S
            parts.append(self._quiet(PAUSE_S, rng))
            t += PAUSE_S
        self.audio = np.concatenate(parts)
        self.words = [f"w{i}" for i in range(len(self.spans))]
        self.prompts: list[str | None] = []
        self.whole_calls = self.file_calls = 0

    @staticmethod
    def _quiet(seconds: float, rng: np.random.Generator) -> np.ndarray:
        """Faint noise: silence to the VAD, yet each sample tells where in the stream it lies."""
        return (1e-4 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)

    def _where(self, audio: np.ndarray) -> float:
        """Stream time of the window's first sample."""
        for start in np.flatnonzero(self.audio == audio[0]):
            if np.array_equal(self.audio[start : start + 32], audio[:32]):
                return start / SAMPLE_RATE
        raise AssertionError("a window that is not a stretch of the stream")

    def _heard(self, audio: np.ndarray) -> list[Word]:
        offset, seconds = self._where(audio), len(audio) / SAMPLE_RATE
        words = []
        for text, (start, end) in zip(self.words, self.spans):
            inside = min(end, offset + seconds) - max(start, offset)
            if inside > 0:
                garbled = inside < 0.9 * (end - start)
                words.append(Word(start - offset, end - offset, f" {text}{'~' if garbled else ''}", 0.95))
        return words

    async def live(self, audio, prompt, *, final, deadline) -> Transcription:
        await asyncio.sleep(0)
        words = tuple(self._heard(audio))
        segment = Segment(0, 0, 0.0, len(audio) / SAMPLE_RATE, "".join(w.text for w in words), (1,) * len(words), 0.0, -0.1, 1.0, 0.01, words)
        return Transcription("en", len(audio) / SAMPLE_RATE, (segment,) if words else (), prompt_tokens=1 if prompt else 0)

    async def whole(self, audio, prompt, *, final, deadline) -> Transcription:
        """Segments as Whisper makes them: a new one after each pause."""
        await asyncio.sleep(0)
        self.whole_calls += 1
        self.prompts.append(prompt)
        groups: list[list[Word]] = []
        for word in self._heard(audio):
            if not groups or word.start - groups[-1][-1].end > PAUSE_S / 2:
                groups.append([])
            groups[-1].append(word)
        segments = tuple(
            Segment(i, 0, g[0].start, g[-1].end, "".join(w.text for w in g), (1,) * len(g), 0.0, -0.1, 1.0, 0.01, tuple(g))
            for i, g in enumerate(groups)
        )
        return Transcription("en", len(audio) / SAMPLE_RATE, segments, prompt_tokens=1 if prompt else 0)


    async def file(self, audio, prompt, on_segment, *, deadline) -> Transcription:
        """The whole file in one call, each segment handed over on its own."""
        self.file_calls += 1
        result = await self.whole(audio, prompt, final=True, deadline=deadline)
        self.whole_calls -= 1
        for segment in result.segments:
            on_segment(segment)
            await asyncio.sleep(0)
        return result


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def stream(script: Script, speeds: list[tuple[float, float]], *, whole: bool = False, chunk_s: float = 0.1):
    """Push the script's audio in chunks, each (until, speed) stretch at its speed on a fake
    clock; the events, and the transcriber."""
    events: list = []
    clock = Clock()
    transcriber = AdaptiveTranscriber(
        script.live, script.whole, script.file, events.append, synthetic_options(), whole=whole, now=clock
    )
    step = int(chunk_s * SAMPLE_RATE)
    for i in range(0, len(script.audio), step):
        speed = next(s for until, s in speeds if i / SAMPLE_RATE < until)
        clock.now += chunk_s / speed
        transcriber.push(script.audio[i : i + step])
        await asyncio.sleep(0)
    await transcriber.finish()
    return events, transcriber


def check_transcript(events: list, script: Script) -> None:
    """Every word once, in order, none garbled; events on one clock; one StreamDone that sums."""
    deltas = [e for e in events if isinstance(e, TextCommitted)]
    done = [e for e in events if isinstance(e, StreamDone)]
    assert len(done) == 1 and events[-1] is done[0]
    text = "".join(e.delta for e in deltas)
    assert text == done[0].text
    assert text.split() == script.words
    starts = [w.start for e in deltas for w in e.words]
    assert starts == sorted(starts)
    for word, (start, _) in zip([w for e in deltas for w in e.words], script.spans):
        assert word.start == pytest.approx(start, abs=0.05)  # on the stream's clock, whatever the policy
    ids = [e.utterance_id for e in events if isinstance(e, UtteranceDone)]
    assert ids == list(range(len(ids)))
    assert done[0].duration == pytest.approx(len(script.audio) / SAMPLE_RATE)


async def test_real_time_audio_stays_live():
    script = Script(4)
    events, transcriber = await stream(script, [(999, 1.0)])
    check_transcript(events, script)
    assert transcriber.switches == 0 and script.whole_calls == 0


async def test_a_whole_file_is_decoded_as_one_at_its_end():
    script = Script(20)
    events, transcriber = await stream(script, [(999, 50.0)], whole=True)
    check_transcript(events, script)
    assert transcriber.switches == 0 and transcriber.whole
    assert script.file_calls == 1 and script.whole_calls == 0
    assert len([e for e in events if isinstance(e, TextCommitted)]) == 20  # a delta per segment


async def test_fast_audio_of_unknown_length_is_decoded_in_whole_windows():
    script = Script(20)  # 66 s: live until 7 s have come and a pause, then two windows
    events, transcriber = await stream(script, [(999, 50.0)])
    check_transcript(events, script)
    assert transcriber.switches == 1 and transcriber.whole and script.file_calls == 0
    assert script.whole_calls == 2
    assert all(script.prompts)  # the text before is the prompt


@pytest.mark.parametrize("chunk_s", [0.1, 2.0])
async def test_a_stream_that_speeds_up_goes_whole_at_a_pause_without_losing_a_word(chunk_s):
    script = Script(16)
    events, transcriber = await stream(script, [(10.0, 1.0), (999, 20.0)], chunk_s=chunk_s)
    check_transcript(events, script)
    assert transcriber.switches == 1 and transcriber.whole


async def test_a_stream_that_slows_down_goes_live_from_the_last_kept_word():
    script = Script(16)
    events, transcriber = await stream(script, [(36.0, 20.0), (999, 1.0)], whole=True)
    check_transcript(events, script)
    assert transcriber.switches == 1 and not transcriber.whole


async def test_fast_slow_fast_switches_both_ways():
    script = Script(24)
    events, transcriber = await stream(script, [(34.0, 20.0), (50.0, 1.0), (999, 20.0)])
    check_transcript(events, script)
    assert transcriber.switches >= 2 and transcriber.whole


async def test_a_short_burst_of_a_real_time_client_does_not_switch():
    script = Script(6)
    events, transcriber = await stream(script, [(2.0, 3.0), (999, 1.0)])
    check_transcript(events, script)
    assert transcriber.switches == 0


async def test_going_whole_as_a_word_begins_keeps_the_audio_the_vad_held():
    """Fast from the start, the rate reaches FAST_RATE once 7 s have come: a word begins at 6.95 s,
    too little of it yet for the VAD to have started an utterance; the whole windows get it all."""
    script = Script(8, lead_s=0.55)
    assert any(start == pytest.approx(6.95) for start, _ in script.spans)
    events, transcriber = await stream(script, [(999, 20.0)])
    check_transcript(events, script)
    assert transcriber.switches == 1


async def test_audio_queued_before_the_transcriber_is_judged_by_how_fast_it_arrived():
    """A queue (the WebSocket inbox) took the whole stream at 20x and hands it on at real time."""
    script = Script(12)
    clock = Clock()
    events: list = []
    transcriber = AdaptiveTranscriber(
        script.live, script.whole, script.file, events.append, synthetic_options(), arrivals_pushed=False, now=clock
    )
    step = SAMPLE_RATE // 10
    for _ in range(0, len(script.audio), step):
        clock.now += 0.1 / 20
        transcriber.arrived(0.1)
    for i in range(0, len(script.audio), step):
        clock.now += 0.1
        transcriber.push(script.audio[i : i + step])
        await asyncio.sleep(0)
    await transcriber.finish()
    check_transcript(events, script)
    assert transcriber.switches == 1 and transcriber.whole


async def test_a_whole_file_too_long_to_hold_goes_on_in_whole_windows(monkeypatch):
    monkeypatch.setattr("stream_server.engine.whole_windows.MAX_FILE_S", 40.0)
    script = Script(20)  # 66 s
    events, transcriber = await stream(script, [(999, 50.0)], whole=True)
    check_transcript(events, script)
    assert script.file_calls == 0 and script.whole_calls >= 2
