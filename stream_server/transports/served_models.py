"""The model names a request may give: every transport checks `model` against these."""

from __future__ import annotations

from aiohttp import web

from stream_server.models import OPENAI_MODEL_ALIASES
from stream_server.transports.appkeys import SETTINGS


def served_model_names(request: web.Request) -> list[str]:
    """The default backend's model first, then every other provider's, then OpenAI's names.
    `model` is only checked against these: the routing fields choose the backend."""
    names = [s.model for s in request.app[SETTINGS].provider_specs if s.model]
    return list(dict.fromkeys([*names, *sorted(OPENAI_MODEL_ALIASES)]))
