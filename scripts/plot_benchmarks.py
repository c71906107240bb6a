"""BENCHMARKS.md's summary table and plots, made from the benchmarks' `--json` results.

    python scripts/plot_benchmarks.py                        # docs/benchmarks/results/*.json
    python scripts/plot_benchmarks.py a.json b.json --out /tmp/plots --benchmarks /tmp/B.md

Reads files written by `bench_stream.py --json` and `bench_load.py --json`
(scripts/bench_record.py) and writes into `--out` (docs/benchmarks/):

- `commit_latency.png`: commit latency p50 and p95 against streams, packing off and on (bench_load);
- `wer.png`: pooled WER against streams, packing off and on (bench_load);
- `latency_distribution.png`: one stream's commit latencies as a CDF per feed, p50 and p95 marked
  (bench_stream);
- `summary.md`: the current figures, each with its command and date.

Where `--benchmarks` (BENCHMARKS.md) holds `<!-- summary:start -->` ... `<!-- summary:end -->` or
`<!-- plots:start -->` ... `<!-- plots:end -->`, what lies between is replaced by the table or the
images. Where several runs measured the same thing (one feed over one protocol; one stream count
with packing off or on), the latest counts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import LoadReport  # noqa: E402

from scripts.bench_record import REPO, read_results  # noqa: E402  (bench_load put the repo on the path)

OUT = REPO / "docs" / "benchmarks"
LOG_SCALE_RANGE = 10.0
"""Latency is plotted on a log scale when its largest value is this many times its smallest."""
LOAD_FIELDS = {f.name for f in fields(LoadReport)}


@dataclass(frozen=True)
class Measured:
    """One run (a table row) and the file that holds it."""

    run: dict
    source: dict

    def when(self) -> str:
        """Date, commit and the machine's load, for the summary's date column."""
        utc = self.source["utc"].replace("T", " ")[:16]
        commit, dirty, _ = self.source["git_commit"].partition("+dirty")
        return f"{utc}, {commit[:7]}{dirty}, load {self.source['load_average'][0]:g} on {self.source['cores']} cores"


def latest(sources: list[dict], kind: str, key) -> dict:
    """Each `key(run, source)`'s latest run among the files of `kind`."""
    chosen = {}
    for source in sorted((s for s in sources if s["kind"] == kind), key=lambda s: s["utc"]):
        for run in source["runs"]:
            chosen[key(run, source)] = Measured(run, source)
    return dict(sorted(chosen.items()))


def setup(source: dict) -> str:
    """What a load run replayed, for its curve's label: the feed, an excerpt of it, rotated, the model."""
    settings = source["settings"]
    excerpt = f" (first {settings['duration']:g} s)" if settings.get("duration") else ""
    return f"{settings['feed']}{excerpt}{' rotated per stream' if settings.get('rotate') else ''}, {settings['model']}"


def load_runs(sources: list[dict]) -> dict[tuple[str, str, int], Measured]:
    return latest(sources, "load", lambda run, source: (setup(source), run["packing"], run["streams"]))


def stream_runs(sources: list[dict]) -> dict[tuple[str, str], Measured]:
    return latest(sources, "stream", lambda run, source: (source["settings"]["feed"], source["settings"]["protocol"]))


def curves(runs: dict[tuple[str, str, int], Measured]) -> dict[tuple[str, str], list[Measured]]:
    """Runs per (setup, packing), each in stream-count order."""
    grouped: dict[tuple[str, str], list[Measured]] = {}
    for (name, packing, _), m in runs.items():
        grouped.setdefault((name, packing), []).append(m)
    return grouped


def curve_label(name: str, packing: str, runs: dict[tuple[str, str, int], Measured]) -> str:
    """`packing off`; the setup too where the runs hold more than one (the legend's title names a single one)."""
    return f"packing {packing}" if len({key[0] for key in runs}) == 1 else f"{name}, packing {packing}"


