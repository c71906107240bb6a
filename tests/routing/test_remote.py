"""A remote provider's verbose_json becomes the same Transcription a local model gives."""

from stream_server.formats import render
from stream_server.routing.remote import transcription_from_verbose_json

VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 4.2,
    "text": "Hello there. General Kenobi.",
    "segments": [
        {"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": " Hello there.", "tokens": [50363, 15496], "temperature": 0.0,
         "avg_logprob": -0.2, "compression_ratio": 0.9, "no_speech_prob": 0.01},
        {"id": 1, "seek": 0, "start": 2.0, "end": 4.0, "text": " General Kenobi."},
    ],
    "words": [
        {"word": "Hello", "start": 0.0, "end": 0.6},
        {"word": "there.", "start": 0.6, "end": 1.5},
        {"word": "General", "start": 2.0, "end": 2.7},
        {"word": "Kenobi.", "start": 2.7, "end": 4.0},
    ],
}


def test_segments_words_and_language_come_back():
    result = transcription_from_verbose_json(VERBOSE)
    assert (result.language, result.duration, result.text) == ("en", 4.2, "Hello there. General Kenobi.")
    first, second = result.segments
    assert [w.text for w in first.words] == [" Hello", " there."]
    assert [w.text for w in second.words] == [" General", " Kenobi."]
    assert first.tokens == (50363, 15496) and second.tokens == ()


def test_it_renders_as_subtitles_and_word_timestamps_locally():
    result = transcription_from_verbose_json(VERBOSE)
    srt = render(result, "srt").body
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n")
    assert "00:00:02,000 --> 00:00:04,000\nGeneral Kenobi." in srt
    words = render(result, "verbose_json", granularities=frozenset({"word"})).body
    assert '"word": "Kenobi.", "start": 2.7, "end": 4.0' in words


def test_an_upstream_with_text_only_gives_one_segment():
    result = transcription_from_verbose_json({"text": "just text", "duration": 3.0, "language": "en"})
    (segment,) = result.segments
    assert (segment.start, segment.end, result.text, result.language) == (0.0, 3.0, "just text", "en")
