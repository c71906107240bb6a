"""`stream-server listen`: a running server's live captions, from a file or from stdin."""

from __future__ import annotations

import io
import sys

from stream_server import cli
from stream_server.audio.decode import decode_file
from stream_server.audio.wav import s16le
from stream_server.commands.captions import GREY, Captions
from tests.conftest import audio_path
from tests.speech import reference, wer


def test_a_file_is_captioned(live_server, capsys):
    clip = "en_jfk_16k.wav"
    assert cli.main(["listen", str(audio_path(clip)), "--url", live_server, "--speed", "4"], env={}) == 0
    out = capsys.readouterr().out
    assert wer(reference(clip), out) < 0.25, out
    assert "\x1b" not in out and len(out.splitlines()) >= 2  # not a terminal: one plain line an utterance


def test_raw_pcm_from_stdin(live_server, monkeypatch, capsys):
    clip = "en_cheetah_test_en.wav"
    pcm = s16le(decode_file(audio_path(clip).read_bytes()))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    assert cli.main(["listen", "-", "--url", live_server], env={}) == 0
    assert wer(reference(clip), capsys.readouterr().out) < 0.25


def test_a_refused_stream_says_why(live_server, capsys):
    argv = ["listen", str(audio_path("en_jfk_16k.wav")), "--url", live_server, "--language", "de"]
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
    assert frames[1:] == [f"{GREY}ask not\x1b[0m", f"Ask not{GREY}\x1b[0m", f"Ask not{GREY} what your\x1b[0m", "Ask not what your country\n"]
