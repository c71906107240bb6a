"""GET /v1/providers: the transcription backends, their attributes, live figures and health."""

from __future__ import annotations

from aiohttp import web

from stream_server.routing.backends import AnyBackend
from stream_server.transports.appkeys import ROUTER

routes = web.RouteTableDef()

def provider_object(backend: AnyBackend, default: bool) -> dict:
    figures = backend.figures()
    spec = backend.spec
    body = {
        "id": backend.name,
        "object": "provider",
        "type": "local" if figures.local else "remote",
        "default": default,
        "model": backend.model_name,
        "regions": list(figures.regions),
        "quantized": figures.quantized,
        "price_per_minute": spec.price_per_minute,
        "seconds_per_audio_second": round(figures.seconds_per_audio_second, 4),
        "load": round(figures.load, 3),
        "health": backend.health(),
    }
    if figures.local:
        body |= {"device": spec.device, "compute_type": backend.compute_type}
    else:
        body["base_url"] = spec.base_url  # never the api_key
    return body

@routes.get("/v1/providers")
async def list_providers(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    default = next(b.name for b in router.backends if b.local)
    data = [provider_object(b, b.name == default) for b in router.backends]
    return web.json_response({"object": "list", "data": data})
