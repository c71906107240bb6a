"""A bounded schemathesis run over every operation of the served document (scripts/fuzz_api.py
runs the 1,000-case one): no 5xx, every answer as documented, the server healthy after."""

from __future__ import annotations

from scripts.fuzz_api import fuzz, still_healthy
from stream_server.transports.openapi import build_spec

CASES = 6
"""Per operation and generation mode: about 250 requests, most refused early as invalid."""


def test_generated_requests_on_every_route_get_documented_answers(live_server: str) -> None:
    report = fuzz(live_server, CASES)
    operations = {(m.upper(), p) for p, item in build_spec(keys_enabled=False)["paths"].items() for m in item}
    operations.discard(("GET", "/openapi.json"))  # schemathesis leaves out the document it was loaded from
    assert {tuple(label.split(" ", 1)) for label in report.per_operation} == operations
    assert not report.failures, "\n\n".join(report.failures)
    assert report.server_errors == 0 and report.cases > 100
    assert not still_healthy(live_server)
