"""The browser live-captions page: `/` and its files under `/web/`, from the repo's web/ folder
(or, for a non-editable install, the copy installed as data under `<prefix>/share`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from aiohttp import web

PAGE_PREFIX = "/web/"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""Sent with the page and its files, with the Content-Security-Policy below."""


_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def content_security_policy(host: str) -> str:
    """Only the page's own files, and connections to this server (its WebSocket included: not
    every browser counts ws:// of the same host as 'self'). A Host header that is not a plain
    host[:port] adds nothing."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def web_dir() -> Path | None:
    """Where the page's files are: beside the package in a checkout, else the installed copy."""
    candidates = (
        Path(__file__).resolve().parents[3] / "web",
        Path(sys.prefix) / "share" / "stream-server" / "web",
    )
    return next((path for path in candidates if (path / "index.html").is_file()), None)


def setup(app: web.Application) -> None:
    """Serve the page if its files are present; the API works without them."""
    folder = web_dir()
    if folder is None:
        return

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / "index.html", headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index)
    app.router.add_static(PAGE_PREFIX, folder)
    app.on_response_prepare.append(_secure_page)


async def _secure_page(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/" or request.path.startswith(PAGE_PREFIX):
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = content_security_policy(request.host)
