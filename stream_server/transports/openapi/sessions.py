"""Live sessions: the list, one session's transcript, its event feed (transports/live/sessions_api.py)."""

from __future__ import annotations

from stream_server.transports.openapi.events import NUMBER, TEXT
from stream_server.transports.openapi.parts import CULTURE, errors, list_of, nullable, obj, ok_json, path, param, ref, response, sse

UTTERANCE = obj({"id": {"type": ["integer", "string"]}, "text": TEXT, "start": NUMBER, "end": NUMBER})

SCHEMAS = {
    "Session": obj(
        {
            "object": {"const": "audio.session"},
            "id": TEXT,
            "status": {"type": "string", "enum": ["live", "completed", "failed"]},
            "model": TEXT,
            "provider": nullable(TEXT),
            "language": nullable(TEXT),
            "text": TEXT,
            "duration": nullable(NUMBER),
            "created_at": {"type": "integer"},
            "ended_at": nullable({"type": "integer"}),
            "key_id": TEXT,
            "utterances": nullable({"type": "array", "items": UTTERANCE}),
            "channels": {"type": "array", "items": ref("ChannelText")},
            "error": ref("ErrorDetail"),
            "replica": TEXT,
        },
        ("object", "id", "status", "model", "provider", "language", "text", "duration", "created_at", "ended_at", "key_id", "utterances"),
    ),
}
"""One shape for a session held live or stored: `duration` and `ended_at` are null until it is
stored, `provider` and `utterances` for one stored before they were kept, and `utterances` for
one live on another replica (with --redis-url), which names its `replica`; a transport may add
its own details (a call's ids)."""

SESSION_ID = path("session_id", "A live session's id (`sess_...`).")

PATHS = {
    "/v1/audio/sessions": {
        "get": {
            "operationId": "listSessions",
            "summary": "The caller's live sessions, then its finished ones (an admin's: everyone's)",
            "parameters": [CULTURE],
            "responses": {**ok_json("The sessions.", list_of(ref("Session"))), **errors()},
        }
    },
    "/v1/audio/sessions/{session_id}": {
        "get": {
            "operationId": "getSession",
            "parameters": [SESSION_ID, CULTURE],
            "responses": {**ok_json("The session.", ref("Session")), **errors(403, 404)},
        }
    },
    "/v1/audio/sessions/{session_id}/events": {
        "get": {
            "operationId": "followSession",
            "summary": "Every event of a live session, partials included, with `id:` lines to resume from",
            "parameters": [
                SESSION_ID,
                param("Last-Event-ID", "header", {"type": "string", "pattern": "^-?[0-9]+$"}, "Resume after this event."),
                {**param("last_event_id", "query", {"type": "string", "pattern": "^-?[0-9]+$"}), "description": "As Last-Event-ID (EventSource cannot set it)."},
                param("api_key", "query", {"type": "string"}, "The key, for browsers' EventSource."),
                CULTURE,
            ],
            "responses": {
                "200": response("The feed.", sse("`id:` and `data:` lines, ending with `data: [DONE]`.", "StreamEvent")),
                **errors(400, 403, 404),
            },
        }
    },
}
