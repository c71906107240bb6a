"""Failover over the router's order, and a remote backend's health, on scripted backends."""

import numpy as np
import pytest

from stream_server.decoder.results import Segment, Transcription
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.errors import InvalidRequest, NotReady, ProviderUnavailable
from stream_server.routing import backends
from stream_server.routing.backends import RemoteBackend, transcribe_first_available
from stream_server.routing.providers import REMOTE, ProviderSpec

AUDIO = np.zeros(16000, np.float32)


def said(text: str) -> Transcription:
    return Transcription("en", 1.0, (Segment(0, 0, 0.0, 1.0, " " + text, (), 0.0, 0.0, 1.0, 0.0),))


class Scripted:
    def __init__(self, name: str, outcome: Exception | str):
        self.name, self.model_name, self.outcome, self.calls = name, f"{name}-model", outcome, 0

    async def transcribe(self, audio, data, filename, options):
        self.calls += 1
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return said(self.outcome)


async def run(*chain):
    return await transcribe_first_available(list(chain), AUDIO, b"", None, TranscribeOptions())


async def test_a_failing_backend_hands_over_to_the_next():
    down, loading, up = Scripted("down", ProviderUnavailable("timeout")), Scripted("loading", NotReady("loading")), Scripted("up", "hello")
    routed = await run(down, loading, up)
    assert (routed.provider, routed.model, routed.result.text, routed.failed) == ("up", "up-model", "hello", ("down", "loading"))


async def test_the_request_s_own_error_is_not_retried_elsewhere():
    bad, other = Scripted("bad", InvalidRequest("not audio")), Scripted("other", "hello")
    with pytest.raises(InvalidRequest):
        await run(bad, other)
    assert other.calls == 0


async def test_when_every_backend_fails_the_last_failure_is_raised():
    with pytest.raises(ProviderUnavailable, match="second"):
        await run(Scripted("a", ProviderUnavailable("first")), Scripted("b", ProviderUnavailable("second")))


async def test_a_remote_backend_s_health_follows_its_answers(monkeypatch):
    outcomes: list[Exception | Transcription] = [ProviderUnavailable("refused"), said("back")]

    async def upstream(session, spec, data, filename, options):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(backends, "transcribe_remote", upstream)
    remote = RemoteBackend(ProviderSpec(name="r", kind=REMOTE, base_url="http://127.0.0.1:9/v1", price_per_minute=0.01), session=None)
    assert remote.health()["status"] == "unknown" and remote.figures().healthy
    with pytest.raises(ProviderUnavailable):
        await remote.transcribe(AUDIO, b"", None, TranscribeOptions())
    assert remote.health()["status"] == "failing" and remote.health()["detail"] == "refused"
    assert not remote.figures().healthy and remote.in_flight == 0
    assert (await remote.transcribe(AUDIO, b"", None, TranscribeOptions())).text == "back"
    figures = remote.figures()
    assert figures.healthy and remote.health()["status"] == "ok" and remote.health()["detail"] is None
    assert figures.seconds_per_audio_second < 0.1  # measured, no longer the prior
