"""OpenAI Realtime transcription sessions without a model: the session configuration both client
shapes set, the session objects, and the server events made from a live stream's events, each
checked against OpenAI's published schema (tests/transports/realtime_schemas.py)."""

from __future__ import annotations

import dataclasses

import pytest

from stream_server.decoder.results import Word
from stream_server.events import SpeechStarted, SpeechStopped, StreamFailed, TextCommitted, UtteranceDone
from stream_server.transports.compat.realtime_config import (
    RealtimeError,
    SessionConfig,
    ServerVad,
    parse_beta_update,
    parse_ga_update,
)
from stream_server.transports.compat.realtime_events import ItemTracker, server_event
from stream_server.vad.segmenter import SpeechSegmenter, VadOptions
from tests.transports.realtime_schemas import validate

MODELS = {"tiny.en", "whisper-1", "gpt-4o-transcribe"}
DEFAULTS = SessionConfig.defaults(VadOptions())


def ga(session: dict, current: SessionConfig = DEFAULTS) -> SessionConfig:
    return parse_ga_update({"type": "transcription", **session}, current, MODELS, DEFAULTS)


def beta(session: dict, current: SessionConfig = DEFAULTS) -> SessionConfig:
    return parse_beta_update(session, current, MODELS, DEFAULTS)


def committed(text: str, start: float, end: float, probability: float = 0.9) -> TextCommitted:
    words = tuple(Word(start, end, w, probability) for w in text.split(" ") if w)
    return TextCommitted(delta=text, start=start, end=end, words=words)


def done() -> UtteranceDone:
    return UtteranceDone(utterance_id=0, text="", start=0.0, end=0.0, words=())


def run(tracker: ItemTracker, *steps) -> list[dict]:
    """Feed engine events (and ("commit", seconds) / ("clear",) steps); every server event must
    be valid against its schema."""
    out = []
    for step in steps:
        if step == ("clear",):
            tracker.clear()
            continue
        bodies = tracker.commit(step[1], "evt_client") if isinstance(step, tuple) else tracker.event(step)
        for body in bodies:
            validate(body)
        out += bodies
    return out


def types(events: list[dict]) -> list[str]:
    return [e["type"].rsplit(".", 1)[-1] for e in events]


def test_the_defaults_are_pcm_24k_and_the_server_vad():
    assert DEFAULTS.format == "audio/pcm" and DEFAULTS.raw_format.sample_rate == 24000
    assert DEFAULTS.turn_detection == ServerVad(0.5, VadOptions().pre_speech_ms, VadOptions().hangover_ms)
    assert DEFAULTS.vad_options(VadOptions()) == VadOptions()


def test_ga_update_maps_server_vad_onto_the_vad_options():
    config = ga(
        {
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "EN", "prompt": "JFK"},
                    "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 300, "silence_duration_ms": 700},
                    "noise_reduction": {"type": "far_field"},
                }
            },
            "include": ["item.input_audio_transcription.logprobs"],
        }
    )
    assert (config.format, config.model, config.language, config.prompt) == ("audio/pcmu", "gpt-4o-transcribe", "en", "JFK")
    assert config.raw_format.encoding == "mulaw" and config.raw_format.sample_rate == 8000
    assert config.noise_reduction == "far_field" and config.logprobs
    vad = config.vad_options(VadOptions(engine="webrtc"))
    assert (vad.engine, vad.threshold, vad.pre_speech_ms, vad.hangover_ms) == ("webrtc", 0.6, 300, 700)


