"""The storage contract, run against each backend: SQLite (the embedded default) and PostgreSQL
(a real server on loopback, a fresh database per test)."""

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from stream_server.storage import LocalStorage, SessionRecord, UsageRecord
from scripts.services import fresh_database

Open = Callable[[], Awaitable[LocalStorage]]


@pytest.fixture(params=["sqlite", "postgres"])
async def open_storage(request, tmp_path) -> Open:
    """Opens the backend's storage (again and again: the same database and directories)."""
    url = await fresh_database(request.getfixturevalue("postgres_url")) if request.param == "postgres" else ""

    async def opened() -> LocalStorage:
        return await LocalStorage.open(tmp_path, database_url=url)

    return opened


async def test_file_round_trip_survives_reopen(open_storage: Open, tmp_path):
    storage = await open_storage()
    saved = await storage.save_file(b"RIFF-bytes", filename="a.wav", purpose="user_data", owner="k1", duration=1.5)
    assert saved.id.startswith("file-") and saved.bytes == 10
    await storage.close()

    storage = await open_storage()
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


async def test_files_list_oldest_first_and_same_filename_gets_distinct_ids(open_storage: Open):
    storage = await open_storage()
    a = await storage.save_file(b"one", filename="x.wav", purpose="p", owner="k", duration=1)
    b = await storage.save_file(b"two", filename="x.wav", purpose="p", owner="k", duration=1)
    c = await storage.save_file(b"three", filename="y.wav", purpose="q", owner="k", duration=1)
    assert a.id != b.id
    assert (await storage.read_file(a.id), await storage.read_file(b.id)) == (b"one", b"two")
    assert await storage.list_files() == [a, b, c]
    assert await storage.list_files(owner="k", purpose="p") == [a, b]
    await storage.close()


async def test_failed_write_leaves_nothing(open_storage: Open, tmp_path, monkeypatch):
    storage = await open_storage()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        await storage.save_file(b"data", filename="x.wav", purpose="p", owner="k", duration=1)
    monkeypatch.undo()
    assert await storage.list_files() == []
    assert os.listdir(tmp_path / "files") == []
    await storage.close()


async def test_usage_report_per_key_and_day(open_storage: Open):
    storage = await open_storage()
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


async def test_sessions_by_owner(open_storage: Open):
    storage = await open_storage()
    s1 = SessionRecord("sess-1", "a", "tiny.en", "en", "hello there", 3.0, 100.0, 103.0)
    s2 = SessionRecord("sess-2", "b", "tiny.en", "en", "bye", 1.0, 200.0, 201.0)
    await storage.save_session(s1)
    await storage.save_session(s2)
    await storage.close()
    storage = await open_storage()
    assert await storage.list_sessions(owner="a") == [s1]
    assert await storage.list_sessions() == [s1, s2]
    assert await storage.get_session("sess-2") == s2
    assert await storage.get_session("nope") is None
    await storage.close()


async def test_a_failed_session_keeps_its_status_and_error_and_a_save_again_replaces_it(open_storage: Open):
    storage = await open_storage()
    error = {"message": "the upload broke off", "type": "invalid_request_error", "param": None, "code": "upload_incomplete"}
    live = SessionRecord("sess-3", "a", "tiny.en", "en", "ha", 0.5, 1.0, 1.5, details={"call_sid": "CA1"})
    failed = SessionRecord("sess-3", "a", "tiny.en", "en", "half", 1.0, 1.0, 2.0, status="failed", error=error)
    await storage.save_session(live)
    await storage.save_session(failed)
    await storage.close()
    storage = await open_storage()
    assert await storage.get_session("sess-3") == failed
    await storage.close()


async def test_balance_holds_never_overspend_however_many_ask_at_once(open_storage: Open):
    """60 s of balance, 10 s used: of ten concurrent 20 s holds, from two storages on the same
    database (two replicas), exactly two are granted."""
    storages = [await open_storage(), await open_storage()]
    await storages[0].record_usage(UsageRecord("k", "whisper-1", "file", 10, 0, 0, 1.0))
    holds = await asyncio.gather(
        *(storages[i % len(storages)].hold_balance("k", 20, 60, ttl_s=60) for i in range(10))
    )
    granted = [h for h in holds if h.granted]
    assert len(granted) == 2
    assert all(h.remaining < 20 for h in holds if not h.granted)
    assert await storages[0].held_seconds("k") == 40
    assert await storages[0].held_seconds("other") == 0
    await storages[-1].release_hold(granted[0].id)
    assert await storages[0].held_seconds("k") == 20
    assert (await storages[0].hold_balance("k", 20, 60, ttl_s=60)).granted
    refused = await storages[1].hold_balance("k", 11, 60, ttl_s=60)  # 10 used, 40 held
    assert (refused.granted, refused.remaining) == (False, 10)
    for storage in storages:
        await storage.close()


async def test_a_hold_lapses_after_its_time(open_storage: Open):
    storage = await open_storage()
    lapsing = await storage.hold_balance("k", 30, 30, ttl_s=0.2)
    assert lapsing.granted and await storage.held_seconds("k") == 30
    assert not (await storage.hold_balance("k", 1, 30, ttl_s=60)).granted
    await asyncio.sleep(0.3)
    assert await storage.held_seconds("k") == 0
    assert (await storage.hold_balance("k", 30, 30, ttl_s=60)).granted
    await storage.close()

