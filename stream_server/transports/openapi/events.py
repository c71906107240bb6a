"""The live event objects (docs/PROTOCOL.md), shared by the SSE stream, the session feed and
the WebSocket."""

from __future__ import annotations

from stream_server.transports.openapi.parts import nullable, obj, ref

NUMBER = {"type": "number"}
TEXT = {"type": "string"}
SEQ = {"type": "integer", "minimum": 0}
CHANNEL = {"type": "integer", "minimum": 0}


def _event(kind: str, properties: dict, required: tuple[str, ...]) -> dict:
    return obj(
        {"type": {"const": kind}, "seq": SEQ, "channel": CHANNEL, **properties},
        ("type", *required),
    )


LOGPROB = obj({"token": TEXT, "logprob": NUMBER, "bytes": {"type": "array", "items": {"type": "integer"}}})
WORD = obj({"word": TEXT, "start": NUMBER, "end": NUMBER, "probability": NUMBER}, ("word", "start", "end"))
TOKEN_USAGE = obj(
    {
        "type": {"const": "tokens"},
        "input_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "input_token_details": obj({"audio_tokens": {"type": "integer"}, "text_tokens": {"type": "integer"}}),
    }
)

SCHEMAS = {
    "ErrorEvent": _event("error", {"error": ref("ErrorDetail")}, ("error",)),
    "StreamEvent": {
        "oneOf": [
            _event(
                "session.created",
                {
                    "session_id": TEXT,
                    "model": TEXT,
                    "language": nullable(TEXT),
                    "provider": TEXT,
                    "multichannel": {"type": "boolean"},
                    "channel_labels": {"type": "array", "items": TEXT},
                },
                ("session_id", "model"),
            ),
            _event("speech.started", {"time": NUMBER}, ("time",)),
            _event("speech.stopped", {"time": NUMBER}, ("time",)),
            _event(
                "transcript.text.delta",
                {
                    "delta": TEXT,
                    "start": NUMBER,
                    "end": NUMBER,
                    "session_id": TEXT,
                    "logprobs": {"type": "array", "items": LOGPROB},
                },
                ("delta",),
            ),
            _event("transcript.text.partial", {"text": TEXT, "start": NUMBER, "end": NUMBER}, ("text", "start", "end")),
            _event(
                "transcript.utterance.done",
                {
                    "utterance_id": {"type": ["string", "integer"]},
                    "text": TEXT,
                    "start": NUMBER,
                    "end": NUMBER,
                    "words": {
                        "type": "array",
                        "items": WORD,
                        "description": "Timed by the decoder; for a whole file posted with stream=true, "
                        "estimates: the segment's span shared out by the words' lengths.",
                    },
                },
                ("utterance_id", "text", "start", "end"),
            ),
            _event(
                "transcript.text.done",
                {
                    "text": TEXT,
                    "duration": NUMBER,
                    "usage": TOKEN_USAGE,
                    "provider": TEXT,
                    "channels": {"type": "array", "items": ref("ChannelText")},
                },
                ("text", "usage"),
            ),
            _event("session.lag", {"behind": {"type": "boolean"}, "lag_s": NUMBER}, ("behind", "lag_s")),
            _event(
                "session.events_dropped",
                {"count": {"type": "integer", "minimum": 1}, "first_seq": SEQ, "last_seq": SEQ},
                ("count", "first_seq", "last_seq"),
            ),
            ref("ErrorEvent"),
        ]
    },
    "SocketMessage": {
        "description": "What the WebSocket sends: the stream's events, and warnings.",
        "oneOf": [
            ref("StreamEvent"),
            obj(
                {"type": {"const": "warning"}, "code": TEXT, "message": TEXT, "queued_seconds": NUMBER},
            ),
        ],
    },
    "ChannelText": obj({"channel": CHANNEL, "label": TEXT, "text": TEXT}, ("channel", "text")),
}
