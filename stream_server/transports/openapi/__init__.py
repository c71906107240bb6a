"""The API contract as an OpenAPI 3.1 document, assembled from one piece per transport.

A piece is a module with `PATHS` (path -> path item) and optionally `SCHEMAS` (name -> schema);
a new route is a new piece (or an entry in one) and a line in PIECES. The contract test fails
for a registered route that no piece describes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from stream_server.transports.openapi import admin, deepgram, events, files, openai, pages, sessions, streams, v2
from stream_server.transports.openapi.parts import error_responses, obj

PIECES: tuple[ModuleType, ...] = (openai, files, sessions, streams, deepgram, admin, v2, pages, events)

ERROR_DETAIL = obj(
    {
        "message": {"type": "string"},
        "type": {"type": "string"},
        "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]},
    },
    closed=True,
)


def build_spec(*, keys_enabled: bool) -> dict:
    """The document; with API keys configured, the API routes require a bearer key."""
    paths: dict = {}
    schemas: dict = {"Error": obj({"error": {"$ref": "#/components/schemas/ErrorDetail"}}, closed=True), "ErrorDetail": ERROR_DETAIL}
    for piece in PIECES:
        for name, item in (*getattr(piece, "PATHS", {}).items(), *getattr(piece, "SCHEMAS", {}).items()):
            target = paths if name.startswith("/") else schemas
            if name in target:
                raise ValueError(f"{piece.__name__} describes {name} again")
            target[name] = item
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": "stream-server",
            "version": _version(),
            "description": "Streaming speech-to-text with an OpenAI-compatible API. Errors are OpenAI's "
            "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`; live protocols: docs/PROTOCOL*.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": error_responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key."}},
        },
    }
    if keys_enabled:
        spec["security"] = [{"bearer": []}]
    return spec


def _version() -> str:
    try:
        return version("stream-server")
    except PackageNotFoundError:
        return "0+unknown"
