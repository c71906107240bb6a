"""Compare decode-slot / thread splits for concurrent live window decodes.

    python scripts/bench_slots.py --audio ../shared/audio/en_dev_feed_16k.wav --concurrent 2 4

For each split (`SLOTSxTHREADS`, default 1x<cores> and <cores>x1), loads the model with
`cpu_threads=THREADS` and `num_workers=SLOTS`, then submits N window decodes at once (a live
window's options, service.window_options: what a live stream's partial costs) through a SLOTS-wide pool, and
reports the median over repetitions of the time until all N are done and of one decode's
latency. Short by design: a few windows of a few seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.decoder.whisper import SpeechModel, TranscribeOptions  # noqa: E402
from stream_server.models import resolve_model  # noqa: E402
from stream_server.service import window_options  # noqa: E402


def split(text: str) -> tuple[int, int]:
    slots, _, threads = text.partition("x")
    return int(slots), int(threads)


def run_split(
    model: SpeechModel, slots: int, windows: list, options: TranscribeOptions, concurrent: int, repeats: int
) -> tuple[float, float]:
    makespans, latencies = [], []
    with ThreadPoolExecutor(max_workers=slots) as pool:
        pool.submit(model.transcribe, windows[0], options).result()  # warm up
        for _ in range(repeats):
            started = time.monotonic()

            def decode(window):
                model.transcribe(window, options)
                return time.monotonic() - started

            futures = [pool.submit(decode, windows[i % len(windows)]) for i in range(concurrent)]
            done = [f.result() for f in futures]
            makespans.append(max(done))
            latencies.extend(done)
    return statistics.median(makespans), statistics.median(latencies)


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--window-s", type=float, default=4.0, help="seconds of audio per window decode")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[2, 4], help="decodes submitted at once")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--split", type=split, nargs="+", default=[(1, cores), (cores, 1)], help="SLOTSxTHREADS")
    args = parser.parse_args()

    audio = decode_file(args.audio.read_bytes())
    size = int(args.window_s * SAMPLE_RATE)
    starts = [int(s * SAMPLE_RATE) for s in (2, 14, 25, 70)]  # speech in the dev feed
    windows = [audio[s : s + size] for s in starts if s + size <= len(audio)]
    source = resolve_model(args.model, Path(tempfile.mkdtemp(prefix="bench-slots-")) / "models")
    print(f"model {args.model}, {args.window_s:g} s windows, {cores} cores, median of {args.repeats}")
    print("slots x threads | concurrent | all done (s) | one decode (s)")
    for slots, threads in args.split:
        model = SpeechModel(source, device="cpu", cpu_threads=threads, num_workers=slots)
        for n in args.concurrent:
            makespan, latency = run_split(model, slots, windows, window_options("en", None, seconds=args.window_s), n, args.repeats)
            print(f"{slots} x {threads} | {n} | {makespan:.2f} | {latency:.2f}")
        del model


if __name__ == "__main__":
    main()
