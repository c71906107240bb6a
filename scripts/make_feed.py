"""Build a test feed like `en_dev_feed_16k.wav` from the same clips in another order, so that a
policy tuned on the dev feed can be checked on prompts and pauses it was not tuned on.

    python scripts/make_feed.py --order reversed --gap 0.8 --out /tmp/feed_rev.wav
    python scripts/make_feed.py --order shuffled --seed 7 --out /tmp/feed_shuf.wav

Writes the WAV (16 kHz mono) and, beside it, the reference transcript (`.txt`) from the audio
folder's manifest, the layout `simulate_stream.py` and `bench_stream.py` expect. Gaps are
`--gap` seconds of silence, or, shuffled, drawn between 0.5 and 2.5 s.
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
from scripts.feed import clip_texts, feed_clips  # noqa: E402

AUDIO = REPO.parent / "shared" / "audio"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", choices=("reversed", "shuffled"), default="reversed")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds of silence between clips (reversed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    texts = clip_texts(AUDIO)
    clips = [clip["source"] for clip in feed_clips(AUDIO / "en_dev_feed_16k.wav")]
    rng = random.Random(args.seed)
    if args.order == "reversed":
        clips.reverse()
        gaps = [args.gap] * len(clips)
    else:
        rng.shuffle(clips)
        gaps = [rng.uniform(0.5, 2.5) for _ in clips]

    parts = [np.zeros(SAMPLE_RATE // 2, np.float32)]
    for clip, gap in zip(clips, gaps):
        parts += [decode_file((AUDIO / clip).read_bytes()), np.zeros(int(gap * SAMPLE_RATE), np.float32)]
    audio = np.concatenate(parts)
    args.out.write_bytes(wav_bytes(audio))
    reference = " ".join(texts[clip] for clip in clips)
    args.out.with_suffix(".txt").write_text(reference + "\n")
    print(f"{args.out}: {len(audio) / SAMPLE_RATE:.1f} s, {len(clips)} clips")


if __name__ == "__main__":
    main()
