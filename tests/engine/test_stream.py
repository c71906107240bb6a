"""The live transcriber's policy with a scripted fake decoder (the real model is tested end to end)."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.engine.stream import LiveTranscriber, StreamOptions
from stream_server.events import DecodingLag, StreamDone, TextCommitted, TextPartial, UtteranceDone
from stream_server.vad.segmenter import VadOptions
from tests.vad.test_segmenter import silence, voice

def synthetic_options(**fields) -> StreamOptions:
    """The synthetic vowels here are speech to webrtcvad (Silero hears no voice in them)."""
    return StreamOptions(vad=VadOptions(engine="webrtc"), **fields)


SCRIPT = "the quick brown fox jumps over the lazy dog".split()
WORD_S = 0.25


class FakeDecoder:
    """'Hears' one scripted word per 0.25 s of window, like a decoder that is right but late."""

    def __init__(self, garble_last: bool = True, hallucinate: bool = False):
        self.calls: list[tuple[float, str | None, bool]] = []
        self.garble_last = garble_last
        self.hallucinate = hallucinate

    async def __call__(self, audio, prompt, *, final, deadline):
        await asyncio.sleep(0)
        seconds = len(audio) / SAMPLE_RATE
        self.calls.append((seconds, prompt, final))
        count = min(len(SCRIPT), int(seconds / WORD_S))
        heard = list(SCRIPT[:count])
        if heard and self.garble_last and not final and count < len(SCRIPT):
            heard[-1] += "-"  # the newest word is unstable until more audio comes
        words = tuple(Word(i * WORD_S, (i + 1) * WORD_S, f" {w}", 0.9) for i, w in enumerate(heard))
        segments = [Segment(0, 0, 0.0, seconds, "".join(w.text for w in words), (1,) * count, 0.0, -0.1, 1.0, 0.01, words)]
        if self.hallucinate:
            noise = (Word(seconds - 0.2, seconds, " Thanks.", 0.02),)
            segments.append(Segment(1, 0, seconds - 0.2, seconds, " Thanks.", (2,), 0.0, -1.2, 1.0, 0.8, noise))
        return Transcription("en", seconds, tuple(segments))


async def feed(transcriber: LiveTranscriber, audio: np.ndarray, chunk_s: float = 0.1) -> None:
    step = int(chunk_s * SAMPLE_RATE)
    for i in range(0, len(audio), step):
        transcriber.push(audio[i : i + step])
        await asyncio.sleep(0.001)
    await transcriber.finish()


def utterance_audio(seconds: float) -> np.ndarray:
    return np.concatenate([silence(0.5), voice(seconds, np.random.default_rng(3)), silence(1.0)])


async def test_commits_grow_append_only_and_end_equal_to_the_final():
    events = []
    decoder = FakeDecoder()
    transcriber = LiveTranscriber(decoder, events.append, synthetic_options(step_s=0.3))
    await feed(transcriber, utterance_audio(2.5))
    deltas = [e.delta for e in events if isinstance(e, TextCommitted)]
    done = [e for e in events if isinstance(e, StreamDone)][0]
    assert "".join(deltas) == done.text
    assert len(deltas) >= 2, "text must be committed before the utterance ends"
    assert any(isinstance(e, TextPartial) for e in events)
    assert [e for e in events if isinstance(e, UtteranceDone)][0].text == done.text
    assert done.text.split() == SCRIPT[: len(done.text.split())]
    assert any(final for *_, final in decoder.calls) and any(not final for *_, final in decoder.calls)


async def test_silence_is_never_decoded():
    decoder = FakeDecoder()
    events = []
    await feed(LiveTranscriber(decoder, events.append, synthetic_options()), silence(5.0))
    assert decoder.calls == []
    assert [type(e) for e in events] == [StreamDone]


async def test_unlikely_segments_are_dropped():
    events = []
    transcriber = LiveTranscriber(FakeDecoder(hallucinate=True), events.append, synthetic_options())
    await feed(transcriber, utterance_audio(1.5))
    assert "Thanks" not in transcriber.text and transcriber.text


async def test_committed_text_becomes_the_next_utterances_prompt():
    decoder = FakeDecoder()
    audio = np.concatenate([utterance_audio(1.5), utterance_audio(1.5)])
    await feed(LiveTranscriber(decoder, lambda e: None, synthetic_options(step_s=0.3), prompt="Names: Fox"), audio)
    prompts = [prompt for *_, prompt, final in ((c[0], c[1], c[2]) for c in decoder.calls)]
    assert prompts[0] == "Names: Fox"
    assert any(p and p.startswith("Names: Fox the quick") for p in prompts)


async def test_a_long_utterance_keeps_its_window_bounded():
    decoder = FakeDecoder()
    options = synthetic_options(step_s=0.5, max_window_s=4.0, keep_after_trim_s=1.0)
    await feed(LiveTranscriber(decoder, lambda e: None, options), utterance_audio(12.0), chunk_s=0.25)
    longest = max(seconds for seconds, *_ in decoder.calls)
    assert longest <= options.max_window_s + options.step_s + 1.0


class Recorder:
    def __init__(self) -> None:
        self.partials: list[float] = []
        self.commits: list[float] = []

    def partial(self, delay: float) -> None:
        self.partials.append(delay)

    def committed(self, delays) -> None:
        self.commits.extend(delays)


async def test_the_latency_hook_hears_every_committed_word_and_each_partial():
    events, recorder = [], Recorder()
    transcriber = LiveTranscriber(FakeDecoder(), events.append, synthetic_options(step_s=0.3), observer=recorder)
    await feed(transcriber, utterance_audio(2.5))
    committed_words = sum(len(e.words) for e in events if isinstance(e, TextCommitted))
    assert committed_words > 0 and len(recorder.commits) == committed_words
    assert len(recorder.partials) == sum(isinstance(e, TextPartial) for e in events)
    assert all(delay >= 0 for delay in recorder.commits + recorder.partials)


class EchoingDecoder(FakeDecoder):
    """Hears the script, then echoes the prompt's last sentence, as Whisper base does."""

    async def __call__(self, audio, prompt, *, final, deadline):
        result = await super().__call__(audio, prompt, final=final, deadline=deadline)
        if not prompt:
            return result
        echo_text = " " + prompt.split(". ")[-1]
        seconds = len(audio) / SAMPLE_RATE
        echo = tuple(Word(seconds - 0.3, seconds, f" {w}", 0.9) for w in echo_text.split())
        segment = Segment(9, 0, seconds - 0.3, seconds, echo_text, (3,), 0.0, -0.2, 1.0, 0.01, echo)
        return Transcription("en", seconds, result.segments + (segment,))


