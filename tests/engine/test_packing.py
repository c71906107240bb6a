"""Window packing: the layout, the choice of companions, and the split of a packed decode, on
scripted results and then on the real model with real clips."""

from __future__ import annotations

import numpy as np
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.engine.packing import (
    EDGE_S,
    Layout,
    PackOptions,
    Window,
    companions,
    decode_packed,
    lay_out,
    packed_seconds,
    split,
)
from stream_server.service import window_options
from tests.live_helpers import pcm16k

normalise = EnglishTextNormalizer()


def tone(seconds: float) -> np.ndarray:
    return np.full(int(seconds * SAMPLE_RATE), 0.5, np.float32)


def test_pieces_are_laid_end_to_end_with_a_gap_between_each_two():
    audio, layout = lay_out([tone(2.0), tone(0.5), tone(1.0)], PackOptions(gap_s=1.0))
    assert layout == Layout(starts=(0.0, 3.0, 4.5), durations=(2.0, 0.5, 1.0))
    assert len(audio) == int(5.5 * SAMPLE_RATE) == int(packed_seconds([2.0, 0.5, 1.0], 1.0) * SAMPLE_RATE)
    gap = audio[int(2.0 * SAMPLE_RATE) : int(3.0 * SAMPLE_RATE)]
    assert np.sqrt(np.mean(gap**2)) == pytest.approx(PackOptions().gap_noise, rel=0.1)  # faint noise, not digital silence
    assert audio[int(3.0 * SAMPLE_RATE)] == 0.5
    assert (lay_out([tone(1.0), tone(1.0)], PackOptions())[0] == lay_out([tone(1.0), tone(1.0)], PackOptions())[0]).all()


def test_companions_fit_in_deadline_order_up_to_the_limits():
    options = PackOptions(gap_s=1.0, max_seconds=30.0, max_pieces=4)
    # 10 + 1 + 12 = 23; the 8 s window would make 32, the 3 s one fits (27)
    assert companions(10.0, [12.0, 8.0, 3.0], options) == [0, 2]
    assert companions(10.0, [1.0] * 6, options) == [0, 1, 2]  # four pieces at most
    assert companions(25.0, [4.5, 3.0], options) == [1]  # a long window takes what still fits
    assert companions(29.5, [0.5], options) == []  # alone: nothing fits beside it


def word(start: float, end: float, text: str, probability: float = 0.9) -> Word:
    return Word(start, end, f" {text}", probability)


def segment(seek: int, *words: Word, no_speech: float = 0.1) -> Segment:
    text = "".join(w.text for w in words)
    return Segment(0, seek, words[0].start, words[-1].end, text, tuple(range(len(words))), 0.0, -0.2, 1.1, no_speech, words)


def test_each_word_lands_in_the_one_piece_it_starts_in_timed_from_that_piece():
    layout = Layout(starts=(0.0, 3.0), durations=(2.0, 2.5))
    packed = Transcription(
        "en",
        5.5,
        (
            segment(0, word(0.1, 0.6, "ask"), word(0.6, 1.9, "not"), word(1.9, 2.7, "country")),  # stretched into the gap
            segment(0, word(2.4, 2.5, "invented")),  # starts mid-gap: no piece holds it
            segment(0, word(3.0 - 2 * EDGE_S, 3.4, "he"), word(3.4, 4.0, "began"), word(5.5 + EDGE_S / 2, 5.7, "on")),
            segment(3000, word(5.8, 6.0, "late")),  # a second pass's word, after the last piece
        ),
        prompt_tokens=7,
    )
    first, second = split(packed, layout, [7, 0])
    assert [w.text for w in first.words] == [" ask", " not", " country"]
    assert first.words[-1].end == 2.0  # kept inside its piece
    assert [w.text for w in second.words] == [" he", " began", " on"]  # "he" timed early, from inside the gap
    assert second.words[0].start == 0.0 and second.words[1].start == pytest.approx(0.4)
    assert second.words[2].start == second.words[2].end == 2.5  # kept inside its piece
    assert "late" not in second.text and "invented" not in first.text + second.text
    assert (first.duration, second.duration) == (2.0, 2.5)
    assert (first.prompt_tokens, second.prompt_tokens) == (7, 0)
    assert [s.tokens for s in first.segments] == [(0, 1, 2)]  # a segment whole in one piece keeps its tokens