def plot_latency(runs: dict[tuple[str, str, int], Measured], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    values = []
    for i, ((name, packing), measured) in enumerate(curves(runs).items()):
        streams = [m.run["streams"] for m in measured]
        for q, style in (("p50", "o-"), ("p95", "s--")):
            latency = [m.run[f"commit_{q}"] for m in measured]
            values += latency
            axes.plot(streams, latency, style, color=f"C{i}", label=f"{curve_label(name, packing, runs)}, {q}")
        for m in measured:
            if m.run["refused"]:
                axes.annotate(f"{m.run['refused']} refused", (m.run["streams"], m.run["commit_p95"]), fontsize=8, xytext=(5, 5), textcoords="offset points")
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if finite and max(finite) > LOG_SCALE_RANGE * min(finite):
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set(ylabel="commit latency (s): word end to its commit", title="Commit latency against streams")
    finish(figure, axes, path, runs)


def plot_wer(runs: dict[tuple[str, str, int], Measured], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, ((name, packing), measured) in enumerate(curves(runs).items()):
        wer = [100 * m.run["wer_pooled"] for m in measured]
        axes.plot([m.run["streams"] for m in measured], wer, "o-", color=f"C{i}", label=curve_label(name, packing, runs))
    axes.set_ylim(bottom=0)
    axes.set(ylabel="WER pooled over all streams (%)", title="Accuracy against streams")
    finish(figure, axes, path, runs)


def plot_distribution(runs: dict[tuple[str, str], Measured], path: Path) -> None:
    """Each feed's CDF, its p50 (dotted) and p95 (dashed) as vertical lines, their values in the legend."""
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, ((feed, protocol), m) in enumerate(runs.items()):
        colour, p50, p95 = f"C{i}", m.run["commit_p50"], m.run["commit_p95"]
        delays = sorted(m.run["commit_delays"])
        label = f"{feed} over {protocol}: p50 {p50:.2f} s, p95 {p95:.2f} s"
        axes.step(delays, [(k + 1) / len(delays) for k in range(len(delays))], where="post", color=colour, label=label)
        axes.axvline(p50, linestyle=":", color=colour, linewidth=1)
        axes.axvline(p95, linestyle="--", color=colour, linewidth=1)
    axes.set(xlabel="commit latency (s): word end to its commit", ylabel="share of words", title="One stream's commit latency, each word (CDF)")
    axes.set_ylim(0, 1.02)
    finish(figure, axes, path)


def finish(figure, axes, path: Path, load: dict[tuple[str, str, int], Measured] | None = None) -> None:
    """Grid, legend and the file; a plot against streams gets a tick at each count and its setup as the legend's title."""
    axes.grid(True, alpha=0.3)
    title = None
    if load:
        axes.set_xticks(sorted({streams for *_, streams in load}))
        axes.set_xlabel("streams")
        setups = {name for name, *_ in load}
        title = setups.pop() if len(setups) == 1 else None
    axes.legend(fontsize=8, title=title, title_fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def seconds(*values: float) -> str:
    return " / ".join(f"{v:.2f}" for v in values) + " s"


def stream_rows(runs: dict[tuple[str, str], Measured]) -> list[tuple[str, str, list[Measured]]]:
    rows = []
    for (feed, protocol), m in runs.items():
        r, name = m.run, f"1 stream, {feed}, {protocol}"
        rows.append((f"{name}: commit p50 / p95 / max", seconds(r["commit_p50"], r["commit_p95"], r["commit_max"]), [m]))
        rows.append((f"{name}: utterance final p50 / p95", seconds(r["final_p50"], r["final_p95"]), [m]))
        rows.append((f"{name}: WER streaming (offline)", f"{r['wer']:.1%} ({r['wer_offline']:.1%})", [m]))
        if math.isfinite(r["cpu_per_audio_s"]):
            rows.append((f"{name}: server CPU per audio second", f"{r['cpu_per_audio_s']:.2f} CPU-s", [m]))
    return rows


def most_streams(measured: list[Measured]) -> str:
    """The largest stream count that passes with every smaller count measured passing, as a sweep finds it."""
    best = "none"
    for m in measured:
        if not LoadReport(**{k: v for k, v in m.run.items() if k in LOAD_FIELDS}).passes(m.source["settings"]["max_p95"]):
            break
        best = str(m.run["streams"])
    return best


def load_rows(runs: dict[tuple[str, str, int], Measured]) -> list[tuple[str, str, list[Measured]]]:
    rows = []
    for (setup_name, packing), measured in curves(runs).items():
        name = f"N streams, {setup_name}, packing {packing}"
        latency = " · ".join(f"{m.run['streams']}: {m.run['commit_p50']:.2f} / {m.run['commit_p95']:.2f}" for m in measured)
        wer = " · ".join(f"{m.run['streams']}: {m.run['wer_pooled']:.1%}" for m in measured)
        bound = measured[0].source["settings"]["max_p95"]
        rows.append((f"{name}: commit p50 / p95 (s) at N", latency, measured))
        rows.append((f"{name}: WER pooled at N", wer, measured))
        rows.append((f"{name}: largest N with commit p95 < {bound:g} s, no growing lag", most_streams(measured), measured))
    return rows


def summary(sources: list[dict]) -> str:
    lines = ["| figure | value | when (UTC), commit, load | command |", "| --- | --- | --- | --- |"]
    for figure, value, measured in stream_rows(stream_runs(sources)) + load_rows(load_runs(sources)):
        files = list({id(m.source): m for m in measured}.values())
        when = "<br>".join(dict.fromkeys(m.when() for m in files))
        commands = "<br>".join(dict.fromkeys(f"`{m.source['command']}`" for m in files))
        lines.append(f"| {figure} | {value} | {when} | {commands} |")
    lines += ["", "One run each. `scripts/benchmarks.sh` reruns the set and remakes this table and the plots (docs/benchmarks/README.md)."]
    return "\n".join(lines) + "\n"


def replace_between(text: str, name: str, content: str) -> str:
    """`text` with what lies between its `<!-- name:start -->` and `<!-- name:end -->` replaced by
    `content`; unchanged without both markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if j < 0:
        return text
    return f"{text[: i + len(start)]}\n\n{content.strip()}\n\n{text[j:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="*", help="result files (default: docs/benchmarks/results/*.json)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs and summary.md go")
    parser.add_argument("--benchmarks", type=Path, default=REPO / "BENCHMARKS.md", help="the Markdown whose marked sections are replaced")
    args = parser.parse_args()

    paths = args.results or sorted((OUT / "results").glob("*.json"))
    sources = [read_results(path) for path in paths]
    args.out.mkdir(parents=True, exist_ok=True)
    images = {}
    loads, streams = load_runs(sources), stream_runs(sources)
    if loads:
        plot_latency(loads, args.out / "commit_latency.png")
        plot_wer(loads, args.out / "wer.png")
        images |= {"commit_latency.png": "Commit latency p50 and p95 against streams, packing off and on", "wer.png": "Pooled WER against streams, packing off and on"}
    if streams:
        plot_distribution(streams, args.out / "latency_distribution.png")
        images["latency_distribution.png"] = "One stream's commit-latency distribution, p50 and p95 marked"
    table = summary(sources)
    (args.out / "summary.md").write_text(table)
    print(f"{len(paths)} result files: {len(streams)} one-stream runs, {len(loads)} load rows -> {args.out}: summary.md {' '.join(images)}")
    if args.benchmarks.exists():
        links = "\n\n".join(f"![{alt}]({Path(os.path.relpath(args.out / name, args.benchmarks.parent)).as_posix()})" for name, alt in images.items())
        text = args.benchmarks.read_text()
        updated = replace_between(replace_between(text, "summary", table), "plots", links)
        if updated != text:
            args.benchmarks.write_text(updated)
            print(f"updated {args.benchmarks}")


if __name__ == "__main__":
    main()
