"""Build a test feed like `en_dev_feed_16k.wav` from the same clips in another order, so that a
policy tuned on the dev feed can be checked on prompts and pauses it was not tuned on.

    python scripts/make_feed.py --order reversed --gap 0.8 --out /tmp/feed_rev.wav
    python scripts/make_feed.py --order shuffled --seed 7 --out /tmp/feed_shuf.wav

Writes the WAV (16 kHz mono) and, beside it, the reference transcript (`.txt`) from the audio
folder's manifest and where each clip lies (`.segments.tsv`, as beside the dev feed): the layout
`simulate_stream.py`, `bench_stream.py` and `feed.rotations` expect. Gaps are `--gap` seconds of
silence, or, shuffled, drawn between 0.5 and 2.5 s.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.audio.wav import wav_bytes  # noqa: E402
from scripts.feed import AUDIO, clip_texts, feed_clips  # noqa: E402

LEAD_S = 0.5
"""Pause before the first clip."""


def lay_out(clips: list[np.ndarray], gaps: list[float]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips end to end on silence, each followed by its gap; and each clip's (start, end) sample."""
    parts, spans, at = [np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)], [], int(LEAD_S * SAMPLE_RATE)
    for clip, gap in zip(clips, gaps):
        spans.append((at, at + len(clip)))
        parts += [clip, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        at += len(clip) + len(parts[-1])
    return np.concatenate(parts), spans


def write_feed(out: Path, audio: np.ndarray, names: list[str], spans: list[tuple[int, int]]) -> None:
    """The WAV, its reference text and its segments, in the dev feed's formats."""
    out.write_bytes(wav_bytes(audio))
    texts = clip_texts(AUDIO)
    out.with_suffix(".txt").write_text(" ".join(texts[name] for name in names) + "\n")
    rows = [f"{round(start / SAMPLE_RATE, 3)}\t{round(end / SAMPLE_RATE, 3)}\t{name}" for name, (start, end) in zip(names, spans)]
    out.with_suffix(".segments.tsv").write_text("\n".join(["start\tend\tsource", *rows]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", choices=("reversed", "shuffled"), default="reversed")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds of silence between clips (reversed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    names = [clip["source"] for clip in feed_clips(AUDIO / "en_dev_feed_16k.wav")]
    rng = random.Random(args.seed)
    if args.order == "reversed":
        names.reverse()
        gaps = [args.gap] * len(names)
    else:
        rng.shuffle(names)
        gaps = [rng.uniform(0.5, 2.5) for _ in names]

    audio, spans = lay_out([decode_file((AUDIO / name).read_bytes()) for name in names], gaps)
    write_feed(args.out, audio, names, spans)
    print(f"{args.out}: {len(audio) / SAMPLE_RATE:.1f} s, {len(names)} clips")


if __name__ == "__main__":
    main()
