"""The access log, with keys kept out of it: an `api_key` query parameter (how browsers and
Twilio send a key) is logged as `***`. Headers that carry keys (Authorization, a `bearer.`
WebSocket subprotocol) are never logged."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from stream_server.transports.auth import QUERY_KEY_PARAM

_KEY_IN_QUERY = re.compile(rf"([?&]{QUERY_KEY_PARAM}=)[^&#\s]*", re.IGNORECASE)


def redact(target: str) -> str:
    """A request target (or a Referer) with the value of any `api_key` parameter hidden."""
    return _KEY_IN_QUERY.sub(r"\1***", target)


class AccessLogger(AbstractAccessLogger):
    """One line per request: address, request line, status, body bytes, seconds, user agent."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        self.logger.info(
            '%s "%s %s %s" %d %d %.3fs "%s" "%s"',
            request.remote,
            request.method,
            redact(request.raw_path),
            version,
            response.status,
            response.body_length,
            time,
            redact(request.headers.get("Referer", "-")),
            request.headers.get("User-Agent", "-"),
        )