def test_statistics_are_the_pieces_own_where_one_pass_allows():
    loop = [word(3.2 + 0.2 * i, 3.4 + 0.2 * i, "words", 0.05) for i in range(10)]
    packed = Transcription("en", 6.0, (segment(0, word(0.1, 0.5, "fine"), word(0.5, 1.0, "speech")), segment(0, *loop, no_speech=0.3)))
    clean, looping = split(packed, Layout((0.0, 3.0), (2.0, 3.0)), [0, 0])
    assert clean.segments[0].compression_ratio < 1.5 < looping.segments[0].compression_ratio
    assert clean.segments[0].avg_logprob == pytest.approx(np.log(0.9))
    assert looping.segments[0].avg_logprob == pytest.approx(np.log(0.05))
    assert looping.segments[0].no_speech_prob == 0.3  # a pass has one no-speech probability


# The real model: pieces of different clips packed into one call.

JFK = "en_jfk_16k.wav"  # "And so my fellow Americans, ask not what your country can do for you ..."
WIZARD = "en_ls_61-70968-0000.flac"  # "He began a confused complaint against the wizard ..."
SUIT = "en_LDC93S1.wav"  # "She had your dark suit in greasy wash water all year."


def partial_window(audio: np.ndarray) -> Window:
    return Window(audio, window_options("en", None, seconds=len(audio) / SAMPLE_RATE))


def words_of(result: Transcription) -> list[str]:
    return normalise(result.text).split()


@pytest.fixture(scope="module")
def wizard_and_jfk(speech_model) -> tuple[Transcription, Transcription]:
    return tuple(decode_packed(speech_model.transcribe, [partial_window(pcm16k(WIZARD)), partial_window(pcm16k(JFK))], PackOptions()))


def test_words_of_one_stream_never_reach_the_other(wizard_and_jfk):
    wizard, jfk = wizard_and_jfk
    assert "complaint against the wizard" in normalise(wizard.text)
    assert "not what your country can do for you" in normalise(jfk.text)
    assert not {"americans", "country", "fellow"} & set(words_of(wizard))
    assert not {"wizard", "curtain", "complaint"} & set(words_of(jfk))
    assert all(0 <= w.start <= w.end <= 11.0 for w in jfk.words)  # timed from the piece's own start
    assert jfk.words[0].start < 1.0  # "And" at the start of the clip, not 6 s into the pack


def test_a_word_at_the_boundary_lands_once(speech_model, wizard_and_jfk):
    wizard, jfk = wizard_and_jfk
    assert words_of(wizard)[-1] == "left" and words_of(jfk)[0] == "and"
    assert words_of(wizard).count("left") == 1 and "left" not in words_of(jfk)
    # cut both mid-speech: the cut words stay on their side of the gap, each once
    cut = decode_packed(
        speech_model.transcribe, [partial_window(pcm16k(JFK)[: 6 * SAMPLE_RATE]), partial_window(pcm16k(WIZARD)[: 3 * SAMPLE_RATE])], PackOptions()
    )
    assert normalise(cut[0].text).startswith("and so my fellow americans")
    assert normalise(cut[1].text).startswith("he began a confused complaint")
    assert not {"he", "began"} & set(words_of(cut[0])) and not {"americans", "fellow"} & set(words_of(cut[1]))


def test_silence_in_one_stream_adds_nothing_to_the_other(speech_model):
    suit = pcm16k(SUIT)
    alone = speech_model.transcribe(suit, partial_window(suit).options)
    for pieces, speech in (([np.zeros(3 * SAMPLE_RATE, np.float32), suit], 1), ([suit, np.zeros(3 * SAMPLE_RATE, np.float32)], 0)):
        results = decode_packed(speech_model.transcribe, [partial_window(p) for p in pieces], PackOptions())
        assert results[1 - speech].words == ()
        packed, solo = words_of(results[speech]), words_of(alone)
        assert len(packed) == len(solo) and sum(a != b for a, b in zip(packed, solo)) <= 1  # "suit in/and greasy"


def test_a_packed_call_may_go_on_past_its_first_pass():
    """A live window alone stops after one encoder pass (its tail past the last word is mostly
    a breath); a packed call must not: what follows its first pass's last word may be the next
    pieces, whose words one pass would drop."""
    asked = []

    def transcribe(audio, options):
        asked.append(options)
        return Transcription("en", len(audio) / SAMPLE_RATE, ())

    windows = [partial_window(tone(3.0)), partial_window(tone(4.0))]
    assert all(w.options.one_window for w in windows)
    decode_packed(transcribe, windows, PackOptions())
    assert [o.one_window for o in asked] == [False]
