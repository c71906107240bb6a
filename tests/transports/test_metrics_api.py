"""GET /metrics: Prometheus text that parses, counts a finished live stream, and needs a key
when keys are configured."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_server.app import create_app
from stream_server.audio import SAMPLE_RATE
from tests.live_helpers import RAW_S16LE, PacedUpload, of_type, pcm16k, read_sse, s16le

LIVE_URL = "/v1/audio/transcriptions?model=whisper-1&stream=true"


async def scrape(client, headers: dict[str, str] | None = None) -> dict[str, dict]:
    """{family: {sample name + labels: value}} as Prometheus' own parser reads it."""
    response = await client.get("/metrics", headers=headers or {})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(await response.text()):
        families[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return families


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    return families[family][(sample or family, tuple(sorted(labels.items())))]


async def scrape_when_idle(client, timeout: float = 30.0) -> dict[str, dict]:
    """The metrics once no decode runs: a partial abandoned at a pause (for the final that
    replaces it) finishes its model call on its thread after the stream may have ended."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        families = await scrape(client)
        if value(families, "stream_server_decode_slots_busy") == 0 or asyncio.get_running_loop().time() > deadline:
            return families
        await asyncio.sleep(0.1)


async def test_metrics_count_a_finished_stream(client):
    before = await scrape(client)
    assert value(before, "stream_server_live_streams") == 0
    assert value(before, "stream_server_realtime_factor_measured") == 0
    assert value(before, "stream_server_capacity_streams") == 4  # 2 slots * 0.85 / the default 0.35
    assert value(before, "stream_server_admission_limit_streams") == 4

    audio = pcm16k("en_jfk_16k.wav")
    upload = PacedUpload(s16le(audio), 2 * SAMPLE_RATE, speed=2.0)  # live: partials come, nothing goes whole
    response = await client.post(LIVE_URL, data=upload, headers={"Content-Type": RAW_S16LE})
    events = await read_sse(response)
    words = of_type(events, "transcript.text.done")[0]["text"].split()
    after = await scrape_when_idle(client)

    assert value(after, "stream_server_live_streams_admitted", "stream_server_live_streams_admitted_total") == 1
    assert value(after, "stream_server_live_streams") == 0
    for reason in ("capacity", "max_streams", "per_key"):
        assert value(after, "stream_server_live_streams_refused", "stream_server_live_streams_refused_total", reason=reason) == 0
    assert value(after, "stream_server_live_audio_seconds", "stream_server_live_audio_seconds_total") == pytest.approx(len(audio) / SAMPLE_RATE)
    assert value(after, "stream_server_decodes", "stream_server_decodes_total") >= 2
    assert value(after, "stream_server_packed_decodes", "stream_server_packed_decodes_total") == 0  # one stream: nothing to pack with
    assert value(after, "stream_server_packed_windows", "stream_server_packed_windows_total") == 0
    decode = value(after, "stream_server_decode_seconds", "stream_server_decode_seconds_total")
    live_decode = value(after, "stream_server_live_decode_seconds", "stream_server_live_decode_seconds_total")
    assert 0 < live_decode <= decode
    final_decode = value(after, "stream_server_final_decode_seconds", "stream_server_final_decode_seconds_total")
    assert 0 < final_decode < live_decode  # the clip's finals, not its partials
    assert value(after, "stream_server_realtime_factor_measured") == 1  # 11 s of audio: one sample
    commits = value(after, "stream_server_commit_latency_seconds", "stream_server_commit_latency_seconds_count")
    assert commits == len(words)  # one observation per committed word
    assert value(after, "stream_server_commit_latency_seconds", "stream_server_commit_latency_seconds_bucket", le="+Inf") == commits
    assert value(after, "stream_server_partial_latency_seconds", "stream_server_partial_latency_seconds_count") >= 1
    assert value(after, "stream_server_decode_queue_depth") == 0 and value(after, "stream_server_decode_slots_busy") == 0


async def test_metrics_need_a_key_when_keys_are_configured(aiohttp_client, settings, speech_model):
    client = await aiohttp_client(create_app(replace(settings, api_keys=("k1",)), model=speech_model))
    refused = await client.get("/metrics")
    assert refused.status == 401 and (await refused.json())["error"]["code"] == "invalid_api_key"
    families = await scrape(client, {"Authorization": "Bearer k1"})
    assert value(families, "stream_server_decode_slots") == 2


async def test_without_caps_or_estimate_the_admission_limit_is_infinite(aiohttp_client, settings, speech_model):
    client = await aiohttp_client(create_app(replace(settings, estimate_capacity=False), model=speech_model))
    families = await scrape(client)
    assert value(families, "stream_server_admission_limit_streams") == float("inf")
