"""The application factory: `create_app(settings)` wires the service to the transports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from aiohttp import web

from stream_server.decoder.whisper import SpeechModel
from stream_server.engine.admission import Admission, AdmissionOptions
from stream_server.engine.telemetry import LatencyStats
from stream_server.library import FileLibrary
from stream_server.metered import MeteredTranscriber
from stream_server.models import resolve_model
from stream_server.principals import KeyRing
from stream_server.service import TranscriptionService
from stream_server.settings import Settings
from stream_server.engine.sessions import SessionHub
from stream_server.storage import LocalStorage
from stream_server.transports import (
    files_api,
    live_api,
    metrics_api,
    openai_api,
    static_page,
    stored_sessions,
    transcribe_v2,
    usage_api,
    websocket_api,
)
from stream_server.transports.appkeys import (
    ADMISSION,
    FILES,
    KEYS,
    LATENCY,
    METER,
    SERVICE,
    SESSIONS,
    SETTINGS,
    STORAGE,
    TRANSCRIBER,
)
from stream_server.transports.auth import auth_middleware
from stream_server.transports.errors import error_middleware
from stream_server.usage import UsageMeter


def load_model(settings: Settings) -> SpeechModel:
    source = resolve_model(settings.model, settings.model_cache_dir)
    return SpeechModel(
        source,
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=settings.threads_per_slot,
        num_workers=settings.decode_slots,
    )


def create_app(settings: Settings, *, model: SpeechModel | None = None) -> web.Application:
    """Build the app. With `model` given (tests), it is used instead of loading one."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=settings.max_upload_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[KEYS] = KeyRing(settings.api_keys, settings.admin_keys, dict(settings.key_balances))
    app.add_routes(openai_api.routes)
    app.add_routes(live_api.routes)
    app.add_routes(files_api.routes)
    app.add_routes(usage_api.routes)
    app.add_routes(stored_sessions.routes)
    app.add_routes(transcribe_v2.routes)
    app.add_routes(metrics_api.routes)
    websocket_api.setup(app)
    static_page.setup(app)
    app.cleanup_ctx.append(partial(_service_context, model=model))
    app.cleanup_ctx.append(_storage_context)
    app.cleanup_ctx.append(_sessions_context)
    return app


def admission_options(settings: Settings) -> AdmissionOptions:
    return AdmissionOptions(
        slots=settings.decode_slots,
        target_utilisation=settings.target_utilisation,
        max_streams=settings.max_streams,
        max_streams_per_key=settings.max_streams_per_key,
        enforce_estimate=settings.estimate_capacity,
    )


async def _service_context(app: web.Application, model: SpeechModel | None) -> AsyncIterator[None]:
    """Own the executor and the model; /health says 503 until the model is in."""
    settings = app[SETTINGS]
    executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="decode")
    service = TranscriptionService(executor, settings.decode_slots)
    app[SERVICE] = service
    app[ADMISSION] = Admission(admission_options(settings), lambda: service.scheduler.live_decode_seconds)
    app[LATENCY] = LatencyStats()
    loading = None
    if model is not None:
        service.use(model)
    else:
        loading = asyncio.create_task(service.load(partial(load_model, settings)))
    yield
    if loading is not None:
        loading.cancel()
    executor.shutdown(wait=False, cancel_futures=True)


async def _storage_context(app: web.Application) -> AsyncIterator[None]:
    """Open the stored files and their metadata (after the service: uploads decode with it)."""
    storage = await LocalStorage.open(app[SETTINGS].storage_dir)
    app[STORAGE] = storage
    app[METER] = UsageMeter(storage)
    app[FILES] = FileLibrary(storage, app[SERVICE])
    app[TRANSCRIBER] = MeteredTranscriber(app[SERVICE], app[METER])
    yield
    await storage.close()


async def _sessions_context(app: web.Application) -> AsyncIterator[None]:
    """Live sessions; on shutdown each open one ends with an error event its clients can read."""
    app[SESSIONS] = SessionHub()
    yield
    app[SESSIONS].close_all("the server is shutting down")
