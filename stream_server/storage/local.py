"""Storage on the local disk: blobs under `<root>/files`, metadata in `<root>/catalog.sqlite3`.

Blocking work runs on one private worker thread, so SQLite sees a single thread and the event
loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from stream_server.errors import InsufficientStorage
from stream_server.storage.blobs import BlobDir
from stream_server.storage.catalog import Catalog
from stream_server.storage.records import (
    SessionRecord,
    StoredFile,
    UsageRecord,
    UsageSummary,
    new_file_id,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
FULL_DISK = {errno.ENOSPC, errno.EDQUOT}


def _disk_full(exc: BaseException) -> bool:
    """The blob's write (ENOSPC, EDQUOT) or the catalog's (SQLITE_FULL) found no room."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in FULL_DISK


class LocalStorage:
    def __init__(self, root: Path, catalog: Catalog, blobs: BlobDir, executor: ThreadPoolExecutor):
        self.root = root
        self._catalog = catalog
        self._blobs = blobs
        self._executor = executor

    @classmethod
    async def open(cls, root: Path) -> LocalStorage:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        loop = asyncio.get_running_loop()
        catalog = await loop.run_in_executor(executor, Catalog, root / "catalog.sqlite3")
        blobs = await loop.run_in_executor(executor, BlobDir, root / "files")
        storage = cls(root, catalog, blobs, executor)
        removed = await storage._run(lambda: blobs.sweep(catalog.file_ids()))
        if removed:
            log.info("removed %d leftover blob(s) from %s", len(removed), blobs.root)
        return storage

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        await self._run(self._catalog.close)
        self._executor.shutdown(wait=True)

    async def save_file(
        self, data: bytes, *, filename: str, purpose: str, owner: str, duration: float
    ) -> StoredFile:
        record = StoredFile(
            id=new_file_id(),
            filename=filename,
            bytes=len(data),
            created_at=int(time.time()),
            purpose=purpose,
            owner=owner,
            duration=duration,
        )

        def save() -> None:
            self._blobs.write(record.id, data)  # durable before it is listed; a failed write leaves nothing
            try:
                self._catalog.add_file(record)
            except BaseException:
                self._blobs.delete(record.id)
                raise

        try:
            await self._run(save)
        except (OSError, sqlite3.Error) as exc:
            if _disk_full(exc):
                raise InsufficientStorage("the server's disk is full: the file was not stored") from exc
            raise
        return record

    async def get_file(self, file_id: str) -> StoredFile | None:
        return await self._run(lambda: self._catalog.get_file(file_id))

    async def read_file(self, file_id: str) -> bytes | None:
        record = await self.get_file(file_id)
        if record is None:
            return None
        return await self._run(lambda: self._blobs.read(record.id))

    async def list_files(self, *, owner: str | None = None, purpose: str | None = None) -> list[StoredFile]:
        return await self._run(lambda: self._catalog.list_files(owner, purpose))

    async def delete_file(self, file_id: str) -> bool:
        def delete() -> bool:
            if not self._catalog.delete_file(file_id):  # unlisted first, then the bytes go
                return False
            self._blobs.delete(file_id)
            return True

        return await self._run(delete)

    async def record_usage(self, record: UsageRecord) -> None:
        await self._run(lambda: self._catalog.add_usage(record))

    async def used_seconds(self, key_id: str) -> float:
        return await self._run(lambda: self._catalog.used_seconds(key_id))

    async def usage_report(self, *, key_id: str | None = None) -> list[UsageSummary]:
        return await self._run(lambda: self._catalog.usage_report(key_id))

    async def save_session(self, record: SessionRecord) -> None:
        await self._run(lambda: self._catalog.add_session(record))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._run(lambda: self._catalog.get_session(session_id))

    async def list_sessions(self, *, owner: str | None = None) -> list[SessionRecord]:
        return await self._run(lambda: self._catalog.list_sessions(owner))
