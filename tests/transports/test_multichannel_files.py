"""multichannel=true on the file API: each channel transcribed on its own, in every format."""

import pytest

from stream_server.audio.decode import decode_channels
from tests.conftest import audio_path
from tests.speech import CALL, call_turns, channel_references, leaked_words, offline_call_wer, wer

STEREO = "en_stereo_L61-70968-0000_R260-libritts.wav"  # two speakers, one per channel, 5 s


@pytest.fixture
def offline_wer(speech_model) -> dict[int, float]:
    return offline_call_wer(speech_model)


async def transcribe(client, name: str, words: bool = False, **fields) -> object:
    form = [("model", "whisper-1"), ("multichannel", "true"), *fields.items()]
    form += [("timestamp_granularities[]", g) for g in ("word", "segment") if words]
    response = await client.post("/v1/audio/transcriptions", data=[*form, ("file", audio_path(name).open("rb"))])
    assert response.status == 200, await response.text()
    return await (response.json() if fields.get("response_format", "json").endswith("json") else response.text())


async def test_call_gives_each_channel_its_own_words_in_one_labelled_turn_each(client, offline_wer):
    """One transcription of the call checked in every respect (each costs a decode of 2 x 87 s):
    the srt cues are the same turns as the text's lines, in formats.render_channels."""
    labels = ("agent", "customer")
    body = await transcribe(client, CALL, words=True, response_format="verbose_json", channel_labels=",".join(labels))
    refs = channel_references()
    texts = {c["channel"]: c["text"] for c in body["channels"]}
    assert sorted(texts) == [0, 1] and [c["label"] for c in body["channels"]] == list(labels)
    for channel, other in ((0, 1), (1, 0)):
        assert not leaked_words(texts[channel], refs[channel], refs[other]), channel
        assert wer(refs[channel], texts[channel]) <= 1.1 * offline_wer[channel] + 0.02, (channel, texts[channel])
    starts = [s["start"] for s in body["segments"]]
    assert starts == sorted(starts) and {s["channel"] for s in body["segments"]} == {0, 1}
    assert all("channel" in w for w in body["words"]) and body["words"][0]["start"] < 2.0
    lines = body["text"].splitlines()
    assert [line.split("]")[0].removeprefix("[") for line in lines] == [labels[t] for t in call_turns()], body["text"]
    assert body["duration"] == pytest.approx(86.6, abs=0.2)
    assert body["usage"]["seconds"] == pytest.approx(2 * 86.6, abs=2)  # each channel is transcribed


async def test_labels_in_subtitles_and_json(client):
    labels = {"channel_labels": "reader,narrator"}
    srt = await transcribe(client, STEREO, response_format="srt", **labels)
    cues = srt.strip().split("\n\n")
    assert [c.splitlines()[2].split("]")[0] for c in cues] == ["[reader", "[narrator"], srt
    assert [c.splitlines()[0] for c in cues] == ["1", "2"]
    assert "wizard" in cues[0].lower() and "horizon" in cues[1].lower()
    vtt = await transcribe(client, STEREO, response_format="vtt", **labels)
    assert vtt.startswith("WEBVTT") and "<v reader>" in vtt and "<v narrator>" in vtt
    body = await transcribe(client, STEREO, **labels)
    assert [c["label"] for c in body["channels"]] == ["reader", "narrator"]
    assert body["text"].startswith("[reader] ") and "\n[narrator] " in body["text"]
    text = await transcribe(client, STEREO, response_format="text")
    assert text.startswith("[channel 0] ") and "\n[channel 1] " in text


async def test_mono_file_is_one_channel(client):
    body = await transcribe(client, "en_jfk_16k.wav", response_format="verbose_json")
    assert [c["channel"] for c in body["channels"]] == [0]
    assert body["text"].startswith("[channel 0] And so") and "\n" not in body["text"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"channel_labels": "a,b"}, "channel_labels"), ({"multichannel": "maybe"}, "multichannel")],
)
async def test_bad_channel_fields_are_400(client, fields, param):
    form = {"model": "whisper-1", "file": audio_path(STEREO).open("rb"), **fields}
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param


async def test_duplicate_labels_are_400(client):
    form = {"model": "whisper-1", "file": audio_path(STEREO).open("rb"), "multichannel": "true", "channel_labels": "a,a"}
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 400 and (await response.json())["error"]["param"] == "channel_labels"


async def test_a_raw_interleaved_body_is_split_too(client):
    rows = decode_channels(audio_path(STEREO).read_bytes())
    body = (rows.T.clip(-1, 1) * 32767).astype("<i2").tobytes()
    response = await client.post(
        "/v1/audio/transcriptions?model=whisper-1&multichannel=true&response_format=verbose_json",
        data=body,
        headers={"Content-Type": "audio/pcm;encoding=s16le;rate=16000;channels=2"},
    )
    assert response.status == 200, await response.text()
    channels = (await response.json())["channels"]
    assert "wizard" in channels[0]["text"].lower() and "horizon" in channels[1]["text"].lower()
