#!/usr/bin/env bash
# BENCHMARKS.md's summary table and plots, in one command (docs/benchmarks/README.md):
#   scripts/benchmarks.sh               run the benchmark set (about 50 minutes), save its JSON, plot
#   scripts/benchmarks.sh --plots-only  plot and tabulate docs/benchmarks/results/ again, running nothing
# PYTHON is the interpreter (default .venv/bin/python). Run the set on a machine doing nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
results=docs/benchmarks/results
feeds=/tmp/feeds
case "${1:-}" in
  --plots-only) ;;
  "")
    mkdir -p "$results" "$feeds"
    rm -f "$results"/*.json  # the set is what this run measures (the last one is in git)
    "$python" scripts/make_feed.py --preset heldout --out "$feeds/feed_heldout.wav" >/dev/null
    "$python" scripts/bench_stream.py --audio ../shared/audio/en_dev_feed_16k.wav --json "$results/stream_dev.json"
    "$python" scripts/bench_stream.py --audio "$feeds/feed_heldout.wav" --json "$results/stream_heldout.json"
    "$python" scripts/bench_load.py --streams 1 2 4 --rotate --packing both --json "$results/load_1-4.json"
    "$python" scripts/bench_load.py --streams 6 8 --rotate --packing both --server-arg=--no-capacity-estimate --json "$results/load_6-8.json"
    ;;
  *)
    echo "usage: $0 [--plots-only]" >&2
    exit 2
    ;;
esac
exec "$python" scripts/plot_benchmarks.py
