"""What only the embedded (SQLite) storage does; the contract every backend keeps is in test_storage.py."""

import os
import sqlite3
import time

from stream_server.storage import LocalStorage
from stream_server.storage.blobs import TEMP_PREFIX


async def test_reopen_sweeps_stale_leftovers_only(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    kept = await storage.save_file(b"keep", filename="k.wav", purpose="p", owner="k", duration=1)
    await storage.close()
    files = tmp_path / "files"
    stale_temp, orphan, fresh_temp = files / f"{TEMP_PREFIX}x", files / "file-orphan", files / f"{TEMP_PREFIX}y"
    for path in (stale_temp, orphan, fresh_temp):
        path.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale_temp, (old, old))
    os.utime(orphan, (old, old))
    os.utime(files / kept.id, (old, old))

    storage = await LocalStorage.open(tmp_path)
    assert sorted(os.listdir(files)) == sorted([kept.id, fresh_temp.name])
    await storage.close()


async def test_a_catalog_from_before_session_status_opens_with_its_sessions_completed(tmp_path):
    old = sqlite3.connect(tmp_path / "catalog.sqlite3")
    old.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, model TEXT NOT NULL, language TEXT NOT NULL,"
        " transcript TEXT NOT NULL, duration REAL NOT NULL, created_at REAL NOT NULL, ended_at REAL NOT NULL,"
        " details TEXT NOT NULL DEFAULT '{}');"
        "INSERT INTO sessions VALUES ('sess-1', 'a', 'tiny.en', 'en', 'hello', 1.0, 1.0, 2.0, '{}');"
        "PRAGMA user_version=2;"
    )
    old.close()
    storage = await LocalStorage.open(tmp_path)
    record = await storage.get_session("sess-1")
    assert (record.transcript, record.status, record.error) == ("hello", "completed", None)
    await storage.close()


async def test_storage_directories_are_private(tmp_path):
    storage = await LocalStorage.open(tmp_path / "store")
    assert (tmp_path / "store").stat().st_mode & 0o077 == 0
    assert (tmp_path / "store" / "files").stat().st_mode & 0o077 == 0
    await storage.close()
