"""Deepgram's `/v1/listen` (transports/compat/deepgram_api.py, docs/PROTOCOL_DEEPGRAM.md): the live
WebSocket's handshake and the pre-recorded POST. Its refusals are in Deepgram's error shape,
except those the server gives before the route (405, and the connection bounds' 429)."""

from __future__ import annotations

from stream_server.transports.auth import DEEPGRAM_PATH
from stream_server.transports.openapi.parts import BOOL, errors, json_body, obj, query, ref, response

DEEPGRAM_ERROR = obj({"err_code": {"type": "string"}, "err_msg": {"type": "string"}, "request_id": {"type": "string"}}, ("err_code", "err_msg"))
PARAMETERS = [
    query("model", {"type": "string"}, "A Deepgram name (`nova-3`, `nova-2`, ...) or a served model: the loaded model answers."),
    query("language", {"type": "string"}),
    query("encoding", {"type": "string"}, "`linear16`, `mulaw` or `alaw`: raw audio (required live)."),
    query("sample_rate", {"type": "integer"}),
    query("channels", {"type": "integer"}),
    *(query(name, BOOL) for name in ("multichannel", "interim_results", "vad_events", "punctuate", "smart_format")),
    query("endpointing", {"type": "string"}, "Milliseconds of silence that end an utterance, or `false`."),
    query("utterance_end_ms", {"type": "integer"}),
]


def refused(*statuses: int) -> dict:
    """Deepgram-shaped answers for `statuses`; OpenAI's 405 (and 429 beside Deepgram's)."""
    answers = {str(s): response("Refused (Deepgram's error shape).", json_body(ref("DeepgramError"))) for s in statuses}
    either = {"oneOf": [ref("DeepgramError"), ref("Error")]}
    answers["429"] = response("Too many requests: Deepgram's shape, or the server's own bounds' (OpenAI's).", json_body(either))
    return {**answers, **errors(keyed=False)}


PATHS = {
    DEEPGRAM_PATH: {
        "get": {
            "operationId": "deepgramListenLive",
            "summary": "Deepgram live streaming over a WebSocket (docs/PROTOCOL_DEEPGRAM.md)",
            "description": "Key as `Authorization: Token <key>` (or Bearer), or the `token, <key>` subprotocol.",
            "parameters": PARAMETERS,
            "responses": {"101": response("Switching protocols: the WebSocket is open."), **refused(400, 401, 404, 503)},
            "x-websocket": {"close-codes": [1000, 1001, 1008, 1011]},
        },
        "post": {
            "operationId": "deepgramListenPrerecorded",
            "summary": "Deepgram pre-recorded transcription of the audio in the body",
            "description": "A JSON body (`{\"url\": ...}`) is a 400: this server fetches nothing.",
            "parameters": PARAMETERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "audio/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": obj({"url": {"type": "string"}})},
                },
            },
            "responses": {
                "200": response("Deepgram's pre-recorded response.", json_body(obj({"metadata": {"type": "object"}, "results": {"type": "object"}}, ("metadata", "results")))),
                **refused(400, 401, 404, 413, 503),
            },
        },
    },
}
SCHEMAS = {"DeepgramError": DEEPGRAM_ERROR}
