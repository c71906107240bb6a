"""Admission control: capacity from measured cost, hard and per-key caps, tickets released once."""

import pytest

from stream_server.engine.admission import Admission, AdmissionOptions, CostEstimate
from stream_server.errors import Overloaded, StreamRefused


class DecodeClock:
    """Stands in for the scheduler's running total of live decode seconds."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def test_capacity_starts_from_the_default_cost_and_follows_the_measured_one():
    clock = DecodeClock()
    options = AdmissionOptions(slots=2, target_utilisation=0.8, default_cost=0.4, sample_audio_s=10, smoothing=0.5)
    admission = Admission(options, clock)
    assert admission.capacity == admission.estimate == 4  # 2 slots * 0.8 / 0.4
    for _ in range(10):
        clock.seconds += 1.0
        admission.heard(10.0)  # 1 decode second per 10 audio seconds
    assert admission.cost.measured and admission.cost.value == pytest.approx(0.1, abs=1e-3)
    assert admission.estimate == 15  # 1.6 / 0.1003


def test_cost_is_a_moving_average_over_samples_of_enough_audio():
    cost = CostEstimate(default=0.5, smoothing=0.5, sample_audio_s=10)
    cost.observe(5.0, 100.0)
    assert not cost.measured and cost.value == 0.5  # not enough audio for a sample yet
    cost.observe(5.0, 2.0)  # sample 2 s / 10 s = 0.2
    assert cost.measured and cost.value == pytest.approx(0.35)
    cost.observe(10.0, 6.0)  # sample 4 s / 10 s = 0.4
    assert cost.value == pytest.approx(0.375)
    assert cost.audio_seconds == 20.0


def test_beyond_capacity_a_stream_is_refused_until_one_ends():
    admission = Admission(AdmissionOptions(slots=1, target_utilisation=1.0, default_cost=0.5), DecodeClock())
    tickets = [admission.admit(None), admission.admit(None)]
    with pytest.raises(StreamRefused) as refused:
        admission.admit(None)
    assert isinstance(refused.value, Overloaded) and refused.value.reason == "capacity"
    assert refused.value.retry_after > 0 and refused.value.code == "overloaded"
    tickets[0].release()
    tickets[0].release()  # a second release gives nothing back twice
    assert admission.active == 1
    admission.admit(None)
    assert admission.active == 2 and admission.admitted == 3 and admission.refused["capacity"] == 1


def test_the_hard_cap_applies_below_the_estimate():
    admission = Admission(AdmissionOptions(slots=4, default_cost=0.01, max_streams=1), DecodeClock())
    admission.admit(None)
    assert admission.capacity == 1
    with pytest.raises(StreamRefused) as refused:
        admission.admit(None)
    assert refused.value.reason == "max_streams"


def test_per_key_limit_counts_each_key_apart_and_spares_the_anonymous_caller():
    admission = Admission(AdmissionOptions(slots=8, default_cost=0.01, max_streams_per_key=1), DecodeClock())
    first = admission.admit("key-a")
    admission.admit("key-b")
    with pytest.raises(StreamRefused) as refused:
        admission.admit("key-a")
    assert refused.value.reason == "per_key" and refused.value.code == "too_many_streams"
    admission.admit(None)
    admission.admit(None)
    first.release()
    admission.admit("key-a")
    assert admission.refused == {"capacity": 0, "max_streams": 0, "per_key": 1}


def test_without_the_estimate_only_the_caps_refuse():
    options = AdmissionOptions(slots=1, default_cost=1.0, enforce_estimate=False)
    admission = Admission(options, DecodeClock())
    for _ in range(5):
        admission.admit(None)
    assert admission.estimate == 1 and admission.refused["capacity"] == 0


def test_past_the_estimate_one_stream_a_second_comes_in_while_decodes_find_a_slot():
    now, wait = [0.0], [0.0]
    options = AdmissionOptions(slots=1, target_utilisation=1.0, default_cost=1.0, admit_interval_s=1.0, max_decode_wait_s=0.5)
    admission = Admission(options, DecodeClock(), decode_wait=lambda: wait[0], clock=lambda: now[0])
    assert admission.estimate == 1
    admission.admit(None)
    admission.admit(None)  # past the estimate: the decodes wait for nothing
    with pytest.raises(StreamRefused):
        admission.admit(None)  # not within the same second: its wait is not seen yet
    now[0] += 1.0
    admission.admit(None)
    now[0] += 1.0
    wait[0] = 0.8  # the streams in now wait for a slot
    with pytest.raises(StreamRefused) as refused:
        admission.admit(None)
    assert refused.value.reason == "capacity" and admission.active == 3
    assert admission.capacity == admission.estimate == 1
