"""The model names a request may give: every transport checks `model` against these, and refuses
another with the one error, OpenAI's 404 `model_not_found`."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from stream_server.errors import NotFound

from stream_server.models import OPENAI_MODEL_ALIASES
from stream_server.transports.appkeys import SETTINGS


def served_model_names(request: web.Request) -> list[str]:
    """The default backend's model first, then every other provider's, then OpenAI's names.
    `model` is only checked against these: the routing fields choose the backend."""
    names = [s.model for s in request.app[SETTINGS].provider_specs if s.model]
    return list(dict.fromkeys([*names, *sorted(OPENAI_MODEL_ALIASES)]))


def not_served(model: str, served: Iterable[str], *, param: str = "model", also: str = "") -> NotFound:
    """The error for a model not served here (`also` names other accepted names first)."""
    return NotFound(
        f"model '{model}' is not served here; use {also}one of {', '.join(served)}", param=param, code="model_not_found"
    )
