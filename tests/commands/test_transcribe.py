"""`stream-server transcribe`: files in every format, on the embedded model and on a server;
a file that is not audio fails alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stream_server import app, cli
from stream_server.formats import RESPONSE_FORMATS
from tests.conftest import audio_path
from tests.speech import reference, wer

CLIPS = ("en_jfk_16k.wav", "en_cheetah_test_en.wav")
CUE = re.compile(r"^(\d\d:\d\d:\d\d)[,.](\d{3}) --> (\d\d:\d\d:\d\d)[,.](\d{3})$")


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch, speech_model) -> None:
    """The command loads the session's tiny.en instead of loading it again."""
    monkeypatch.setattr(app, "load_model", lambda settings: speech_model)


@pytest.fixture
def corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return path


def check_outputs(out: Path, duration: dict[str, float]) -> None:
    """Each clip's files hold its words, in the shape of each format."""
    for clip, seconds in duration.items():
        stem = Path(clip).stem
        expected = reference(clip)
        text = (out / f"{stem}.txt").read_text()
        assert wer(expected, text) < 0.2, text
        assert json.loads((out / f"{stem}.json").read_text())["text"] == text.strip()
        verbose = json.loads((out / f"{stem}.verbose.json").read_text())
        assert verbose["text"] == text.strip() and verbose["duration"] == pytest.approx(seconds, abs=0.01)
        assert verbose["segments"] and verbose["words"][0]["word"]
        srt = (out / f"{stem}.srt").read_text().splitlines()
        assert srt[0] == "1" and CUE.match(srt[1]) and srt[1].count(",") == 2
        vtt = (out / f"{stem}.vtt").read_text().splitlines()
        assert vtt[0] == "WEBVTT" and CUE.match(vtt[2]) and vtt[2].count(".") == 2
        assert wer(expected, " ".join(line for line in srt if line and not line.isdigit() and "-->" not in line)) < 0.2


def test_every_format_written_and_only_the_corrupt_file_fails(embedded, corrupt, tmp_path, capsys):
    first, second = (audio_path(clip) for clip in CLIPS)
    out = tmp_path / "out"
    formats = [arg for f in RESPONSE_FORMATS for arg in ("--format", f)]
    # options between the files too; the corrupt file comes before a good one
    argv = ["transcribe", str(first), "-o", str(out), str(corrupt), *formats, "--word-timestamps", str(second)]
    assert cli.main(argv, env={}) == 1
    err = capsys.readouterr().err
    assert f"{corrupt}: could not decode" in err and "1 of 3 files failed" in err
    assert str(first) not in err and str(second) not in err  # errors name files as given; progress by name
    assert f"{first.name}: 11.0/11.0 s" in err  # plain progress lines: stderr is not a terminal
    check_outputs(out, {CLIPS[0]: 11.0, CLIPS[1]: 4.464})
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{Path(clip).stem}.{ext}" for clip in CLIPS for ext in ("txt", "json", "verbose.json", "srt", "vtt")
    )


def test_url_sends_the_files_to_a_server(live_server, corrupt, tmp_path, capsys):
    out = tmp_path / "out"
    formats = [arg for f in RESPONSE_FORMATS for arg in ("-f", f)]
    files = [str(corrupt), str(audio_path(CLIPS[1]))]
    argv = ["transcribe", "--url", live_server, *files, "-o", str(out), *formats, "--word-timestamps"]
    assert cli.main(argv, env={}) == 1
    err = capsys.readouterr().err
    assert f"{corrupt}: could not decode" in err and "1 of 2 files failed" in err
    assert f"{CLIPS[1]}: 1.0/1.0 file" in err  # the server answers a file whole
    check_outputs(out, {CLIPS[1]: 4.464})


def test_text_goes_to_stdout_by_default(embedded, capsys):
    assert cli.main(["transcribe", str(audio_path(CLIPS[1]))], env={}) == 0
    assert wer(reference(CLIPS[1]), capsys.readouterr().out) < 0.2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a.wav", "-f", "srt", "-f", "vtt"], "several --format need --output-dir"),
        (["a.wav", "--word-timestamps"], "--word-timestamps adds words to verbose_json"),
        (["a.wav", "x/a.flac", "-o", "out"], "would write the same files"),
    ],
)
def test_arguments_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["transcribe", *argv], env={})
    assert exit.value.code == 2 and message in capsys.readouterr().err