def test_a_short_silence_duration_gives_valid_vad_options():
    vad = ga({"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 100}}}}).vad_options(VadOptions())
    assert vad.hangover_ms == vad.pause_ms == vad.min_hangover_ms == 100
    SpeechSegmenter(vad)  # builds


def test_only_present_fields_change_and_null_turn_detection_is_manual():
    first = ga({"audio": {"input": {"transcription": {"language": "en"}, "turn_detection": {"silence_duration_ms": 800}}}})
    second = ga({"audio": {"input": {"format": {"type": "audio/pcma"}}}}, first)
    assert second.language == "en" and second.turn_detection.silence_duration_ms == 800 and second.format == "audio/pcma"
    manual = ga({"audio": {"input": {"turn_detection": None}}}, second)
    assert manual.manual and manual.vad_options(VadOptions()) == VadOptions()
    back = ga({"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}}, manual)
    assert back.turn_detection == DEFAULTS.turn_detection


def test_beta_update():
    config = beta(
        {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": None,
            "input_audio_noise_reduction": {"type": "near_field"},
            "include": ["item.input_audio_transcription.logprobs"],
            "modalities": ["text"],
        }
    )
    assert (config.format, config.model, config.manual, config.noise_reduction, config.logprobs) == (
        "audio/pcma",
        "whisper-1",
        True,
        "near_field",
        True,
    )


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format.rate"),
        ({"audio": {"input": {"format": {"type": "audio/opus"}}}}, "session.audio.input.format.type"),
        ({"audio": {"input": {"transcription": {"model": "nova-3"}}}}, "session.audio.input.transcription.model"),
        ({"audio": {"input": {"turn_detection": {"threshold": 1.5}}}}, "session.audio.input.turn_detection.threshold"),
        ({"audio": {"input": {"turn_detection": {"silence_duration_ms": 0}}}}, "session.audio.input.turn_detection.silence_duration_ms"),
        ({"audio": {"input": {"turn_detection": {"type": "push_to_talk"}}}}, "session.audio.input.turn_detection.type"),
        ({"type": "realtime"}, "session.type"),
        ({"include": "logprobs"}, "session.include"),
    ],
)
def test_a_bad_ga_update_is_refused_whole(update, param):
    with pytest.raises(RealtimeError) as refused:
        parse_ga_update({"type": "transcription", **update}, DEFAULTS, MODELS, DEFAULTS)
    assert refused.value.param == param and refused.value.error_type == "invalid_request_error"


def test_a_bad_beta_format_is_refused():
    with pytest.raises(RealtimeError) as refused:
        beta({"input_audio_format": "opus"})
    assert refused.value.param == "session.input_audio_format" and refused.value.code == "invalid_value"


@pytest.mark.parametrize("config", [DEFAULTS, dataclasses.replace(DEFAULTS, turn_detection=None, format="audio/pcmu", noise_reduction="near_field", logprobs=True, language="en")])
def test_both_session_objects_are_valid(config):
    validate(server_event("session.created", session=config.ga_session("sess_1", "tiny.en")))
    validate(server_event("session.updated", session=config.ga_session("sess_1", "tiny.en")))
    validate(server_event("transcription_session.created", session=config.beta_session("sess_1", "tiny.en")))
    validate(server_event("transcription_session.updated", session=config.beta_session("sess_1", "tiny.en")))
    session = config.beta_session("sess_1", "tiny.en")
    assert ("turn_detection" in session) == (not config.manual)


def test_server_vad_items_send_committed_text_only_after_their_commit():
    tracker = ItemTracker(manual=False)
    events = run(
        tracker,
        SpeechStarted(time=0.25),
        committed(" And so,", 0.3, 0.9),
        SpeechStopped(time=2.5),
        committed(" my fellow Americans.", 1.0, 2.0),
        SpeechStarted(time=3.0),
        done(),
        SpeechStopped(time=4.0),
        committed(" Ask not.", 3.1, 3.6),
        done(),
    )
    assert types(events) == [
        "speech_started", "speech_stopped", "committed", "delta", "delta", "speech_started", "completed",
        "speech_stopped", "committed", "delta", "completed",
    ]  # fmt: skip
    first, second = events[0]["item_id"], events[5]["item_id"]
    assert events[0]["audio_start_ms"] == 250 and events[1]["audio_end_ms"] == 2500
    assert events[2]["previous_item_id"] is None and events[8]["previous_item_id"] == first
    assert [e["delta"] for e in events if e.get("item_id") == first and "delta" in e] == ["And so,", " my fellow Americans."]
    completed = [e for e in events if e["type"].endswith("completed")]
    assert [c["item_id"] for c in completed] == [first, second]
    assert completed[0]["transcript"] == "And so, my fellow Americans." and completed[1]["transcript"] == "Ask not."
    assert completed[0]["usage"] == {"type": "duration", "seconds": 2.25}
    assert all("logprobs" not in e for e in events)


def test_manual_turns_span_utterances_and_wait_for_the_commit():
    tracker = ItemTracker(manual=True)
    tracker.logprobs = True
    events = run(tracker, SpeechStarted(time=0.2), committed(" Hello", 0.3, 0.6), SpeechStopped(time=1.0), done())
    assert events == []  # nothing before the client commits
    events = run(tracker, SpeechStarted(time=1.5), committed(" there.", 1.6, 2.0), ("commit", 2.4), SpeechStopped(time=2.4), done())
    assert types(events) == ["committed", "delta", "delta", "completed"]
    assert "".join(e["delta"] for e in events[1:3]) == events[3]["transcript"] == "Hello there."
    assert events[3]["usage"]["seconds"] == 2.4
    assert [p["token"] for p in events[3]["logprobs"]] == ["Hello", "there."]
    assert events[1]["logprobs"][0]["bytes"] == list(b"Hello") and events[1]["logprobs"][0]["logprob"] < 0
    silent = run(tracker, ("commit", 1.0))
    assert types(silent) == ["committed", "completed"] and silent[1]["transcript"] == ""
    assert silent[0]["previous_item_id"] == events[0]["item_id"]


def test_clear_drops_what_is_not_committed():
    manual = ItemTracker(manual=True)
    run(manual, SpeechStarted(time=0.0), committed(" Scratch that.", 0.1, 0.8), ("clear",), SpeechStopped(time=1.0))
    events = run(manual, done(), SpeechStarted(time=1.2), committed(" Keep this.", 1.3, 2.0), ("commit", 1.0), SpeechStopped(time=2.2), done())
    assert [e.get("transcript") for e in events if e["type"].endswith("completed")] == ["Keep this."]
    vad = ItemTracker(manual=False)
    started = run(vad, SpeechStarted(time=0.0), committed(" Scratch", 0.1, 0.5), ("clear",), SpeechStopped(time=0.6), done())
    assert types(started) == ["speech_started"]  # no stop, commit or text for the cleared turn
    later = run(vad, SpeechStarted(time=1.0), committed(" Keep.", 1.1, 1.5), SpeechStopped(time=2.0), done())
    assert types(later) == ["speech_started", "speech_stopped", "committed", "delta", "completed"]


def test_a_commit_with_no_speech_in_server_vad_mode_is_an_error():
    tracker = ItemTracker(manual=False)
    (error,) = run(tracker, ("commit", 0.0))
    assert error["type"] == "error" and error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "evt_client"
    started = run(tracker, SpeechStarted(time=0.0), ("commit", 0.0))  # speech open: the cut's stop commits it
    assert types(started) == ["speech_started"]


def test_a_failed_stream_fails_the_committed_items_not_completed():
    tracker = ItemTracker(manual=False)
    run(tracker, SpeechStarted(time=0.0), SpeechStopped(time=1.0), SpeechStarted(time=1.5))
    failure = StreamFailed(message="decoding failed: boom", code="decode_failed", error_type="server_error")
    (failed,) = tracker.failed(failure)
    validate(failed)
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["error"] == {"type": "server_error", "code": "decode_failed", "message": "decoding failed: boom"}
