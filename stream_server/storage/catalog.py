"""Metadata in SQLite (stdlib sqlite3). Blocking: one connection, used from one worker thread."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from stream_server.storage.records import SessionRecord, StoredFile, UsageRecord, UsageSummary

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
"""
MIGRATIONS = {
    2: "ALTER TABLE sessions ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",
    3: "ALTER TABLE sessions ADD COLUMN status TEXT NOT NULL DEFAULT 'completed'; ALTER TABLE sessions ADD COLUMN error TEXT",
}
"""Statements that bring a catalog of the version before up to each version."""
FILE_COLUMNS = "id, filename, bytes, created_at, purpose, owner, duration"
SESSION_COLUMNS = "id, owner, model, language, transcript, duration, created_at, ended_at, details, status, error"


class Catalog:
    def __init__(self, path: Path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        existing = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessions'").fetchone()
        self._db.executescript(SCHEMA)
        for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1) if existing else ():
            self._db.executescript(MIGRATIONS[step])
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def add_file(self, f: StoredFile) -> None:
        self._db.execute(
            f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f.id, f.filename, f.bytes, f.created_at, f.purpose, f.owner, f.duration),
        )

    def get_file(self, file_id: str) -> StoredFile | None:
        row = self._db.execute(f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        return StoredFile(*row) if row else None

    def list_files(self, owner: str | None, purpose: str | None) -> list[StoredFile]:
        rows = self._db.execute(
            f"SELECT {FILE_COLUMNS} FROM files WHERE (?1 IS NULL OR owner = ?1)"
            " AND (?2 IS NULL OR purpose = ?2) ORDER BY rowid",
            (owner, purpose),
        )
        return [StoredFile(*row) for row in rows]

    def file_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT id FROM files")}

    def delete_file(self, file_id: str) -> bool:
        return self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def add_usage(self, u: UsageRecord) -> None:
        self._db.execute(
            "INSERT INTO usage (key_id, model, kind, audio_seconds, prompt_tokens, completion_tokens,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (u.key_id, u.model, u.kind, u.audio_seconds, u.prompt_tokens, u.completion_tokens, u.created_at),
        )

    def used_seconds(self, key_id: str) -> float:
        row = self._db.execute("SELECT TOTAL(audio_seconds) FROM usage WHERE key_id = ?", (key_id,)).fetchone()
        return float(row[0])

    def usage_report(self, key_id: str | None) -> list[UsageSummary]:
        rows = self._db.execute(
            "SELECT key_id, date(created_at, 'unixepoch') AS day, COUNT(*), TOTAL(audio_seconds),"
            " SUM(prompt_tokens), SUM(completion_tokens) FROM usage WHERE (?1 IS NULL OR key_id = ?1)"
            " GROUP BY key_id, day ORDER BY day, key_id",
            (key_id,),
        )
        return [UsageSummary(*row) for row in rows]

    def add_session(self, s: SessionRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *(s.id, s.owner, s.model, s.language, s.transcript, s.duration, s.created_at, s.ended_at),
                json.dumps(s.details),
                s.status,
                json.dumps(s.error) if s.error is not None else None,
            ),
        )

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self._db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return _session(row) if row else None

    def list_sessions(self, owner: str | None) -> list[SessionRecord]:
        rows = self._db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE (?1 IS NULL OR owner = ?1) ORDER BY created_at, id",
            (owner,),
        )
        return [_session(row) for row in rows]


def _session(row: tuple) -> SessionRecord:
    *fields, details, status, error = row
    return SessionRecord(*fields, details=json.loads(details), status=status, error=json.loads(error) if error else None)
