"""Check real answers against the served OpenAPI document with schemathesis' own checks (an
SSE answer's events too: each `data` against its `contentSchema`), and WebSocket messages
against the schema the document names for them."""

from __future__ import annotations

import json
from typing import Any

import requests
import schemathesis
from jsonschema import Draft202012Validator

from scripts.fuzz_api import CHECKS


class Contract:
    """The document a running server serves, and checks of its answers against it."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.spec = requests.get(f"{base_url}/openapi.json", timeout=30).json()
        self.schema = schemathesis.openapi.from_dict(self.spec)

    def validator(self, component: str) -> Draft202012Validator:
        root = {"$ref": f"#/components/schemas/{component}", "components": self.spec["components"]}
        return Draft202012Validator(root)

    def check(
        self, response: requests.Response, route: str, method: str | None = None, **path_parameters: str
    ) -> requests.Response:
        """Validate `response`, the answer to a request on `route` (a path template); `method`
        names the operation whose responses apply when the request's method has none (a 405)."""
        method = method or response.request.method
        operation = self.schema[route][method]
        case = operation.Case(path_parameters=path_parameters or None)
        case.validate_response(response, checks=CHECKS)
        return response

    def call(self, method: str, route: str, path_parameters: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        """Send a request to `route` and check its answer."""
        url = self.base_url + route.format(**(path_parameters or {}))
        response = requests.request(method, url, timeout=120, **kwargs)
        return self.check(response, route, **(path_parameters or {}))


def sse_events(body: str) -> list[dict]:
    """The JSON objects of an SSE body's `data:` lines, without the closing [DONE]."""
    payloads = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert payloads and payloads[-1] == "[DONE]", body[-300:]
    return [json.loads(p) for p in payloads[:-1]]
