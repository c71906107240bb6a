"""Live transcription over SSE, end to end on the real model and real audio."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from dataclasses import replace

import av
import numpy as np
import openai
import pytest
from aiohttp import ClientResponse
from jsonschema import Draft202012Validator
from openai._streaming import ServerSentEvent, SSEDecoder
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.app import create_app
from stream_server.audio import SAMPLE_RATE, live
from stream_server.transports.appkeys import SERVICE, SESSIONS, STORAGE
from stream_server.transports.openapi import build_spec
from tests.conftest import audio_path, serve_in_thread
from tests.live_helpers import RAW_S16LE, PacedUpload, SseEvent, of_type, pcm16k, read_sse, s16le

normalise = EnglishTextNormalizer()
URL = "/v1/audio/transcriptions"
JFK_WORDS = "ask not what your country can do for you"
KEEPALIVE_S = 0.05
"""A keep-alive interval short enough that every stream here carries several: a streamed JFK
file took 0.64 s on a fast machine."""


def live_url(**params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"model": "whisper-1", "stream": "true", **params}.items())
    return f"{URL}?{query}"


def test_sdk_iterates_the_stream_through_keep_alives_in_strict_mode(settings, speech_model):
    with serve_in_thread(replace(settings, sse_keepalive_s=KEEPALIVE_S), speech_model) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, _strict_response_validation=True)
        started = time.monotonic()
        with audio_path("en_jfk_16k.wav").open("rb") as f:
            events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
        assert time.monotonic() - started > 5 * KEEPALIVE_S, "too short a stream to carry keep-alives"
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and set(types[:-1]) == {"transcript.text.delta"}
    assert events[0].session_id.startswith("sess_")  # extra field on the first (empty) delta
    text = "".join(e.delta for e in events[:-1])
    assert text == events[-1].text
    assert JFK_WORDS in normalise(text)
    assert events[-1].usage.output_tokens > 10


async def test_a_raw_upload_without_model_uses_the_served_one(client):
    """The command a user types: `... | curl -N -T - -H 'Content-Type: audio/pcm;...' '...?stream=true'`."""
    upload = PacedUpload(s16le(pcm16k("en_jfk_16k.wav")), bytes_per_second=2 * SAMPLE_RATE, speed=10.0)
    response = await client.put(f"{URL}?stream=true", data=upload, headers={"Content-Type": RAW_S16LE})
    assert response.status == 200
    done = of_type(await read_sse(response), "transcript.text.done")[0]
    assert JFK_WORDS in normalise(done["text"])


async def test_raw_chunked_upload_streams_text_while_uploading(client):
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([pcm16k("en_jfk_16k.wav"), pause, pcm16k("en_ls_1995-1837-0001.wav")])
    text_came = asyncio.Event()  # the body goes on (silence) until it has: a slow first decode still streams
    upload = PacedUpload(s16le(audio), bytes_per_second=2 * SAMPLE_RATE, speed=3.0, hold_open=text_came)
    response = await client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    session_id = response.headers["X-Session-Id"]

    def heard(event: SseEvent) -> None:
        if event.type == "transcript.text.delta" and event.data["delta"]:
            text_came.set()

    events = await read_sse(response, on_event=heard)
    deltas = [e for e in events if e.type == "transcript.text.delta" and e.data["delta"]]
    assert deltas and upload.finished_at is not None
    assert deltas[0].received_at < upload.finished_at, "the first text must come while audio is still arriving"
    done = of_type(events, "transcript.text.done")[0]
    assert "".join(e.data["delta"] for e in deltas) == done["text"]
    assert JFK_WORDS in normalise(done["text"]) and "great sorrow of his life" in normalise(done["text"])
    assert {e.type for e in events[:-1]} == {"transcript.text.delta", "transcript.text.done"}
    assert events[0].data["session_id"] == session_id and events[-1].data == "[DONE]"


async def test_partials_and_live_events_only_when_asked(client):
    data = s16le(pcm16k("en_ls_1995-1837-0001.wav"))
    response = await client.post(
        live_url(partials="true"), data=PacedUpload(data, 2 * SAMPLE_RATE, speed=2.0), headers={"Content-Type": RAW_S16LE}
    )
    events = await read_sse(response)
    types = [e.type for e in events if e.type]
    assert types[0] == "session.created"
    for kind in ("speech.started", "transcript.text.partial", "transcript.utterance.done", "speech.stopped"):
        assert kind in types, kind
    assert types[-1] == "transcript.text.done"
    seqs = [e.data["seq"] for e in events if e.type]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    utterance = of_type(events, "transcript.utterance.done")[0]
    starts = [w["start"] for w in utterance["words"]]
    assert starts == sorted(starts) and 0 <= starts[0] and utterance["words"][-1]["end"] <= 8.8


async def test_observer_reconnecting_with_last_event_id_gets_each_event_once(client):
    data = s16le(pcm16k("en_jfk_16k.wav"))
    upload = PacedUpload(data, 2 * SAMPLE_RATE, speed=2.0)
    speaker = asyncio.ensure_future(
        client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
    )
    response = await speaker
    session_id = response.headers["X-Session-Id"]
    reading = asyncio.ensure_future(read_sse(response))
    first = await client.get(f"/v1/audio/sessions/{session_id}/events")
    part = await read_sse(first, limit=3)
    first.close()  # the viewer drops
    again = await client.get(
        f"/v1/audio/sessions/{session_id}/events", headers={"Last-Event-ID": str(part[-1].id)}
    )
    rest = await read_sse(again)
    await reading
    seen = [e.id for e in part + rest if e.id is not None]
    session = client.app[SESSIONS].get(session_id)
    assert seen == [e.seq for e in session.events]
    assert rest[-1].data == "[DONE]"


async def _chunks(response: ClientResponse) -> list[bytes]:
    return [chunk async for chunk in response.content.iter_any()]


def _sdk_events(chunks: list[bytes]) -> list[ServerSentEvent]:
    """What the openai SDK's own SSE decoder dispatches from this body, fed as it arrived."""
    return list(SSEDecoder().iter_bytes(iter(chunks)))


