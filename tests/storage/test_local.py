import os
import sqlite3
import time

import pytest

from stream_server.storage import LocalStorage, SessionRecord, UsageRecord
from stream_server.storage.blobs import TEMP_PREFIX


async def test_file_round_trip_survives_reopen(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    saved = await storage.save_file(b"RIFF-bytes", filename="a.wav", purpose="user_data", owner="k1", duration=1.5)
    assert saved.id.startswith("file-") and saved.bytes == 10
    await storage.close()

    storage = await LocalStorage.open(tmp_path)
    assert await storage.get_file(saved.id) == saved
    assert await storage.read_file(saved.id) == b"RIFF-bytes"
    assert await storage.list_files(owner="k1") == [saved]
    assert await storage.list_files(owner="k2") == []
    assert await storage.list_files(purpose="batch") == []
    assert await storage.delete_file(saved.id) is True
    assert await storage.delete_file(saved.id) is False
    assert await storage.get_file(saved.id) is None
    assert await storage.read_file(saved.id) is None
    assert os.listdir(tmp_path / "files") == []
    await storage.close()


async def test_same_filename_gets_distinct_ids(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    a = await storage.save_file(b"one", filename="x.wav", purpose="p", owner="k", duration=1)
    b = await storage.save_file(b"two", filename="x.wav", purpose="p", owner="k", duration=1)
    assert a.id != b.id
    assert (await storage.read_file(a.id), await storage.read_file(b.id)) == (b"one", b"two")
    await storage.close()


async def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    storage = await LocalStorage.open(tmp_path)

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        await storage.save_file(b"data", filename="x.wav", purpose="p", owner="k", duration=1)
    monkeypatch.undo()
    assert await storage.list_files() == []
    assert os.listdir(tmp_path / "files") == []
    await storage.close()


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


async def test_usage_report_per_key_and_day(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    day1 = 1_700_000_000.0  # 2023-11-14 UTC
    for key, seconds, at in (("a", 10, day1), ("a", 5, day1 + 60), ("a", 1, day1 + 86400), ("b", 7, day1)):
        await storage.record_usage(UsageRecord(key, "whisper-1", "file", seconds, 2, 20, at))
    report = await storage.usage_report()
    assert [(r.key_id, r.day, r.requests, r.audio_seconds, r.completion_tokens) for r in report] == [
        ("a", "2023-11-14", 2, 15.0, 40),
        ("b", "2023-11-14", 1, 7.0, 20),
        ("a", "2023-11-15", 1, 1.0, 20),
    ]
    assert [r.key_id for r in await storage.usage_report(key_id="b")] == ["b"]
    assert await storage.used_seconds("a") == 16.0
    assert await storage.used_seconds("nobody") == 0.0
    await storage.close()


async def test_sessions_by_owner(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    s1 = SessionRecord("sess-1", "a", "tiny.en", "en", "hello there", 3.0, 100.0, 103.0)
    s2 = SessionRecord("sess-2", "b", "tiny.en", "en", "bye", 1.0, 200.0, 201.0)
    await storage.save_session(s1)
    await storage.save_session(s2)
    await storage.close()
    storage = await LocalStorage.open(tmp_path)
    assert await storage.list_sessions(owner="a") == [s1]
    assert await storage.list_sessions() == [s1, s2]
    assert await storage.get_session("sess-2") == s2
    assert await storage.get_session("nope") is None
    await storage.close()


async def test_a_failed_session_keeps_its_status_and_error(tmp_path):
    storage = await LocalStorage.open(tmp_path)
    error = {"message": "the upload broke off", "type": "invalid_request_error", "param": None, "code": "upload_incomplete"}
    failed = SessionRecord("sess-3", "a", "tiny.en", "en", "half", 1.0, 1.0, 2.0, status="failed", error=error)
    await storage.save_session(failed)
    await storage.close()
    storage = await LocalStorage.open(tmp_path)
    assert await storage.get_session("sess-3") == failed
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
