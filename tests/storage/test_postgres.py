"""What only the PostgreSQL backend does: its versioned schema, brought up to date at start."""

import asyncio

import asyncpg

from stream_server.storage import LocalStorage
from stream_server.storage.postgres import SCHEMA_VERSION
from scripts.services import fresh_database


async def test_replicas_starting_together_migrate_the_schema_once(postgres_url, tmp_path):
    url = await fresh_database(postgres_url)
    storages = await asyncio.gather(*(LocalStorage.open(tmp_path, database_url=url) for _ in range(3)))
    conn = await asyncpg.connect(url)
    try:
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")] == list(
            range(1, SCHEMA_VERSION + 1)
        )
    finally:
        await conn.close()
    for storage in storages:
        await storage.close()
    reopened = await LocalStorage.open(tmp_path, database_url=url)  # already current: nothing to do
    assert await reopened.list_files() == []
    await reopened.close()
