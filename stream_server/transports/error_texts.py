"""Error messages in the client's language (`?culture=es`). English is each error's own message;
this one table holds the other languages, keyed by error code."""

from __future__ import annotations

from stream_server.errors import ServiceError

TRANSLATIONS: dict[str, dict[str, str]] = {
    "es": {
        "invalid_api_key": "falta la clave de API o es incorrecta",
        "forbidden": "el archivo pertenece a otra clave de API",
        "file_not_found": "no existe el archivo indicado",
        "model_not_found": "el modelo indicado no se sirve aquí",
        "missing_field": "el campo '{param}' es obligatorio",
        "field_too_long": "el campo '{param}' admite como máximo {limit} caracteres",
        "invalid_type": "el campo '{param}' debe ser una cadena de texto",
        "invalid_json": "el cuerpo de la petición no es un objeto JSON válido",
        "invalid_content_type": "envíe el cuerpo como application/json",
        "invalid_audio": "el archivo no es un audio que se pueda decodificar",
        "insufficient_balance": "saldo insuficiente para transcribir este audio",
        "file_too_large": "el archivo supera el tamaño máximo permitido",
        "model_not_ready": "el modelo aún no está listo; vuelva a intentarlo en breve",
        "internal_error": "error interno del servidor",
    },
}


def language_of(culture: str | None) -> str:
    """`es`, `es-ES`, `es_MX` -> `es`; anything else (or nothing) -> `en`."""
    language = (culture or "en").replace("_", "-").split("-")[0].lower()
    return language if language in TRANSLATIONS else "en"


def localize(code: str | None, english: str, culture: str | None, fields: dict | None = None) -> str:
    table = TRANSLATIONS.get(language_of(culture), {})
    template = table.get(code or "")
    if template is None:
        return english
    try:
        return template.format(**(fields or {}))
    except (KeyError, IndexError):
        return english


def localized_message(error: ServiceError, culture: str | None) -> str:
    return localize(error.code, error.message, culture, vars(error))
