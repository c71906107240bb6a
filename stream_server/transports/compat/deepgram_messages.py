"""Deepgram's JSON shapes (docs/PROTOCOL_DEEPGRAM.md): the live messages (`Results`,
`SpeechStarted`, `UtteranceEnd`, `Metadata`, `Error`), the pre-recorded response, and the HTTP
error body. Pure functions of typed values; nothing here knows the socket."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from stream_server import __version__
from stream_server.decoder.results import Word
from stream_server.engine.stability import normalise
from stream_server.errors import ServiceError
from stream_server.transports.errors import status_of

ERR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    403: "INSUFFICIENT_PERMISSIONS",
    404: "Bad Request",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}
"""Deepgram's `err_code` for an HTTP status; a 5xx is INTERNAL_SERVER_ERROR."""


@dataclass(frozen=True)
class ModelInfo:
    """The model that decodes, as Deepgram's metadata names it."""

    name: str

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stream-server/{self.name}"))

    def fields(self) -> dict:
        return {"name": self.name, "version": __version__, "arch": "whisper"}


def request_id(session_id: str) -> str:
    """A session's id as Deepgram's request id (a UUID): `sess_<hex>` -> the UUID of that hex."""
    return str(uuid.UUID(hex=session_id.removeprefix("sess_")))


def _t(seconds: float) -> float:
    return round(float(seconds), 3)


def word_fields(word: Word) -> dict:
    return {
        "word": normalise(word.text),
        "start": _t(word.start),
        "end": _t(word.end),
        "confidence": round(float(word.probability), 4),
        "punctuated_word": word.text.strip(),
    }


def alternative(words: Sequence[Word], punctuate: bool) -> dict:
    """`transcript` (with case and punctuation when asked, else lowercase words as Deepgram
    writes them), `confidence` (the words' mean probability) and `words`."""
    fields = [word_fields(w) for w in words]
    key = "punctuated_word" if punctuate else "word"
    confidence = sum(float(w.probability) for w in words) / len(words) if words else 0.0
    return {
        "transcript": " ".join(f[key] for f in fields if f[key]),
        "confidence": round(confidence, 4),
        "words": fields,
    }


def results(
    words: Sequence[Word],
    *,
    channel: tuple[int, int],
    start: float,
    end: float,
    is_final: bool,
    speech_final: bool = False,
    from_finalize: bool = False,
    punctuate: bool,
    request: str,
    model: ModelInfo,
) -> dict:
    return {
        "type": "Results",
        "channel_index": list(channel),
        "duration": _t(max(0.0, end - start)),
        "start": _t(start),
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {"alternatives": [alternative(words, punctuate)]},
        "metadata": {"request_id": request, "model_info": model.fields(), "model_uuid": model.uuid},
    }


def speech_started(channel: tuple[int, int], time: float) -> dict:
    return {"type": "SpeechStarted", "channel": list(channel), "timestamp": _t(time)}


def utterance_end(channel: tuple[int, int], last_word_end: float) -> dict:
    return {"type": "UtteranceEnd", "channel": list(channel), "last_word_end": _t(last_word_end)}


def _created(created_at: float) -> str:
    moment = datetime.datetime.fromtimestamp(created_at, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def metadata_fields(
    request: str, sha256: str, created_at: float, duration: float, channels: int, model: ModelInfo
) -> dict:
    """What the live `Metadata` message and the pre-recorded response's `metadata` share."""
    return {
        "transaction_key": "deprecated",
        "request_id": request,
        "sha256": sha256,
        "created": _created(created_at),
        "duration": _t(duration),
        "channels": channels,
        "models": [model.uuid],
        "model_info": {model.uuid: model.fields()},
    }


def metadata(request: str, sha256: str, created_at: float, duration: float, channels: int, model: ModelInfo) -> dict:
    return {"type": "Metadata", **metadata_fields(request, sha256, created_at, duration, channels, model)}


def error_message(error: ServiceError, client_message: str | None = None) -> dict:
    """An in-stream `Error`: `SchemaError` for a client message that could not be used (echoed
    in `message`), else our error code as the variant."""
    variant = "SchemaError" if client_message is not None else (error.code or error.error_type)
    body = {"type": "Error", "variant": variant, "description": error.message}
    return body | ({"message": client_message} if client_message is not None else {})


def http_error_body(error: ServiceError, request: str) -> tuple[int, dict]:
    """The status and body of a refused request (or WebSocket handshake), as Deepgram sends them."""
    status = status_of(error)
    code = ERR_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "Bad Request")
    return status, {"err_code": code, "err_msg": error.message, "request_id": request}


def prerecorded(metadata: dict, channels: Sequence[Sequence[Word]], punctuate: bool) -> dict:
    """The pre-recorded response: one alternative per channel."""
    return {
        "metadata": metadata,
        "results": {"channels": [{"alternatives": [alternative(words, punctuate)]} for words in channels]},
    }
