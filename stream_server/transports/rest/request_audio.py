"""The audio a transcription request names: an uploaded `file` or a stored `file_id`, or a raw
body whose Content-Type says what it holds."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.helpers import parse_mimetype

from stream_server.audio.live import RawFormat
from stream_server.errors import InvalidRequest
from stream_server.transports.appkeys import FILES
from stream_server.transports.auth import principal_of
from stream_server.transports.forms import Form


@dataclass(frozen=True)
class AudioInput:
    data: bytes
    filename: str | None
    file_id: str | None = None
    """The stored file's id when the audio came from storage."""


async def audio_from_form(request: web.Request, form: Form) -> AudioInput:
    """The uploaded file, or the stored file named by `file_id` (owner-checked)."""
    file_id = form.get("file_id")
    if file_id and form.file is not None:
        raise InvalidRequest("give either 'file' or 'file_id', not both", param="file_id")
    if not file_id:
        if form.file is None:
            raise InvalidRequest("'file' (or 'file_id') is required", param="file", code="missing_field")
        return AudioInput(form.file, form.filename)
    record, data = await request.app[FILES].content(principal_of(request), file_id)
    return AudioInput(data, record.filename, record.id)


def check_audio_body(content_type: str) -> None:
    if content_type.startswith(("audio/", "video/")) or content_type in ("application/octet-stream", "application/ogg"):
        return
    raise InvalidRequest(
        f"expected multipart/form-data, or a raw audio body (audio/*, application/octet-stream), got '{content_type}'",
        code="invalid_content_type",
    )


RAW_TYPES = {"audio/l16": "s16be", "audio/pcmu": "mulaw", "audio/pcma": "alaw", "audio/basic": "mulaw"}
"""Raw audio media types (RFC 2586 L16 is big-endian); G.711 defaults to 8 kHz."""


def raw_format(content_type: str) -> RawFormat | None:
    """The raw PCM format a Content-Type names, or None for a container (wav, ogg, webm, ...)."""
    mime = parse_mimetype(content_type)
    kind = f"{mime.type}/{mime.subtype}".lower()
    params = {k.lower(): v for k, v in mime.parameters.items()}
    if kind == "audio/pcm":
        encoding = params.get("encoding", "s16le").lower()
    elif kind in RAW_TYPES:
        encoding = RAW_TYPES[kind]
    else:
        return None
    default_rate = 8000 if encoding in ("mulaw", "alaw") else 16000
    try:
        return RawFormat(encoding, int(params.get("rate", default_rate)), int(params.get("channels", 1)))
    except ValueError:
        raise InvalidRequest(f"bad rate or channels in Content-Type '{content_type}'", param="Content-Type") from None
