"""The official openai SDK against a real server on loopback, real model, real audio."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import openai
import pytest
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.whisper import TranscribeOptions
from stream_server.models import resolve_model
from tests.conftest import audio_path, serve_in_thread
from tests.speech import reference, wer

JFK = "en_jfk_16k.wav"
JFK_PHRASE = "ask not what your country can do for you"
WER_MARGIN = 0.03
"""How far the server's WER may sit above faster-whisper's own on the same file."""

@pytest.fixture(scope="module")
def sdk(live_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server + "/v1", api_key="x", max_retries=0)


def transcribe(sdk: openai.OpenAI, path: Path, **kwargs):
    with path.open("rb") as f:
        return sdk.audio.transcriptions.create(model="whisper-1", file=f, **kwargs)


def test_json(sdk):
    result = transcribe(sdk, audio_path(JFK), response_format="json")
    assert JFK_PHRASE in result.text.lower()
    assert result.usage.type == "duration" and result.usage.seconds == 11


def test_text_is_a_raw_string(sdk):
    text = transcribe(sdk, audio_path(JFK), response_format="text")
    assert isinstance(text, str)
    assert not text.startswith(("{", '"'))
    assert JFK_PHRASE in text.lower()


def test_srt(sdk):
    srt = transcribe(sdk, audio_path(JFK), response_format="srt")
    assert isinstance(srt, str)
    cue = srt.split("\n\n")[0].splitlines()
    assert cue[0] == "1"
    start, arrow, end = cue[1].split(" ")
    assert arrow == "-->" and start.startswith("00:00:") and "," in start and "," in end
    assert JFK_PHRASE in srt.lower().replace("\n", " ")


def test_vtt(sdk):
    vtt = transcribe(sdk, audio_path(JFK), response_format="vtt")
    assert isinstance(vtt, str)
    assert vtt.startswith("WEBVTT\n\n00:00:")
    timing = vtt.splitlines()[2]
    assert " --> " in timing and "." in timing and "," not in timing
    assert JFK_PHRASE in vtt.lower().replace("\n", " ")


def test_verbose_json_words_and_segments(sdk):
    result = transcribe(
        sdk,
        audio_path(JFK),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "english"
    assert result.duration == pytest.approx(11.0, abs=0.01)
    assert JFK_PHRASE in result.text.lower()
    assert result.segments and result.segments[0].start >= 0.0
    words = result.words
    assert [w.word.lower().strip(",.") for w in words[:3]] == ["and", "so", "my"]
    assert all(0.0 <= w.start <= w.end <= result.duration for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(a.end <= b.start + 1e-3 for a, b in zip(words, words[1:]))


def test_verbose_json_segments_only_by_default(sdk):
    result = transcribe(sdk, audio_path(JFK), response_format="verbose_json")
    assert result.segments and not getattr(result, "words", None)
    assert JFK_PHRASE in "".join(s.text for s in result.segments).lower()


def test_json_logprobs(sdk):
    result = transcribe(sdk, audio_path(JFK), response_format="json", include=["logprobs"])
    assert result.logprobs
    assert all(p.logprob <= 0.0 for p in result.logprobs)
    joined = "".join(p.token for p in result.logprobs)
    assert joined.strip() == result.text


def test_flac_44k_stereo(sdk):
    result = transcribe(sdk, audio_path("en_jfk_44k_stereo.flac"))
    assert JFK_PHRASE in result.text.lower()


def test_8k_wav(sdk):
    text = transcribe(sdk, audio_path("en_osr_us_000_0034_8k.wav"), response_format="text")
    assert wer(reference("en_osr_us_000_0034_8k.wav"), text) < 0.25
    assert "severe storm tore down the barn" in text.lower()


@pytest.fixture(scope="module")
def jfk_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK re-encoded to MP3 with PyAV: an English compressed upload."""
    pcm = decode_audio(str(audio_path(JFK)), sampling_rate=SAMPLE_RATE)
    path = tmp_path_factory.mktemp("mp3") / "jfk.mp3"
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (pcm * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def test_mp3(sdk, jfk_mp3):
    assert JFK_PHRASE in transcribe(sdk, jfk_mp3).text.lower()


def test_spanish_on_english_only_model_is_refused(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(sdk, audio_path("es_mls_13697_11991_000000.opus"), language="es")
    assert caught.value.status_code == 400
    error = caught.value.body
    assert error["code"] == "unsupported_language" and error["param"] == "language"
    assert "English only" in error["message"]


@pytest.fixture(scope="module")
def direct_model(model_cache: Path) -> WhisperModel:
    """faster-whisper on the same model files, not through the server."""
    return WhisperModel(resolve_model("tiny.en", model_cache / "models").location, compute_type="int8")


@pytest.mark.parametrize("name", [JFK, "en_ls_1995-1837-0001.wav", "en_ls_61-70968-0000.flac"])
def test_wer_matches_faster_whisper(sdk, direct_model, name):
    options = TranscribeOptions()
    segments, _ = direct_model.transcribe(
        str(audio_path(name)), beam_size=options.beam_size, vad_filter=options.vad_filter
    )
    direct = wer(reference(name), "".join(s.text for s in segments))
    served = wer(reference(name), transcribe(sdk, audio_path(name)).text)
    assert served <= direct + WER_MARGIN, (served, direct)
    assert served < 0.2


def test_oversize_upload_is_413_while_the_sdk_is_still_sending(settings, speech_model, tmp_path):
    """The server answers before reading the whole body; the SDK must still get the 413."""
    big = tmp_path / "big.wav"
    big.write_bytes(audio_path(JFK).read_bytes() * 30)  # ~10 MB
    with serve_in_thread(replace(settings, max_upload_bytes=1_000_000), speech_model) as url:
        # closed before the server stops: aiohttp lingers up to 10 s reading an unread body's rest
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                transcribe(client, big)
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"
