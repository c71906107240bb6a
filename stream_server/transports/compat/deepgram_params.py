"""The query parameters of Deepgram's `/v1/listen` (live and pre-recorded), checked and mapped
onto this server's audio format, channels and VAD. Parameters Deepgram has and this server does
not act on (diarize, keywords, tag, ...) are accepted and ignored, so existing clients connect."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from aiohttp import web

from stream_server.audio.live import RawFormat
from stream_server.errors import InvalidRequest
from stream_server.transports.channel_params import ChannelRequest, parse_channels
from stream_server.transports.forms import Form, parse_bool
from stream_server.transports.served_models import not_served, served_model_names
from stream_server.vad.segmenter import VadOptions

ENCODINGS = {"linear16": "s16le", "mulaw": "mulaw", "alaw": "alaw"}
"""Deepgram's raw `encoding` values this server decodes, and the RawFormat encoding of each."""
DEFAULT_RATES = {"linear16": 16000, "mulaw": 8000, "alaw": 8000}
DEEPGRAM_MODEL = re.compile(r"^(nova(-[23])?|enhanced|base|whisper)(-[a-z0-9]+)*$")
DEEPGRAM_USE_CASES = frozenset({"general", "meeting", "phonecall", "finance", "conversationalai", "voicemail", "video"})
"""Deepgram's model names (`nova-3`, `nova-2-meeting`, `base`, `phonecall`, ...): all are served by
the loaded model, as OpenAI's names are on the HTTP API."""
MIN_ENDPOINTING_MS = 100
"""The shortest silence that ends an utterance here. Deepgram's default is 10 ms; an utterance
cut at every gap between words would be decoded from fragments, so shorter values are raised."""


@dataclass(frozen=True)
class ListenParams:
    model: str
    """The name the client asked for (a Deepgram name or one of ours)."""
    language: str | None
    """ISO-639-1 (`en-US` -> `en`); None: the model's default or detection."""
    audio: RawFormat | None
    """The raw format `encoding` names; None: a container (pre-recorded only)."""
    channels: ChannelRequest = ChannelRequest()
    interim_results: bool = False
    endpointing_ms: int | None = None
    """The silence that ends an utterance (speech_final); None: the server's default."""
    endpointing: bool = True
    """False (`endpointing=false`): no result is speech_final."""
    utterance_end_ms: int | None = None
    vad_events: bool = False
    punctuate: bool = False
    """Transcripts with case and punctuation (also on with smart_format)."""

    def adjust_vad(self, vad: VadOptions) -> VadOptions:
        """The VAD options that honour `endpointing`: its silence ends an utterance."""
        if self.endpointing_ms is None:
            return vad
        hangover = max(self.endpointing_ms, MIN_ENDPOINTING_MS)
        return dataclasses.replace(
            vad,
            hangover_ms=hangover,
            pause_ms=min(vad.pause_ms, hangover),
            min_hangover_ms=min(vad.min_hangover_ms, hangover),
        )


def parse_listen_params(request: web.Request, *, live: bool) -> ListenParams:
    query = request.query
    form = Form.from_query(request)
    return ListenParams(
        model=_model(request),
        language=_language(query.get("language")),
        audio=_audio(query, live),
        channels=parse_channels(form),
        interim_results=parse_bool(query.get("interim_results"), "interim_results"),
        endpointing_ms=_endpointing_ms(query.get("endpointing")),
        endpointing=(query.get("endpointing") or "").lower() != "false",
        utterance_end_ms=_positive_int(query, "utterance_end_ms"),
        vad_events=parse_bool(query.get("vad_events"), "vad_events"),
        punctuate=any(parse_bool(query.get(name), name) for name in ("punctuate", "smart_format")),
    )


def _model(request: web.Request) -> str:
    served = served_model_names(request)
    model = request.query.get("model") or served[0]
    if model in served or model in DEEPGRAM_USE_CASES or DEEPGRAM_MODEL.match(model):
        return model
    raise not_served(model, served, also="a Deepgram name (nova-3, nova-2, ...) or ")


def _language(value: str | None) -> str | None:
    """`en-US` -> `en`; `multi` (Deepgram's code-switching) -> detection."""
    language = (value or "").strip().lower().replace("_", "-").split("-")[0]
    return None if language in ("", "multi") else language


def _audio(query, live: bool) -> RawFormat | None:
    encoding = query.get("encoding")
    if not encoding:
        if live:
            raise InvalidRequest(
                f"encoding is required on the live endpoint: one of {', '.join(ENCODINGS)} (raw audio)",
                param="encoding",
                code="invalid_encoding",
            )
        return None
    if encoding not in ENCODINGS:
        raise InvalidRequest(
            f"encoding '{encoding}' is not supported here; use one of {', '.join(ENCODINGS)}",
            param="encoding",
            code="invalid_encoding",
        )
    rate = _positive_int(query, "sample_rate") or DEFAULT_RATES[encoding]
    return RawFormat(ENCODINGS[encoding], rate, _positive_int(query, "channels") or 1)


def _endpointing_ms(value: str | None) -> int | None:
    if not value or value.lower() in ("true", "false"):
        return None
    try:
        ms = int(value)
    except ValueError:
        raise InvalidRequest("endpointing must be a number of milliseconds or false", param="endpointing") from None
    if ms < 0:
        raise InvalidRequest("endpointing must be a number of milliseconds or false", param="endpointing")
    return ms


def _positive_int(query, name: str) -> int | None:
    value = query.get(name)
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
    return number
