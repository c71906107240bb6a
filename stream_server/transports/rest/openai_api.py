"""OpenAI-compatible HTTP API: /health, /v1/models and file transcription."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from stream_server.decoder.whisper import MAX_TEMPERATURE, TranscribeOptions
from stream_server.errors import InvalidRequest
from stream_server.formats import RESPONSE_FORMATS, render, render_channels
from stream_server.routing.backends import Routed
from stream_server.routing.router import RouteRequest
from stream_server.transports.appkeys import SERVICE, SETTINGS, TRANSCRIBER
from stream_server.transports.rest.request_audio import audio_from_form, check_audio_body, raw_format
from stream_server.transports.channel_params import ChannelRequest, parse_channels
from stream_server.transports.auth import principal_of
from stream_server.audio.live import container_pcm, raw_pcm
from stream_server.audio.wav import wav_bytes
from stream_server.transports.forms import (
    Form,
    body_chunks,
    bounded_chunks,
    check_declared_length,
    open_multipart,
    parse_bool,
    part_chunks,
    read_fields_until_file,
    read_form,
    read_bounded,
    read_rest,
    too_large,
)
from stream_server.transports.live.sse_api import respond_live
from stream_server.transports.route_params import parse_route
from stream_server.transports.served_models import not_served, served_model_names

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
    partials: bool
    """Live extension events (partials, utterances, speech start/stop) on the SSE stream."""
    partial_decodes: bool = True
    """Decode while an utterance lasts; off when the client said `partials=false` (not when it
    left it out, as OpenAI's clients do): each utterance is then decoded once, at its end."""
    route: RouteRequest = RouteRequest()
    channels: ChannelRequest = ChannelRequest()


def parse_transcription_request(form: Form, served: list[str], default_model: str | None = None) -> TranscriptionRequest:
    """`default_model` stands in for a missing `model` (raw bodies: OpenAI's multipart
    requires it, but `curl -T -` with the fields in the query should not have to)."""
    model = form.get("model") or default_model
    if not model:
        raise InvalidRequest("'model' is required", param="model", code="missing_field")
    if model not in served:
        raise not_served(model, served)
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
    stream = parse_bool(form.get("stream"), "stream")
    if includes and response_format != "json":
        raise InvalidRequest("include=logprobs needs response_format=json", param="include")
    language = (form.get("language") or "").strip().lower() or None
    options = TranscribeOptions(
        language=language,
        prompt=form.get("prompt") or None,
        temperature=_temperature(form.get("temperature")),
        word_timestamps="word" in granularities or bool(includes),
    )
    partials = parse_bool(form.get("partials"), "partials")
    return TranscriptionRequest(
        model=model,
        options=options,
        response_format=response_format,
        granularities=granularities or frozenset({"segment"}),
        include_logprobs=bool(includes),
        stream=stream,
        partials=partials,
        partial_decodes=partials or not form.get("partials"),
        route=parse_route(form),
        channels=parse_channels(form),
    )


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
    served = served_model_names(request)
    if name not in served:
        raise not_served(name, served)
    return web.json_response(_model_object(name))


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "stream-server"}


@routes.post("/v1/audio/transcriptions")
@routes.put("/v1/audio/transcriptions")  # `curl -T -` uploads with PUT
async def create_transcription(request: web.Request) -> web.StreamResponse:
    """A multipart upload (as the openai SDK sends it) or a raw audio body with the fields as
    query parameters. With stream=true, text is sent as SSE while the upload still arrives."""
    if request.content_type == "multipart/form-data":
        return await _transcribe_multipart(request)
    if request.content_type == "application/x-www-form-urlencoded":
        return await _transcribe_stored(request)
    return await _transcribe_raw_body(request)


