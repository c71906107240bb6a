"""The open, non-API routes: the captions page, its files, and this document."""

from __future__ import annotations

from stream_server.transports.openapi.parts import errors, json_body, param, ref, response
from stream_server.transports.rest.static_page import PAGE_PREFIX

HTML = {"text/html": {"schema": {"type": "string"}}}
OPEN = {"security": []}

PATHS = {
    "/": {"get": {"operationId": "captionsPage", "summary": "The live-captions page", **OPEN, "responses": {"200": response("The page.", HTML), **errors(keyed=False)}}},
    PAGE_PREFIX + "{file}": {
        "get": {
            "operationId": "pageFile",
            "summary": "The page's scripts and styles",
            **OPEN,
            "parameters": [param("file", "path", {"type": "string"})],
            "responses": {
                "200": response("The file."),
                **errors(403, keyed=False),
                "404": response(
                    "No such file: an empty body for a name under the folder, OpenAI's error otherwise.",
                    {**json_body(ref("Error")), "application/octet-stream": {"schema": {"const": ""}}},
                ),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            **OPEN,
            "responses": {"200": response("OpenAPI 3.1.", json_body({"type": "object"})), **errors(keyed=False)},
        }
    },
    "/docs": {
        "get": {
            "operationId": "docs",
            "summary": "This document as a page (no scripts, works offline)",
            **OPEN,
            "responses": {"200": response("The page.", HTML), **errors(keyed=False)},
        }
    },
}
