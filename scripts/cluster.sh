#!/usr/bin/env bash
# PostgreSQL, Redis, two replicas and HAProxy on loopback (docs/DEPLOY.md): clients go to
# http://127.0.0.1:8000 (or --port N). Flags after `--` go to both replicas' `serve`, e.g.
#   bash scripts/cluster.sh -- --api-key k1 --key-balance k1=600
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON" -m scripts.cluster "$@"
