"""The faster-whisper wrapper: the temperature fallback schedule and language checks."""

from __future__ import annotations

import pytest

from stream_server.decoder.whisper import MAX_TEMPERATURE, temperature_schedule
from stream_server.errors import InvalidRequest


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
