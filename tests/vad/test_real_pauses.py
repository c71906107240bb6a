"""The segmenter on real recordings: a feed whose clips are separated by room tone (as a real
room sounds between sentences) must be cut at those pauses, and its tone-only stretch must open
no utterance. webrtcvad calls much room tone speech; Silero does not."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file
from stream_server.vad.segmenter import SpeechEnd, SpeechSegmenter, SpeechStart, VadOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tone_feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The tuning feed (scripts/make_feed.py --preset tune): its audio and its clips' spans."""
    out = tmp_path_factory.mktemp("feed") / "feed_tune.wav"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_feed.py"), "--preset", "tune", "--out", str(out)], check=True, capture_output=True)
    with open(out.with_suffix(".segments.tsv")) as f:
        spans = [(float(row["start"]), float(row["end"])) for row in csv.DictReader(f, delimiter="\t")]
    return decode_file(out.read_bytes()), spans


def utterances(audio: np.ndarray, options: VadOptions) -> list[tuple[float, float]]:
    segmenter = SpeechSegmenter(options)
    events = []
    for i in range(0, len(audio), SAMPLE_RATE // 10):
        events += segmenter.push(audio[i : i + SAMPLE_RATE // 10])
    events += segmenter.flush()
    starts = [e.time for e in events if isinstance(e, SpeechStart)]
    ends = [e.time for e in events if isinstance(e, SpeechEnd)]
    return list(zip(starts, ends))


def test_room_tone_between_clips_ends_utterances(tone_feed) -> None:
    audio, spans = tone_feed
    found = utterances(audio, VadOptions(engine="silero"))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        across = [u for u in found if u[0] < end - 0.1 and u[1] > start + 0.1]
        assert not across, f"an utterance runs across the pause {end:.2f}-{start:.2f} s: {across}"
    longest_gap = max(zip(spans, spans[1:]), key=lambda pair: pair[1][0] - pair[0][1])
    quiet_from, quiet_to = longest_gap[0][1], longest_gap[1][0]
    assert quiet_to - quiet_from > 7.5, "the feed has its tone-only stretch"
    inside = [u for u in found if u[0] < quiet_to - 0.6 and u[1] > quiet_from + 0.6]
    assert not inside, f"the tone-only stretch opened utterances: {inside}"
    assert max(e - s for s, e in found) <= 15.0
