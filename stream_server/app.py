"""The application factory: `create_app(settings)` wires the service to the transports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import aiohttp
from aiohttp import web

from stream_server.decoder.whisper import SpeechModel
from stream_server.engine.admission import Admission, AdmissionOptions
from stream_server.engine.packing import PackOptions
from stream_server.engine.telemetry import LatencyStats
from stream_server.file_access import FileLibrary
from stream_server.file_jobs import MeteredTranscriber
from stream_server.live_state import RedisLiveState
from stream_server.models import resolve_model
from stream_server.principals import KeyRing
from stream_server.routing.backends import LocalBackend, RemoteBackend
from stream_server.routing.providers import ProviderSpec
from stream_server.routing.router import Router
from stream_server.service import TranscriptionService
from stream_server.settings import Settings
from stream_server.engine.sessions import SessionHub
from stream_server.storage import LocalStorage
from stream_server.transports.compat import deepgram_api, realtime_api, twilio_api
from stream_server.transports.live import live_run, sessions_api, websocket_api
from stream_server.transports.rest import (
    docs_api,
    files_api,
    metrics_api,
    openai_api,
    providers_api,
    static_page,
    transcribe_v2,
    usage_api,
)
from stream_server.transports.appkeys import (
    ADMISSION,
    FILES,
    KEYS,
    LATENCY,
    LIVE_STATE,
    LOCAL_SERVICES,
    METER,
    ROUTER,
    SERVICE,
    SESSIONS,
    SETTINGS,
    STORAGE,
    TRANSCRIBER,
)
from stream_server.transports.auth import auth_middleware
from stream_server.transports.cors import add_cors_headers, cors_middleware
from stream_server.transports.errors import error_middleware
from stream_server.transports.event_json import event_json
from stream_server.transports.limits import LIMITS, ClientLimits, limits_middleware
from stream_server.usage import UsageMeter


def load_model(settings: Settings, spec: ProviderSpec | None = None) -> SpeechModel:
    """The model of a local provider (by default the first one: `--model` without a config)."""
    spec = spec or _default_local(settings)
    source = resolve_model(str(spec.model), settings.model_cache_dir)
    return SpeechModel(
        source,
        device=spec.device,
        compute_type=spec.compute_type,
        cpu_threads=settings.threads_per_slot,
        num_workers=settings.decode_slots,
    )


def create_app(
    settings: Settings, *, model: SpeechModel | None = None, models: Mapping[str, SpeechModel] | None = None
) -> web.Application:
    """Build the app. Models given (tests) are used instead of loading them: `model` for the
    default backend, `models` by provider name."""
    given = dict(models or {})
    if model is not None:
        given.setdefault(_default_local(settings).name, model)
    app = web.Application(
        middlewares=[cors_middleware, error_middleware, auth_middleware, limits_middleware],
        client_max_size=settings.max_upload_bytes + 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[KEYS] = KeyRing(settings.api_keys, settings.admin_keys, dict(settings.key_balances))
    app[LIMITS] = ClientLimits.from_settings(settings)
    app.on_response_prepare.append(add_cors_headers)
    app.add_routes(openai_api.routes)
    app.add_routes(files_api.routes)
    app.add_routes(usage_api.routes)
    app.add_routes(sessions_api.routes)
    app.add_routes(transcribe_v2.routes)
    app.add_routes(metrics_api.routes)
    app.add_routes(providers_api.routes)
    app.add_routes(docs_api.routes)
    live_run.setup(app)  # before the sockets' own shutdown: runs drain first
    websocket_api.setup(app)
    app.add_routes(twilio_api.routes)
    app.add_routes(deepgram_api.routes)
    realtime_api.setup(app)
    static_page.setup(app)
    app.cleanup_ctx.append(partial(_service_context, models=given))
    app.cleanup_ctx.append(_providers_context)
    app.cleanup_ctx.append(_storage_context)
    app.cleanup_ctx.append(_sessions_context)
    if settings.redis_url:
        app.cleanup_ctx.append(_live_state_context)
    return app


def admission_options(settings: Settings) -> AdmissionOptions:
    return AdmissionOptions(
        slots=settings.decode_slots,
        target_utilisation=settings.target_utilisation,
        max_streams=settings.max_streams,
        max_streams_per_key=settings.max_streams_per_key,
        enforce_estimate=settings.estimate_capacity,
    )


def _default_local(settings: Settings) -> ProviderSpec:
    return next(s for s in settings.provider_specs if s.is_local)


async def _service_context(app: web.Application, models: Mapping[str, SpeechModel]) -> AsyncIterator[None]:
    """Own the executor and one service (model + decode scheduler) per local backend; the
    default backend's is SERVICE, and /health says 503 until its model is in.

    Live-stream admission counts the streams of every local backend against one measured cost:
    the backends share the same cores, so their utterance finals' decode seconds are summed."""
    settings = app[SETTINGS]
    specs = [s for s in settings.provider_specs if s.is_local]
    workers = max(2, os.cpu_count() or 1) * len(specs)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    packing = PackOptions() if settings.pack_windows else None
    services = {spec.name: TranscriptionService(executor, settings.decode_slots, packing) for spec in specs}
    app[LOCAL_SERVICES] = services
    app[SERVICE] = services[specs[0].name]
    app[ADMISSION] = Admission(
        admission_options(settings), lambda: sum(s.scheduler.final_decode_seconds for s in services.values())
    )
    app[LATENCY] = LatencyStats()
    loading = []
    for spec in specs:
        if spec.name in models:
            services[spec.name].use(models[spec.name])
        else:
            loading.append(asyncio.create_task(services[spec.name].load(partial(load_model, settings, spec))))
    yield
    for task in loading:
        task.cancel()
    executor.shutdown(wait=False, cancel_futures=True)


