"""Shared fixtures: the real bundled model, real audio, the app in-process or on a real port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from stream_server.app import create_app, load_model
from stream_server.decoder.whisper import SpeechModel
from scripts.services import Unavailable, postgres_server, redis_server
from stream_server.settings import Settings

AUDIO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "audio"


def audio_path(name: str) -> Path:
    path = AUDIO_DIR / name
    if not path.is_file():
        pytest.fail(f"test audio {path} is missing: the repo expects ../shared/audio beside it")
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def speech_model(model_cache: Path) -> SpeechModel:
    """tiny.en from its PyPI package, loaded once for the whole run."""
    return load_model(Settings(data_dir=model_cache))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0)


@pytest.fixture
async def client(aiohttp_client, settings: Settings, speech_model: SpeechModel):
    """An in-process test client on the real model."""
    return await aiohttp_client(create_app(settings, model=speech_model))


@contextmanager
def serve_in_thread(settings: Settings, model: SpeechModel | None = None) -> Iterator[str]:
    """Run the server on a real loopback port in its own thread (for sync clients such as the
    openai SDK); yields its base URL and stops it afterwards. With port 0 the kernel picks a
    free port at bind time, so no other process can take it in between."""
    settings = replace(settings, host="127.0.0.1")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings, model=model))
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, settings.host, settings.port).start())
        except BaseException as exc:  # hand it to the test instead of a silent dead thread
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="test-server", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("test server did not start")
    if failure:
        raise RuntimeError("test server did not start") from failure[0]
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, speech_model: SpeechModel) -> Iterator[str]:
    """One real server on loopback, no keys, shared by the sync-client tests."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("live"), port=0)
    with serve_in_thread(settings, speech_model) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for the whole run (scripts/services.py)."""
    with _available(), postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server on loopback for the whole run (scripts/services.py)."""
    with _available(), redis_server() as url:
        yield url


@contextmanager
def _available() -> Iterator[None]:
    """A service that cannot be installed here skips the tests that need it, saying why."""
    try:
        yield
    except Unavailable as exc:
        pytest.skip(str(exc))
