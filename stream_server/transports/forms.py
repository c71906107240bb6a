"""Read a multipart upload with its size limit enforced while reading, never after buffering."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from stream_server.errors import InvalidRequest, PayloadTooLarge
from stream_server.settings import MEGABYTE

FIELD_LIMIT = 64 * 1024
"""Largest accepted text field (a prompt is a few hundred tokens)."""
FORM_OVERHEAD = 64 * 1024
"""Room for boundaries and text fields on top of the file itself."""
CHUNK = 64 * 1024


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: bytes | None = None
    filename: str | None = None

    def get(self, *names: str) -> str | None:
        """The first value of the first of `names` present (e.g. `include[]` or `include`)."""
        for name in names:
            if self.fields.get(name):
                return self.fields[name][0]
        return None

    def get_all(self, *names: str) -> list[str]:
        return [v for name in names for v in self.fields.get(name, [])]


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the upload is larger than the {limit / MEGABYTE:g} MB limit", param="file")


async def read_form(request: web.Request, max_file_bytes: int) -> Form:
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            f"expected multipart/form-data, got '{request.content_type}'", code="invalid_content_type"
        )
    if request.content_length is not None and request.content_length > max_file_bytes + FORM_OVERHEAD:
        raise too_large(max_file_bytes)
    form = Form()
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not supported")
            if part.name == "file":
                form.filename = part.filename
                form.file = await _read_part(part, max_file_bytes, too_large(max_file_bytes))
            elif part.name:
                value = await _read_part(
                    part, FIELD_LIMIT, InvalidRequest(f"field '{part.name}' is too long", param=part.name)
                )
                form.fields.setdefault(part.name, []).append(value.decode("utf-8", "replace"))
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        # aiohttp's multipart parser reports bad framing with ValueError or AssertionError, and
        # a bad part header with BadHttpMessage (an HttpProcessingError).
        message = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise InvalidRequest(
            f"malformed multipart body: {message or type(exc).__name__}", code="invalid_multipart"
        ) from exc
    except ConnectionResetError as exc:  # the client closed before sending all it announced
        raise InvalidRequest(
            "the upload ended early: the connection closed before the whole body arrived",
            code="incomplete_upload",
        ) from exc
    return form


async def _read_part(part: BodyPartReader, limit: int, error: Exception) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise error
    return bytes(data)
