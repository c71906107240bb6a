"""The metadata of stored files, usage, balance holds and finished sessions, as SQL that SQLite
and PostgreSQL both run (the database supplies its few dialect pieces and placeholders)."""

from __future__ import annotations

import json
import time

from stream_server.storage.base import Database, Row
from stream_server.storage.records import (
    BalanceHold,
    SessionRecord,
    StoredFile,
    UsageRecord,
    UsageSummary,
    new_hold_id,
)

FILE_COLUMNS = "id, filename, bytes, created_at, purpose, owner, duration"
SESSION_COLUMNS = "id, owner, model, language, transcript, duration, created_at, ended_at, details, status, error"
USAGE_COLUMNS = "key_id, model, kind, audio_seconds, prompt_tokens, completion_tokens, created_at"


class Catalog:
    def __init__(self, db: Database):
        self._db = db

    async def close(self) -> None:
        await self._db.close()

    async def add_file(self, f: StoredFile) -> None:
        await self._db.run(
            f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            (f.id, f.filename, f.bytes, f.created_at, f.purpose, f.owner, f.duration),
        )

    async def get_file(self, file_id: str) -> StoredFile | None:
        row = await self._db.one(f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?1", (file_id,))
        return StoredFile(*row) if row else None

    async def list_files(self, owner: str | None, purpose: str | None) -> list[StoredFile]:
        rows = await self._db.all(
            f"SELECT {FILE_COLUMNS} FROM files WHERE (CAST(?1 AS TEXT) IS NULL OR owner = ?1)"
            f" AND (CAST(?2 AS TEXT) IS NULL OR purpose = ?2) ORDER BY {self._db.insertion_order}",
            (owner, purpose),
        )
        return [StoredFile(*row) for row in rows]

    async def file_ids(self) -> set[str]:
        return {row[0] for row in await self._db.all("SELECT id FROM files")}

    async def delete_file(self, file_id: str) -> bool:
        return await self._db.run("DELETE FROM files WHERE id = ?1", (file_id,)) > 0

    async def add_usage(self, u: UsageRecord) -> None:
        await self._db.run(
            f"INSERT INTO usage ({USAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            (u.key_id, u.model, u.kind, u.audio_seconds, u.prompt_tokens, u.completion_tokens, u.created_at),
        )

    async def used_seconds(self, key_id: str) -> float:
        row = await self._db.one(_USED, (key_id,))
        return float(row[0]) if row else 0.0

    async def usage_report(self, key_id: str | None) -> list[UsageSummary]:
        rows = await self._db.all(
            f"SELECT key_id, {self._db.utc_day} AS day, COUNT(*), SUM(audio_seconds), SUM(prompt_tokens),"
            " SUM(completion_tokens) FROM usage WHERE (CAST(?1 AS TEXT) IS NULL OR key_id = ?1)"
            " GROUP BY key_id, day ORDER BY day, key_id",
            (key_id,),
        )
        return [UsageSummary(*row) for row in rows]

    async def hold(self, key_id: str, seconds: float, limit: float, ttl_s: float) -> BalanceHold:
        now = time.time()
        async with self._db.transaction(key_id) as tx:
            await tx.run("DELETE FROM holds WHERE expires_at <= ?1", (now,))
            used = await tx.one(_USED, (key_id,))
            held = await tx.one(_HELD, (key_id, now))
            remaining = max(0.0, limit - float(used[0] if used else 0) - float(held[0] if held else 0))
            if remaining <= 0 or seconds > remaining:
                return BalanceHold(None, remaining)
            hold = BalanceHold(new_hold_id(), remaining)
            await tx.run(
                "INSERT INTO holds (id, key_id, seconds, expires_at) VALUES (?1, ?2, ?3, ?4)",
                (hold.id, key_id, seconds, now + ttl_s),
            )
            return hold

    async def release_hold(self, hold_id: str) -> None:
        await self._db.run("DELETE FROM holds WHERE id = ?1", (hold_id,))

    async def held_seconds(self, key_id: str) -> float:
        row = await self._db.one(_HELD, (key_id, time.time()))
        return float(row[0]) if row else 0.0

    async def add_session(self, s: SessionRecord) -> None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS.split(", ")[1:])
        await self._db.run(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            (
                *(s.id, s.owner, s.model, s.language, s.transcript, s.duration, s.created_at, s.ended_at),
                json.dumps(s.details),
                s.status,
                json.dumps(s.error) if s.error is not None else None,
            ),
        )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._db.one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1", (session_id,))
        return _session(row) if row else None

    async def list_sessions(self, owner: str | None) -> list[SessionRecord]:
        rows = await self._db.all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE (CAST(?1 AS TEXT) IS NULL OR owner = ?1)"
            " ORDER BY created_at, id",
            (owner,),
        )
        return [_session(row) for row in rows]


_USED = "SELECT COALESCE(SUM(audio_seconds), 0.0) FROM usage WHERE key_id = ?1"
_HELD = "SELECT COALESCE(SUM(seconds), 0.0) FROM holds WHERE key_id = ?1 AND expires_at > ?2"


def _session(row: Row) -> SessionRecord:
    *fields, details, status, error = row
    return SessionRecord(*fields, details=json.loads(details), status=status, error=json.loads(error) if error else None)
