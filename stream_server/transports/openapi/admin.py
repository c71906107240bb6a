"""Operators' routes: usage, providers, Prometheus metrics (usage_api, providers_api, metrics_api)."""

from __future__ import annotations

from stream_server.transports.rest.metrics_api import CONTENT_TYPE
from stream_server.transports.openapi.events import NUMBER, TEXT
from stream_server.transports.openapi.parts import CULTURE, errors, list_of, nullable, obj, ok_json, query, ref, response

SCHEMAS = {
    "UsageDay": obj(
        {
            "object": {"const": "usage.day"},
            "key_id": TEXT,
            "date": TEXT,
            "requests": {"type": "integer"},
            "audio_seconds": NUMBER,
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
        },
        closed=True,
    ),
    "Usage": list_of(
        ref("UsageDay"),
        key_id=TEXT,
        balance=nullable(obj({"limit_seconds": NUMBER, "remaining_seconds": NUMBER})),
    ),
    "Provider": obj(
        {
            "id": TEXT,
            "object": {"const": "provider"},
            "type": {"enum": ["local", "remote"]},
            "default": {"type": "boolean"},
            "model": nullable(TEXT),
            "regions": {"type": "array", "items": TEXT},
            "quantized": {"type": "boolean"},
            "price_per_minute": nullable(NUMBER),
            "seconds_per_audio_second": NUMBER,
            "load": NUMBER,
            "health": obj({"status": {"enum": ["ok", "loading", "error", "failing", "unknown"]}, "detail": nullable(TEXT)}, ("status",)),
            "device": TEXT,
            "compute_type": nullable(TEXT),
            "base_url": TEXT,
        },
        ("id", "object", "type", "default", "model", "health"),
    ),
}

PATHS = {
    "/v1/usage": {
        "get": {
            "operationId": "usage",
            "summary": "Usage per key and UTC day (a key its own; an admin anyone's, by key_id)",
            "parameters": [query("key_id", {"type": "string"}), CULTURE],
            "responses": {**ok_json("The usage.", ref("Usage")), **errors()},
        }
    },
    "/v1/providers": {
        "get": {
            "operationId": "listProviders",
            "parameters": [CULTURE],
            "responses": {**ok_json("The backends.", list_of(ref("Provider"))), **errors()},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus text exposition (0.0.4)",
            "responses": {"200": response("The metrics.", {CONTENT_TYPE.split(";")[0]: {"schema": TEXT}}), **errors()},
        }
    },
}
