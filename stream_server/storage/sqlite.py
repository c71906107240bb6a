"""The embedded database: SQLite (stdlib sqlite3) in one file, the zero-setup default.

One connection, used from one private worker thread (SQLite sees a single thread; the event
loop never waits on the disk), and one lock, so a transaction's statements never interleave
with another coroutine's. Balance holds live only as long as the process: the file has one
process at a time, so the holds a crashed one left are cleared at open."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from stream_server.storage.base import Row

T = TypeVar("T")
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    owner TEXT NOT NULL,
    duration REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_seconds REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_key ON usage (key_id, created_at);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    language TEXT NOT NULL,
    transcript TEXT NOT NULL,
    duration REAL NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'completed',
    error TEXT
);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    seconds REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""
MIGRATIONS = {
    2: "ALTER TABLE sessions ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",
    3: "ALTER TABLE sessions ADD COLUMN status TEXT NOT NULL DEFAULT 'completed'; ALTER TABLE sessions ADD COLUMN error TEXT",
}
"""Statements that bring a catalog of the version before up to each version (the holds table
is new in any version: SCHEMA makes it)."""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    existing = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessions'").fetchone()
    db.executescript(SCHEMA)
    for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1) if existing else ():
        db.executescript(MIGRATIONS[step])
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.execute("DELETE FROM holds")
    return db


class _Statements:
    def __init__(self, db: sqlite3.Connection, executor: ThreadPoolExecutor):
        self._db = db
        self._executor = executor

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return await self._call(lambda: self._db.execute(sql, params).fetchone())

    async def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return await self._call(lambda: self._db.execute(sql, params).fetchall())

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self._call(lambda: self._db.execute(sql, params).rowcount)


class SqliteDatabase:
    utc_day = "date(created_at, 'unixepoch')"
    insertion_order = "rowid"

    def __init__(self, db: sqlite3.Connection, executor: ThreadPoolExecutor):
        self._db = db
        self._executor = executor
        self._statements = _Statements(db, executor)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, executor: ThreadPoolExecutor) -> SqliteDatabase:
        db = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        return cls(db, executor)

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        async with self._lock:
            return await self._statements.one(sql, params)

    async def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        async with self._lock:
            return await self._statements.all(sql, params)

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._lock:
            return await self._statements.run(sql, params)

    @asynccontextmanager
    async def transaction(self, lock: str) -> AsyncIterator[_Statements]:
        """`lock` needs no use here: the one lock already serialises every transaction."""
        async with self._lock:
            await self._statements.run("BEGIN IMMEDIATE")
            try:
                yield self._statements
            except BaseException:
                await self._statements.run("ROLLBACK")
                raise
            await self._statements.run("COMMIT")

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
