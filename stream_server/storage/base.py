"""The storage interface. A server database or an object store can stand in for LocalStorage."""

from __future__ import annotations

from typing import Protocol

from stream_server.storage.records import SessionRecord, StoredFile, UsageRecord, UsageSummary


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

    async def save_session(self, record: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self, *, owner: str | None = None) -> list[SessionRecord]: ...

    async def close(self) -> None: ...