async def test_a_sentence_echoed_from_the_prompt_is_dropped():
    audio = np.concatenate([utterance_audio(1.5), utterance_audio(1.5)])
    transcriber = LiveTranscriber(EchoingDecoder(), lambda e: None, synthetic_options(), prompt="Names: Fox. The lazy dog sleeps")
    await feed(transcriber, audio)
    assert "sleeps" not in transcriber.text
    assert transcriber.text.count("the quick brown") == 2


class NoisyDecoder(FakeDecoder):
    """Hears the script, plus what Whisper makes of noise: a lone "." word and a ". . . ." loop."""

    async def __call__(self, audio, prompt, *, final, deadline):
        result = await super().__call__(audio, prompt, final=final, deadline=deadline)
        seconds = len(audio) / SAMPLE_RATE
        lone = result.segments[0].words + (Word(seconds - 0.1, seconds, " .", 0.9),)
        speech = replace(result.segments[0], words=lone)
        dots = tuple(Word(seconds - 0.2 + i * 0.01, seconds - 0.19 + i * 0.01, " .", 0.99) for i in range(20))
        loop = Segment(1, 0, seconds - 0.2, seconds, " ." * 20, (4,) * 20, 0.0, -0.1, 9.0, 0.01, dots)
        return Transcription("en", seconds, (speech, loop))


async def test_punctuation_and_repetition_loops_are_never_committed():
    transcriber = LiveTranscriber(NoisyDecoder(), lambda e: None, synthetic_options(step_s=0.3))
    await feed(transcriber, utterance_audio(2.0))
    assert transcriber.text.split() == SCRIPT, "every word the decoder heard is committed, and no dot"
    assert "." not in transcriber.text


class UnsureDecoder(FakeDecoder):
    """Right, but unsure of "brown" (the third word) in every decode."""

    async def __call__(self, audio, prompt, *, final, deadline):
        result = await super().__call__(audio, prompt, final=final, deadline=deadline)
        unsure = tuple(replace(w, probability=0.3) if w.text == " brown" else w for w in result.segments[0].words)
        return Transcription("en", result.duration, (replace(result.segments[0], words=unsure),))


