"""Backends ("providers") as declared in the `--config` TOML file, or the one default backend.

A provider is local (a model this process loads) or remote (another OpenAI-compatible server).
Nothing here loads a model or opens a connection: these are the declarations only.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

LOCAL = "local"
REMOTE = "remote"
DEFAULT_PROVIDER = "local"
"""The name of the one backend a server without `--config` has."""
DEFAULT_REMOTE_TIMEOUT_S = 120.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = {"name", "model", "device", "compute_type", "base_url", "api_key", "regions", "quantized", "price_per_minute", "timeout_s"}


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    """LOCAL or REMOTE."""
    model: str | None = None
    """Local: the model name or path to load. Remote: the `model` sent upstream (None: whisper-1)."""
    device: str = "auto"
    compute_type: str = "auto"
    base_url: str | None = None
    """Remote: the OpenAI-style base URL, ending in /v1 (as the openai SDK takes it)."""
    api_key: str | None = None
    regions: tuple[str, ...] = ()
    """Tags such as "eu"; `eu_native` requests keep only backends tagged "eu"."""
    quantized: bool | None = None
    """Remote: as configured. Local: None, derived from the loaded model's compute type."""
    price_per_minute: float | None = None
    timeout_s: float = DEFAULT_REMOTE_TIMEOUT_S
    """Remote: the whole upstream request, upload included; past it the next backend is tried."""

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL


class ConfigError(ValueError):
    """The providers file is missing, not TOML, or declares something impossible."""


def default_provider(model: str, device: str, compute_type: str) -> ProviderSpec:
    return ProviderSpec(name=DEFAULT_PROVIDER, kind=LOCAL, model=model, device=device, compute_type=compute_type)


def is_quantized(compute_type: str) -> bool:
    """int8, int8_float16, int8_float32, int8_bfloat16 (and int16) store quantized weights."""
    return compute_type.startswith(("int8", "int16"))


def load_providers(path: Path) -> tuple[ProviderSpec, ...]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}") from None
    return parse_providers(data, str(path))


def parse_providers(data: dict, source: str = "the config") -> tuple[ProviderSpec, ...]:
    tables = data.get("providers")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{source} declares no providers: add [[providers]] tables")
    specs = tuple(_spec(table, f"{source}, provider {i + 1}") for i, table in enumerate(tables))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: provider names must be unique; repeated: {', '.join(duplicates)}")
    if not any(s.is_local for s in specs):
        raise ConfigError(
            f"{source}: at least one provider must be local (a `model` without `base_url`); "
            "the first local one serves live streams' admission and /health"
        )
    return specs


def _spec(table: object, where: str) -> ProviderSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: `name` is required: letters, digits, '_', '.', '-' (at most 64)")
    where = f"{where} ({name})"
    regions = table.get("regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, str) and r for r in regions):
        raise ConfigError(f"{where}: `regions` must be a list of strings")
    price = table.get("price_per_minute")
    if price is not None and (not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0 or not math.isfinite(price)):
        raise ConfigError(f"{where}: `price_per_minute` must be a number >= 0")
    common = {"name": name, "regions": tuple(r.lower() for r in regions), "price_per_minute": None if price is None else float(price)}
    base_url = table.get("base_url")
    if base_url is None:
        return _local(table, where, common)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: `base_url` must be an http(s) URL")
    if "device" in table or "compute_type" in table:
        raise ConfigError(f"{where}: `device` and `compute_type` are for local providers, not remote ones")
    api_key, model, quantized = table.get("api_key"), table.get("model"), table.get("quantized", False)
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(f"{where}: `api_key` must be a string")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"{where}: `model` must be a string")
    if not isinstance(quantized, bool):
        raise ConfigError(f"{where}: `quantized` must be true or false")
    timeout = table.get("timeout_s", DEFAULT_REMOTE_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"{where}: `timeout_s` must be a number > 0")
    return ProviderSpec(
        kind=REMOTE, base_url=base_url.rstrip("/"), api_key=api_key or None, model=model or None,
        quantized=quantized, timeout_s=float(timeout), **common,
    )


def _local(table: dict, where: str, common: dict) -> ProviderSpec:
    model = table.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}: a local provider needs `model` (or give `base_url` for a remote one)")
    for key in ("api_key", "quantized", "timeout_s"):
        if key in table:
            raise ConfigError(f"{where}: `{key}` is for remote providers; a local one derives quantized from compute_type")
    device, compute_type = table.get("device", "auto"), table.get("compute_type", "auto")
    if device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"{where}: `device` must be cpu, cuda or auto")
    if not isinstance(compute_type, str) or not compute_type:
        raise ConfigError(f"{where}: `compute_type` must be a string such as int8 or float32")
    return ProviderSpec(kind=LOCAL, model=model, device=device, compute_type=compute_type, **common)
