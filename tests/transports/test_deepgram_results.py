"""The Deepgram translation on scripted engine events: which Results are final, which end an
utterance (speech_final), which answer a Finalize, and when an UtteranceEnd is due."""

from __future__ import annotations

import dataclasses

from stream_server.decoder.results import Word
from stream_server.events import SpeechStarted, SpeechStopped, TextCommitted, TextPartial, UtteranceDone
from stream_server.transports.compat.deepgram_messages import ModelInfo
from stream_server.transports.compat.deepgram_params import ListenParams
from stream_server.transports.compat.deepgram_results import DeepgramResults
from stream_server.vad.segmenter import VadOptions


def words(*timed: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(start, end, f" {text}", 0.9) for text, start, end in timed)


def translator(**params) -> DeepgramResults:
    defaults = dict(model="nova-3", language=None, audio=None, interim_results=True, punctuate=True)
    return DeepgramResults(ListenParams(**(defaults | params)), "rid", ModelInfo("tiny.en"), 1)


class Numbered:
    """Gives events the seqs a session would, across calls."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, *events):
        numbered = [dataclasses.replace(e, seq=self.next + i) for i, e in enumerate(events)]
        self.next += len(events)
        return numbered


HELLO = words(("Hello", 0.5, 0.9), ("there.", 1.0, 1.4))


def test_a_partial_is_interim_and_the_last_commit_with_its_utterance_end_is_one_speech_final():
    dg, numbered = translator(vad_events=True), Numbered()
    started, partial, stopped, committed, done = numbered(
        SpeechStarted(time=0.3),
        TextPartial(text="Hello there.", start=0.5, end=1.4, words=HELLO),
        SpeechStopped(time=1.9),
        TextCommitted(delta="Hello there.", start=0.5, end=1.4, words=HELLO),
        UtteranceDone(utterance_id=0, text="Hello there.", start=0.3, end=1.9, words=HELLO),
    )
    first = dg.translate([started, partial])
    assert [m["type"] for m in first] == ["SpeechStarted", "Results"]
    assert first[1]["is_final"] is False and first[1]["channel"]["alternatives"][0]["transcript"] == "Hello there."
    (final,) = dg.translate([stopped, committed, done])
    assert final["is_final"] and final["speech_final"] and not final["from_finalize"]
    assert (final["start"], final["duration"]) == (0.0, 1.9)
    assert [w["word"] for w in final["channel"]["alternatives"][0]["words"]] == ["hello", "there"]
    assert final["channel"]["alternatives"][0]["words"][1]["punctuated_word"] == "there."


def test_an_early_commit_is_final_without_ending_the_utterance_and_results_are_contiguous():
    dg, first, rest = translator(), HELLO[:1], HELLO[1:]
    events = Numbered()(
        SpeechStarted(time=0.3),
        TextCommitted(delta="Hello", start=0.5, end=0.9, words=first),
        SpeechStopped(time=1.9),
        TextCommitted(delta=" there.", start=1.0, end=1.4, words=rest),
        UtteranceDone(utterance_id=0, text="Hello there.", start=0.3, end=1.9, words=HELLO),
    )
    (early,) = dg.translate(events[:2])
    (last,) = dg.translate(events[2:])
    assert early["is_final"] and not early["speech_final"]
    assert last["speech_final"] and last["channel"]["alternatives"][0]["transcript"] == "there."
    assert last["start"] == early["start"] + early["duration"] == 0.9


def test_lowercase_words_without_punctuation_unless_asked():
    dg = translator(punctuate=False)
    events = Numbered()(SpeechStarted(time=0.3), TextCommitted(delta="Hello there.", start=0.5, end=1.4, words=HELLO))
    (final,) = dg.translate(events)
    assert final["channel"]["alternatives"][0]["transcript"] == "hello there"


def test_a_cut_mid_speech_and_a_finalize_are_not_speech_final():
    dg, numbered = translator(vad_events=True), Numbered()
    (started,) = dg.translate(numbered(SpeechStarted(time=0.3)))
    dg.finalized([1])
    cut_events = numbered(SpeechStopped(time=1.2), SpeechStarted(time=1.2))  # Finalize cut while the speaker went on
    assert started["type"] == "SpeechStarted" and dg.translate(cut_events) == []  # the restart is no new speech
    (cut,) = dg.translate(numbered(UtteranceDone(utterance_id=0, text="", start=0.3, end=1.2, words=())))
    assert cut["is_final"] and cut["from_finalize"] and not cut["speech_final"]


def test_endpointing_false_never_says_speech_final():
    dg = translator(endpointing=False)
    events = Numbered()(
        SpeechStarted(time=0.3),
        SpeechStopped(time=1.9),
        UtteranceDone(utterance_id=0, text="Hello there.", start=0.3, end=1.9, words=HELLO),
    )
    (final,) = dg.translate(events)
    assert final["is_final"] and not final["speech_final"]


def test_the_utterance_the_end_of_the_stream_closes_is_not_speech_final():
    dg = translator()
    dg.closing(1)
    done = UtteranceDone(utterance_id=0, text="", start=0.3, end=1.5, words=())
    events = Numbered()(SpeechStarted(time=0.3), SpeechStopped(time=1.5), done)
    (final,) = dg.translate(events)
    assert final["is_final"] and not final["speech_final"]


def test_utterance_end_waits_for_the_gap_and_for_nothing_left_to_decode():
    dg, numbered = translator(utterance_end_ms=1000), Numbered()
    dg.translate(numbered(SpeechStarted(time=0.3), TextPartial(text="Hello there.", start=0.5, end=1.4, words=HELLO)))
    assert dg.utterance_ends(5.0) == []  # the utterance is still open
    done = UtteranceDone(utterance_id=0, text="Hello there.", start=0.3, end=1.9, words=HELLO)
    dg.translate(numbered(SpeechStopped(time=1.9), done))
    assert dg.utterance_ends(2.0) == []  # 0.6 s after the last word
    (end,) = dg.utterance_ends(2.5)
    assert end == {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 1.4}
    assert dg.utterance_ends(9.0) == [] and dg.utterance_ends(9.0, ended=True) == []  # once per run of words


def test_endpointing_sets_the_silence_that_ends_an_utterance():
    vad = VadOptions()
    params = ListenParams(model="nova-3", language=None, audio=None, endpointing_ms=300)
    assert params.adjust_vad(vad).hangover_ms == 300 and params.adjust_vad(vad).pause_ms == vad.pause_ms
    short = ListenParams(model="nova-3", language=None, audio=None, endpointing_ms=10).adjust_vad(vad)
    assert short.hangover_ms == 100 and short.pause_ms == 100 and short.min_hangover_ms == 100
    assert ListenParams(model="nova-3", language=None, audio=None).adjust_vad(vad) == vad


def test_utterance_end_comes_before_words_after_the_gap_even_when_decoding_lags():
    """The next utterance started before the last one's final came (decoding behind the
    audio): the gap between them is still reported, before the new words."""
    dg, numbered = translator(utterance_end_ms=1000), Numbered()
    later = words(("Again.", 3.5, 3.9))
    dg.translate(numbered(SpeechStarted(time=0.3), SpeechStopped(time=1.9), SpeechStarted(time=3.2)))
    done = UtteranceDone(utterance_id=0, text="Hello there.", start=0.3, end=1.9, words=HELLO)
    dg.translate(numbered(TextCommitted(delta="Hello there.", start=0.5, end=1.4, words=HELLO), done))
    (end,) = dg.utterance_ends(3.6)  # the open utterance started after the gap: it cannot fill it
    assert end["last_word_end"] == 1.4
    dg.translate(numbered(TextPartial(text="Again.", start=3.5, end=3.9, words=later), SpeechStopped(time=4.5)))
    # words after a gap that no timer saw (the utterance before is not done): the UtteranceEnd
    # is sent just before them
    more = TextPartial(text="More.", start=6.0, end=6.4, words=words(("More.", 6.0, 6.4)))
    assert [m["type"] for m in dg.translate(numbered(SpeechStarted(time=5.8), more))] == ["UtteranceEnd", "Results"]
