"""What storage keeps: small frozen records. Times are Unix seconds (UTC)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

_FILE_ID = re.compile(r"file-[0-9a-f]{24}")


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def is_file_id(value: str) -> bool:
    """Whether `value` has the exact form new_file_id makes: anything else names no file, and is
    refused before a lookup."""
    return _FILE_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    bytes: int
    created_at: int
    purpose: str
    owner: str
    """Key id (sha256 of the key) of the uploader."""
    duration: float
    """Audio duration in seconds, measured when the file was uploaded."""


@dataclass(frozen=True)
class UsageRecord:
    key_id: str
    model: str
    kind: str
    """"file" (a stored or uploaded file), "stream" or "session"."""
    audio_seconds: float
    prompt_tokens: int
    completion_tokens: int
    created_at: float


@dataclass(frozen=True)
class UsageSummary:
    """Usage of one key on one UTC day."""

    key_id: str
    day: str
    """YYYY-MM-DD, UTC."""
    requests: int
    audio_seconds: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class SessionRecord:
    """The finished transcript of a live session."""

    id: str
    owner: str
    model: str
    language: str
    transcript: str
    duration: float
    """Audio seconds the session received."""
    created_at: float
    ended_at: float
    details: dict = field(default_factory=dict)
    """More fields of the session object: a call's `call_sid` and `stream_sid`, a multichannel
    session's `channels`."""
    status: str = "completed"
    """How it ended: `completed`, or `failed` (then `error` says why)."""
    error: dict | None = None
    """A failed session's error object, in OpenAI's shape (`message`, `type`, `param`, `code`)."""


@dataclass(frozen=True)
class BalanceHold:
    """The answer to a balance hold: granted (with an `id` to release it by) or refused."""

    id: str | None
    """None: refused, the balance cannot cover the seconds asked for."""
    remaining: float
    """Audio seconds the key had left before this hold (less usage and the other live holds)."""

    @property
    def granted(self) -> bool:
        return self.id is not None


def new_hold_id() -> str:
    return f"hold-{secrets.token_hex(12)}"
