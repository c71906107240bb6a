"""Persistent state: stored audio files, usage records and finished session transcripts.

`Storage` (base.py) is the narrow interface the rest of the server uses; `LocalStorage`
(local.py) implements it with files on disk (blobs.py) and metadata in SQLite (catalog.py).
"""

from stream_server.storage.base import Storage
from stream_server.storage.local import LocalStorage
from stream_server.storage.records import SessionRecord, StoredFile, UsageRecord, UsageSummary

__all__ = ["LocalStorage", "SessionRecord", "Storage", "StoredFile", "UsageRecord", "UsageSummary"]
