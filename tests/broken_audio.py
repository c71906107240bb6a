"""A corpus of broken audio, made at test time from the shared clips (nothing binary committed):
truncated containers, lying headers, empty and non-audio bytes, a video with no audio track."""

from __future__ import annotations

import io
import struct
import zipfile
from functools import cache

import av
import numpy as np

from tests.conftest import audio_path

CLIP = "en_jfk_16k.wav"
RATE = 16_000


def _clip() -> np.ndarray:
    """The first 3 s of the clip as int16 mono."""
    with av.open(str(audio_path(CLIP))) as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames)[: 3 * RATE].astype(np.int16)


def _encode(fmt: str, codec: str, samples: np.ndarray, rate: int = RATE) -> bytes:
    """`samples` (int16 mono) in a container, written by FFmpeg (PyAV)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        frames = [*resampler.resample(frame), *resampler.resample(None)]
        for packet in [*(p for f in frames for p in stream.encode(f)), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def wav_header(*, rate: int = RATE, data_bytes: int, channels: int = 1) -> bytes:
    """A canonical 44-byte PCM16 WAV header; the sizes say whatever `data_bytes` says."""
    block = 2 * channels
    riff = min(36 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data" + struct.pack("<I", min(data_bytes, 0xFFFFFFFF))
    )


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("speech.wav", _encode("wav", "pcm_s16le", _clip()))
    return out.getvalue()


def _silent_video() -> bytes:
    """A tiny MPEG-4 video, eight 32x32 frames, with no audio track at all."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 30, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@cache
def corpus() -> dict[str, bytes]:
    """name -> bytes; the name's extension is the filename a client would send."""
    samples = _clip()
    pcm = samples.tobytes()
    whole = {
        "wav": _encode("wav", "pcm_s16le", samples),
        "mp3": _encode("mp3", "libmp3lame", samples),
        "flac": _encode("flac", "flac", samples),
        "ogg": _encode("ogg", "libopus", samples, rate=48_000),
    }
    items: dict[str, bytes] = {}
    for ext, data in whole.items():
        items[f"truncated_header.{ext}"] = data[:30]
        items[f"truncated_half.{ext}"] = data[: len(data) // 2]
    items["claims_1e9_samples.wav"] = wav_header(data_bytes=2 * 10**9) + pcm[: RATE * 2]
    items["zero_hz.wav"] = wav_header(rate=0, data_bytes=len(pcm)) + pcm
    items["empty.wav"] = b""
    items["archive.zip"] = _zip()
    items["no_audio_track.mp4"] = _silent_video()
    return items
