"""What a benchmark's `--json PATH` writes: its measured runs, and how, when and where it ran.

One file per invocation:

    {"kind": "stream" | "load", "command": "python scripts/bench_load.py --streams 1 2",
     "utc": "2026-12-01T18:40:00Z", "git_commit": "fb9c75a...", "cores": 2,
     "load_average": [0.4, 0.3, 0.2], "settings": {...}, "runs": [{...}, ...]}

`scripts/plot_benchmarks.py` reads these. A measure with no value (NaN) is written as null, so
that the file is standard JSON; raw per-word delays are rounded to DELAY_DECIMALS.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DELAY_DECIMALS = 3
"""Raw delays in milliseconds: finer than any latency measured, and the files stay small."""


def git_commit() -> str:
    """HEAD, with `+dirty` when the tree has uncommitted changes; `unknown` outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def run_context() -> dict:
    """The command line, the time and the machine, taken when the run starts."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return {
        "command": shlex.join(["python", str(shown), *sys.argv[1:]]),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _finite(value):
    """`value` with every NaN or infinity replaced by None, through lists and dicts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def delays(values: list[float]) -> list[float]:
    """Raw per-word delays as written."""
    return [round(v, DELAY_DECIMALS) for v in values]


def write_results(path: Path, kind: str, context: dict, settings: dict, runs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"kind": kind, **context, "settings": settings, "runs": runs}
    path.write_text(json.dumps(_finite(record)) + "\n")


def _nan(value):
    """The inverse of `_finite`: each null a NaN again, so that measures compare and format as floats."""
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return value


def read_results(path: Path) -> dict:
    """A file `write_results` wrote, its runs' missing measures as NaN."""
    record = json.loads(path.read_text())
    return record | {"runs": _nan(record["runs"])}
