"""The WebSocket routes (transports/live/websocket_api.py, twilio_api.py, realtime_api.py). OpenAPI describes their
handshake; a plain GET gets a 400 `websocket_required`. `x-websocket` names the messages."""

from __future__ import annotations

from stream_server.transports.auth import REALTIME_PATH, STREAM_PATH, TWILIO_PATH
from stream_server.transports.openapi.openai import FIELDS
from stream_server.transports.openapi.parts import CULTURE, errors, query, ref, response
from stream_server.transports.live.websocket_api import ENCODINGS

SOCKET_FIELDS = (
    "model", "language", "prompt", "partials", "multichannel", "channel_labels",
    "preference", "allowed_providers", "eu_native", "allow_quantization",
)
"""The transcription fields the WebSocket takes as query parameters."""
UPGRADE = {"101": response("Switching protocols: the WebSocket is open.")}

PATHS = {
    STREAM_PATH: {
        "get": {
            "operationId": "streamAudio",
            "summary": "Live audio over a WebSocket (docs/PROTOCOL_WEBSOCKET.md)",
            "description": "Binary messages: audio in `encoding`; text messages: JSON controls "
            "`finalize`, `close`, `keepalive`. Refusals come before the upgrade, as HTTP errors, except "
            "one for capacity: a browser cannot read a refused handshake, so that is an `error` message "
            "and close code 1013 after it.",
            "parameters": [
                query("encoding", {"type": "string", "enum": list(ENCODINGS)}),
                query("sample_rate", {"type": "integer", "minimum": 1000, "maximum": 384000}),
                query("channels", {"type": "integer", "minimum": 1, "maximum": 8}),
                *(query(name, FIELDS[name]) for name in SOCKET_FIELDS),
                query("api_key", {"type": "string"}, "The key, for browsers (or a `bearer.<key>` subprotocol)."),
                CULTURE,
            ],
            "responses": {**UPGRADE, **errors(400, 404, 503)},
            "x-websocket": {"server-messages": ref("SocketMessage"), "close-codes": [1000, 1001, 1008, 1011, 1013]},
        }
    },
    TWILIO_PATH: {
        "get": {
            "operationId": "twilioStream",
            "summary": "Twilio Media Streams (docs/PROTOCOL_TWILIO.md)",
            "description": "Twilio sets no headers: the key comes as `api_key` or in the stream's `start` message.",
            "security": [],
            "parameters": [query("api_key", {"type": "string"}), CULTURE],
            "responses": {**UPGRADE, **errors(400, keyed=False)},
        }
    },
    REALTIME_PATH: {
        "get": {
            "operationId": "openaiRealtimeTranscription",
            "summary": "OpenAI Realtime transcription sessions (docs/PROTOCOL_OPENAI_REALTIME.md)",
            "description": "Key as `Authorization: Bearer <key>` or the `openai-insecure-api-key.<key>` "
            "subprotocol beside `realtime`. Refusals after the upgrade are Realtime `error` events.",
            "parameters": [query("intent", {"type": "string", "enum": ["transcription"]}), query("model", {"type": "string"}), CULTURE],
            "responses": {**UPGRADE, **errors(400, 429)},
            "x-websocket": {"close-codes": [1000, 1001, 1008, 1011, 1013]},
        }
    },
}
