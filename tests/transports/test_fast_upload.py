"""Audio that arrives faster than real time is decoded as a file is, on the real model: a file
posted with stream=true, a chunked upload that speeds up, a WebSocket client sending from disk."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

from stream_server.audio import SAMPLE_RATE
from tests.conftest import audio_path
from tests.live_helpers import RAW_S16LE, PacedUpload, of_type, pcm16k, read_sse, s16le
from tests.speech import reference, wer

normalise = EnglishTextNormalizer()
URL = "/v1/audio/transcriptions"
LONG_CLIP = "en_osr_us_000_0034_8k.wav"
"""35.5 s of read sentences: more than one whole window."""
SWITCHES = "stream_server.engine.adaptive"


def form(stream: bool, **fields: str) -> dict:
    body = {"model": "whisper-1", **fields, "file": io.BytesIO(audio_path(LONG_CLIP).read_bytes())}
    return {**body, "stream": "true"} if stream else body


async def test_a_file_posted_with_stream_is_transcribed_as_without_and_streams_its_segments(client):
    """Decoded as a file is, with the same options (no word timestamps: they would move the
    decoder's windows): the text is that of the same request without stream."""
    plain = await (await client.post(URL, data=form(stream=False))).json()
    response = await client.post(URL, data=form(stream=True, partials="true"))
    events = await read_sse(response)
    done = of_type(events, "transcript.text.done")[0]
    assert normalise(done["text"]) == normalise(plain["text"])

    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert "".join(e.data["delta"] for e in deltas) == done["text"]
    assert deltas[0].received_at < events[-1].received_at - 0.3, "the first window's text comes before the last is decoded"
    types = [e.type for e in events if e.type]
    assert "transcript.text.partial" not in types  # nothing is unstable in a whole window
    segments = types[1:-1]
    assert segments == ["speech.started", "transcript.text.delta", "speech.stopped", "transcript.utterance.done"] * (len(segments) // 4)
    utterances = of_type(events, "transcript.utterance.done")
    assert [u["utterance_id"] for u in utterances] == list(range(len(utterances)))
    for utterance in utterances:  # the words' times are spread over their segment, in order
        words = utterance["words"]
        assert " ".join(w["word"] for w in words) == utterance["text"]
        assert words[0]["start"] == utterance["start"] and words[-1]["end"] == utterance["end"]
        assert all(a["end"] <= b["start"] + 1e-3 and a["start"] < a["end"] for a, b in zip(words, words[1:]))
    assert done["usage"]["input_token_details"]["audio_tokens"] == round(35.548 * 50)


async def test_a_chunked_upload_that_speeds_up_goes_whole_without_losing_a_word(client, caplog):
    names = ("en_jfk_16k.wav", "en_ls_1995-1837-0001.wav", "en_librivox_sense_and_sensibility_01-0870.wav", LONG_CLIP)
    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for name in names for part in (pcm16k(name), pause)])
    live = len(pcm16k(names[0])) * 2  # bytes of the first clip: sent at 2x, as a live client, the rest at 20x

    class SpeedingUp(PacedUpload):
        async def __aiter__(self):
            async for chunk in PacedUpload(self.data[:live], self.bytes_per_second, speed=2.0):
                yield chunk
            async for chunk in PacedUpload(self.data[live:], self.bytes_per_second, speed=20.0):
                yield chunk

    with caplog.at_level(logging.INFO, logger=SWITCHES):
        response = await client.post(
            f"{URL}?model=whisper-1&stream=true", data=SpeedingUp(s16le(audio), 2 * SAMPLE_RATE), headers={"Content-Type": RAW_S16LE}
        )
        events = await read_sse(response)
    assert any("goes whole" in r.message for r in caplog.records)
    done = of_type(events, "transcript.text.done")[0]
    assert "".join(e["delta"] for e in of_type(events, "transcript.text.delta")) == done["text"]
    text = normalise(done["text"])
    for phrase in ("ask not what your country can do for you", "great sorrow of his life", "had then leisure to consider"):
        assert phrase in text and text.count(phrase) == 1, text
    assert wer(" ".join(reference(n) for n in names), done["text"]) < 0.1


async def test_a_websocket_client_sending_from_disk_is_decoded_in_whole_windows(client, caplog):
    pcm = s16le(pcm16k(LONG_CLIP))
    with caplog.at_level(logging.INFO, logger=SWITCHES):
        ws = await client.ws_connect("/v1/audio/stream?partials=false")
        step = SAMPLE_RATE // 10 * 2
        for offset in range(0, len(pcm), step):
            await ws.send_bytes(pcm[offset : offset + step])
            await asyncio.sleep(0.002)  # about 50x real time: the inbox takes it all
        await ws.send_str(json.dumps({"type": "close"}))
        events = [json.loads(m.data) async for m in ws]
    assert any("goes whole" in r.message for r in caplog.records)
    assert ws.close_code == 1000 and events[-1]["type"] == "transcript.text.done"
    assert wer(reference(LONG_CLIP), events[-1]["text"]) < 0.05
