"""Read a multipart upload with its size limit enforced while reading, never after buffering."""

from __future__ import annotations

from urllib.parse import parse_qsl

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from stream_server.errors import InvalidRequest, PayloadTooLarge

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

    def require(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise InvalidRequest(f"'{name}' is required", param=name, code="missing_field")
        return value

    def require_file(self) -> bytes:
        if self.file is None:
            raise InvalidRequest("'file' is required", param="file", code="missing_field")
        return self.file


def too_large(limit: int) -> PayloadTooLarge:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} byte"
    return PayloadTooLarge(f"the upload is larger than the {size} limit", param="file")


async def read_form(request: web.Request, max_file_bytes: int) -> Form:
    """A multipart form, or an url-encoded one (text fields only, e.g. `file_id` in place of a file)."""
    if request.content_type == "application/x-www-form-urlencoded":
        return await _read_urlencoded(request)
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
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart parser reports bad framing so
        raise InvalidRequest(f"malformed multipart body: {exc}", code="invalid_multipart") from exc
    except ConnectionError as exc:  # the client went away mid-body: nothing was kept
        raise InvalidRequest("the upload was cut off before its end", code="incomplete_upload") from exc
    return form


async def _read_part(part: BodyPartReader, limit: int, error: Exception) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise error
    return bytes(data)


async def _read_urlencoded(request: web.Request) -> Form:
    data = bytearray()
    while chunk := await request.content.read(CHUNK):
        data += chunk
        if len(data) > FORM_OVERHEAD:
            raise InvalidRequest("the form is too large", code="invalid_form")
    form = Form()
    for name, value in parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True):
        form.fields.setdefault(name, []).append(value)
    return form
