"""Twilio's request signature (X-Twilio-Signature): base64 HMAC-SHA1, keyed with the account's
auth token, of the URL Twilio requested followed by its POST parameters sorted by name (a
WebSocket upgrade is a GET: the URL alone)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from aiohttp import web

SIGNATURE_HEADER = "X-Twilio-Signature"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    payload = url + "".join(f"{name}{value}" for name, value in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_urls(request: web.Request) -> Iterable[str]:
    """The URLs Twilio may have signed for this upgrade: as it asked for it (`wss://`, the
    usual case behind a TLS proxy) or as this server sees it."""
    path = request.rel_url.path_qs
    seen = dict.fromkeys([f"wss://{request.host}{path}", f"ws://{request.host}{path}", str(request.url)])
    return seen.keys()


def signature_valid(request: web.Request, auth_token: str) -> bool:
    given = request.headers.get(SIGNATURE_HEADER, "")
    return any(hmac.compare_digest(given, twilio_signature(auth_token, url)) for url in signed_urls(request))
