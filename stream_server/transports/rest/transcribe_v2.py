"""POST /api/v2/Audio/transcribe/file: transcribe a stored file, JSON in, JSON (or text) out,
with token usage and cost. `?culture=es` turns error messages to Spanish (see error_texts.py)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from aiohttp import web

from stream_server.decoder.results import Transcription
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.errors import FieldTooLong, InvalidRequest
from stream_server.settings import Settings
from stream_server.transports.appkeys import FILES, SETTINGS, TRANSCRIBER
from stream_server.transports.auth import principal_of
from stream_server.transports.served_models import not_served, served_model_names

routes = web.RouteTableDef()

PATH = "/api/v2/Audio/transcribe/file"
JSON_TYPES = re.compile(r"^(application/([\w.-]+\+)?json|text/json)$")
BODY_LIMIT = 64 * 1024
FIELDS = {"modelId": (256, True), "fileId": (256, True), "user": (100, False)}
"""Field name -> (most characters, required)."""


@dataclass(frozen=True)
class FileTranscriptionRequest:
    model_id: str
    file_id: str
    user: str | None


def parse_request(body: object, served: list[str]) -> FileTranscriptionRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", code="invalid_json")
    values: dict[str, str | None] = {}
    for name, (limit, required) in FIELDS.items():
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise InvalidRequest(f"'{name}' is required", param=name, code="missing_field")
            values[name] = None
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string", param=name, code="invalid_type")
        if len(value) > limit:
            raise FieldTooLong(f"'{name}' must be at most {limit} characters", param=name, limit=limit)
        values[name] = value
    if values["modelId"] not in served:
        raise not_served(values["modelId"], served, param="modelId")
    return FileTranscriptionRequest(values["modelId"], values["fileId"], values["user"])


async def read_json(request: web.Request) -> object:
    if not JSON_TYPES.match(request.content_type):
        raise InvalidRequest(
            f"expected a JSON body (application/json), got '{request.content_type}'", code="invalid_content_type"
        )
    data = bytearray()
    while chunk := await request.content.read(BODY_LIMIT):
        data += chunk
        if len(data) > BODY_LIMIT:
            raise InvalidRequest("the JSON body is too large", code="invalid_json")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def prefers_text(accept: str) -> bool:
    """True when Accept ranks text/plain above JSON (JSON wins ties and the default). Each type
    takes the q of the most specific range that names it (RFC 9110 12.5.1): an exact type over
    `type/*` over `*/*`, so `application/json;q=0, */*` refuses JSON whatever the wildcard says."""
    ranks = {"application/json": (-1, 0.0), "text/plain": (-1, 0.0)}  # (specificity, q)
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        kind = kind.lower()
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        for media, (specificity, _) in ranks.items():
            if kind == media:
                level = 2
            elif kind.endswith("/*") and media.startswith(kind[:-1]):
                level = 1
            elif kind == "*/*":
                level = 0
            else:
                continue
            if level > specificity:
                ranks[media] = (level, q)
    return ranks["text/plain"][1] > ranks["application/json"][1]


def clock(seconds: float) -> str:
    """Duration as hh:mm:ss.fff."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def response_body(result: Transcription, settings: Settings) -> dict:
    prompt = result.prompt_tokens * settings.prompt_price_per_million / 1e6
    completion = result.completion_tokens * settings.completion_price_per_million / 1e6
    return {
        "instanceId": str(uuid.uuid4()),
        "transcript": result.text,
        "metadata": {"language": result.language, "duration": clock(result.duration)},
        "tokenUsage": {
            "completionTokens": result.completion_tokens,
            "promptTokens": result.prompt_tokens,
            "totalTokens": result.completion_tokens + result.prompt_tokens,
        },
        "cost": {
            "completion": round(completion, 8),
            "prompt": round(prompt, 8),
            "total": round(completion + prompt, 8),
            "currency": settings.currency,
        },
    }


@routes.post(PATH)
async def transcribe_stored_file(request: web.Request) -> web.Response:
    body = await read_json(request)
    params = parse_request(body, served_model_names(request))
    principal = principal_of(request)
    record, data = await request.app[FILES].content(principal, params.file_id)
    routed = await request.app[TRANSCRIBER].transcribe(
        principal, data, record.filename, TranscribeOptions(), model=params.model_id
    )
    result = routed.result
    if prefers_text(request.headers.get("Accept", "")):
        return web.Response(text=result.text, content_type="text/plain")
    return web.json_response(response_body(result, request.app[SETTINGS]))
