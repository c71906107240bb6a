"""Stored audio files and who may touch them: uploads are checked to be audio, reads and
deletes are checked against the owner (another key gets Forbidden; an admin sees all)."""

from __future__ import annotations

from stream_server.audio import SAMPLE_RATE
from stream_server.errors import Forbidden, InvalidRequest, NotFound
from stream_server.principals import Principal
from stream_server.service import TranscriptionService
from stream_server.storage import Storage, StoredFile
from stream_server.storage.records import is_file_id

MAX_PURPOSE = 64
MAX_FILENAME = 255


class FileLibrary:
    def __init__(self, storage: Storage, service: TranscriptionService):
        self._storage = storage
        self._service = service

    async def add(self, principal: Principal, data: bytes, filename: str | None, purpose: str) -> StoredFile:
        if not purpose or len(purpose) > MAX_PURPOSE:
            raise InvalidRequest(
                f"'purpose' is required (at most {MAX_PURPOSE} characters)", param="purpose", code="invalid_purpose"
            )
        name = (filename or "upload").replace("/", "_").replace("\\", "_")[-MAX_FILENAME:]
        audio = await self._service.decode(data, name)  # AudioDecodeError for anything not audio
        return await self._storage.save_file(
            data, filename=name, purpose=purpose, owner=principal.key_id, duration=len(audio) / SAMPLE_RATE
        )

    async def get(self, principal: Principal, file_id: str) -> StoredFile:
        record = await self._storage.get_file(file_id) if is_file_id(file_id) else None
        if record is None:
            raise NotFound(f"no such file: '{file_id}'", param="file_id", code="file_not_found")
        if not principal.may_access(record.owner):
            raise Forbidden(f"file '{file_id}' belongs to another API key", param="file_id")
        return record

    async def content(self, principal: Principal, file_id: str) -> tuple[StoredFile, bytes]:
        record = await self.get(principal, file_id)
        data = await self._storage.read_file(record.id)
        if data is None:  # deleted between the two reads
            raise NotFound(f"no such file: '{file_id}'", param="file_id", code="file_not_found")
        return record, data

    async def list(self, principal: Principal, purpose: str | None = None) -> list[StoredFile]:
        owner = None if principal.is_admin else principal.key_id
        return await self._storage.list_files(owner=owner, purpose=purpose)

    async def delete(self, principal: Principal, file_id: str) -> StoredFile:
        record = await self.get(principal, file_id)
        if not await self._storage.delete_file(record.id):
            raise NotFound(f"no such file: '{file_id}'", param="file_id", code="file_not_found")
        return record
