"""Persistent state: stored audio files, usage records and finished session transcripts.

`Storage` (base.py) is the narrow interface the rest of the server uses; `LocalStorage`
(local.py) implements it with files in a directory (blobs.py) and metadata (catalog.py) in SQLite
(sqlite.py, the default) or PostgreSQL (postgres.py, shared by replicas).
"""

from stream_server.storage.base import Storage
from stream_server.storage.local import LocalStorage
from stream_server.storage.records import BalanceHold, SessionRecord, StoredFile, UsageRecord, UsageSummary

__all__ = ["BalanceHold", "LocalStorage", "SessionRecord", "Storage", "StoredFile", "UsageRecord", "UsageSummary"]
