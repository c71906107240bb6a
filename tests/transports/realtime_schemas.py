"""The part of OpenAI's OpenAPI document a Realtime transcription session's server events are
checked against, as JSON Schema (the document is OpenAPI 3.1, so its schemas are JSON Schema
2020-12), descriptions and examples left out.

Source: `components/schemas` of OpenAI's OpenAPI document, version 2.3.0, as published from
openai/openai-openapi and carried in 64bit/async-openai at `openapi.documented.yml`:
`RealtimeServerEvent{SessionCreated,SessionUpdated,InputAudioBufferSpeechStarted,
InputAudioBufferSpeechStopped,InputAudioBufferCommitted,InputAudioBufferCleared,
ConversationItemInputAudioTranscriptionDelta,ConversationItemInputAudioTranscriptionCompleted,
ConversationItemInputAudioTranscriptionFailed,Error,TranscriptionSessionUpdated}`,
`RealtimeBetaServerEventTranscriptionSessionCreated`, `RealtimeTranscriptionSessionCreateRequestGA`,
`RealtimeTranscriptionSessionCreateResponse`, `RealtimeAudioFormats` and `RealtimeTurnDetection`
as they stand there. The leaf schemas that document refers to but that were not read from it
(`AudioTranscription`, `NoiseReductionType`, `LogProbProperties`, `TranscriptTextUsageTokens`,
`TranscriptTextUsageDuration`) are written from the openai SDK's types generated from the same
document (openai/types/realtime/*.py). `RealtimeSessionCreateRequestGA` (a conversation
session) is cut down to its `type`, all that tells the two `session` alternatives apart.
"""

from __future__ import annotations

import jsonschema

NULL = {"type": "null"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, NULL]}


def _event(kind: str, properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {"event_id": {"type": "string"}, "type": {"type": "string", "enum": [kind]}, **properties},
        "required": ["event_id", "type", *required],
    }


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict] = {
    "AudioTranscription": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "language": {"type": "string"},
            "prompt": {"type": "string"},
            "delay": {"type": "string", "enum": ["minimal", "low", "medium", "high", "xhigh"]},
            "keywords": {"type": "array", "items": {"type": "string"}},
            "languages": {"type": "array", "items": {"type": "string"}},
        },
    },
    "NoiseReductionType": {"type": "string", "enum": ["near_field", "far_field"]},
    "LogProbProperties": {
        "type": "object",
        "properties": {
            "token": {"type": "string"},
            "logprob": {"type": "number"},
            "bytes": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["token", "logprob", "bytes"],
    },
    "TranscriptTextUsageTokens": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["tokens"]},
            "input_tokens": {"type": "integer"},
            "output_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "input_token_details": {
                "type": "object",
                "properties": {"text_tokens": {"type": "integer"}, "audio_tokens": {"type": "integer"}},
            },
        },
        "required": ["type", "input_tokens", "output_tokens", "total_tokens"],
    },
    "TranscriptTextUsageDuration": {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": ["duration"]}, "seconds": {"type": "number"}},
        "required": ["type", "seconds"],
    },
    "RealtimeAudioFormats": {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["audio/pcm"]},
                    "rate": {"type": "integer", "enum": [24000]},
                },
            },
            {"type": "object", "properties": {"type": {"type": "string", "enum": ["audio/pcmu"]}}},
            {"type": "object", "properties": {"type": {"type": "string", "enum": ["audio/pcma"]}}},
        ]
    },
    "RealtimeTurnDetection": {
        "anyOf": [
            {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "const": "server_vad"},
                            "threshold": {"type": "number"},
                            "prefix_padding_ms": {"type": "integer"},
                            "silence_duration_ms": {"type": "integer"},
                            "create_response": {"type": "boolean"},
                            "interrupt_response": {"type": "boolean"},
                            "idle_timeout_ms": _nullable({"type": "integer", "minimum": 5000, "maximum": 30000}),
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "const": "semantic_vad"},
                            "eagerness": {"type": "string", "enum": ["low", "medium", "high", "auto"]},
                            "create_response": {"type": "boolean"},
                            "interrupt_response": {"type": "boolean"},
                        },
                    },
                ]
            },
            NULL,
        ]
    },
    "RealtimeSessionCreateRequestGA": {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": ["realtime"]}},
        "required": ["type"],
    },
    "RealtimeTranscriptionSessionCreateRequestGA": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["transcription"]},
            "audio": {
                "type": "object",
                "properties": {
                    "input": {
                        "type": "object",
                        "properties": {
                            "format": _ref("RealtimeAudioFormats"),
                            "transcription": _ref("AudioTranscription"),
                            "noise_reduction": {"type": "object", "properties": {"type": _ref("NoiseReductionType")}},
                            "turn_detection": _ref("RealtimeTurnDetection"),
                        },
                    }
                },
            },
            "include": {"type": "array", "items": {"type": "string", "enum": ["item.input_audio_transcription.logprobs"]}},
        },
        "required": ["type"],
    },
    "RealtimeTranscriptionSessionCreateResponse": {
        "type": "object",
        "properties": {
            "client_secret": {
                "type": "object",
                "properties": {"value": {"type": "string"}, "expires_at": {"type": "integer"}},
                "required": ["value", "expires_at"],
            },
            "modalities": {"items": {"type": "string", "enum": ["text", "audio"]}},
            "input_audio_format": {"type": "string"},
            "input_audio_transcription": _ref("AudioTranscription"),
            "turn_detection": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "threshold": {"type": "number"},
                    "prefix_padding_ms": {"type": "integer"},
                    "silence_duration_ms": {"type": "integer"},
                },
            },
        },
        "required": ["client_secret"],
    },
}

