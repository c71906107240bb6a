"""How long each model call of one live stream takes, partials and finals apart.

    python scripts/decode_times.py
    python scripts/decode_times.py --threads 2

One stream replays the feed through the engine on the virtual clock (simulate_load.py), so the
calls are the ones a live stream makes; each is timed for real, on `--threads` threads (default:
what one of the server's default decode slots gets). Prints p50 / p90 / p95 / max wall seconds
per kind and the slowest calls with their window length: where a stream's latency tail comes from.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from simulate_load import REPO, Call, Costs, simulate  # noqa: I001  (puts the repo on the path)

from scripts.bench_stream import percentile
from scripts.feed import rotations
from stream_server.app import load_model
from stream_server.audio import SAMPLE_RATE
from stream_server.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=Settings().threads_per_slot)
    parser.add_argument("--slowest", type=int, default=5, help="slowest calls listed per kind")
    args = parser.parse_args()
    model = load_model(Settings(data_dir=Path("/tmp/stream-server-sim"), model=args.model, cpu_threads=args.threads))
    (feed,) = rotations(args.audio, 1)
    log: list[Call] = []
    asyncio.run(simulate(model, [feed], 1, None, Costs(0.45, 0.6, 0.0), 0.0, log))
    print(f"{args.model}, {args.threads} thread(s), one stream over {args.audio.name}")
    for kind, final in (("partial", False), ("final", True)):
        calls = [(call.wall, len(call.args[0]) / SAMPLE_RATE) for call in log if call.final == final]
        walls = [wall for wall, _ in calls]
        print(
            f"{kind}: {len(calls)} calls, wall s p50 {percentile(walls, 50):.2f} p90 {percentile(walls, 90):.2f} "
            f"p95 {percentile(walls, 95):.2f} max {max(walls):.2f}, sum {sum(walls):.1f}"
        )
        for wall, seconds in sorted(calls, reverse=True)[: args.slowest]:
            print(f"    {wall:.2f} s for a {seconds:.1f} s window")


if __name__ == "__main__":
    main()
