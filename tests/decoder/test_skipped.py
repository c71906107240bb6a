"""Speech that a whole-recording decode passes over is decoded again: on the held-out feed
Whisper jumps past the 11-word sentence of en_LDC93S1 between two others."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from stream_server.audio.decode import decode_file
from stream_server.decoder.skipped import skipped_speech
from stream_server.decoder.whisper import TranscribeOptions
from tests.speech import reference, wer

REPO = Path(__file__).resolve().parents[2]


def test_speech_beyond_the_slack_of_both_segments_was_skipped() -> None:
    speech = [(10.0, 20.0)]
    assert skipped_speech(speech, after=12.0, before=16.0) == (12.0, 16.0)
    assert skipped_speech(speech, after=12.0, before=14.5) is None  # 0.5 s past both slacks
    assert skipped_speech([(10.0, 12.0), (13.0, 15.0), (30.0, 31.0)], after=11.0, before=25.0) == (11.0, 15.0)


def test_silence_between_segments_was_not_skipped() -> None:
    assert skipped_speech([(0.0, 5.0), (20.0, 25.0)], after=5.0, before=20.0) is None
    assert skipped_speech([], after=0.0, before=100.0) is None


def test_the_slack_at_each_end_belongs_to_the_segments() -> None:
    """A segment's last word may lie up to a second past its end: decoding it again repeats it."""
    assert skipped_speech([(20.0, 26.0)], after=24.0, before=26.0) is None


@pytest.fixture(scope="module")
def heldout_feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("feed") / "feed_heldout.wav"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_feed.py"), "--preset", "heldout", "--out", str(out)], check=True, capture_output=True)
    with open(out.with_suffix(".segments.tsv")) as f:
        return out, list(csv.DictReader(f, delimiter="\t"))


def test_a_long_recording_keeps_the_sentence_whisper_jumps_past(speech_model, heldout_feed) -> None:
    path, clips = heldout_feed
    heard = []
    result = speech_model.transcribe(decode_file(path.read_bytes()), TranscribeOptions(), on_segment=heard.append)

    assert heard == list(result.segments)
    assert [s.id for s in result.segments] == list(range(1, len(result.segments) + 1))
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    skipped = next(c for c in clips if c["source"] == "en_LDC93S1.wav")
    start, end = float(skipped["start"]), float(skipped["end"])
    there = "".join(s.text for s in result.segments if start < (s.start + s.end) / 2 < end)
    assert wer(reference("en_LDC93S1.wav"), there) <= 0.3  # tiny.en: "your dog suit and greasy wash water all year"
    whole = " ".join(reference(c["source"]) for c in clips)
    assert wer(whole, result.text) <= 0.07  # 9.5 % while the sentence was lost; 6.2 % with it
