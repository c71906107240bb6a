"""Replay a file through the live engine on a virtual clock, for tuning the stability policy.

    python scripts/simulate_stream.py --audio ../shared/audio/en_dev_feed_16k.wav --step 0.6

Real decodes, but time is simulated: audio 'arrives' at real-time pace on a virtual clock and
each decode costs a fixed virtual time (measured on an idle 2-core machine), so the outcome
(WER, commit latency) depends only on the policy, not on what else the machine is doing.
Live windows decode in one pass; with `--final-retries N` a final that fails (a repetition
loop) is retried up to N times hotter, by sampling: `--seed` fixes it. The finals' real decode
times are reported too (their tail is what the retries cost).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

import ctranslate2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.app import load_model  # noqa: E402
from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.service import LIVE_HOTTER_RETRIES, window_options  # noqa: E402
from stream_server.engine.stream import LiveTranscriber, StreamOptions  # noqa: E402
from stream_server.events import StreamDone, TextCommitted, UtteranceDone  # noqa: E402
from stream_server.settings import Settings  # noqa: E402
from stream_server.vad.frames import VAD_ENGINES  # noqa: E402
from stream_server.vad.segmenter import VadOptions  # noqa: E402
from scripts.bench_stream import percentile, wer  # noqa: E402

CHUNK_S = 0.1


async def simulate(
    model, audio: np.ndarray, options: StreamOptions, cost: tuple[float, float], beams: tuple[int, int], final_retries: int
):
    clock = {"now": 0.0, "decoding": 0.0}
    commits: list[float] = []
    finals: list[float] = []
    final_walls: list[float] = []
    text = {}

    async def decode(window, prompt, *, final, deadline):
        opts = window_options("en", prompt, seconds=len(window) / SAMPLE_RATE)
        opts = replace(opts, beam_size=beams[1], hotter_retries=final_retries) if final else replace(opts, beam_size=beams[0])
        started = time.perf_counter()
        result = model.transcribe(window, opts)
        if final:
            final_walls.append(time.perf_counter() - started)
        clock["now"] += cost[1] if final else cost[0]
        clock["decoding"] += cost[1] if final else cost[0]
        return result

    def publish(event):
        if isinstance(event, TextCommitted):
            commits.extend(clock["now"] - w.end for w in event.words)
        elif isinstance(event, UtteranceDone) and event.words:
            finals.append(clock["now"] - event.words[-1].end)
        elif isinstance(event, StreamDone):
            text["done"] = event.text

    transcriber = LiveTranscriber(decode, publish, options)
    fed = 0
    step = int(CHUNK_S * SAMPLE_RATE)
    while fed < len(audio):
        arrived = min(len(audio), max(fed + step, int(clock["now"] * SAMPLE_RATE)))
        transcriber.push(audio[fed:arrived])
        fed = arrived
        clock["now"] = max(clock["now"], fed / SAMPLE_RATE)
        for _ in range(3):
            await asyncio.sleep(0)  # let a due decode start (it runs to completion at once)
    await transcriber.finish()
    return text["done"], commits, finals, final_walls, clock["decoding"] / (len(audio) / SAMPLE_RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--step", type=float, default=StreamOptions.step_s)
    parser.add_argument("--min-first", type=float, default=StreamOptions.min_first_decode_s)
    parser.add_argument("--commit-margin", type=float, default=StreamOptions.commit_margin_s)
    parser.add_argument("--min-commit-probability", type=float, default=StreamOptions.min_commit_probability)
    parser.add_argument("--uncertain-margin", type=float, default=StreamOptions.uncertain_margin_s)
    parser.add_argument("--partial-cost", type=float, default=0.30, help="virtual seconds per partial decode")
    parser.add_argument("--final-cost", type=float, default=0.30, help="virtual seconds per final decode (0.45 for beam 5)")
    parser.add_argument("--partial-beam", type=int, default=1)
    parser.add_argument("--final-beam", type=int, default=1)
    parser.add_argument("--final-retries", type=int, default=LIVE_HOTTER_RETRIES, help="hotter retries of a final that fails")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the hotter retries' sampling")
    parser.add_argument("--vad", choices=VAD_ENGINES, default=VadOptions.engine)
    parser.add_argument("--pause-ms", type=int, default=VadOptions.pause_ms, help="silence that starts the final decode early (= hangover: never)")
    args = parser.parse_args()
    model = load_model(Settings(data_dir=Path("/tmp/stream-server-sim"), model=args.model))
    ctranslate2.set_random_seed(args.seed)
    audio = decode_file(args.audio.read_bytes())
    options = replace(
        StreamOptions(),
        step_s=args.step,
        min_first_decode_s=args.min_first,
        commit_margin_s=args.commit_margin,
        min_commit_probability=args.min_commit_probability,
        uncertain_margin_s=args.uncertain_margin,
        vad=VadOptions(engine=args.vad, pause_ms=args.pause_ms),
    )
    text, commits, finals, final_walls, load = asyncio.run(
        simulate(
            model, audio, options, (args.partial_cost, args.final_cost), (args.partial_beam, args.final_beam), args.final_retries
        )
    )
    reference = args.audio.with_suffix(".txt").read_text()
    print(
        f"{args.audio.name} step {args.step} margins {args.commit_margin}/{args.uncertain_margin} "
        f"p>={args.min_commit_probability} beams {args.partial_beam}/{args.final_beam} final retries {args.final_retries} vad {args.vad} pause {args.pause_ms} ms seed {args.seed}: WER {wer(reference, text):.1%}  "
        f"commit p50 {percentile(commits, 50):.2f} p95 {percentile(commits, 95):.2f}  "
        f"final p50 {percentile(finals, 50):.2f} p95 {percentile(finals, 95):.2f}  "
        f"decoding {load:.2f} s per audio s  "
        f"final decodes (real s) p50 {percentile(final_walls, 50):.2f} p95 {percentile(final_walls, 95):.2f} "
        f"max {max(final_walls):.2f} sum {sum(final_walls):.1f}"
    )


if __name__ == "__main__":
    main()