_SESSION_GA = {"oneOf": [_ref("RealtimeSessionCreateRequestGA"), _ref("RealtimeTranscriptionSessionCreateRequestGA")]}
_LOGPROBS = _nullable({"type": "array", "items": _ref("LogProbProperties")})

EVENTS: dict[str, dict] = {
    "session.created": _event("session.created", {"session": _SESSION_GA}, ["session"]),
    "session.updated": _event("session.updated", {"session": _SESSION_GA}, ["session"]),
    "transcription_session.created": _event(
        "transcription_session.created", {"session": _ref("RealtimeTranscriptionSessionCreateResponse")}, ["session"]
    ),
    "transcription_session.updated": _event(
        "transcription_session.updated", {"session": _ref("RealtimeTranscriptionSessionCreateResponse")}, ["session"]
    ),
    "input_audio_buffer.speech_started": _event(
        "input_audio_buffer.speech_started",
        {"audio_start_ms": {"type": "integer"}, "item_id": {"type": "string"}},
        ["audio_start_ms", "item_id"],
    ),
    "input_audio_buffer.speech_stopped": _event(
        "input_audio_buffer.speech_stopped",
        {"audio_end_ms": {"type": "integer"}, "item_id": {"type": "string"}},
        ["audio_end_ms", "item_id"],
    ),
    "input_audio_buffer.committed": _event(
        "input_audio_buffer.committed",
        {"previous_item_id": _nullable({"type": "string"}), "item_id": {"type": "string"}},
        ["item_id"],
    ),
    "input_audio_buffer.cleared": _event("input_audio_buffer.cleared", {}, []),
    "conversation.item.input_audio_transcription.delta": _event(
        "conversation.item.input_audio_transcription.delta",
        {
            "item_id": {"type": "string"},
            "content_index": {"type": "integer"},
            "delta": {"type": "string"},
            "logprobs": _LOGPROBS,
        },
        ["item_id"],
    ),
    "conversation.item.input_audio_transcription.completed": _event(
        "conversation.item.input_audio_transcription.completed",
        {
            "item_id": {"type": "string"},
            "content_index": {"type": "integer"},
            "transcript": {"type": "string"},
            "logprobs": _LOGPROBS,
            "usage": {"type": "object", "oneOf": [_ref("TranscriptTextUsageTokens"), _ref("TranscriptTextUsageDuration")]},
        },
        ["item_id", "content_index", "transcript", "usage"],
    ),
    "conversation.item.input_audio_transcription.failed": _event(
        "conversation.item.input_audio_transcription.failed",
        {
            "item_id": {"type": "string"},
            "content_index": {"type": "integer"},
            "error": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "param": {"type": "string"},
                },
            },
        },
        ["item_id", "content_index", "error"],
    ),
    "error": _event(
        "error",
        {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "code": _nullable({"type": "string"}),
                    "message": {"type": "string"},
                    "param": _nullable({"type": "string"}),
                    "event_id": _nullable({"type": "string"}),
                },
            }
        },
        ["error"],
    ),
}

_COMPONENTS = {"components": {"schemas": SCHEMAS}}
"""Beside each event's schema, so its `#/components/schemas/...` references resolve as in the document."""


def validate(event: dict) -> None:
    """Raise jsonschema.ValidationError unless `event` is valid against its event's schema;
    KeyError for an event type this session should never send."""
    jsonschema.Draft202012Validator({**_COMPONENTS, **EVENTS[event["type"]]}).validate(event)
