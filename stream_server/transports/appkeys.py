"""Typed application and request state."""

from aiohttp import web

from stream_server.engine.admission import Admission
from stream_server.engine.sessions import SessionHub
from stream_server.engine.telemetry import LatencyStats
from stream_server.file_access import FileLibrary
from stream_server.file_jobs import MeteredTranscriber
from stream_server.live_state import RedisLiveState
from stream_server.principals import KeyRing, Principal
from stream_server.routing.backends import AnyBackend
from stream_server.routing.router import Router
from stream_server.service import TranscriptionService
from stream_server.settings import Settings
from stream_server.storage import Storage
from stream_server.usage import UsageMeter

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", TranscriptionService)
"""The default backend's service (the first local provider)."""
LOCAL_SERVICES = web.AppKey("local_services", dict[str, TranscriptionService])
"""Every local backend's service, by provider name."""
ROUTER = web.AppKey("router", Router[AnyBackend])
SESSIONS = web.AppKey("sessions", SessionHub)
KEYS = web.AppKey("keys", KeyRing)
STORAGE = web.AppKey("storage", Storage)
FILES = web.AppKey("files", FileLibrary)
METER = web.AppKey("meter", UsageMeter)
TRANSCRIBER = web.AppKey("transcriber", MeteredTranscriber)
ADMISSION = web.AppKey("admission", Admission)
LATENCY = web.AppKey("latency", LatencyStats)
LIVE_STATE = web.AppKey("live_state", RedisLiveState)
"""Present with --redis-url only: live sessions and stream places shared by replicas."""

PRINCIPAL = web.RequestKey("principal", Principal)
"""Who made the request; set by the auth middleware."""
