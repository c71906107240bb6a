"""scripts/plot_benchmarks.py on hand-made results: the PNGs, the summary table and BENCHMARKS.md's
marked sections (no model, no server)."""

import json
import math
import subprocess
import sys
from pathlib import Path

from scripts.bench_record import read_results, write_results

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def context(utc: str, command: str) -> dict:
    return {"command": command, "utc": utc, "git_commit": "0123456789abcdef", "cores": 2, "load_average": [0.3, 0.2, 0.1]}


def load_run(streams: int, packing: str, p50: float, p95: float, wer: float, refused: int = 0) -> dict:
    delays = [[p50 - 1, p50, p50 + 0.5, p95]] * (streams - refused)
    return {
        "streams": streams, "packing": packing, "refused": refused, "failed": 0,
        "partial_p50": p50 - 0.5, "partial_p95": p95 - 0.5, "commit_p50": p50, "commit_p95": p95,
        "worst_lag_at_end": 1.0, "lag_grows": p95 > 5, "wer_pooled": wer, "wer_median": wer, "wer_worst": wer,
        "cpu_cores": 1.0, "rss_peak_mb": 420.0, "capacity_estimate": 2.0, "realtime_factor": 0.5,
        "windows_per_packed_call": 0.0, "packed_share": 0.0, "commit_delays": delays, "first_seen_delays": delays,
    }  # fmt: skip


def write_fixture(folder: Path) -> list[Path]:
    settings = {"audio": "../shared/audio/en_dev_feed_16k.wav", "feed": "en_dev_feed_16k", "audio_s": 190.0, "duration": None}
    settings |= {"model": "tiny.en", "rotate": True, "stagger": 1.0, "server_args": [], "max_p95": 3.0}
    small = [load_run(1, "off", 1.5, 2.5, 0.047), load_run(2, "off", 2.0, 2.9, 0.050), load_run(1, "on", 1.4, 2.4, 0.047)]
    small += [load_run(2, "on", 2.5, 3.5, 0.051, refused=1)]
    large = [load_run(6, "off", 30.0, 60.0, 0.052), load_run(6, "on", 20.0, 40.0, 0.053)]
    files = [folder / "load_small.json", folder / "load_large.json", folder / "stream_dev.json", folder / "stream_old.json"]
    write_results(files[0], "load", context("2026-12-01T18:00:00Z", "python scripts/bench_load.py --streams 1 2"), settings, small)
    large_settings = settings | {"server_args": ["--no-capacity-estimate"]}
    write_results(files[1], "load", context("2026-12-01T18:30:00Z", "python scripts/bench_load.py --streams 6"), large_settings, large)
    stream = {
        "partial_p50": 3.5, "partial_p95": 5.8, "commit_p50": 4.23, "commit_p95": 7.36, "commit_max": 8.7,
        "final_p50": 2.94, "final_p95": 5.48, "finals": 29, "done_minus_end_p50": 2.4, "done_minus_end_p95": 5.0,
        "utterances": 29, "length_p50": 3.4, "length_max": 9.4, "lag_at_end": 4.5, "wer": 0.047, "wer_offline": 0.040,
        "cpu_s": None, "cpu_per_audio_s": float("nan"), "rss_mb": None, "error": None,
        "commit_delays": [1.0, 2.0, 4.23, 5.0, 7.36, 8.7], "first_seen_delays": [1.0, 2.0], "final_delays": [2.94],
    }  # fmt: skip
    stream_settings = {"audio": "../shared/audio/en_dev_feed_16k.wav", "feed": "en_dev_feed_16k", "model": "tiny.en", "protocol": "native"}
    write_results(files[2], "stream", context("2026-12-01T17:50:00Z", "python scripts/bench_stream.py --json x.json"), stream_settings, [stream])
    older = stream | {"commit_p50": 9.99}
    write_results(files[3], "stream", context("2026-11-30T10:00:00Z", "python scripts/bench_stream.py --old"), stream_settings, [older])
    files.append(folder / "load_tune.json")  # another feed: its own curve, never merged with the dev feed's
    tune = settings | {"feed": "feed_tune"}
    write_results(files[4], "load", context("2026-12-01T19:00:00Z", "python scripts/bench_load.py --audio tune"), tune, [load_run(4, "on", 9.0, 19.0, 0.054)])
    return files


