"""OpenAI's files API for stored audio: upload, list, retrieve, content, delete."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from stream_server.errors import InvalidRequest
from stream_server.storage import StoredFile
from stream_server.transports.appkeys import FILES, SETTINGS
from stream_server.transports.auth import principal_of
from stream_server.transports.forms import read_form

routes = web.RouteTableDef()

MAX_LIST_LIMIT = 10_000


def file_object(f: StoredFile) -> dict:
    return {
        "object": "file",
        "id": f.id,
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
        "duration": round(f.duration, 3),
    }


@routes.post("/v1/files")
async def upload_file(request: web.Request) -> web.Response:
    form = await read_form(request, request.app[SETTINGS].max_upload_bytes)
    data = form.require_file()
    purpose = form.require("purpose")
    record = await request.app[FILES].add(principal_of(request), data, form.filename, purpose)
    return web.json_response(file_object(record))


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    """Newest first by default, like OpenAI; `after` is a cursor (a file id) for the next page."""
    query = request.query
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    limit = _limit(query.get("limit"))
    files = await request.app[FILES].list(principal_of(request), query.get("purpose") or None)
    if order == "desc":
        files.reverse()
    if after := query.get("after"):
        ids = [f.id for f in files]
        files = files[ids.index(after) + 1 :] if after in ids else []
    page = files[:limit]
    return web.json_response(
        {
            "object": "list",
            "data": [file_object(f) for f in page],
            "has_more": len(files) > len(page),
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
    )


def _limit(value: str | None) -> int:
    if not value:
        return MAX_LIST_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidRequest("limit must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}", param="limit")
    return limit


@routes.get("/v1/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    record = await request.app[FILES].get(principal_of(request), request.match_info["file_id"])
    return web.json_response(file_object(record))


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.Response:
    record, data = await request.app[FILES].content(principal_of(request), request.match_info["file_id"])
    disposition = f"attachment; filename*=UTF-8''{quote(record.filename)}"
    return web.Response(
        body=data, content_type="application/octet-stream", headers={"Content-Disposition": disposition}
    )


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    record = await request.app[FILES].delete(principal_of(request), request.match_info["file_id"])
    return web.json_response({"id": record.id, "object": "file", "deleted": True})
