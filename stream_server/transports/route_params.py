"""The routing fields of a transcription request (multipart fields or query parameters)."""

from __future__ import annotations

from stream_server.routing.router import BALANCED, RouteRequest
from stream_server.transports.forms import Form, parse_bool


def parse_route(form: Form) -> RouteRequest:
    """`preference` (balanced, speed, quality, cost), `allowed_providers` (repeated, as
    `allowed_providers[]`, or comma separated), `eu_native`, `allow_quantization` (default true)."""
    preference = (form.get("preference") or BALANCED).strip().lower()  # the router says if it is unknown
    names = [
        name.strip() for value in form.get_all("allowed_providers[]", "allowed_providers") for name in value.split(",")
    ]
    allowed = frozenset(name for name in names if name)
    quantization = form.get("allow_quantization")
    return RouteRequest(
        preference=preference,
        allowed_providers=allowed or None,
        eu_native=parse_bool(form.get("eu_native"), "eu_native"),
        allow_quantization=parse_bool(quantization, "allow_quantization") if quantization else True,
    )

