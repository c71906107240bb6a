"""POST /api/v2/Audio/transcribe/file: a stored file, JSON in, JSON or text out (transcribe_v2.py)."""

from __future__ import annotations

from stream_server.transports.openapi.events import NUMBER, TEXT
from stream_server.transports.openapi.parts import CULTURE, errors, json_body, obj, ref, response
from stream_server.transports.rest.transcribe_v2 import FIELDS, PATH

INTEGER = {"type": "integer"}

SCHEMAS = {
    "FileTranscriptionRequest": obj(
        {name: {"type": "string", "maxLength": limit} for name, (limit, _) in FIELDS.items()},
        tuple(name for name, (_, required) in FIELDS.items() if required),
    ),
    "FileTranscriptionResult": obj(
        {
            "instanceId": TEXT,
            "transcript": TEXT,
            "metadata": obj({"language": TEXT, "duration": {"type": "string", "pattern": r"^\d{2,}:\d{2}:\d{2}\.\d{3}$"}}),
            "tokenUsage": obj({"completionTokens": INTEGER, "promptTokens": INTEGER, "totalTokens": INTEGER}),
            "cost": obj({"completion": NUMBER, "prompt": NUMBER, "total": NUMBER, "currency": TEXT}),
        },
        closed=True,
    ),
}

PATHS = {
    PATH: {
        "post": {
            "operationId": "transcribeStoredFile",
            "summary": "Transcribe a stored file, with token usage and cost",
            "description": "With `Accept` ranking text/plain above JSON, the transcript alone as text.",
            "parameters": [CULTURE],
            "requestBody": {"required": True, "content": json_body(ref("FileTranscriptionRequest"))},
            "responses": {
                "200": response(
                    "The transcript.",
                    {**json_body(ref("FileTranscriptionResult")), "text/plain": {"schema": TEXT}},
                ),
                **errors(400, 403, 404, 413, 429, 502, 503),
            },
        }
    },
}
