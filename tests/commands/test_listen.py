"""`stream-server listen`: a running server's live captions, from a file or from stdin."""

from __future__ import annotations

import io
import sys

from stream_server import cli
from stream_server.audio.decode import decode_file
from stream_server.audio.wav import s16le
from stream_server.commands.captions import GREY, RESET, Captions
from tests.conftest import audio_path
from tests.speech import reference, wer


CLIP = "en_cheetah_test_en.wav"


def test_a_file_is_captioned(live_server, capsys):
    assert cli.main(["listen", str(audio_path(CLIP)), "--url", live_server, "--speed", "4"], env={}) == 0
    out = capsys.readouterr().out
    assert wer(reference(CLIP), out) < 0.25, out
    assert "\x1b" not in out and out.endswith("\n")  # not a terminal: plain lines, one an utterance


def test_raw_pcm_from_stdin(live_server, monkeypatch, capsys):
    pcm = s16le(decode_file(audio_path(CLIP).read_bytes()))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    assert cli.main(["listen", "-", "--url", live_server], env={}) == 0
    assert wer(reference(CLIP), capsys.readouterr().out) < 0.25


def test_a_refused_stream_says_why(live_server, capsys):
    argv = ["listen", str(audio_path(CLIP)), "--url", live_server, "--language", "de"]
    assert cli.main(argv, env={}) == 1
    assert "transcribes English only" in capsys.readouterr().err


def test_terminal_shows_committed_text_then_the_grey_tail():
    out = io.StringIO()
    captions = Captions(out, live=True)
    for event in (
        {"type": "session.created", "session_id": "sess_1"},
        {"type": "transcript.text.partial", "text": " ask not"},
        {"type": "transcript.text.delta", "delta": " Ask not"},
        {"type": "transcript.text.partial", "text": " what your"},
        {"type": "transcript.utterance.done", "text": " Ask not what your country"},
    ):
        captions.show(event)
    frames = out.getvalue().split("\r\x1b[K")
    assert frames[1:] == [
        f"{GREY}ask not{RESET}",
        f"Ask not{GREY}{RESET}",
        f"Ask not{GREY} what your{RESET}",
        "Ask not what your country\n",
    ]


def test_a_warning_leaves_the_captions_whole(capsys):
    out = io.StringIO()
    captions = Captions(out, live=False)
    captions.show({"type": "transcript.text.delta", "delta": " Today, only"})
    captions.note("warning: falling behind", sys.stderr)
    captions.show({"type": "transcript.text.delta", "delta": " platforms 1 and 3 are used."})
    captions.show({"type": "transcript.utterance.done", "text": " Today, only platforms 1 and 3 are used."})
    assert out.getvalue() == "Today, only platforms 1 and 3 are used.\n"
    assert capsys.readouterr().err == "warning: falling behind\n"