async def test_an_unsure_word_is_committed_only_with_more_audio_after_it():
    options = synthetic_options(step_s=0.3, commit_margin_s=0.25, min_commit_probability=0.6, uncertain_margin_s=1.0)
    decoder = UnsureDecoder()
    committed_by = {}  # word -> (window seconds, final) of the decode that committed it

    def publish(event):
        if isinstance(event, TextCommitted):
            committed_by.update({w.text.strip(): decoder.calls[-1][::2] for w in event.words})

    await feed(LiveTranscriber(decoder, publish, options), utterance_audio(3.0))
    assert committed_by["quick"] == (committed_by["quick"][0], False), "a sure word commits from a partial"
    seconds, final = committed_by["brown"]
    assert final or seconds >= 3 * WORD_S + options.uncertain_margin_s
    assert committed_by["quick"][0] < seconds


async def test_without_partial_decodes_each_utterance_is_decoded_once():
    decoder, events = FakeDecoder(), []
    rng = np.random.default_rng(5)
    audio = np.concatenate([silence(0.5), voice(2.5, rng), silence(1.0), voice(1.2, rng), silence(1.0)])
    await feed(LiveTranscriber(decoder, events.append, synthetic_options(step_s=0.3, partial_decodes=False)), audio)
    utterances = [e for e in events if isinstance(e, UtteranceDone)]
    assert len(utterances) >= 2 and [final for *_, final in decoder.calls] == [True] * len(utterances)
    assert not any(isinstance(e, TextPartial) for e in events)
    deltas = [e.delta for e in events if isinstance(e, TextCommitted)]
    assert "".join(deltas) == next(e for e in events if isinstance(e, StreamDone)).text != ""


class LoggingDecoder(FakeDecoder):
    """Writes each decode into the event log, to see when it ran."""

    def __init__(self, log: list):
        super().__init__()
        self.log = log

    async def __call__(self, audio, prompt, *, final, deadline):
        self.log.append(("decode", len(audio) / SAMPLE_RATE, final))
        return await super().__call__(audio, prompt, final=final, deadline=deadline)


async def test_the_final_decode_starts_at_the_pause_and_is_not_repeated():
    log = []
    await feed(LiveTranscriber(LoggingDecoder(log), log.append, synthetic_options(step_s=0.3)), utterance_audio(2.5))
    finals = [i for i, e in enumerate(log) if isinstance(e, tuple) and e[2]]
    stopped = next(i for i, e in enumerate(log) if type(e).__name__ == "SpeechStopped")
    done = next(e for e in log if isinstance(e, UtteranceDone))
    assert len(finals) == 1 and finals[0] < stopped, "decoded once, before the silence was confirmed"
    assert done.text.split() == SCRIPT[: int(2.5 / WORD_S)]


class SlowPartialDecoder(LoggingDecoder):
    """Partials take 0.4 s of wall time, finals none: like a partial over a long window."""

    async def __call__(self, audio, prompt, *, final, deadline):
        result = await super().__call__(audio, prompt, final=final, deadline=deadline)
        if not final:
            await asyncio.sleep(0.4)
        self.log.append(("returned", len(audio) / SAMPLE_RATE, final))
        return result


async def test_a_pause_starts_the_final_decode_without_waiting_for_a_partial_in_flight():
    log = []
    await feed(LiveTranscriber(SlowPartialDecoder(log), log.append, synthetic_options(step_s=0.3)), utterance_audio(2.5))
    calls = [e for e in log if isinstance(e, tuple)]
    final_started = next(i for i, (kind, _, final) in enumerate(calls) if kind == "decode" and final)
    partial_before = max(i for i, (kind, _, final) in enumerate(calls[:final_started]) if kind == "decode")
    assert ("returned", *calls[partial_before][1:]) not in calls[partial_before:final_started], (
        "the final waited for the partial decoding when the speaker paused"
    )
    done = next(e for e in log if isinstance(e, StreamDone))
    deltas = "".join(e.delta for e in log if isinstance(e, TextCommitted))
    assert deltas == done.text and done.text.split() == SCRIPT[: int(2.5 / WORD_S)]


