"""The dev feed as several streams that say different things at once.

`en_dev_feed_16k.wav` is clips laid end to end (`.segments.tsv` beside it says where, and
the shared audio folder's `manifest.tsv` holds each clip's reference text; feeds built by
`make_feed.py` have the same layout). Rotation k starts at clip k, cut in the pause
before it, and wraps around: every rotation holds the whole feed, so each stream's WER compares
with a single stream's, while streams decoded side by side (and packed together) hold different
speech at any moment.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
"""The clips a feed's `.segments.tsv` names, with their manifest: feeds may be built elsewhere."""


@dataclass(frozen=True)
class Feed:
    audio: np.ndarray
    reference: str


def feed_clips(path: Path) -> list[dict[str, str]]:
    """The feed's clips in order: `start` and `end` in the feed (seconds) and `source` file."""
    with open(path.with_suffix(".segments.tsv")) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def clip_texts(folder: Path) -> dict[str, str]:
    """Reference transcript per audio file, from the folder's manifest."""
    with open(folder / "manifest.tsv") as f:
        return {row["file"]: row["reference_transcript"] for row in csv.DictReader(f, delimiter="\t")}


def rotations(path: Path, count: int) -> list[Feed]:
    """`count` rotations of the feed at `path`: the i-th starts at clip i (modulo the clips)."""
    audio = decode_file(path.read_bytes())
    clips_in_feed, texts = feed_clips(path), clip_texts(AUDIO)
    cuts = [0] + [
        int((float(before["end"]) + float(after["start"])) / 2 * SAMPLE_RATE)
        for before, after in zip(clips_in_feed, clips_in_feed[1:])
    ]
    references = [texts[clip["source"]] for clip in clips_in_feed]
    feeds = []
    for i in range(count):
        k = i % len(clips_in_feed)
        feeds.append(Feed(np.concatenate([audio[cuts[k] :], audio[: cuts[k]]]), " ".join(references[k:] + references[:k])))
    return feeds