async def test_keep_alives_dispatch_no_event_and_only_the_observer_feed_has_ids(aiohttp_client, settings, speech_model):
    app = create_app(replace(settings, sse_keepalive_s=KEEPALIVE_S), model=speech_model)
    client = await aiohttp_client(app)
    upload = PacedUpload(s16le(pcm16k("en_jfk_16k.wav")), 2 * SAMPLE_RATE, speed=4.0)
    speaker = await client.post(live_url(partials="true"), data=upload, headers={"Content-Type": RAW_S16LE})
    session_id = speaker.headers["X-Session-Id"]
    feed = await client.get(f"/v1/audio/sessions/{session_id}/events")
    spoken, watched = await asyncio.gather(_chunks(speaker), _chunks(feed))

    for chunks in (spoken, watched):
        assert b"".join(chunks).count(b"\n: keepalive\n") >= 3
        events = _sdk_events(chunks)
        assert events[-1].data == "[DONE]"
        assert all(isinstance(e.json(), dict) for e in events[:-1])  # a keep-alive would be empty data
    assert all(e.id is None for e in _sdk_events(spoken))
    seqs = [e.json()["seq"] for e in _sdk_events(spoken)[:-1]]
    assert seqs == sorted(set(seqs))

    ids = [int(e.id) for e in _sdk_events(watched)[:-1]]
    assert ids == [e.seq for e in client.app[SESSIONS].get(session_id).events] == sorted(set(ids))
    middle = ids[len(ids) // 2]
    again = await client.get(f"/v1/audio/sessions/{session_id}/events", headers={"Last-Event-ID": str(middle)})
    replayed = _sdk_events(await _chunks(again))
    assert [int(e.id) for e in replayed[:-1]] == ids[len(ids) // 2 + 1 :]
    assert replayed[-1].data == "[DONE]"


async def test_no_text_in_the_noise_stretch_of_the_dev_feed(client):
    feed = pcm16k("en_dev_feed_16k.wav")
    start, noise = 36.0, (44.5, 53.5)  # the feed's faint-noise stretch
    excerpt = feed[int(start * SAMPLE_RATE) : int(60.0 * SAMPLE_RATE)]
    response = await client.post(
        live_url(partials="true"), data=PacedUpload(s16le(excerpt), 2 * SAMPLE_RATE, speed=20.0),
        headers={"Content-Type": RAW_S16LE},
    )
    events = await read_sse(response)
    words = [w for u in of_type(events, "transcript.utterance.done") for w in u["words"]]
    assert len(words) > 20
    inside = [w for w in words if noise[0] + 0.5 < w["start"] + start < noise[1] - 0.5]
    assert inside == []


async def test_concurrent_streams_packed_into_shared_calls_keep_their_own_words(aiohttp_client, settings, speech_model):
    """Three streams on one decode slot: their partial windows queue, and are packed together.
    (JFK's phrase starts after "what", which tiny.en sometimes hears as "Like" when the packing,
    which follows timing, changes its windows: BENCHMARKS.md; WER is measured there, not here.)"""
    app = create_app(replace(settings, decode_slots=1, pack_windows=True, estimate_capacity=False), model=speech_model)
    client = await aiohttp_client(app)
    clips = {
        "en_jfk_16k.wav": ("your country can do for you", {"americans", "country", "fellow"}),
        "en_ls_1995-1837-0001.wav": ("great sorrow of his life", {"sorrow", "cotton", "fantasy"}),
        "en_librivox_sense_and_sensibility_01-0870.wav": ("had then leisure to consider", {"dashwood", "leisure", "prudently"}),
    }

    async def stream(name: str) -> str:
        upload = PacedUpload(s16le(pcm16k(name)), 2 * SAMPLE_RATE, speed=2.0)
        response = await client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
        return of_type(await read_sse(response), "transcript.text.done")[0]["text"]

    texts = dict(zip(clips, await asyncio.gather(*(stream(name) for name in clips))))
    assert client.app[SERVICE].scheduler.packed_decodes > 0
    for name, (phrase, _) in clips.items():
        words = set(normalise(texts[name]).split())
        assert phrase in normalise(texts[name])
        others = set().union(*(own for other, (_, own) in clips.items() if other != name))
        assert not words & others, f"{name} got another stream's words: {words & others}"


async def test_client_disconnect_ends_the_session_and_keeps_its_transcript(client):
    data = s16le(np.concatenate([pcm16k("en_jfk_16k.wav")] * 3))
    upload = PacedUpload(data, 2 * SAMPLE_RATE, speed=2.0)
    response = await client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
    session_id = response.headers["X-Session-Id"]
    events = []
    async for raw in response.content:
        if b'"delta": "' in raw and b'"delta": ""' not in raw:
            events.append(raw)
            break
    response.close()  # the client goes away mid-stream
    for _ in range(100):
        status = await (await client.get(f"/v1/audio/sessions/{session_id}")).json()
        if status["status"] != "live":
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "failed" and status["error"]["code"] in {"client_disconnected", "upload_incomplete"}
    kept = normalise(status["text"])
    assert "fellow americans" in kept, "what was committed before the client left is kept"
    assert client.app[SESSIONS].live() == []


@pytest.fixture
def impatient_settings(settings):
    return replace(settings, idle_timeout_s=1.0)


async def test_a_stalled_upload_ends_with_an_error_event(aiohttp_client, impatient_settings, speech_model):
    client = await aiohttp_client(create_app(impatient_settings, model=speech_model))
    data = s16le(pcm16k("en_jfk_16k.wav"))
    upload = PacedUpload(data, 2 * SAMPLE_RATE, speed=10.0, stall_after=len(data) // 2)
    response = await client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
    events = await read_sse(response)
    errors = [e.data["error"] for e in events if isinstance(e.data, dict) and "error" in e.data]
    assert errors and errors[0]["code"] == "idle_timeout"


async def test_garbage_in_a_container_stream_is_a_400_before_any_event(client):
    """As without stream=true: audio that cannot be opened is refused before the SSE answer."""
    response = await client.post(
        live_url(), data=b"\x00garbage" * 4000, headers={"Content-Type": "audio/wav"}
    )
    assert response.status == 400 and response.content_type == "application/json"
    assert (await response.json())["error"]["code"] == "invalid_audio"
    assert (await client.get("/health")).status == 200


async def restart_once_stored(aiohttp_client, client, settings, speech_model, session_id: str):
    """A new app on the same storage, once the handler has stored the session (just after the
    stream is answered)."""
    async with asyncio.timeout(30):
        while await client.app[STORAGE].get_session(session_id) is None:
            await asyncio.sleep(0.05)
    await client.close()
    return await aiohttp_client(create_app(settings, model=speech_model))


async def test_a_failed_session_is_stored_as_failed_with_its_error(aiohttp_client, client, settings, speech_model):
    """After a restart the stored session still says it failed and why, not `completed`: a raw
    float body whose second second holds no numbers (audio that cannot be opened is refused
    before any session starts)."""

    async def body():
        yield np.zeros(SAMPLE_RATE, "<f4").tobytes()
        await asyncio.sleep(0.2)
        yield b"\x00\x00\xc0\x7f" * SAMPLE_RATE  # float32 NaN

    response = await client.post(live_url(), data=body(), headers={"Content-Type": "audio/pcm;encoding=f32le;rate=16000"})
    session_id = response.headers["X-Session-Id"]
    await read_sse(response)
    restarted = await restart_once_stored(aiohttp_client, client, settings, speech_model, session_id)
    stored = await (await restarted.get(f"/v1/audio/sessions/{session_id}")).json()
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "invalid_audio" and stored["error"]["type"] == "invalid_request_error"
    listed = (await (await restarted.get("/v1/audio/sessions")).json())["data"]
    assert [(s["id"], s["status"], s["error"]["code"]) for s in listed] == [(session_id, "failed", "invalid_audio")]


async def test_a_session_has_one_shape_live_and_stored(aiohttp_client, client, settings, speech_model):
    """GET /v1/audio/sessions/{id} answers the same fields while the stream runs and, after a
    restart, from storage; the stored session keeps its provider and its utterances."""
    upload = PacedUpload(s16le(pcm16k("en_jfk_16k.wav")), bytes_per_second=2 * SAMPLE_RATE, speed=2.0)
    response = await client.post(live_url(), data=upload, headers={"Content-Type": RAW_S16LE})
    session_id = response.headers["X-Session-Id"]
    live_body = await (await client.get(f"/v1/audio/sessions/{session_id}")).json()
    done = of_type(await read_sse(response), "transcript.text.done")[0]
    restarted = await restart_once_stored(aiohttp_client, client, settings, speech_model, session_id)
    stored = await (await restarted.get(f"/v1/audio/sessions/{session_id}")).json()
    (listed,) = (await (await restarted.get("/v1/audio/sessions")).json())["data"]
    assert (live_body["status"], stored["status"]) == ("live", "completed") and listed == stored
    assert set(live_body) == set(stored)
    assert (live_body["duration"], live_body["ended_at"]) == (None, None)
    assert stored["duration"] == pytest.approx(11.0, abs=0.2) and stored["ended_at"] >= stored["created_at"]
    assert stored["provider"] == live_body["provider"] == done["provider"]
    assert stored["text"] == done["text"] and JFK_WORDS in normalise(" ".join(u["text"] for u in stored["utterances"]))


def _encode(audio: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        frame = av.AudioFrame.from_ndarray(
            (audio[None, :] * 32767).astype(np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate", "streams"),
    [("ogg", "libopus", 48000, True), ("mp3", "libmp3lame", 16000, True), ("mp4", "aac", 16000, False)],
)
async def test_containers_stream_and_mp4_falls_back_to_whole_file(client, monkeypatch, container, codec, rate, streams):
    """ogg and mp3 decode as they arrive; mp4 (its index may sit at the end) is decoded whole
    once uploaded: the fallback's decode_file is called for it alone."""
    whole_file_decodes = []
    original = live.decode_file
    monkeypatch.setattr(live, "decode_file", lambda *a: whole_file_decodes.append(a[1:]) or original(*a))
    audio = pcm16k("en_jfk_16k.wav")
    data = _encode(audio, container, codec, rate)
    form = {"model": "whisper-1", "stream": "true", "file": io.BytesIO(data)}
    response = await client.post(URL, data=form)
    events = await read_sse(response)
    done = of_type(events, "transcript.text.done")
    assert done and JFK_WORDS in normalise(done[0]["text"]), (container, events[-3:])
    assert len(whole_file_decodes) == (0 if streams else 1), container


@pytest.mark.parametrize(
    ("content_type", "convert"),
    [
        ("audio/PCMU", lambda a: _g711(a, "pcm_mulaw")),
        ("audio/PCMA", lambda a: _g711(a, "pcm_alaw")),
    ],
)
async def test_telephony_raw_formats(client, content_type, convert):
    audio = pcm16k("en_ls_1995-1837-0001.wav")
    eight_k = _resample(audio, 8000)
    data = convert(eight_k)
    response = await client.post(
        live_url(), data=PacedUpload(data, 8000, speed=20.0), headers={"Content-Type": content_type}
    )
    done = of_type(await read_sse(response), "transcript.text.done")
    assert "great sorrow of his life" in normalise(done[0]["text"])


def _l16_stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    """Two different 8 kHz signals, interleaved big-endian: a channel bug cannot hide."""
    length = max(len(left), len(right))
    rows = np.zeros((length, 2), np.float32)
    rows[: len(left), 0], rows[: len(right), 1] = left, right
    return (np.clip(rows, -1, 1) * 32767).astype(">i2").tobytes()


@pytest.mark.parametrize("multichannel", [False, True])
async def test_l16_stereo_keeps_each_channel(client, multichannel):
    """Left speaks first, right after it; mixed, the text has both in order; per channel, each
    channel has its own words (a swapped, dropped or mis-interleaved channel shows)."""
    left = _resample(pcm16k("en_ls_1995-1837-0001.wav"), 8000)
    right = _resample(pcm16k("en_jfk_16k.wav"), 8000)
    pause = np.zeros(8000, np.float32)
    data = _l16_stereo(np.concatenate([left, pause]), np.concatenate([np.zeros(len(left) + len(pause), np.float32), right]))
    url = live_url(multichannel="true") if multichannel else live_url()
    response = await client.post(
        url, data=PacedUpload(data, 8000 * 2 * 2, speed=20.0), headers={"Content-Type": "audio/L16;rate=8000;channels=2"}
    )
    done = of_type(await read_sse(response), "transcript.text.done")[0]
    if multichannel:
        texts = [normalise(c["text"]) for c in done["channels"]]
        assert "great sorrow of his life" in texts[0] and JFK_WORDS not in texts[0]
        assert JFK_WORDS in texts[1] and "great sorrow" not in texts[1]
    else:
        text = normalise(done["text"])
        assert "great sorrow of his life" in text and JFK_WORDS in text
        assert text.index("great sorrow") < text.index("ask not")


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    return np.concatenate([f.to_ndarray()[0] for f in resampler.resample(frame) + resampler.resample(None)])


def _g711(audio: np.ndarray, codec: str) -> bytes:
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate, encoder.layout, encoder.format = 8000, "mono", "s16"
    encoder.open()
    frame = av.AudioFrame.from_ndarray((audio[None, :] * 32767).astype(np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    return b"".join(bytes(p) for p in encoder.encode(frame) + encoder.encode(None))


async def test_raw_body_without_stream_is_transcribed_as_a_file(client):
    data = s16le(pcm16k("en_jfk_16k.wav"))
    response = await client.post(f"{URL}?model=whisper-1", data=data, headers={"Content-Type": RAW_S16LE})
    assert response.status == 200
    assert JFK_WORDS in normalise((await response.json())["text"])


async def test_stream_refuses_subtitle_formats(client):
    data = s16le(pcm16k("en_jfk_16k.wav"))
    response = await client.post(live_url(response_format="srt"), data=data, headers={"Content-Type": RAW_S16LE})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "response_format"


async def test_a_stream_behind_its_audio_is_told_so_and_a_strict_one_is_not(aiohttp_client, settings, speech_model):
    """With an alarm no real decode can meet, every stream is 'behind': the extension event
    comes with partials=true, in the document's shape, and never on the OpenAI-strict stream."""
    client = await aiohttp_client(create_app(replace(settings, lag_alarm_s=0.001), model=speech_model))
    spec = json.loads(json.dumps(build_spec(keys_enabled=False)))
    event_schema = Draft202012Validator({"$ref": "#/components/schemas/StreamEvent", "components": spec["components"]})
    data = s16le(pcm16k("en_jfk_16k.wav"))
    seen = {}
    for partials in ("true", "false"):
        upload = PacedUpload(data, 2 * SAMPLE_RATE, speed=10.0)
        response = await client.post(live_url(partials=partials), data=upload, headers={"Content-Type": RAW_S16LE})
        seen[partials] = of_type(await read_sse(response), "session.lag")
    assert seen["true"] and seen["true"][0]["behind"] is True and seen["true"][0]["lag_s"] > 0.001
    event_schema.validate(seen["true"][0])
    assert seen["false"] == []
