"""The router on scripted backends: constraints filter, preferences order, health demotes."""

from dataclasses import dataclass, replace

import pytest

from stream_server.errors import InvalidRequest, NoEligibleProvider
from stream_server.routing.router import (
    Figures,
    RouteRequest,
    Router,
    model_size_rank,
    order_by_preference,
    precision_rank,
)


@dataclass
class Fake:
    state: Figures

    @property
    def name(self) -> str:
        return self.state.name

    def figures(self) -> Figures:
        return self.state


def figures(name, **changes) -> Figures:
    base = Figures(
        name=name, local=True, regions=(), quantized=False, model_size=1, precision=4,
        price_per_minute=None, seconds_per_audio_second=0.3, load=0.0, healthy=True,
    )
    return replace(base, **changes)


FAST = figures("fast", quantized=True, precision=1, seconds_per_audio_second=0.1, price_per_minute=0.002)
PRECISE = figures("precise", regions=("eu",), seconds_per_audio_second=0.4, price_per_minute=0.003)
REMOTE = figures("remote", local=False, quantized=True, precision=1, model_size=3, seconds_per_audio_second=0.5, price_per_minute=0.001)


def router(*states: Figures) -> Router[Fake]:
    return Router([Fake(s) for s in states or (FAST, PRECISE, REMOTE)])


def names(backends) -> list[str]:
    return [b.name for b in backends]


def test_each_constraint_keeps_only_what_it_allows():
    r = router()
    assert names(r.choose(RouteRequest(eu_native=True))) == ["precise"]
    assert names(r.choose(RouteRequest(allow_quantization=False))) == ["precise"]
    assert set(names(r.choose(RouteRequest(allowed_providers=frozenset({"fast", "remote"}))))) == {"fast", "remote"}
    assert names(r.choose(RouteRequest(preference="speed"), live=True)) == ["fast", "precise"]


@pytest.mark.parametrize(
    ("route", "live", "param"),
    [
        (RouteRequest(allowed_providers=frozenset({"fast"}), eu_native=True), False, "eu_native"),
        (RouteRequest(allowed_providers=frozenset({"fast", "remote"}), allow_quantization=False), False, "allow_quantization"),
        (RouteRequest(allowed_providers=frozenset({"remote"})), True, "stream"),
    ],
)
def test_the_constraint_that_empties_the_list_is_named(route, live, param):
    with pytest.raises(NoEligibleProvider) as caught:
        router().choose(route, live=live)
    assert (caught.value.param, caught.value.code) == (param, "no_eligible_provider")
    assert param in caught.value.message


def test_a_live_stream_that_could_only_go_remote_is_told_why():
    with pytest.raises(NoEligibleProvider, match="live streams run only on local providers.*remote"):
        router().choose(RouteRequest(allowed_providers=frozenset({"remote"})), live=True)


def test_unknown_provider_names_are_refused_not_ignored():
    with pytest.raises(InvalidRequest) as caught:
        router().choose(RouteRequest(allowed_providers=frozenset({"fast", "fsat"})))
    assert (caught.value.param, caught.value.code) == ("allowed_providers", "unknown_provider")
    assert "fsat" in caught.value.message and "fast, precise, remote" in caught.value.message


def test_preferences_order_the_backends():
    r = router()
    assert names(r.choose(RouteRequest(preference="speed"))) == ["fast", "precise", "remote"]
    assert names(r.choose(RouteRequest(preference="quality"))) == ["remote", "precise", "fast"]  # small > tiny
    assert names(r.choose(RouteRequest(preference="cost"))) == ["remote", "fast", "precise"]
    # balanced: rank sums speed+quality+cost: fast 0+2+1, precise 1+1+2, remote 2+0+0
    assert names(r.choose(RouteRequest())) == ["remote", "fast", "precise"]


def test_quality_prefers_unquantized_then_finer_precision_at_equal_size():
    int8 = figures("int8", quantized=True, precision=1)
    f16 = figures("f16", precision=3)
    f32 = figures("f32", precision=4)
    assert order_by_preference([int8, f16, f32], "quality") == ["f32", "f16", "int8"]


def test_speed_counts_the_queue_not_only_the_real_time_factor():
    idle = figures("idle", seconds_per_audio_second=0.3)
    busy = figures("busy", seconds_per_audio_second=0.1, load=3.0)  # 0.1 * (1 + 3) > 0.3
    assert order_by_preference([busy, idle], "speed") == ["idle", "busy"]


def test_unpriced_local_is_free_and_unpriced_remote_comes_after_priced():
    local = figures("own")
    remote = figures("mystery", local=False)
    priced = figures("priced", local=False, price_per_minute=0.01)
    assert order_by_preference([remote, priced, local], "cost") == ["own", "priced", "mystery"]


def test_unhealthy_backends_are_tried_last_whatever_the_preference():
    down = replace(REMOTE, healthy=False)
    assert names(router(FAST, PRECISE, down).choose(RouteRequest(preference="cost"))) == ["fast", "precise", "remote"]


def test_an_unknown_preference_is_a_400():
    with pytest.raises(InvalidRequest) as caught:
        router().choose(RouteRequest(preference="cheap"))
    assert caught.value.param == "preference"


@pytest.mark.parametrize(
    ("model", "rank"),
    [("tiny.en", 1), ("base", 2), ("Systran/faster-whisper-small.en", 3), ("large-v3", 5), ("whisper-1", 5), ("/models/custom", 0)],
)
def test_model_size_from_the_name(model, rank):
    assert model_size_rank(model) == rank


def test_precision_of_an_unknown_compute_type_follows_quantized():
    assert precision_rank(None, True) < precision_rank(None, False) < precision_rank("float32", False)