def test_results_are_standard_json_and_read_back_with_nan(tmp_path):
    (path,) = write_fixture(tmp_path)[2:3]
    assert "NaN" not in path.read_text()
    assert json.loads(path.read_text())["runs"][0]["cpu_per_audio_s"] is None
    assert math.isnan(read_results(path)["runs"][0]["cpu_per_audio_s"])


def test_plots_summary_and_marked_sections(tmp_path):
    files = write_fixture(tmp_path)
    out = tmp_path / "docs" / "benchmarks"
    benchmarks = tmp_path / "BENCHMARKS.md"
    before = "# Benchmarks\n\n## Summary\n<!-- summary:start -->\nold table\n<!-- summary:end -->\n\n"
    after = "\n\n## Lab notes\n\nkept as it was\n"
    benchmarks.write_text(before + "<!-- plots:start -->\nold plots\n<!-- plots:end -->" + after)
    command = [sys.executable, "scripts/plot_benchmarks.py", *map(str, files), "--out", str(out), "--benchmarks", str(benchmarks)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=120)

    for name in ("commit_latency.png", "wer.png", "latency_distribution.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    table = (out / "summary.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    one = rows["1 stream, en_dev_feed_16k, native: commit p50 / p95 / max"]
    assert "4.23 / 7.36 / 8.70 s" in one  # the latest run of that feed, not the older one
    assert "`python scripts/bench_stream.py --json x.json`" in one and "2026-12-01 17:50" in one and "0123456" in one
    assert "4.7% (4.0%)" in rows["1 stream, en_dev_feed_16k, native: WER streaming (offline)"]
    assert not any("CPU" in figure for figure in rows)  # a run against --url measures no server CPU
    off = "N streams, en_dev_feed_16k rotated per stream, tiny.en, packing off"
    assert "1: 1.50 / 2.50 · 2: 2.00 / 2.90 · 6: 30.00 / 60.00" in rows[f"{off}: commit p50 / p95 (s) at N"]
    latency_row = rows[f"{off}: commit p50 / p95 (s) at N"]
    assert "--streams 1 2`<br>`" in latency_row and "--streams 6`" in latency_row  # both files' commands
    assert "1: 4.7% · 2: 5.0% · 6: 5.2%" in rows[f"{off}: WER pooled at N"]
    assert "| 4: 9.00 / 19.00 |" in rows["N streams, feed_tune rotated per stream, tiny.en, packing on: commit p50 / p95 (s) at N"]
    on = "N streams, en_dev_feed_16k rotated per stream, tiny.en, packing on"
    assert f"| {off}: largest N with commit p95 < 3 s, no growing lag | 2 |" in table
    assert f"| {on}: largest N with commit p95 < 3 s, no growing lag | 1 |" in table  # 2 had a refusal

    text = benchmarks.read_text()
    assert text.startswith(before.split("old table")[0]) and text.endswith(after)
    assert "old table" not in text and "old plots" not in text
    assert table.strip() in text
    for name in ("commit_latency.png", "wer.png", "latency_distribution.png"):
        assert f"](docs/benchmarks/{name})" in text


def test_no_markers_leaves_the_markdown_alone(tmp_path):
    files = write_fixture(tmp_path)
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\nno markers here\n")
    command = [sys.executable, "scripts/plot_benchmarks.py", *map(str, files), "--out", str(tmp_path / "out"), "--benchmarks", str(benchmarks)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=120)
    assert benchmarks.read_text() == "# Benchmarks\n\nno markers here\n"
    assert (tmp_path / "out" / "summary.md").exists()
