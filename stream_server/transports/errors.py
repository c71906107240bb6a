"""Map domain errors (and aiohttp's own) to OpenAI's error JSON and an HTTP status."""

from __future__ import annotations

import logging

from aiohttp import web

from stream_server import errors
from stream_server.transports.error_texts import localize, localized_message

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ServiceError], int] = {
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.PayloadTooLarge: 413,
    errors.Overloaded: 429,
    errors.NotReady: 503,
    errors.InsufficientStorage: 507,
    errors.ProviderUnavailable: 502,
}


def status_of(error: errors.ServiceError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def service_error_body(error: errors.ServiceError, culture: str | None = None) -> dict:
    return error_body(localized_message(error, culture), error.error_type, error.param, error.code)


def error_response(error: errors.ServiceError, culture: str | None = None) -> web.Response:
    response = web.json_response(service_error_body(error, culture), status=status_of(error))
    if isinstance(error, errors.Overloaded):
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    culture = request.query.get("culture")
    try:
        return await handler(request)
    except errors.ServiceError as exc:
        return error_response(exc, culture)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large"}.get(exc.status)
        body = error_body(exc.reason if exc.text is None else exc.text, kind, None, code)
        return web.json_response(body, status=exc.status, headers=_allowed(exc))
    except ConnectionError:
        # the client went away mid-answer (a dropped SSE reader): nobody reads this; aiohttp
        # fails to send it and drops the connection quietly, where an exception is logged as an error
        return web.Response(status=499, reason="Client Closed Request")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        message = localize("internal_error", "internal server error", culture)
        body = error_body(message, "server_error", None, "internal_error")
        return web.json_response(body, status=500)


def _allowed(exc: web.HTTPException) -> dict[str, str]:
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
