"""Read multipart uploads with size limits enforced while reading, never after buffering.

A live upload's file part is handed over unread, as an async stream of chunks, once the fields
before it are known (the openai SDK and curl -F send fields first).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

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

    @classmethod
    def from_query(cls, request: web.Request) -> "Form":
        fields: dict[str, list[str]] = {}
        for key, value in request.query.items():
            fields.setdefault(key, []).append(value)
        return cls(fields)


def parse_bool(value: str | None, name: str) -> bool:
    """A form or query flag; missing or empty is False."""
    if value is None or value == "":
        return False
    if value.lower() in {"true", "1", "yes", "on"}:
        return True
    if value.lower() in {"false", "0", "no", "off"}:
        return False
    raise InvalidRequest(f"'{name}' must be true or false", param=name)


def too_large(limit: int) -> PayloadTooLarge:
    size = f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit} byte"
    return PayloadTooLarge(f"the upload is larger than the {size} limit", param="file")


class MalformedUpload(InvalidRequest):
    default_code = "invalid_multipart"


class IncompleteUpload(InvalidRequest):
    """The client went away mid-body: nothing of it was kept."""

    default_code = "incomplete_upload"


def check_declared_length(request: web.Request, max_file_bytes: int) -> None:
    """Refuse at once an upload whose Content-Length already says it is too large."""
    if request.content_length is not None and request.content_length > max_file_bytes + FORM_OVERHEAD:
        raise too_large(max_file_bytes)


async def open_multipart(request: web.Request) -> MultipartReader:
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(
            f"expected multipart/form-data, got '{request.content_type}'", code="invalid_content_type"
        )
    return await request.multipart()


async def read_fields_until_file(reader: MultipartReader) -> tuple[Form, BodyPartReader | None]:
    """Read text fields up to the `file` part, which is returned unread (None if there is none)."""
    form = Form()
    with _upload_errors():
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not supported")
            if part.name == "file":
                form.filename = part.filename
                return form, part
            if part.name:
                await _read_field(part, form)
    return form, None


async def read_rest(reader: MultipartReader, form: Form, file_part: BodyPartReader | None, max_file_bytes: int) -> Form:
    """Buffer the file part (bounded) and read any fields after it."""
    with _upload_errors():
        if file_part is not None:
            form.file = await read_bounded(_chunks_of(_part_reader(file_part)), max_file_bytes, too_large(max_file_bytes))
        async for part in reader:
            if isinstance(part, BodyPartReader) and part.name and part.name != "file":
                await _read_field(part, form)
    return form


@contextmanager
def _upload_errors() -> Iterator[None]:
    """aiohttp reports bad multipart framing as ValueError/AssertionError, a bad part header as
    BadHttpMessage, and a client that closed mid-body as a connection error: all are 400s."""
    try:
        yield
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        message = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise MalformedUpload(f"malformed multipart body: {message or type(exc).__name__}") from exc
    except ConnectionError as exc:
        raise IncompleteUpload("the upload ended early: the connection closed before the whole body arrived") from exc


async def read_form(request: web.Request, max_file_bytes: int) -> Form:
    """A multipart form, or an url-encoded one (text fields only, e.g. `file_id` in place of a file)."""
    if request.content_type == "application/x-www-form-urlencoded":
        return await _read_urlencoded(request)
    reader = await open_multipart(request)
    check_declared_length(request, max_file_bytes)
    form, file_part = await read_fields_until_file(reader)
    return await read_rest(reader, form, file_part, max_file_bytes)


async def part_chunks(part: BodyPartReader, idle_timeout: float) -> AsyncIterator[bytes]:
    """A file part as it arrives; a pause longer than `idle_timeout` ends it with an error."""
    while chunk := await _within(part.read_chunk(CHUNK), idle_timeout):
        yield chunk


async def body_chunks(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """A raw request body as it arrives (chunked or not)."""
    while chunk := await _within(request.content.readany(), idle_timeout):
        yield chunk


class UploadStalled(InvalidRequest):
    default_code = "idle_timeout"


async def _within(read, timeout: float) -> bytes:
    try:
        return await asyncio.wait_for(read, timeout)
    except asyncio.TimeoutError:
        raise UploadStalled(f"no audio arrived for {timeout:g} s; the stream was ended") from None


async def _read_field(part: BodyPartReader, form: Form) -> None:
    error = InvalidRequest(f"field '{part.name}' is too long", param=part.name)
    value = await read_bounded(_chunks_of(_part_reader(part)), FIELD_LIMIT, error)
    form.fields.setdefault(part.name, []).append(value.decode("utf-8", "replace"))


async def bounded_chunks(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """`chunks` as they come, raising PayloadTooLarge as soon as they pass `limit` bytes."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        yield chunk


async def read_bounded(chunks: AsyncIterator[bytes], limit: int, error: Exception) -> bytes:
    """Collect `chunks`, raising `error` as soon as they pass `limit` bytes."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise error
    return bytes(data)


async def _chunks_of(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    """Chunks from `read` (a part's or a body's) until it returns b""."""
    while chunk := await read():
        yield chunk


def _part_reader(part: BodyPartReader) -> Callable[[], Awaitable[bytes]]:
    return lambda: part.read_chunk(CHUNK)


async def _read_urlencoded(request: web.Request) -> Form:
    error = InvalidRequest("the form is too large", code="invalid_form")
    data = await read_bounded(_chunks_of(request.content.readany), FORM_OVERHEAD, error)
    form = Form()
    for name, value in parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True):
        form.fields.setdefault(name, []).append(value)
    return form
