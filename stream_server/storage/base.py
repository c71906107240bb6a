"""The storage interface, and the SQL database under its metadata.

`Storage` is what the rest of the server uses; `Database` is what `Catalog` (catalog.py) runs its
SQL on: SQLite in-process (sqlite.py) or a PostgreSQL server (postgres.py) that replicas share."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from stream_server.storage.records import BalanceHold, SessionRecord, StoredFile, UsageRecord, UsageSummary


class Storage(Protocol):
    """Every method may block on I/O internally, but never blocks the event loop."""

    async def save_file(
        self, data: bytes, *, filename: str, purpose: str, owner: str, duration: float
    ) -> StoredFile:
        """Store the bytes durably, then list them; a failure part-way lists nothing."""
        ...

    async def get_file(self, file_id: str) -> StoredFile | None: ...

    async def read_file(self, file_id: str) -> bytes | None:
        """The stored bytes, or None when the file is gone."""
        ...

    async def list_files(self, *, owner: str | None = None, purpose: str | None = None) -> list[StoredFile]:
        """Oldest first; `owner` None lists every owner's."""
        ...

    async def delete_file(self, file_id: str) -> bool: ...

    async def record_usage(self, record: UsageRecord) -> None: ...

    async def used_seconds(self, key_id: str) -> float:
        """Audio seconds this key has used in all."""
        ...

    async def usage_report(self, *, key_id: str | None = None) -> list[UsageSummary]:
        """Per key and UTC day; `key_id` None reports every key."""
        ...

    async def hold_balance(self, key_id: str, seconds: float, limit: float, *, ttl_s: float) -> BalanceHold:
        """Hold `seconds` of the key's balance (`limit` less its usage and the live holds) if it
        covers them, in one transaction: concurrent holds, from any process that shares the
        database, never together exceed the balance. A hold lapses after `ttl_s` unreleased."""
        ...

    async def release_hold(self, hold_id: str) -> None: ...

    async def held_seconds(self, key_id: str) -> float:
        """Seconds of the key's balance held now (unreleased, unlapsed holds)."""
        ...

    async def save_session(self, record: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, *, owner: str | None = None) -> list[SessionRecord]: ...

    async def close(self) -> None: ...


Row = Sequence[Any]


class Queries(Protocol):
    """SQL with numbered `?1` placeholders (the database translates them to its own)."""

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    async def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Execute; the number of rows changed."""
        ...


class Database(Queries, Protocol):
    utc_day: str
    """SQL for the UTC day (YYYY-MM-DD) of the Unix time `created_at`."""
    insertion_order: str
    """SQL ordering the files table's rows as they were inserted."""

    def transaction(self, lock: str) -> AbstractAsyncContextManager[Queries]:
        """One transaction, serialised with every other one of the same `lock` (a key id),
        in this process and in any other that shares the database."""
        ...

    async def close(self) -> None: ...
