"""/health, /v1/models and POST /v1/audio/transcriptions (transports/rest/openai_api.py)."""

from __future__ import annotations

from stream_server.formats import RESPONSE_FORMATS
from stream_server.routing.router import PREFERENCES
from stream_server.transports.rest.openai_api import GRANULARITIES, INCLUDES, PROVIDER_HEADER
from stream_server.transports.openapi.parts import (
    BOOL,
    CULTURE,
    errors,
    json_body,
    list_of,
    nullable,
    obj,
    ok_json,
    path,
    query,
    ref,
    response,
    sse,
)
from stream_server.transports.openapi.events import CHANNEL, LOGPROB, NUMBER, TEXT

FIELDS = {
    "model": {
        "type": "string",
        "description": "The served model's name or one of OpenAI's (see GET /v1/models).",
        "examples": ["whisper-1"],
    },
    "language": {"type": "string", "description": "ISO-639-1; a language the model cannot do is a 400."},
    "prompt": {"type": "string", "maxLength": 65536},
    "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
    "temperature": {"type": "string", "description": "A number from 0 to 1."},
    "timestamp_granularities[]": {
        "type": "array",
        "items": {"type": "string", "enum": sorted(GRANULARITIES)},
        "description": "Needs response_format=verbose_json.",
    },
    "include[]": {"type": "array", "items": {"type": "string", "enum": sorted(INCLUDES)}, "description": "Needs json."},
    "stream": {**BOOL, "description": "Send the text as SSE while the audio arrives (json or text only)."},
    "partials": {**BOOL, "description": "The live extension events on the stream."},
    "multichannel": {**BOOL, "description": "Transcribe each channel on its own."},
    "channel_labels": {"type": "string", "description": "Comma-separated channel names; needs multichannel."},
    "preference": {"type": "string", "enum": sorted(PREFERENCES)},
    "allowed_providers": {"type": "string", "description": "Comma-separated provider ids."},
    "eu_native": BOOL,
    "allow_quantization": BOOL,
}
"""The fields of a transcription request, as form fields or (raw bodies) query parameters."""

SEGMENT = obj(
    {
        "id": {"type": "integer"},
        "seek": {"type": "integer"},
        "start": NUMBER,
        "end": NUMBER,
        "text": TEXT,
        "tokens": {"type": "array", "items": {"type": "integer"}},
        "temperature": NUMBER,
        "avg_logprob": NUMBER,
        "compression_ratio": NUMBER,
        "no_speech_prob": NUMBER,
        "channel": CHANNEL,
        "label": TEXT,
    },
    ("id", "start", "end", "text"),
)
HEAD = {
    "id": TEXT,
    "object": {"const": "audio.transcription"},
    "created": {"type": "integer"},
    "provider": TEXT,
    "model": TEXT,
}
DURATION_USAGE = obj({"type": {"const": "duration"}, "seconds": {"type": "integer", "minimum": 0}})
CHANNELS = {"type": "array", "items": ref("ChannelText")}

SCHEMAS = {
    "Health": {
        "oneOf": [
            obj({"status": {"const": "ok"}, "model": TEXT}, closed=True),
            obj({"status": {"enum": ["loading", "error"]}, "detail": nullable(TEXT)}, closed=True),
        ]
    },
    "Model": obj(
        {"id": TEXT, "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": TEXT}, closed=True
    ),
    "Transcription": obj(
        {**HEAD, "text": TEXT, "usage": DURATION_USAGE, "channels": CHANNELS, "logprobs": {"type": "array", "items": LOGPROB}},
        ("id", "object", "text", "usage"),
        closed=True,
    ),
    "VerboseTranscription": obj(
        {
            **HEAD,
            "task": {"const": "transcribe"},
            "language": TEXT,
            "duration": NUMBER,
            "text": TEXT,
            "usage": DURATION_USAGE,
            "channels": CHANNELS,
            "segments": {"type": "array", "items": SEGMENT},
            "words": {
                "type": "array",
                "items": obj({"word": TEXT, "start": NUMBER, "end": NUMBER, "channel": CHANNEL, "label": TEXT}, ("word", "start", "end")),
            },
        },
        ("id", "object", "task", "language", "duration", "text", "usage"),
        closed=True,
    ),
    "TranscriptionForm": obj(
        {"file": {"type": "string", "contentMediaType": "application/octet-stream"}, **FIELDS}, ("model", "file")
    ),
    "StoredTranscriptionForm": obj({"file_id": TEXT, **FIELDS}, ("model", "file_id")),
}

_RESULT = {
    "200": response(
        "The transcription (json, verbose_json), or text / srt / vtt; with stream=true, SSE events "
        "(docs/PROTOCOL.md). `X-Provider` names the backend of a whole-file answer.",
        {
            "application/json": {"schema": {"oneOf": [ref("Transcription"), ref("VerboseTranscription")]}},
            "text/plain": {"schema": TEXT},
            "text/vtt": {"schema": TEXT},
            **sse("Events as `data:` lines, ending with `data: [DONE]`.", "StreamEvent"),
        },
        {
            PROVIDER_HEADER: {"schema": TEXT, "description": "Whole-file answers: the backend that transcribed."},
            "X-Session-Id": {"schema": TEXT, "description": "stream=true: the live session's id."},
        },
    ),
    **errors(400, 403, 404, 413, 429, 502, 503),
}
_RAW_TYPES = ("application/octet-stream", "audio/*", "video/*", "application/ogg")


def _transcribe(method: str) -> dict:
    raw = {kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in _RAW_TYPES}
    return {
        "operationId": f"{method}Transcription",
        "summary": "Transcribe audio (OpenAI's create transcription), whole or live",
        "description": (
            "A multipart upload (as the openai SDK sends it); an url-encoded form naming a stored "
            "`file_id`; or a raw audio body (`audio/pcm;encoding=s16le;rate=16000`, `audio/L16`, "
            "`audio/PCMU`, a container) with the fields as query parameters. A raw body may leave `model` out."
        ),
        "parameters": [CULTURE, *(query(name, schema) for name, schema in FIELDS.items())],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": ref("TranscriptionForm")},
                "application/x-www-form-urlencoded": {"schema": ref("StoredTranscriptionForm")},
                **raw,
            },
        },
        "responses": _RESULT,
    }


PATHS = {
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Whether the model is loaded",
            "security": [],
            "responses": {
                "200": response("Loaded.", json_body(ref("Health"))),
                "503": response("Loading, or the load failed (`detail`).", json_body(ref("Health"))),
                **errors(keyed=False),
            },
        }
    },
    "/v1/models": {
        "get": {
            "operationId": "listModels",
            "summary": "The served model's name and OpenAI's names it answers to",
            "parameters": [CULTURE],
            "responses": {**ok_json("The models.", list_of(ref("Model"))), **errors()},
        }
    },
    "/v1/models/{model}": {
        "get": {
            "operationId": "getModel",
            "parameters": [path("model"), CULTURE],
            "responses": {**ok_json("The model.", ref("Model")), **errors(404)},
        }
    },
    "/v1/audio/transcriptions": {"post": _transcribe("create"), "put": _transcribe("put")},
}
