"""Who is calling: API keys from the configuration, known only by their sha256 hashes."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ANONYMOUS_ID = "anonymous"
"""The one principal everyone is when no keys are configured."""


def key_id(key: str) -> str:
    """The id a key is stored and reported under: its sha256, hex. The key itself is never kept."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    is_admin: bool = False
    balance_seconds: float | None = None
    """Audio seconds this key may use in all; None is unlimited."""

    def may_access(self, owner_id: str) -> bool:
        return self.is_admin or owner_id == self.key_id


ANONYMOUS = Principal(ANONYMOUS_ID)


class KeyRing:
    """The configured keys, by hash. Empty means authentication is off."""

    def __init__(
        self,
        api_keys: Iterable[str] = (),
        admin_keys: Iterable[str] = (),
        balances: Mapping[str, float] | None = None,
    ):
        balances = {key_id(k): float(v) for k, v in (balances or {}).items()}
        admins = {key_id(k) for k in admin_keys}
        ids = {key_id(k) for k in api_keys} | admins
        self._principals = {i: Principal(i, i in admins, balances.get(i)) for i in ids}

    @property
    def enabled(self) -> bool:
        return bool(self._principals)

    def identify(self, key: str) -> Principal | None:
        """The principal a presented key stands for, or None for an unknown key. The hash is
        compared with every configured one in constant time, and all are always compared, so
        the time taken tells nothing of how much of a key was right."""
        presented = key_id(key).encode()
        found = None
        for known, principal in self._principals.items():
            if hmac.compare_digest(presented, known.encode()):
                found = principal
        return found
