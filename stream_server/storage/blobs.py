"""A directory of immutable blobs, one file per id, each written whole or not at all.

Blocking: call from a worker thread.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

TEMP_PREFIX = ".tmp-"
STALE_SECONDS = 3600
"""Temp files this old are leftovers of a crash (a live write takes far less)."""
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class BlobDir:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # stored audio is private

    def path(self, blob_id: str) -> Path:
        if not _SAFE_ID.match(blob_id):
            raise ValueError(f"unsafe blob id {blob_id!r}")
        return self.root / blob_id

    def write(self, blob_id: str, data: bytes) -> None:
        """Write to a temp name, fsync, rename into place, fsync the directory."""
        final = self.path(blob_id)
        temp = self.root / f"{TEMP_PREFIX}{blob_id}-{secrets.token_hex(4)}"
        try:
            with open(temp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._sync_dir()

    def read(self, blob_id: str) -> bytes | None:
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
        self._sync_dir()

    def sweep(self, keep: set[str], *, older_than: float = STALE_SECONDS) -> list[str]:
        """Remove stale temp files and blobs no record points at; return their names.

        Only entries older than `older_than` go: another process may be mid-save."""
        cutoff = time.time() - older_than
        removed = []
        for entry in self.root.iterdir():
            if entry.name in keep or not entry.is_file():
                continue
            if entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
        return removed

    def _sync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
