"""The dev feed as several streams that say different things at once.

`en_dev_feed_16k.wav` is clips laid end to end (`.segments.tsv` beside it says where, and
`manifest.tsv` holds each clip's reference text). Rotation k starts at clip k, cut in the silence
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


@dataclass(frozen=True)
class Feed:
    audio: np.ndarray
    reference: str


def rotations(path: Path, count: int) -> list[Feed]:
    """`count` rotations of the feed at `path`: the i-th starts at clip i (modulo the clips)."""
    audio = decode_file(path.read_bytes())
    with open(path.with_suffix(".segments.tsv")) as f:
        clips = list(csv.DictReader(f, delimiter="\t"))
    with open(path.parent / "manifest.tsv") as f:
        texts = {row["file"]: row["reference_transcript"] for row in csv.DictReader(f, delimiter="\t")}
    cuts = [0] + [
        int((float(before["end"]) + float(after["start"])) / 2 * SAMPLE_RATE) for before, after in zip(clips, clips[1:])
    ]
    references = [texts[clip["source"]] for clip in clips]
    feeds = []
    for i in range(count):
        k = i % len(clips)
        feeds.append(Feed(np.concatenate([audio[cuts[k] :], audio[: cuts[k]]]), " ".join(references[k:] + references[:k])))
    return feeds
