"""The audio a transcription request names: an uploaded `file` or a stored `file_id`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

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
