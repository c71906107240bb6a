"""Typed application state."""

from aiohttp import web

from stream_server.engine.sessions import SessionHub
from stream_server.service import TranscriptionService
from stream_server.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", TranscriptionService)
SESSIONS = web.AppKey("sessions", SessionHub)