async def test_a_pause_inside_an_utterance_serves_as_a_partial():
    log = []
    rng = np.random.default_rng(4)
    audio = np.concatenate([silence(0.5), voice(1.2, rng), silence(0.42), voice(1.2, rng), silence(1.0)])
    await feed(LiveTranscriber(LoggingDecoder(log), log.append, synthetic_options(step_s=0.3)), audio)
    final_windows = [seconds for kind, seconds, final in (e for e in log if isinstance(e, tuple)) if final]
    (done,) = [e for e in log if isinstance(e, UtteranceDone)]
    assert len(final_windows) == 2 and final_windows[0] < final_windows[1], "one at each pause, none after the end"
    assert len(done.text.split()) > len(SCRIPT[: int(final_windows[0] / WORD_S)])


async def test_a_final_requested_mid_speech_decodes_the_whole_window():
    log = []
    transcriber = LiveTranscriber(LoggingDecoder(log), log.append, synthetic_options(step_s=0.3))
    rng = np.random.default_rng(5)
    for chunk in np.split(np.concatenate([silence(0.5), voice(1.2, rng), silence(0.42), voice(0.88, rng)]), 30):
        transcriber.push(chunk)
        await asyncio.sleep(0.001)
    transcriber.finalize_utterance()
    await transcriber.finish()
    final_windows = [seconds for kind, seconds, final in (e for e in log if isinstance(e, tuple)) if final]
    assert len(final_windows) == 2, "the pause's decode, then the whole window"
    assert final_windows[1] >= final_windows[0] + 0.9


async def test_a_finalize_mid_speech_loses_no_audio_and_decodes_across_the_cut():
    log = []
    options = synthetic_options(step_s=0.3)
    transcriber = LiveTranscriber(LoggingDecoder(log), log.append, options)
    audio = np.concatenate([silence(0.5), voice(4.0, np.random.default_rng(8)), silence(1.0)])
    cut_at = int(2.5 * SAMPLE_RATE)
    for chunk in np.split(audio[:cut_at], 25):
        transcriber.push(chunk)
        await asyncio.sleep(0.001)
    transcriber.finalize_utterance()
    for chunk in np.split(audio[cut_at:], 30):
        transcriber.push(chunk)
        await asyncio.sleep(0.001)
    await transcriber.finish()
    first, second = [e for e in log if isinstance(e, UtteranceDone)]
    cut = first.end
    assert cut == pytest.approx(2.5, abs=0.03)
    final_windows = [seconds for _, seconds, final in (e for e in log if isinstance(e, tuple)) if final]
    assert final_windows[0] == pytest.approx(cut - first.start + options.cut_context_s, abs=0.01), "it heard past the cut"
    hangover = options.vad.hangover_ms / 1000
    assert final_windows[-1] >= second.end - hangover - cut + options.cut_context_s, "the next heard before it"
    assert first.start < second.start <= cut, "the next utterance starts after the last word kept, at the cut at the latest"
    assert second.end == pytest.approx(5.0, abs=0.55), "and runs on to the end of the speech"


class LateDecoder(FakeDecoder):
    """The fake decoder, whose first `late` calls each take `delay_s` (a busy server)."""

    def __init__(self, late: int, delay_s: float):
        super().__init__()
        self.late, self.delay_s = late, delay_s

    async def __call__(self, audio, prompt, *, final, deadline):
        if len(self.calls) < self.late:
            await asyncio.sleep(self.delay_s)
        return await super().__call__(audio, prompt, final=final, deadline=deadline)


async def test_a_stream_is_told_when_its_decoding_falls_behind_and_when_it_catches_up():
    events = []
    transcriber = LiveTranscriber(LateDecoder(late=2, delay_s=0.6), events.append, synthetic_options(lag_alarm_s=0.4))
    audio = utterance_audio(8.0)
    step = SAMPLE_RATE // 10
    for i in range(0, len(audio), step):  # 5x real time
        transcriber.push(audio[i : i + step])
        await asyncio.sleep(0.02)
    await transcriber.finish()
    lags = [e for e in events if isinstance(e, DecodingLag)]
    assert [e.behind for e in lags] == [True, False]
    assert lags[0].lag_s >= 0.4 and lags[1].lag_s <= 0.2
    assert events.index(lags[0]) < events.index(lags[1]) < len(events) - 1  # both before the stream's end


async def test_no_lag_is_told_when_the_alarm_is_off():
    events = []
    transcriber = LiveTranscriber(LateDecoder(late=2, delay_s=0.6), events.append, synthetic_options(lag_alarm_s=None))
    await feed(transcriber, utterance_audio(2.0))
    assert not [e for e in events if isinstance(e, DecodingLag)]
