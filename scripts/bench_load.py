"""Many live streams on one server: latency, lag, accuracy and server cost per stream count.

    python scripts/bench_load.py --streams 4 --audio ../shared/audio/en_dev_feed_16k.wav
    python scripts/bench_load.py --sweep --audio ../shared/audio/en_dev_feed_16k.wav
    python scripts/bench_load.py --streams 2 --duration 30          # a smoke run
    python scripts/bench_load.py --sweep --rotate --packing both    # packing off, then on

For each N, starts a fresh `stream-server serve` in a child process (bench_stream.Server) and
replays the file over the live SSE transport from N clients at real-time pace, started
`--stagger` seconds apart (bench_stream.replay). Reports over all streams: p50/p95 latency from a
word's end in the audio to its first appearance in a partial and to its commit; the worst
stream's lag (upload end to done) and whether its commit latency grew over the stream; WER of
each final transcript (median, worst); refused streams; server CPU (cores busy) and peak RSS;
the server's own capacity estimate from /metrics, and the run's real-time factor (live decode
seconds per audio second, from the /metrics counters).

`--sweep` tries N = 1, 2, 4, 6, 8, ... and reports the largest N whose p95 commit latency stays
under `--max-p95` seconds and whose lag does not grow. Sweeps run the server with
`--no-capacity-estimate` so that admission control does not cut the sweep short; the estimate
it would have enforced is printed beside each N to compare.

`--packing on|off|both` runs the server with `--pack-windows` or `--no-pack-windows` (both: the
whole run with packing off, then on); the table then gives, from /metrics, how many windows the
packed calls held. With `--rotate` stream i replays the feed rotated to start at its clip i
(scripts/feed.py): every stream hears the whole feed, so its WER compares with one stream's, but
concurrent streams say different things (packed windows hold different speech); "WER pooled" is
all streams' errors over all their reference words.

With `--duration S` only the first S seconds are replayed, and the reference is faster-whisper's
offline transcript of that excerpt (the reference text covers the whole file).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import REPO, Server, StreamResult, offline_text, percentile, replay, wer  # noqa: E402
from feed import Feed, rotations  # noqa: E402

from stream_server.audio import SAMPLE_RATE  # noqa: E402  (bench_stream put the repo on the path)
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.audio.wav import wav_bytes  # noqa: E402
from scripts.bench_record import delays, run_context, write_results  # noqa: E402

LAG_GROWTH_S = 1.0
"""Lag grows when a stream's median commit latency over its last quarter of words exceeds that
over its first quarter by more than this."""


@dataclass(frozen=True)
class LoadReport:
    streams: int
    packing: str
    refused: int
    failed: int
    partial_p50: float
    partial_p95: float
    commit_p50: float
    commit_p95: float
    worst_lag_at_end: float
    lag_grows: bool
    wer_pooled: float
    wer_median: float
    wer_worst: float
    cpu_cores: float
    """Server CPU seconds per wall second of the run."""
    rss_peak_mb: float
    capacity_estimate: float
    realtime_factor: float
    """Live decode seconds per live audio second over the whole run (the server's counters)."""
    windows_per_packed_call: float
    packed_share: float
    """Share of the live windows decoded in packed calls."""
    commit_delays: list[list[float]]
    """Per served stream: each committed word's commit latency, seconds (the raw data of the p50/p95)."""
    first_seen_delays: list[list[float]]
    """Per served stream: each committed word's first-seen latency, seconds."""

    def passes(self, max_p95: float) -> bool:
        return not self.refused and not self.failed and self.commit_p95 < max_p95 and not self.lag_grows

    def row(self) -> str:
        return (
            f"| {self.streams} | {self.packing} | {self.partial_p50:.2f} / {self.partial_p95:.2f} | {self.commit_p50:.2f} / {self.commit_p95:.2f} "
            f"| {self.worst_lag_at_end:.2f}{' (grows)' if self.lag_grows else ''} | {self.wer_pooled:.2%} | {self.wer_median:.1%} / {self.wer_worst:.1%} "
            f"| {self.refused} | {self.failed} | {self.cpu_cores:.2f} | {self.rss_peak_mb:.0f} "
            f"| {self.capacity_estimate:g} | {self.realtime_factor:.3f} | {self.packed_share:.0%} | {self.windows_per_packed_call:.1f} |"
        )


HEADER = (
    "| streams | packing | partial p50 / p95 (s) | commit p50 / p95 (s) | worst lag at end (s) | WER pooled | WER median / worst "
    "| refused | failed | server CPU (cores) | peak RSS (MB) | capacity estimate | RTF | windows in packed calls "
    "| windows per packed call |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def lag_grows(result: StreamResult) -> bool:
    quarter = len(result.committed) // 4
    if quarter < 3:
        return False
    early, late = result.committed[:quarter], result.committed[-quarter:]
    return statistics.median(late) - statistics.median(early) > LAG_GROWTH_S


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def scrape(url: str) -> dict[str, float]:
    """Unlabelled samples of /metrics (enough for the capacity estimate and the run's RTF)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            samples[name] = float(value)
    return samples


async def run_load(feeds: list[Feed], packing: str, args: argparse.Namespace, server_args: list[str]) -> LoadReport:
    n = len(feeds)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    server = Server(args.model, data_dir, [*server_args, "--pack-windows" if packing == "on" else "--no-pack-windows"])
    try:
        await server.ready()
        cpu_before, started = server.cpu_seconds(), time.monotonic()
        results = await asyncio.gather(
            *(replay(server.url, feed.audio, speed=1.0, start_delay=i * args.stagger) for i, feed in enumerate(feeds))
        )
        cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        rss = peak_rss_mb(server.process.pid)
        metrics = await scrape(server.url)
    finally:
        server.stop()
    refused = [r for r in results if r.error and r.error.startswith("HTTP 429")]
    failed = [r for r in results if r.error and not r.error.startswith("HTTP 429")]
    served = [(r, f) for r, f in zip(results, feeds) if not r.error]
    errors = [wer(f.reference, r.text) for r, f in served] or [float("nan")]
    words = [len(f.reference.split()) for _, f in served]
    served = [r for r, _ in served]
    first_seen = [x for r in served for x in r.first_seen]
    committed = [x for r in served for x in r.committed]
    for r in failed:
        print(f"  N={n}: a stream failed: {r.error}", file=sys.stderr)
    packed_windows = metrics.get("stream_server_packed_windows_total", 0.0)
    packed_calls = metrics.get("stream_server_packed_decodes_total", 0.0)
    calls = metrics.get("stream_server_decodes_total", 0.0)
    return LoadReport(
        streams=n,
        packing=packing,
        refused=len(refused),
        failed=len(failed),
        partial_p50=percentile(first_seen, 50),
        partial_p95=percentile(first_seen, 95),
        commit_p50=percentile(committed, 50),
        commit_p95=percentile(committed, 95),
        worst_lag_at_end=max((r.lag_at_end for r in served), default=float("nan")),
        lag_grows=any(lag_grows(r) for r in served),
        wer_pooled=sum(e * w for e, w in zip(errors, words)) / max(1, sum(words)),
        wer_median=statistics.median(errors),
        wer_worst=max(errors),
        cpu_cores=cpu,
        rss_peak_mb=rss,
        capacity_estimate=metrics.get("stream_server_capacity_streams", float("nan")),
        realtime_factor=metrics.get("stream_server_live_decode_seconds_total", float("nan"))
        / max(metrics.get("stream_server_live_audio_seconds_total", 0.0), 1e-9),
        windows_per_packed_call=packed_windows / max(packed_calls, 1.0),
        packed_share=packed_windows / max(calls - packed_calls + packed_windows, 1.0),
        commit_delays=[delays(r.committed) for r in served],
        first_seen_delays=[delays(r.first_seen) for r in served],
    )


def sweep_counts(limit: int):
    n = 1
    while n <= limit:
        yield n
        n = 2 if n == 1 else n + 2


def stream_feeds(n: int, args: argparse.Namespace) -> list[Feed]:
    """What each of n streams replays, with its reference."""
    if args.rotate:
        feeds = rotations(args.audio, n)
    else:
        audio = decode_file(args.audio.read_bytes())
        feeds = [Feed(audio, (args.reference or args.audio.with_suffix(".txt")).read_text())] * n
    if args.duration:
        excerpts = {id(f.audio): f.audio[: int(args.duration * SAMPLE_RATE)] for f in feeds}
        references = {key: excerpt_reference(audio, args.model) for key, audio in excerpts.items()}
        feeds = [Feed(excerpts[id(f.audio)], references[id(f.audio)]) for f in feeds]
    return feeds


def excerpt_reference(audio: np.ndarray, model: str) -> str:
    """faster-whisper's offline transcript of the excerpt (beam 5, VAD), as the reference."""
    folder = Path(tempfile.mkdtemp(prefix="bench-load-ref-"))
    path = folder / "excerpt.wav"
    path.write_bytes(wav_bytes(audio))
    return offline_text(path, model, folder)


async def main() -> None:
    context = run_context()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--reference", type=Path, help="reference text (default: the audio's .txt beside it)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--streams", type=int, nargs="+", default=[1], help="stream counts to run (each on a fresh server)")
    parser.add_argument("--sweep", action="store_true", help="N = 1, 2, 4, 6, ... until one fails; report the largest that passes")
    parser.add_argument("--max-streams", type=int, default=32, help="where a sweep stops at the latest")
    parser.add_argument("--max-p95", type=float, default=3.0, help="a sweep's p95 commit latency bound, seconds")
    parser.add_argument("--duration", type=float, help="replay only the first S seconds")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between stream starts")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for stream-server serve")
    parser.add_argument("--packing", choices=["on", "off", "both"], default="on", help="the server's --pack-windows")
    parser.add_argument("--rotate", action="store_true", help="stream i replays the feed from its clip i (scripts/feed.py)")
    parser.add_argument("--json", type=Path, help="also write each row's measures and each word's delays here (scripts/bench_record.py)")
    args = parser.parse_args()

    server_args = [*args.server_arg, *(["--no-capacity-estimate"] if args.sweep else [])]
    seconds = args.duration or len(decode_file(args.audio.read_bytes())) / SAMPLE_RATE
    print(
        f"model {args.model}, {args.audio.name} ({seconds:.1f} s{' excerpt' if args.duration else ''}{', rotated' if args.rotate else ''}) "
        f"at real time, starts {args.stagger:g} s apart, {os.cpu_count()} cores, server flags: {' '.join(server_args) or '-'}"
    )
    print(HEADER)
    settings = {"audio": str(args.audio), "feed": args.audio.stem, "audio_s": seconds, "duration": args.duration, "model": args.model}
    settings |= {"rotate": args.rotate, "stagger": args.stagger, "server_args": server_args, "max_p95": args.max_p95}
    best, reports = {}, []
    for packing in ["off", "on"] if args.packing == "both" else [args.packing]:
        for n in sweep_counts(args.max_streams) if args.sweep else args.streams:
            report = await run_load(stream_feeds(n, args), packing, args, server_args)
            print(report.row(), flush=True)
            reports.append(report)
            if args.json:  # after each row, so that a long run cut short keeps what it measured
                write_results(args.json, "load", context, settings, [asdict(r) for r in reports])
            if args.sweep:
                if not report.passes(args.max_p95):
                    break
                best[packing] = n
    for packing, n in best.items():
        print(f"packing {packing}: largest N with p95 commit latency < {args.max_p95:g} s and no growing lag: {n}")


if __name__ == "__main__":
    asyncio.run(main())
