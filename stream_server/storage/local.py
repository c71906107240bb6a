"""Storage of blobs in a directory (`<root>/files`, or a `blob_dir` every replica mounts) and
their metadata in a catalog: SQLite at `<root>/catalog.sqlite3` (the default) or PostgreSQL.

Blob I/O runs on one private worker thread (with SQLite's), so the event loop never waits on the
disk."""

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
from stream_server.storage.base import Database
from stream_server.storage.blobs import BlobDir
from stream_server.storage.catalog import Catalog
from stream_server.storage.records import (
    BalanceHold,
    SessionRecord,
    StoredFile,
    UsageRecord,
    UsageSummary,
    new_file_id,
)
from stream_server.storage.sqlite import SqliteDatabase

log = logging.getLogger(__name__)
T = TypeVar("T")
FULL_DISK = {errno.ENOSPC, errno.EDQUOT}
PG_DISK_FULL = "53100"


def _disk_full(exc: BaseException) -> bool:
    """The blob's write (ENOSPC, EDQUOT) or the catalog's (SQLITE_FULL, PostgreSQL's disk_full)
    found no room."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if getattr(exc, "sqlstate", None) == PG_DISK_FULL:
        return True
    return isinstance(exc, OSError) and exc.errno in FULL_DISK


class LocalStorage:
    def __init__(self, root: Path, catalog: Catalog, blobs: BlobDir, executor: ThreadPoolExecutor):
        self.root = root
        self._catalog = catalog
        self._blobs = blobs
        self._executor = executor

    @classmethod
    async def open(cls, root: Path, *, database_url: str = "", blob_dir: Path | None = None) -> LocalStorage:
        """`database_url` empty: SQLite under `root`; `postgresql://...`: that server."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        loop = asyncio.get_running_loop()
        db: Database
        if database_url:
            from stream_server.storage.postgres import PostgresDatabase  # asyncpg only when used

            db = await PostgresDatabase.open(database_url)
        else:
            db = await SqliteDatabase.open(root / "catalog.sqlite3", executor)
        catalog = Catalog(db)
        blobs = await loop.run_in_executor(executor, BlobDir, blob_dir or root / "files")
        storage = cls(root, catalog, blobs, executor)
        keep = await catalog.file_ids()
        removed = await storage._run(lambda: blobs.sweep(keep))
        if removed:
            log.info("removed %d leftover blob(s) from %s", len(removed), blobs.root)
        return storage

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        await self._catalog.close()
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
        try:
            await self._run(lambda: self._blobs.write(record.id, data))  # durable before it is listed
            try:
                await self._catalog.add_file(record)
            except BaseException:
                await self._run(lambda: self._blobs.delete(record.id))  # a failed save leaves nothing
                raise
        except Exception as exc:
            if _disk_full(exc):
                raise InsufficientStorage("the server's disk is full: the file was not stored") from exc
            raise
        return record

    async def get_file(self, file_id: str) -> StoredFile | None:
        return await self._catalog.get_file(file_id)

    async def read_file(self, file_id: str) -> bytes | None:
        record = await self.get_file(file_id)
        if record is None:
            return None
        return await self._run(lambda: self._blobs.read(record.id))

    async def list_files(self, *, owner: str | None = None, purpose: str | None = None) -> list[StoredFile]:
        return await self._catalog.list_files(owner, purpose)

    async def delete_file(self, file_id: str) -> bool:
        if not await self._catalog.delete_file(file_id):  # unlisted first, then the bytes go
            return False
        await self._run(lambda: self._blobs.delete(file_id))
        return True

    async def record_usage(self, record: UsageRecord) -> None:
        await self._catalog.add_usage(record)

    async def used_seconds(self, key_id: str) -> float:
        return await self._catalog.used_seconds(key_id)

    async def usage_report(self, *, key_id: str | None = None) -> list[UsageSummary]:
        return await self._catalog.usage_report(key_id)

    async def hold_balance(self, key_id: str, seconds: float, limit: float, *, ttl_s: float) -> BalanceHold:
        return await self._catalog.hold(key_id, seconds, limit, ttl_s)

    async def release_hold(self, hold_id: str) -> None:
        await self._catalog.release_hold(hold_id)

    async def held_seconds(self, key_id: str) -> float:
        return await self._catalog.held_seconds(key_id)

    async def save_session(self, record: SessionRecord) -> None:
        await self._catalog.add_session(record)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._catalog.get_session(session_id)

    async def list_sessions(self, *, owner: str | None = None) -> list[SessionRecord]:
        return await self._catalog.list_sessions(owner)
