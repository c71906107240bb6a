"""The live-captions page is served at / (open even when the API needs keys)."""

from __future__ import annotations

from dataclasses import replace

from stream_server.app import create_app
from stream_server.transports.rest.static_page import web_dir


def test_the_page_files_are_found_beside_the_package() -> None:
    folder = web_dir()
    assert folder is not None and {"index.html", "app.js", "worklet.js", "style.css"} <= {p.name for p in folder.iterdir()}


async def test_the_page_and_its_files_are_served_without_a_key(aiohttp_client, settings, speech_model) -> None:
    client = await aiohttp_client(create_app(replace(settings, api_keys=("k1",)), model=speech_model))
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert 'aria-live="polite"' in html and "/web/app.js" in html
    for name, needle in [("app.js", "/v1/audio/stream"), ("worklet.js", "registerProcessor"), ("style.css", ":focus-visible")]:
        response = await client.get(f"/web/{name}")
        assert response.status == 200 and needle in await response.text()
    assert (await client.get("/web/../pyproject.toml")).status in (403, 404)
