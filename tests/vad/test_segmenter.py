"""The segmenter's state machine on synthetic PCM: framing, padding before speech, hang-over after it, cuts."""

import numpy as np
import pytest

from stream_server.audio import SAMPLE_RATE
from stream_server.vad.segmenter import SpeechAudio, SpeechEnd, SpeechPause, SpeechSegmenter, SpeechStart, VadOptions


WEBRTC = VadOptions(engine="webrtc")
"""The state machine is tested on synthetic vowels, which webrtcvad hears as speech and Silero
does not (tests/vad/test_real_pauses.py runs Silero on real recordings)."""


def voice(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A crude vowel: a 140 Hz harmonic series with formant-like weights and a little noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 25))
    return (0.3 * signal / np.abs(signal).max() + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def run(segmenter: SpeechSegmenter, audio: np.ndarray, chunk: int) -> list:
    events = []
    for i in range(0, len(audio), chunk):
        events += segmenter.push(audio[i : i + chunk])
    return events + segmenter.flush()


@pytest.mark.parametrize("chunk", [160, 1000, 4801, 48000])
def test_one_utterance_whatever_the_chunk_size(chunk):
    rng = np.random.default_rng(0)
    audio = np.concatenate([silence(1.0), voice(1.5, rng), silence(1.5)])
    events = run(SpeechSegmenter(WEBRTC), audio, chunk)
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == 1 and len(ends) == 1
    options = WEBRTC
    assert 1.0 - (options.pre_speech_ms + options.start_ms) / 1000 - 0.05 <= starts[0].time <= 1.0 - options.pre_speech_ms / 1000
    assert 2.5 <= ends[0].time <= 2.5 + options.hangover_ms / 1000 + 0.1
    speech = np.concatenate([e.samples for e in events if isinstance(e, SpeechAudio)])
    assert abs(len(speech) / SAMPLE_RATE - (ends[0].time - starts[0].time)) < 0.05


def test_silence_alone_yields_nothing():
    assert run(SpeechSegmenter(WEBRTC), silence(3.0), 1600) == []


def test_a_long_pause_splits_utterances_and_a_short_one_does_not():
    rng = np.random.default_rng(1)
    audio = np.concatenate([voice(1, rng), silence(0.2), voice(1, rng), silence(1.5), voice(1, rng)])
    events = run(SpeechSegmenter(WEBRTC), audio, 1600)
    assert sum(isinstance(e, SpeechStart) for e in events) == 2


def test_a_pause_is_announced_before_the_end_it_may_become():
    rng = np.random.default_rng(1)
    audio = np.concatenate([voice(1, rng), silence(0.42), voice(1, rng), silence(1.0)])
    events = run(SpeechSegmenter(WEBRTC), audio, 1600)
    pauses = [e for e in events if isinstance(e, SpeechPause)]
    (end,) = [e for e in events if isinstance(e, SpeechEnd)]
    options = WEBRTC
    assert len(pauses) == 2, "one inside the utterance, one where it ends"
    assert end.time - pauses[-1].time == pytest.approx((options.hangover_ms - options.pause_ms) / 1000, abs=0.031)
    assert end.trailing_silence == pytest.approx(options.hangover_ms / 1000, abs=0.031)


def test_flush_closes_an_open_utterance():
    events = run(SpeechSegmenter(WEBRTC), voice(1.0, np.random.default_rng(2)), 1600)
    assert isinstance(events[-1], SpeechEnd)
    assert events[-1].trailing_silence < 0.1


def test_options_are_checked():
    with pytest.raises(ValueError):
        VadOptions(engine="energy")
    with pytest.raises(ValueError):
        SpeechSegmenter(VadOptions(engine="webrtc", aggressiveness=4))
    with pytest.raises(ValueError):
        VadOptions(pause_ms=600, hangover_ms=500)
    with pytest.raises(ValueError):
        VadOptions(long_utterance_s=20, max_utterance_s=14)


def test_a_cut_mid_speech_opens_the_next_utterance_at_the_cut():
    rng = np.random.default_rng(6)
    audio = np.concatenate([silence(0.5), voice(2.0, rng), silence(1.0)])
    segmenter = SpeechSegmenter(WEBRTC)
    events = segmenter.push(audio[: int(1.5 * SAMPLE_RATE)])
    cut = segmenter.cut()
    assert [type(e) for e in cut] == [SpeechEnd, SpeechStart]
    assert cut[0].continued and cut[1].time == cut[0].time == segmenter.time
    events += cut + run(segmenter, audio[int(1.5 * SAMPLE_RATE) :], 1600)
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == len(ends) == 2
    speech = sum(len(e.samples) for e in events if isinstance(e, SpeechAudio)) / SAMPLE_RATE
    assert speech == pytest.approx(ends[-1].time - starts[0].time, abs=1e-6), "no audio dropped at the cut"


def test_a_cut_in_a_pause_ends_the_utterance_and_speech_is_awaited():
    rng = np.random.default_rng(7)
    segmenter = SpeechSegmenter(WEBRTC)
    segmenter.push(np.concatenate([silence(0.5), voice(1.0, rng), silence(0.42)]))
    cut = segmenter.cut()
    assert [type(e) for e in cut] == [SpeechEnd] and not cut[0].continued
    assert cut[0].trailing_silence >= WEBRTC.pause_ms / 1000
    assert segmenter.cut() == [], "nothing is open any more"
    later = run(segmenter, np.concatenate([silence(1.0), voice(1.0, rng), silence(1.0)]), 1600)
    (start,) = [e for e in later if isinstance(e, SpeechStart)]
    assert start.time > cut[0].time + 0.2, "the next utterance starts with the speech, not at the cut"
