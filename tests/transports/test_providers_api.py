"""Provider routing end to end: two local backends (tiny.en int8, tiny.en float32 tagged eu) and
a remote one that is a second server on loopback. Every answer says which backend made it."""

from __future__ import annotations

import json
import wave
from contextlib import ExitStack
from dataclasses import replace

import aiohttp
import pytest

from stream_server.app import create_app, load_model
from stream_server.decoder.whisper import SpeechModel
from stream_server.routing.providers import ProviderSpec, parse_providers
from stream_server.settings import Settings
from stream_server.transports.appkeys import LOCAL_SERVICES
from tests.conftest import audio_path, serve_in_thread

SHORT = "en_cheetah_test_en.wav"  # "Today only platforms one and three are used."
EXPECTED = "only platforms 1 and 3"
URL = "/v1/audio/transcriptions"


@pytest.fixture(scope="session")
def float32_model(model_cache) -> SpeechModel:
    """tiny.en unquantized: the second local backend, loaded once."""
    return load_model(Settings(data_dir=model_cache, device="cpu", compute_type="float32"))


@pytest.fixture(scope="session")
def remote_url(tmp_path_factory, speech_model) -> str:
    """A second instance of this server, the remote backend's upstream, for the whole run."""
    with serve_in_thread(Settings(data_dir=tmp_path_factory.mktemp("upstream"), port=0), speech_model) as url:
        yield url


def providers(remote_url: str, **remote: object) -> tuple[ProviderSpec, ...]:
    return parse_providers(
        {
            "providers": [
                {"name": "fast", "model": "tiny.en", "device": "cpu", "compute_type": "int8", "price_per_minute": 0.002},
                {"name": "precise", "model": "tiny.en", "device": "cpu", "compute_type": "float32", "regions": ["eu"], "price_per_minute": 0.004},
                {"name": "remote", "base_url": f"{remote_url}/v1", "model": "tiny.en", "regions": ["us"], "quantized": True,
                 "price_per_minute": 0.001, "timeout_s": 30, **remote},
            ]
        }
    )


@pytest.fixture
async def routed(aiohttp_client, settings, speech_model, float32_model, remote_url):
    app = create_app(
        replace(settings, providers=providers(remote_url)), models={"fast": speech_model, "precise": float32_model}
    )
    return await aiohttp_client(app)


def form(**fields: str | list[str]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("model", "whisper-1")
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            data.add_field(name.replace("_brackets", "[]"), item)
    data.add_field("file", audio_path(SHORT).read_bytes(), filename=SHORT)
    return data


async def transcribe(client, **fields) -> dict:
    response = await client.post(URL, data=form(**fields))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert EXPECTED in body["text"].lower()
    return body


@pytest.mark.parametrize(
    ("fields", "provider"),
    [
        ({"eu_native": "true"}, "precise"),
        ({"allow_quantization": "false"}, "precise"),
        ({"allowed_providers": "remote"}, "remote"),
        ({"allowed_providers_brackets": ["fast"]}, "fast"),
        ({"allowed_providers_brackets": ["fast", "precise"], "eu_native": "yes"}, "precise"),
        ({"allowed_providers": "remote, precise", "allow_quantization": "0"}, "precise"),
        ({"preference": "quality"}, "precise"),  # equal size: unquantized wins
        ({"preference": "cost"}, "remote"),  # cheapest
        ({"preference": "cost", "allowed_providers": "fast,precise"}, "fast"),
    ],
)
async def test_constraints_and_preferences_pick_the_backend(routed, fields, provider):
    body = await transcribe(routed, **fields)
    assert body["provider"] == provider and body["model"] == "tiny.en"
    assert body["object"] == "audio.transcription" and body["id"].startswith("trans_") and body["created"] > 0


async def test_speed_prefers_the_backend_measured_fastest(routed):
    """A clear gap in measured real-time factors decides `speed` (the figures are the router's
    own: set here so that the test does not depend on how loaded this machine is)."""
    await transcribe(routed, allowed_providers="fast")
    await transcribe(routed, allowed_providers="precise")
    services = routed.app[LOCAL_SERVICES]
    services["fast"].scheduler.realtime_factor.value = 0.05
    services["precise"].scheduler.realtime_factor.value = 0.5
    assert (await transcribe(routed, preference="speed"))["provider"] == "fast"
    services["fast"].scheduler.realtime_factor.value = 5.0
    assert (await transcribe(routed, preference="speed"))["provider"] != "fast"


async def test_a_remote_answer_renders_in_every_format(routed):
    verbose = await transcribe(routed, allowed_providers="remote", response_format="verbose_json", timestamp_granularities_brackets=["word", "segment"])
    assert verbose["provider"] == "remote" and verbose["language"] == "english"
    assert verbose["segments"] and verbose["words"][0]["end"] > verbose["words"][0]["start"]
    response = await routed.post(URL, data=form(allowed_providers="remote", response_format="srt"))
    text = await response.text()
    assert response.headers["X-Provider"] == "remote"
    assert text.startswith("1\n00:00:0") and EXPECTED in text.lower()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"allowed_providers": "fast", "eu_native": "true"}, "eu_native"),
        ({"allowed_providers": "fast,remote", "allow_quantization": "false"}, "allow_quantization"),
        ({"allowed_providers": "nope"}, "allowed_providers"),
        ({"preference": "cheapest"}, "preference"),
        ({"eu_native": "maybe"}, "eu_native"),
    ],
)
async def test_an_impossible_combination_is_a_clear_400(routed, fields, param):
    response = await routed.post(URL, data=form(**fields))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if param in ("eu_native", "allow_quantization") and error["code"] == "no_eligible_provider":
        assert f"{param} left none" in error["message"]


