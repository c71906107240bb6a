"""Building blocks of the OpenAPI document: references, media types, parameters, and the
error responses every route shares (OpenAI's `{"error": {...}}`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ERROR_STATUSES = {
    400: "The request is invalid: a missing or malformed field, or audio that cannot be decoded.",
    401: "API keys are configured and the request has none, or a wrong one.",
    403: "The resource belongs to another API key.",
    404: "No such route, model, file or session.",
    405: "The route does not take this method (`Allow` lists those it takes).",
    413: "The body is larger than the upload limit (`--max-upload-mb`).",
    429: "No capacity now (`Retry-After` says when to retry), or a balance or rate limit.",
    502: "Every eligible remote provider failed.",
    503: "The model is not loaded yet.",
}
FRAMING_ERROR = "A request the HTTP layer cannot parse (a request line or header over 8190 bytes)."
COMMON_ERRORS = (401, 405)
"""Answers any route under the keys may give, whatever its parameters (an open one: only 405)."""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None, *, closed: bool = False) -> Schema:
    """An object; every property is required unless `required` names fewer."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def list_of(item: Schema, **extra: Schema) -> Schema:
    """OpenAI's `{"object": "list", "data": [...]}`."""
    return obj({"object": {"const": "list"}, "data": {"type": "array", "items": item}, **extra})


def json_body(schema: Schema) -> dict:
    return {"application/json": {"schema": schema}}


def response(description: str, content: dict | None = None, headers: dict | None = None) -> dict:
    answer: dict = {"description": description}
    if content:
        answer["content"] = content
    if headers:
        answer["headers"] = headers
    return answer


def ok_json(description: str, schema: Schema) -> dict:
    return {"200": response(description, json_body(schema))}


def errors(*statuses: int, keyed: bool = True) -> dict:
    """The error responses of a route: those named, plus COMMON_ERRORS (less 401 when the
    route is open whatever the keys)."""
    common = COMMON_ERRORS if keyed else tuple(s for s in COMMON_ERRORS if s != 401)
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in sorted({*statuses, *common})}


def error_responses() -> dict:
    """components.responses: one per status, all with OpenAI's error body."""
    out = {}
    for status, description in ERROR_STATUSES.items():
        headers = {"Retry-After": {"schema": {"type": "integer"}}} if status == 429 else None
        if status == 405:
            headers = {"Allow": {"schema": {"type": "string"}}}
        content = json_body(ref("Error"))
        if status == 400:  # aiohttp's HTTP parser answers these itself, before the app sees them
            content["text/plain"] = {"schema": {"type": "string", "description": FRAMING_ERROR}}
        out[f"Error{status}"] = response(description, content, headers)
    return out


def param(name: str, where: str, schema: Schema, description: str = "", *, required: bool = False) -> dict:
    out = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if description:
        out["description"] = description
    return out


def query(name: str, schema: Schema, description: str = "") -> dict:
    return param(name, "query", schema, description)


def path(name: str, description: str = "") -> dict:
    return param(name, "path", {"type": "string"}, description)


BOOL = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off", ""]}
"""A flag as a form field or query parameter: missing or empty is false."""
CULTURE = query("culture", {"type": "string"}, "Error messages in this language where translated (e.g. `es`).")


def sse(description: str, event_schema: str) -> dict:
    """A `text/event-stream` answer. As OpenAPI 3.2 does with `itemSchema` (and schemathesis
    reads `schema` in 3.1), the schema is one event's: its `data` is JSON of `event_schema`,
    except the last one's, `[DONE]`."""
    data = {
        "description": description,
        "oneOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json", "contentSchema": ref(event_schema)},
        ],
    }
    event = obj({"data": data, "id": {"type": "string"}, "event": {"const": "message"}}, ("data",))
    return {"text/event-stream": {"schema": event}}
