"""Usage records, balances, stored sessions, and state that survives a restart."""

from dataclasses import replace

import asyncio
import json
import urllib.parse
import urllib.request

import openai
import pytest

from stream_server.principals import Principal, key_id
from stream_server.storage import SessionRecord
from stream_server.transports.appkeys import METER, STORAGE
from tests.conftest import audio_path, serve_in_thread
from tests.transports.test_files_api import ADMIN, K1, K2, SHORT, upload

SHORT_SECONDS = 4.464


def http(url, headers, form=None) -> str:
    """A plain HTTP call (url-encoded form when `form` is given) with the stdlib."""
    data = urllib.parse.urlencode(form).encode() if form else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=60) as r:
        return r.read().decode()


@pytest.fixture
def settings(settings):
    return replace(settings, api_keys=("k1", "k2", "poor"), admin_keys=("adm",), key_balances=(("k1", 6.0), ("poor", 3.0)))


async def transcribe(client, file_id, headers=K1):
    return await client.post("/v1/audio/transcriptions", data={"model": "whisper-1", "file_id": file_id}, headers=headers)


async def test_usage_is_recorded_per_key_and_seen_by_its_owner_and_admin(client):
    mine, theirs = await upload(client), await upload(client, headers=K2)
    assert (await transcribe(client, mine["id"])).status == 200
    assert (await transcribe(client, theirs["id"], headers=K2)).status == 200
    data = {"model": "gpt-4o-transcribe", "file": audio_path(SHORT).open("rb")}
    assert (await client.post("/v1/audio/transcriptions", data=data, headers=K2)).status == 200

    own = await (await client.get("/v1/usage", headers=K2)).json()
    assert [(d["key_id"], d["requests"]) for d in own["data"]] == [(key_id("k2"), 2)]
    day = own["data"][0]
    assert day["audio_seconds"] == pytest.approx(2 * SHORT_SECONDS)
    assert day["completion_tokens"] > 10 and day["total_tokens"] == day["completion_tokens"] + day["prompt_tokens"]
    assert own["balance"] is None

    everyone = await (await client.get("/v1/usage", headers=ADMIN)).json()
    assert {d["key_id"]: d["requests"] for d in everyone["data"]} == {key_id("k1"): 1, key_id("k2"): 2}
    one = await (await client.get("/v1/usage", params={"key_id": key_id("k1")}, headers=ADMIN)).json()
    assert [d["key_id"] for d in one["data"]] == [key_id("k1")]
    ignored = await (await client.get("/v1/usage", params={"key_id": key_id("k1")}, headers=K2)).json()
    assert [d["key_id"] for d in ignored["data"]] == [key_id("k2")]


async def test_balance_refuses_up_front_what_it_cannot_cover(client):
    stored = await upload(client)
    assert (await transcribe(client, stored["id"])).status == 200  # 4.5 s of 6 s
    usage = await (await client.get("/v1/usage", headers=K1)).json()
    assert usage["balance"] == {"limit_seconds": 6.0, "remaining_seconds": pytest.approx(6.0 - SHORT_SECONDS)}

    refused = await transcribe(client, stored["id"])
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["code"] == "insufficient_balance" and error["message"].startswith("insufficient balance")
    refused = await client.post(
        "/api/v2/Audio/transcribe/file",
        json={"modelId": "whisper-1", "fileId": stored["id"]},
        params={"culture": "es"},
        headers=K1,
    )
    assert refused.status == 400
    assert (await refused.json())["error"]["message"] == "saldo insuficiente para transcribir este audio"
    usage = await (await client.get("/v1/usage", headers=K1)).json()
    assert usage["data"][0]["requests"] == 1  # refusals cost nothing


async def test_a_balance_smaller_than_the_file_refuses_the_first_request(client):
    poor = {"Authorization": "Bearer poor"}
    stored = await upload(client, headers=poor)
    response = await transcribe(client, stored["id"], headers=poor)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "insufficient_balance"
    assert (await (await client.get("/v1/usage", headers=poor)).json())["data"] == []


async def test_meter_hooks_for_streams(client):
    meter = client.app[METER]
    streamer = Principal(key_id("poor"), balance_seconds=3.0)
    await meter.check_balance(streamer)  # length unknown: passes while something is left
    await meter.record(streamer, model="tiny.en", kind="stream", audio_seconds=3.0, completion_tokens=12)
    with pytest.raises(Exception) as refused:
        await meter.check_balance(streamer)
    assert getattr(refused.value, "code", None) == "insufficient_balance"
    usage = await (await client.get("/v1/usage", headers={"Authorization": "Bearer poor"})).json()
    assert usage["data"][0]["audio_seconds"] == 3.0 and usage["data"][0]["completion_tokens"] == 12


async def test_sessions_are_listed_to_their_owner(client):
    storage = client.app[STORAGE]
    await storage.save_session(SessionRecord("sess-a", key_id("k1"), "tiny.en", "en", "hello world", 2.0, 10.0, 12.0))
    await storage.save_session(SessionRecord("sess-b", key_id("k2"), "tiny.en", "en", "other words", 1.0, 20.0, 21.0))
    mine = await (await client.get("/v1/audio/sessions", headers=K1)).json()
    assert [(s["id"], s["text"]) for s in mine["data"]] == [("sess-a", "hello world")]
    everyone = await (await client.get("/v1/audio/sessions", headers=ADMIN)).json()
    assert [s["id"] for s in everyone["data"]] == ["sess-a", "sess-b"]
    assert (await client.get("/v1/audio/sessions")).status == 401


def test_files_and_usage_survive_a_restart(settings, speech_model):
    wav = audio_path(SHORT)
    with serve_in_thread(settings, speech_model) as url:
        stored = openai.OpenAI(base_url=f"{url}/v1", api_key="k2").files.create(file=wav.open("rb"), purpose="user_data")
        text = http(
            f"{url}/v1/audio/transcriptions",
            K2,
            {"model": "whisper-1", "file_id": stored.id, "response_format": "text"},
        )
        assert "only platforms 1 and 3" in text.lower()

    with serve_in_thread(replace(settings, port=0), speech_model) as url:  # a new app, same data_dir
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k2")
        assert [f.id for f in sdk.files.list()] == [stored.id]
        assert sdk.files.content(stored.id).content == wav.read_bytes()
        usage = json.loads(http(f"{url}/v1/usage", K2))
        assert [(d["requests"], d["audio_seconds"]) for d in usage["data"]] == [(1, SHORT_SECONDS)]
        body = json.loads(http(f"{url}/v1/audio/transcriptions", K2, {"model": "whisper-1", "file_id": stored.id}))
        assert "only platforms 1 and 3" in body["text"].lower()


async def test_concurrent_requests_cannot_overspend_a_balance(client):
    stored = await upload(client)  # 4.5 s; k1 has 6 s: only one of two parallel requests fits
    responses = await asyncio.gather(transcribe(client, stored["id"]), transcribe(client, stored["id"]))
    assert sorted(r.status for r in responses) == [200, 400]
    usage = await (await client.get("/v1/usage", headers=K1)).json()
    assert usage["data"][0]["requests"] == 1
    assert usage["balance"]["remaining_seconds"] == pytest.approx(6.0 - SHORT_SECONDS)
