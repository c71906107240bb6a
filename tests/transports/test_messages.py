from stream_server.errors import FieldTooLong, NotFound
from stream_server.transports.error_texts import language_of, localized_message
from stream_server.transports.rest.transcribe_v2 import clock, prefers_text


def test_spanish_for_es_cultures_english_otherwise():
    error = FieldTooLong("'user' must be at most 100 characters", param="user", limit=100)
    assert localized_message(error, "es") == "el campo 'user' admite como máximo 100 caracteres"
    assert localized_message(error, "es-AR") == localized_message(error, "es")
    assert localized_message(error, "en") == error.message
    assert localized_message(error, None) == error.message
    assert localized_message(error, "fr") == error.message
    assert language_of("ES_es") == "es"
    unknown_code = NotFound("gone", code="something_else")
    assert localized_message(unknown_code, "es") == "gone"


def test_accept_negotiation():
    assert not prefers_text("")
    assert not prefers_text("*/*")
    assert not prefers_text("application/json, text/plain")
    assert prefers_text("text/plain")
    assert prefers_text("text/plain, application/json;q=0.5")
    assert prefers_text("text/*")
    assert not prefers_text("text/plain;q=0.2, */*")


def test_duration_clock():
    assert clock(4.4641) == "00:00:04.464"
    assert clock(3725.5) == "01:02:05.500"