async def test_a_dead_remote_fails_over_without_an_error(aiohttp_client, settings, speech_model, float32_model, tmp_path):
    with ExitStack() as upstream:
        url = upstream.enter_context(serve_in_thread(Settings(data_dir=tmp_path / "up", port=0), speech_model))
        config = providers(url, timeout_s=10)
        client = await aiohttp_client(
            create_app(replace(settings, providers=config), models={"fast": speech_model, "precise": float32_model})
        )
        assert (await transcribe(client, preference="cost"))["provider"] == "remote"
    # the upstream server is stopped: its port refuses connections
    body = await transcribe(client, preference="cost")
    assert body["provider"] == "fast"  # the next cheapest
    listed = {p["id"]: p for p in (await (await client.get("/v1/providers")).json())["data"]}
    health = listed["remote"]["health"]
    assert health["status"] == "failing" and health["last_failure"] >= health["last_success"]
    assert "unreachable" in health["detail"]
    # tried last from now on, even by the preference that ranks it first
    assert (await transcribe(client, preference="cost"))["provider"] == "fast"
    # a request that allows only the dead remote gets the failure, never another backend
    response = await client.post(URL, data=form(allowed_providers="remote"))
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "provider_unavailable"


async def test_providers_lists_attributes_and_health(routed):
    await transcribe(routed, allowed_providers="remote")
    response = await routed.get("/v1/providers")
    assert response.status == 200
    data = {p["id"]: p for p in (await response.json())["data"]}
    assert list(data) == ["fast", "precise", "remote"]
    fast, precise, remote = data["fast"], data["precise"], data["remote"]
    assert (fast["type"], fast["default"], fast["quantized"], fast["compute_type"], fast["health"]["status"]) == (
        "local", True, True, "int8", "ok"
    )
    assert (precise["regions"], precise["quantized"], precise["compute_type"], precise["default"]) == (["eu"], False, "float32", False)
    assert (remote["type"], remote["regions"], remote["quantized"], remote["price_per_minute"]) == ("remote", ["us"], True, 0.001)
    assert remote["health"]["status"] == "ok" and remote["health"]["last_success"] > 0
    assert "api_key" not in json.dumps(remote)


async def test_a_live_stream_keeps_its_chosen_backend(routed):
    data = form(stream="true", eu_native="true")
    response = await routed.post(URL, data=data)
    assert response.status == 200, await response.text()
    events = [json.loads(line[6:]) for line in (await response.text()).splitlines() if line.startswith("data: {")]
    done = events[-1]
    assert done["type"] == "transcript.text.done" and done["provider"] == "precise"
    assert EXPECTED in done["text"].lower()
    session_id = events[0]["session_id"]
    session = await (await routed.get(f"/v1/audio/sessions/{session_id}")).json()
    assert session["provider"] == "precise"


async def test_a_live_stream_cannot_go_remote(routed):
    response = await routed.post(URL, data=form(stream="true", allowed_providers="remote"))
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["param"]) == ("no_eligible_provider", "stream")
    assert "only on local providers" in error["message"]


async def test_a_websocket_stream_is_routed_too(routed):
    with wave.open(str(audio_path(SHORT))) as wav:  # 16 kHz mono s16le: the socket's default format
        pcm = wav.readframes(wav.getnframes())
    async with routed.ws_connect("/v1/audio/stream?allow_quantization=false") as ws:
        created = await ws.receive_json()
        assert created["type"] == "session.created" and created["provider"] == "precise"
        await ws.send_bytes(pcm)
        await ws.send_str(json.dumps({"type": "close"}))
        async for message in ws:
            event = json.loads(message.data)
            if event["type"] == "transcript.text.done":
                assert event["provider"] == "precise" and EXPECTED in event["text"].lower()
                break
        else:
            pytest.fail("no done event")


async def test_without_a_config_the_one_backend_is_local(client):
    body = await transcribe(client)
    assert (body["provider"], body["model"]) == ("local", "tiny.en")
    (only,) = (await (await client.get("/v1/providers")).json())["data"]
    assert (only["id"], only["type"], only["default"]) == ("local", "local", True)


async def test_a_websocket_hears_of_an_impossible_route_before_the_upgrade(routed):
    response = await routed.get("/v1/audio/stream?allowed_providers=remote")  # a plain GET, as the page retries
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["param"]) == ("no_eligible_provider", "stream")
