"""The live-captions page in real headless Chromium: its fake microphone plays the JFK clip
(looped), the page streams it over the WebSocket, captions appear, and a second page in viewer
mode (/?session=ID) shows the same session over SSE."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import audio_path, serve_in_thread
from tests.web.cdp import Browser, find_chromium

WORDS = ("fellow american", "country")
"""Words of the clip the captions must show (lower-cased; the live cut may drop a plural)."""
CAPTIONS_TIMEOUT_S = 45.0
CAPTIONS = "document.getElementById('captions').innerText.toLowerCase()"


def has_words(expression: str) -> str:
    return " && ".join(f"{expression}.includes({json.dumps(w)})" for w in WORDS)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed and could not be installed (needs root and apt-get: apt-get install -y chromium)")
    return path


async def test_the_page_captions_the_microphone_and_a_viewer_follows(chromium, settings, speech_model, tmp_path) -> None:
    with serve_in_thread(settings, speech_model) as url:
        browser = await Browser.launch(chromium, audio_path("en_jfk_16k.wav"))
        try:
            async with asyncio.timeout(90):
                speaker = await browser.open(f"{url}/")
                assert await speaker.evaluate("document.getElementById('start').textContent") == "Start"
                await speaker.evaluate("document.getElementById('start').click()", user_gesture=True)
                await speaker.wait_for(has_words(CAPTIONS), CAPTIONS_TIMEOUT_S)
                assert await speaker.evaluate("document.getElementById('state').dataset.state") == "live"
                session_id = await speaker.evaluate("document.body.dataset.session")
                link = await speaker.evaluate("document.getElementById('share-link').href")
                assert link == f"{url}/?session={session_id}"

                viewer = await browser.open(link)
                await viewer.wait_for(has_words(CAPTIONS), CAPTIONS_TIMEOUT_S)
                assert await viewer.evaluate("document.body.dataset.session") == session_id
                assert await viewer.evaluate("document.getElementById('start').hidden") is True

                # Stop: the last words are flushed, and every finished line reached the viewer too
                await speaker.evaluate("document.getElementById('start').click()", user_gesture=True)
                await speaker.wait_for("document.getElementById('state').textContent === 'Stopped'", CAPTIONS_TIMEOUT_S)
                await viewer.wait_for("document.getElementById('state').textContent === 'The session has ended'", CAPTIONS_TIMEOUT_S)
                lines = "[...document.querySelectorAll('.line')].map(e => e.innerText)"
                spoken = await speaker.evaluate(lines)
                assert spoken and all(line.strip() for line in spoken)
                assert await viewer.evaluate(lines) == spoken

                # Export: the .srt the page makes holds every finished line, numbered and timed
                await browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
                await speaker.evaluate("document.querySelector('[data-export=srt]').click()", user_gesture=True)
                srt = tmp_path / f"{session_id}.srt"
                while not srt.is_file():
                    await asyncio.sleep(0.1)
                cues = srt.read_text().strip().split("\n\n")
                texts = await speaker.evaluate("[...document.querySelectorAll('.line > span')].map(e => e.textContent)")
                assert [cue.split("\n", 2)[2] for cue in cues] == texts
                assert cues[0].startswith("1\n00:00:") and " --> " in cues[0]
        finally:
            await browser.close()
