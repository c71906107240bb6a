"""The routing fields as a form or a query carries them."""

import pytest

from stream_server.errors import InvalidRequest
from stream_server.routing.router import RouteRequest
from stream_server.transports.forms import Form
from stream_server.transports.route_params import parse_route


def form(**fields: list[str]) -> Form:
    return Form({name.replace("_brackets", "[]"): values for name, values in fields.items()})


def test_nothing_given_is_balanced_over_everything():
    assert parse_route(form()) == RouteRequest(preference="balanced", allowed_providers=None, eu_native=False, allow_quantization=True)


@pytest.mark.parametrize(
    "fields",
    [
        {"allowed_providers_brackets": ["a", "b"]},
        {"allowed_providers": ["a", "b"]},
        {"allowed_providers": ["a, b"]},
        {"allowed_providers": ["a,,"], "allowed_providers_brackets": ["b"]},
    ],
)
def test_allowed_providers_in_each_spelling(fields):
    assert parse_route(form(**fields)).allowed_providers == frozenset({"a", "b"})


def test_flags_and_preference():
    route = parse_route(form(preference=["Quality"], eu_native=["yes"], allow_quantization=["false"]))
    assert (route.preference, route.eu_native, route.allow_quantization) == ("quality", True, False)
    assert parse_route(form(allowed_providers=[""])).allowed_providers is None


def test_a_flag_that_is_not_a_boolean_is_a_400():
    with pytest.raises(InvalidRequest) as caught:
        parse_route(form(allow_quantization=["sometimes"]))
    assert caught.value.param == "allow_quantization"
