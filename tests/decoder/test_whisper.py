"""The faster-whisper wrapper: the temperature fallback schedule and language checks."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import WhisperModel

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.whisper import MAX_TEMPERATURE, TranscribeOptions, temperature_schedule
from stream_server.errors import InvalidRequest
from tests.live_helpers import pcm16k


@pytest.mark.parametrize(
    "first, schedule",
    [
        (0.0, (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)),
        (0.3, (0.3, 0.5, 0.7, 0.9)),
        (0.7, (0.7, 0.9)),
        (0.8, (0.8, 1.0)),
        (1.0, (1.0,)),
    ],
)
def test_temperature_schedule(first, schedule):
    assert temperature_schedule(first) == schedule


@pytest.mark.parametrize(
    "first, retries, schedule",
    [
        (0.0, 0, (0.0,)),
        (0.0, 1, (0.0, 0.2)),
        (0.3, 2, (0.3, 0.5, 0.7)),
        (0.8, 3, (0.8, 1.0)),
        (1.0, 1, (1.0,)),
    ],
)
def test_temperature_schedule_with_retries_capped(first, retries, schedule):
    assert temperature_schedule(first, retries) == schedule


@pytest.mark.parametrize("tenths", range(11))
def test_temperature_schedule_stays_in_range(tenths):
    schedule = temperature_schedule(tenths / 10)
    assert schedule[0] == tenths / 10
    assert max(schedule) <= MAX_TEMPERATURE


def test_english_only_model_refuses_other_languages(speech_model):
    assert not speech_model.is_multilingual
    speech_model.check_language("en")
    speech_model.check_language(None)
    with pytest.raises(InvalidRequest) as caught:
        speech_model.check_language("es")
    assert caught.value.code == "unsupported_language"


def test_one_window_decodes_in_one_encoder_pass(speech_model, monkeypatch):
    """A prompted window whose text ends before its audio does (a live window: the text before
    as prompt, cut after "for you"): faster-whisper seeks to the last word and encodes the
    rest again; `one_window` stops after the first pass, with the words kept."""
    passes = []
    encode = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode", lambda model, features: passes.append(1) or encode(model, features))
    audio = pcm16k("en_jfk_16k.wav")[: 8 * SAMPLE_RATE]
    prompt = (
        "Lower intensity. We're just saying some words. And here are some more words. Words, words, "
        "words, words. He was not an ill-disposed young man. Today only platforms 1 and 3 are used."
    )
    words = {}
    for one_window in (False, True):
        passes.clear()
        options = TranscribeOptions(
            language="en", prompt=prompt, word_timestamps=True, beam_size=1, vad_filter=False, one_window=one_window
        )
        result = speech_model.transcribe(audio, options)
        words[one_window] = [w.text.strip(" ,.").lower() for s in result.segments for w in s.words]
        if one_window:
            assert len(passes) == 1
        else:
            assert len(passes) > 1  # the premise: without it, the tail is encoded again
    assert words[True][-2:] == ["for", "you"]
    assert words[True] == words[False][: len(words[True])]


def test_a_nested_one_window_decode_leaves_the_outer_budget(speech_model, monkeypatch):
    """Skipped speech decoded again inside a one-window decode's iteration has a budget of its
    own; once it is done, the outer decode still may not encode a second window."""
    monkeypatch.setattr(WhisperModel, "encode", lambda model, features: None)
    model = speech_model._model

    def segments(inner: bool):
        model.encode(None)
        yield "first"
        if inner:
            assert list(model.first_window(segments(inner=False))) == ["first"]
        model.encode(None)  # the outer decode's second window: past its budget
        yield "second"

    assert list(model.first_window(segments(inner=True))) == ["first"]
