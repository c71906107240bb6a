"""OpenAI's files API for stored audio (transports/rest/files_api.py)."""

from __future__ import annotations

from stream_server.file_access import MAX_PURPOSE
from stream_server.transports.rest.files_api import MAX_LIST_LIMIT
from stream_server.transports.openapi.events import NUMBER, TEXT
from stream_server.transports.openapi.parts import (
    CULTURE,
    errors,
    list_of,
    nullable,
    obj,
    ok_json,
    path,
    query,
    ref,
    response,
)

SCHEMAS = {
    "File": obj(
        {
            "object": {"const": "file"},
            "id": TEXT,
            "bytes": {"type": "integer", "minimum": 0},
            "created_at": {"type": "integer"},
            "filename": TEXT,
            "purpose": TEXT,
            "status": {"const": "processed"},
            "status_details": {"type": "null"},
            "expires_at": {"type": "null"},
            "duration": NUMBER,
        },
        closed=True,
    ),
    "FileList": list_of(
        ref("File"), has_more={"type": "boolean"}, first_id=nullable(TEXT), last_id=nullable(TEXT)
    ),
    "FileUpload": obj(
        {
            "file": {"type": "string", "contentMediaType": "application/octet-stream"},
            "purpose": {"type": "string", "minLength": 1, "maxLength": MAX_PURPOSE},
        }
    ),
    "DeletedFile": obj({"id": TEXT, "object": {"const": "file"}, "deleted": {"const": True}}, closed=True),
}

FILE_ID = path("file_id", "A stored file's id (`file-...`).")

PATHS = {
    "/v1/files": {
        "post": {
            "operationId": "uploadFile",
            "summary": "Store an audio file (checked to be audio)",
            "parameters": [CULTURE],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("FileUpload")}}},
            "responses": {**ok_json("The stored file.", ref("File")), **errors(400, 413)},
        },
        "get": {
            "operationId": "listFiles",
            "summary": "The caller's files, newest first by default",
            "parameters": [
                query("purpose", {"type": "string"}),
                query("order", {"type": "string", "enum": ["asc", "desc"]}),
                query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT}),
                query("after", {"type": "string"}, "A file id: the page after it."),
                CULTURE,
            ],
            "responses": {**ok_json("A page of files.", ref("FileList")), **errors(400)},
        },
    },
    "/v1/files/{file_id}": {
        "get": {
            "operationId": "retrieveFile",
            "parameters": [FILE_ID, CULTURE],
            "responses": {**ok_json("The file.", ref("File")), **errors(403, 404)},
        },
        "delete": {
            "operationId": "deleteFile",
            "parameters": [FILE_ID, CULTURE],
            "responses": {**ok_json("Deleted.", ref("DeletedFile")), **errors(403, 404)},
        },
    },
    "/v1/files/{file_id}/content": {
        "get": {
            "operationId": "fileContent",
            "parameters": [FILE_ID, CULTURE],
            "responses": {
                "200": response(
                    "The bytes as uploaded.",
                    {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
                    {"Content-Disposition": {"schema": TEXT}},
                ),
                **errors(403, 404),
            },
        }
    },
}