async def _transcribe_multipart(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    reader = await open_multipart(request)
    check_declared_length(request, settings.max_upload_bytes)  # before any field is read
    form, file_part = await read_fields_until_file(reader)
    if file_part is not None and parse_bool(form.get("stream"), "stream"):
        params = parse_transcription_request(form, served_model_names(request))
        # a file keeps --max-upload-mb when it streams too; only raw bodies and sockets run as long as the speech
        chunks = bounded_chunks(part_chunks(file_part, settings.idle_timeout_s), settings.max_upload_bytes)
        pcm = container_pcm(chunks, form.filename, settings.max_upload_bytes, params.channels.multichannel)
        return await _respond_live(request, params, pcm, whole=_declares_whole_file(request))
    form = await read_rest(reader, form, file_part, settings.max_upload_bytes)
    return await _transcribe_form(request, form)


async def _transcribe_stored(request: web.Request) -> web.StreamResponse:
    """An url-encoded form: the audio is a stored file named by `file_id`."""
    return await _transcribe_form(request, await read_form(request, request.app[SETTINGS].max_upload_bytes))


async def _transcribe_form(request: web.Request, form: Form) -> web.StreamResponse:
    params = parse_transcription_request(form, served_model_names(request))
    audio = await audio_from_form(request, form)
    if params.stream:
        limit, split = request.app[SETTINGS].max_upload_bytes, params.channels.multichannel
        pcm = container_pcm(_once(audio.data), audio.filename, limit, split)
        return await _respond_live(request, params, pcm, whole=True)
    return await _respond_file(request, params, audio.data, audio.filename)


async def _transcribe_raw_body(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    check_audio_body(request.content_type)
    served = served_model_names(request)
    params = parse_transcription_request(Form.from_query(request), served, default_model=served[0])
    raw = raw_format(request.headers.get("Content-Type", ""))
    chunks = body_chunks(request, settings.idle_timeout_s)
    if not params.stream:
        data = await read_bounded(chunks, settings.max_upload_bytes, too_large(settings.max_upload_bytes))
        if raw is None:
            return await _respond_file(request, params, data, None)
        split = params.channels.multichannel
        pcm = [p async for p in raw_pcm(_once(data), raw, split)]
        audio = np.concatenate(pcm, axis=-1) if pcm else np.zeros(0, np.float32)
        return await _respond_file(request, params, wav_bytes(audio), None)
    split = params.channels.multichannel
    pcm = raw_pcm(chunks, raw, split) if raw else container_pcm(chunks, None, settings.max_upload_bytes, split)
    return await _respond_live(request, params, pcm, raw.channels if raw else 0, whole=_declares_whole_file(request))


def _declares_whole_file(request: web.Request) -> bool:
    """A body with a Content-Length is a file the client holds whole (the openai SDK's upload,
    `curl -T file`); a live source sends chunked (`curl -T -`)."""
    return request.content_length is not None


async def _respond_live(
    request: web.Request, params: TranscriptionRequest, pcm, channel_count: int = 0, *, whole: bool
) -> web.StreamResponse:
    if params.response_format not in ("json", "text"):
        raise InvalidRequest("stream=true needs response_format json or text", param="response_format")
    return await respond_live(
        request,
        pcm,
        language=params.options.language,
        prompt=params.options.prompt,
        partials=params.partials,
        logprobs=params.include_logprobs,
        route=params.route,
        channels=params.channels,
        channel_count=channel_count,
        partial_decodes=params.partial_decodes,
        whole=whole,
    )


async def _respond_file(
    request: web.Request, params: TranscriptionRequest, data: bytes, filename: str | None
) -> web.Response:
    transcriber, principal = request.app[TRANSCRIBER], principal_of(request)
    style = {"granularities": params.granularities, "include_logprobs": params.include_logprobs}
    if params.channels.multichannel:
        per_channel = await transcriber.transcribe_channels(
            principal, data, filename, params.options, model=params.model, labels=params.channels.labels, route=params.route
        )
        routed = per_channel[0][1]
        results = [result for result, _ in per_channel]
        rendered = render_channels(results, params.response_format, **style, extra=transcription_header(routed))
    else:
        routed = await transcriber.transcribe(
            principal, data, filename, params.options, model=params.model, route=params.route
        )
        rendered = render(routed.result, params.response_format, **style, extra=transcription_header(routed))
    response = web.Response(text=rendered.body, content_type=rendered.content_type)
    response.headers[PROVIDER_HEADER] = routed.provider  # the text formats have no field for it
    return response


PROVIDER_HEADER = "X-Provider"


def transcription_header(routed: Routed) -> dict:
    """The fields a JSON transcription starts with: who made it, and an id to quote."""
    return {
        "id": f"trans_{uuid.uuid4().hex}",
        "object": "audio.transcription",
        "created": int(time.time()),
        "provider": routed.provider,
        "model": routed.model,
    }


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
