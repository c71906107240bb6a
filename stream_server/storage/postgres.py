"""The shared database: PostgreSQL (asyncpg), for replicas that must agree on keys' usage,
balances, files and finished sessions.

The schema is versioned: `MIGRATIONS[n]` brings a database at version n-1 to n, and every
replica brings the database up to date at start, one at a time (an advisory lock), so replicas
of the same release may start together."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from stream_server.storage.base import Row

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE files (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    purpose TEXT NOT NULL,
    owner TEXT NOT NULL,
    duration DOUBLE PRECISION NOT NULL
);
CREATE INDEX files_owner ON files (owner);
CREATE TABLE usage (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    audio_seconds DOUBLE PRECISION NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX usage_key ON usage (key_id, created_at);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    language TEXT NOT NULL,
    transcript TEXT NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'completed',
    error TEXT
);
CREATE INDEX sessions_owner ON sessions (owner);
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX holds_key ON holds (key_id);
""",
}
SCHEMA_VERSION = max(MIGRATIONS)
MIGRATION_LOCK = 0x5354524D  # any constant; every replica takes the same one
_PLACEHOLDER = re.compile(r"\?(\d+)")


def _sql(sql: str) -> str:
    """`?1` -> `$1`."""
    return _PLACEHOLDER.sub(r"$\1", sql)


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; the version it was at before."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        for step in range(version + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[step])
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", step)
        return version


class _Statements:
    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool):
        self._conn = conn

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return await self._conn.fetchrow(_sql(sql), *params)

    async def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(await self._conn.fetch(_sql(sql), *params))

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        status = await self._conn.execute(_sql(sql), *params)  # e.g. "DELETE 1", "INSERT 0 1"
        return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0


class PostgresDatabase(_Statements):
    utc_day = "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    insertion_order = "seq"

    def __init__(self, pool: asyncpg.Pool):
        super().__init__(pool)
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        async with pool.acquire() as conn:
            await migrate(conn)
        return cls(pool)

    @asynccontextmanager
    async def transaction(self, lock: str) -> AsyncIterator[_Statements]:
        """An advisory lock on `lock`'s hash for the transaction's length: replicas holding the
        same key's balance take turns; other keys' go on."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
            yield _Statements(conn)

    async def close(self) -> None:
        await self._pool.close()
