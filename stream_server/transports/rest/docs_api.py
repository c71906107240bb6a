"""GET /openapi.json (the API contract, transports/openapi/) and GET /docs: the same document
as a plain page, with no scripts or outside assets, so it works on a server with no network."""

from __future__ import annotations

from html import escape

from aiohttp import web

from stream_server.transports.appkeys import KEYS
from stream_server.transports.openapi import build_spec

routes = web.RouteTableDef()

METHODS = ("get", "put", "post", "delete", "patch")


def app_spec(app: web.Application) -> dict:
    return build_spec(keys_enabled=app[KEYS].enabled)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(app_spec(request.app))


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_page(app_spec(request.app)), content_type="text/html")


def docs_page(spec: dict) -> str:
    info = spec["info"]
    sections = [
        _operation(method, route, item[method])
        for route, item in spec["paths"].items()
        for method in METHODS
        if method in item
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(info['title'])} API</title>"
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}td,th{padding:.1em .6em;"
        "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1><p>{escape(info['description'])}</p>"
        "<p>The machine-readable contract: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"
        + "".join(sections)
        + "</body></html>"
    )


def _operation(method: str, route: str, op: dict) -> str:
    head = f"<h2 id='{escape(op.get('operationId', ''))}'><code>{method.upper()} {escape(route)}</code></h2>"
    text = "".join(f"<p>{escape(op[k])}</p>" for k in ("summary", "description") if op.get(k))
    params = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td><td>{escape(p.get('description', ''))}</td></tr>"
        for p in op.get("parameters", [])
    )
    table = f"<table><tr><th>parameter</th><th>in</th><th></th></tr>{params}</table>" if params else ""
    body = op.get("requestBody", {}).get("content", {})
    bodies = f"<p>Body: {', '.join(f'<code>{escape(kind)}</code>' for kind in body)}</p>" if body else ""
    statuses = ", ".join(f"<code>{escape(status)}</code>" for status in op["responses"])
    return f"<section>{head}{text}{table}{bodies}<p>Answers: {statuses}</p></section>"
