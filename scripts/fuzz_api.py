"""Fuzz every route of the API with schemathesis, generated from the server's own /openapi.json.

Starts `stream-server serve` (tiny.en) in a child process, unless `--url` names a running one;
for each operation draws up to `--cases` requests per generation mode (positive: fits the
document; negative: breaks it) with Hypothesis, sends each and checks the answer with
schemathesis' checks: no 5xx, a documented status, content type, headers and body (SSE
events too). Then checks the server is still healthy and still transcribes. Prints the
counts and every failure; exits 1 if there was any.

    .venv/bin/python scripts/fuzz_api.py [--cases 40] [--seed 1] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bench_stream import Server  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REQUEST_TIMEOUT_S = 60
"""A request that takes longer counts as a hang."""
CLIP = REPO.parent / "shared" / "audio" / "en_jfk_16k.wav"


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    per_operation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def fuzz(base_url: str, cases: int, random_seed: int = 1, modes: tuple[GenerationMode, ...] = tuple(GenerationMode)) -> FuzzReport:
    """Up to `cases` requests per operation and mode; every failure is recorded, none raised."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        before = report.cases
        for mode in modes:
            _run(operation, mode, base_url, cases, random_seed, report)
        report.per_operation[operation.label] = report.cases - before
    report.seconds = time.monotonic() - started
    return report


def _run(operation, mode: GenerationMode, base_url: str, cases: int, random_seed: int, report: FuzzReport) -> None:
    @seed(random_seed)
    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        report.cases += 1
        try:
            response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:  # a hang or a dropped connection
            report.failures.append(f"{operation.label} ({mode}): {type(exc).__name__}: {exc}\n{case.as_curl_command(base_url=base_url)}")
            return
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:  # its message names each failed check
            report.failures.append(f"{operation.label} ({mode}):\n{str(exc)[:3000]}")

    try:
        send()
    except Unsatisfiable:  # nothing to break (negative mode on an operation without inputs)
        pass


def still_healthy(base_url: str) -> list[str]:
    """What is wrong with the server after the run: it must answer /health and transcribe."""
    problems = []
    health = requests.get(f"{base_url}/health", timeout=30)
    if health.status_code != 200:
        problems.append(f"/health answered {health.status_code}")
    with CLIP.open("rb") as f:
        answer = requests.post(
            f"{base_url}/v1/audio/transcriptions", files={"file": f}, data={"model": "whisper-1"}, timeout=120
        )
    if answer.status_code != 200 or "country" not in answer.json().get("text", "").lower():
        problems.append(f"a real transcription answered {answer.status_code}: {answer.text[:200]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40, help="most cases per operation and generation mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as data_dir:
        if args.url is None:
            server = Server("tiny.en", Path(data_dir), [])
            asyncio.run(server.ready())
        url = args.url or server.url
        try:
            report = fuzz(url, args.cases, args.seed)
            problems = still_healthy(url)
        finally:
            if server is not None:
                server.stop()
    for failure in report.failures:
        print(failure, "\n", file=sys.stderr)
    print(f"operations: {len(report.per_operation)}, cases: {report.cases}, in {report.seconds:.0f} s")
    for label, count in report.per_operation.items():
        print(f"  {count:5d}  {label}")
    print("statuses:", dict(sorted(report.statuses.items())))
    print(f"5xx: {report.server_errors}, spec mismatches: {len(report.failures)}, after the run: {problems or 'healthy'}")
    return 1 if report.failures or report.server_errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
