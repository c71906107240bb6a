"""Serialise engine events to the JSON objects of the wire protocol (docs/PROTOCOL.md).

OpenAI's streaming transcription defines `transcript.text.delta` and `transcript.text.done`;
the other types are this server's extensions, sent only to clients that ask for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from stream_server.decoder.results import Word
from stream_server.events import (
    DecodingLag,
    Event,
    EventsDropped,
    SessionStarted,
    SpeechStarted,
    SpeechStopped,
    StreamDone,
    StreamFailed,
    TextCommitted,
    TextPartial,
    UtteranceDone,
)

AUDIO_TOKENS_PER_SECOND = 50
"""Whisper's encoder yields 1500 positions per 30 s window: what `input_tokens` counts for audio."""
OPENAI_TYPES = frozenset({"transcript.text.delta", "transcript.text.done"})


def _t(seconds: float) -> float:
    return round(float(seconds), 3)


def _words(words: tuple[Word, ...]) -> list[dict]:
    return [{"word": w.text.strip(), "start": _t(w.start), "end": _t(w.end), "probability": round(float(w.probability), 4)} for w in words]


def event_json(
    event: Event, count_tokens: Callable[[str], int], *, logprobs: bool = False, provider: str | None = None
) -> dict:
    """The wire object; word log-probabilities on deltas only when asked (they are large).
    `provider`, the session's backend, is added to the done event. An event of one channel of a
    multichannel stream carries `channel`."""
    body = _body(event, count_tokens)
    if not logprobs:
        body.pop("logprobs", None)
    if provider and isinstance(event, StreamDone):
        body["provider"] = provider
    if event.channel is not None:
        body["channel"] = event.channel
    body["seq"] = event.seq
    return body


def _body(event: Event, count_tokens: Callable[[str], int]) -> dict:
    if isinstance(event, SessionStarted):
        return {
            "type": "session.created",
            "session_id": event.session_id,
            "model": event.model,
            "language": event.language,
            "provider": event.provider,
        } | ({"multichannel": True, "channel_labels": list(event.channel_labels)} if event.channel_labels is not None else {})
    if isinstance(event, SpeechStarted):
        return {"type": "speech.started", "time": _t(event.time)}
    if isinstance(event, SpeechStopped):
        return {"type": "speech.stopped", "time": _t(event.time)}
    if isinstance(event, TextCommitted):
        return {
            "type": "transcript.text.delta",
            "delta": event.delta,
            "start": _t(event.start),
            "end": _t(event.end),
            "logprobs": [
                {"token": w.text, "logprob": math.log(max(float(w.probability), 1e-12)), "bytes": list(w.text.encode())}
                for w in event.words
            ],
        }
    if isinstance(event, TextPartial):
        return {"type": "transcript.text.partial", "text": event.text, "start": _t(event.start), "end": _t(event.end)}
    if isinstance(event, UtteranceDone):
        return {
            "type": "transcript.utterance.done",
            "utterance_id": event.utterance_id,
            "text": event.text,
            "start": _t(event.start),
            "end": _t(event.end),
            "words": _words(event.words),
        }
    if isinstance(event, StreamDone):
        audio_tokens = round(event.speech_seconds * AUDIO_TOKENS_PER_SECOND)
        output_tokens = count_tokens(event.text)
        return {
            "type": "transcript.text.done",
            "text": event.text,
            "duration": _t(event.duration),
            "usage": {
                "type": "tokens",
                "input_tokens": audio_tokens + event.prompt_tokens,
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + event.prompt_tokens + output_tokens,
                "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": event.prompt_tokens},
            },
        } | ({"channels": [c.fields() for c in event.channels]} if event.channels else {})
    if isinstance(event, DecodingLag):
        return {"type": "session.lag", "behind": event.behind, "lag_s": _t(event.lag_s)}
    if isinstance(event, EventsDropped):
        return {"type": "session.events_dropped", "count": event.count, "first_seq": event.first, "last_seq": event.seq}
    if isinstance(event, StreamFailed):
        return {
            "type": "error",
            "error": {"message": event.message, "type": event.error_type, "param": None, "code": event.code},
        }
    raise TypeError(f"no wire form for {type(event).__name__}")
