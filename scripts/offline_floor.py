"""A feed's offline floor: each clip transcribed alone, WER pooled over the feed's clips.

    python scripts/offline_floor.py ../shared/audio/en_dev_feed_16k.wav /tmp/feed_tune.wav

Cuts each clip's span (its `.segments.tsv` row, with whatever the feed holds under it) out of
the feed and transcribes it on its own with the server's file options (int8 on CPU, beam 5,
Silero VAD, Whisper's temperature fallback; `--no-vad` for faster-whisper's default of none),
then scores all clips against their manifest references at once: the WER the live engine is
compared against, the same model with each whole sentence in view and no pause to find.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.app import load_model  # noqa: E402
from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.decoder.whisper import SpeechModel, TranscribeOptions  # noqa: E402
from stream_server.settings import Settings  # noqa: E402
from scripts.bench_stream import pooled_wer, wer  # noqa: E402
from scripts.feed import AUDIO, clip_texts, feed_clips  # noqa: E402


def floor(model: SpeechModel, feed: Path, options: TranscribeOptions) -> float:
    """Print each clip's WER and return the feed's pooled WER."""
    audio, texts = decode_file(feed.read_bytes()), clip_texts(AUDIO)
    references, hypotheses = [], []
    print(f"{feed}:")
    for clip in feed_clips(feed):
        span = audio[round(float(clip["start"]) * SAMPLE_RATE) : round(float(clip["end"]) * SAMPLE_RATE)]
        result = model.transcribe(span, options)
        references.append(texts[clip["source"]])
        hypotheses.append("".join(s.text for s in result.segments).strip())
        print(f"  {wer(references[-1], hypotheses[-1]):6.1%}  {clip['source']}: {hypotheses[-1]}")
    return pooled_wer(references, hypotheses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("feeds", type=Path, nargs="+", help="WAVs with a .segments.tsv beside them")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--no-vad", action="store_true", help="no Silero VAD filter")
    args = parser.parse_args()

    settings = Settings(data_dir=Path("/tmp/stream-server-sim"), model=args.model, cpu_threads=os.cpu_count() or 1)
    model = load_model(settings)
    options = TranscribeOptions(vad_filter=not args.no_vad)
    pooled = {feed: floor(model, feed, options) for feed in args.feeds}
    for feed, value in pooled.items():
        print(f"{args.model} offline floor, clips alone, {'no VAD' if args.no_vad else 'VAD'}: {value:.1%}  {feed}")


if __name__ == "__main__":
    main()
