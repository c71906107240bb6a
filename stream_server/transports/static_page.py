"""The browser live-captions page: `/` and its files under `/web/`, from the repo's web/ folder
(or, for a non-editable install, the copy installed as data under `<prefix>/share`)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

PAGE_PREFIX = "/web/"


def web_dir() -> Path | None:
    """Where the page's files are: beside the package in a checkout, else the installed copy."""
    candidates = (
        Path(__file__).resolve().parents[2] / "web",
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
