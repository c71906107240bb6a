"""OpenAI-compatible HTTP API: /health, /v1/models and file transcription."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from stream_server.decoder.whisper import MAX_TEMPERATURE, TranscribeOptions
from stream_server.errors import InvalidRequest, NotFound
from stream_server.formats import RESPONSE_FORMATS, render
from stream_server.models import OPENAI_MODEL_ALIASES
from stream_server.transports.appkeys import SERVICE, SETTINGS
from stream_server.transports.forms import Form, read_form

routes = web.RouteTableDef()

GRANULARITIES = frozenset({"word", "segment"})
INCLUDES = frozenset({"logprobs"})


@dataclass(frozen=True)
class TranscriptionRequest:
    model: str
    options: TranscribeOptions
    response_format: str
    granularities: frozenset[str]
    include_logprobs: bool
    stream: bool


def served_model_names(request: web.Request) -> list[str]:
    return [request.app[SETTINGS].model, *sorted(OPENAI_MODEL_ALIASES)]


def parse_transcription_request(form: Form, served: list[str]) -> TranscriptionRequest:
    model = form.get("model")
    if not model:
        raise InvalidRequest("'model' is required", param="model", code="missing_field")
    if model not in served:
        raise NotFound(
            f"model '{model}' is not served here; use one of {', '.join(served)}",
            param="model",
            code="model_not_found",
        )
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
            code="invalid_response_format",
        )
    granularities = frozenset(form.get_all("timestamp_granularities[]", "timestamp_granularities"))
    if granularities - GRANULARITIES:
        raise InvalidRequest(
            "timestamp_granularities takes 'word' and/or 'segment'", param="timestamp_granularities"
        )
    if granularities and response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities needs response_format=verbose_json",
            param="timestamp_granularities",
        )
    includes = frozenset(form.get_all("include[]", "include"))
    if includes - INCLUDES:
        raise InvalidRequest("include takes only 'logprobs'", param="include")
    if includes and response_format != "json":
        raise InvalidRequest("include=logprobs needs response_format=json", param="include")
    language = (form.get("language") or "").strip().lower() or None
    options = TranscribeOptions(
        language=language,
        prompt=form.get("prompt") or None,
        temperature=_temperature(form.get("temperature")),
        word_timestamps="word" in granularities or bool(includes),
    )
    return TranscriptionRequest(
        model=model,
        options=options,
        response_format=response_format,
        granularities=granularities or frozenset({"segment"}),
        include_logprobs=bool(includes),
        stream=parse_bool(form.get("stream"), "stream"),
    )


def parse_bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value.lower() in {"true", "1", "yes", "on"}:
        return True
    if value.lower() in {"false", "0", "no", "off"}:
        return False
    raise InvalidRequest(f"'{name}' must be true or false", param=name)


def _temperature(value: str | None) -> float:
    if value is None or value == "":
        return 0.0
    try:
        temperature = float(value)
    except ValueError:
        raise InvalidRequest("temperature must be a number", param="temperature") from None
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest("temperature must be between 0 and 1", param="temperature")
    return temperature


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.ready:
        return web.json_response({"status": "ok", "model": service.model.name})
    status = "error" if service.load_error else "loading"
    return web.json_response({"status": status, "detail": service.load_error}, status=503)


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    data = [_model_object(name) for name in served_model_names(request)]
    return web.json_response({"object": "list", "data": data})


@routes.get("/v1/models/{model}")
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in served_model_names(request):
        raise NotFound(f"model '{name}' is not served here", param="model", code="model_not_found")
    return web.json_response(_model_object(name))


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "stream-server"}


@routes.post("/v1/audio/transcriptions")
async def create_transcription(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    service = request.app[SERVICE]
    form = await read_form(request, settings.max_upload_bytes)
    params = parse_transcription_request(form, served_model_names(request))
    if form.file is None:
        raise InvalidRequest("'file' is required", param="file", code="missing_field")
    result = await service.transcribe_file(form.file, form.filename, params.options)
    rendered = render(
        result,
        params.response_format,
        granularities=params.granularities,
        include_logprobs=params.include_logprobs,
    )
    return web.Response(text=rendered.body, content_type=rendered.content_type)