async def _providers_context(app: web.Application) -> AsyncIterator[None]:
    """The router over every backend, and the one HTTP client session remote backends share."""
    session = aiohttp.ClientSession()
    services = app[LOCAL_SERVICES]
    app[ROUTER] = Router(
        [
            LocalBackend(spec, services[spec.name]) if spec.is_local else RemoteBackend(spec, session)
            for spec in app[SETTINGS].provider_specs
        ]
    )
    yield
    await session.close()


async def _storage_context(app: web.Application) -> AsyncIterator[None]:
    """Open the stored files and their metadata (after the service: uploads decode with it)."""
    settings = app[SETTINGS]
    storage = await LocalStorage.open(
        settings.storage_dir, database_url=settings.database_url, blob_dir=settings.blob_dir
    )
    app[STORAGE] = storage
    app[METER] = UsageMeter(storage)
    app[FILES] = FileLibrary(storage, app[SERVICE])
    app[TRANSCRIBER] = MeteredTranscriber(app[SERVICE], app[METER], app[ROUTER])
    yield
    await storage.close()


async def _sessions_context(app: web.Application) -> AsyncIterator[None]:
    """Live sessions; on shutdown each open one ends with an error event its clients can read."""
    settings = app[SETTINGS]
    app[SESSIONS] = SessionHub(settings.max_finished_sessions, settings.max_session_events)
    yield
    app[SESSIONS].close_all("the server is shutting down")


async def _live_state_context(app: web.Application) -> AsyncIterator[None]:
    """With --redis-url: live sessions and stream places shared with the other replicas (after
    storage: a lost replica's sessions are stored from here; closed first, once every session
    has ended and its log is flushed)."""
    settings = app[SETTINGS]
    app[LIVE_STATE] = await RedisLiveState.open(
        settings.redis_url,
        app[STORAGE],
        lease_s=settings.live_lease_s,
        keep_s=settings.ended_log_keep_s,
        max_events=settings.max_session_events,
        failure_json=lambda event: event_json(event, len),
    )
    yield
    await app[LIVE_STATE].close()
