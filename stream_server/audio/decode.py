"""Decode a whole audio file (any container, rate and channel count) to 16 kHz float32: mixed
to mono, or one row per channel."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import av
import numpy as np
from faster_whisper.audio import decode_audio

from stream_server.audio import SAMPLE_RATE
from stream_server.errors import AudioDecodeError

MAX_CHANNELS = 8
"""Most channels a file may have to be transcribed per channel."""


def decode_file(data: bytes, filename: str | None = None) -> np.ndarray:
    """Decode with PyAV (FFmpeg) and mix to mono; raise AudioDecodeError for anything that is not audio."""
    return _checked(data, filename, lambda: decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE))


def decode_channels(data: bytes, filename: str | None = None) -> np.ndarray:
    """Each channel on its own, as a (channels, samples) array; nothing is mixed."""
    return _checked(data, filename, lambda: _split(data, filename))


def _split(data: bytes, filename: str | None) -> np.ndarray:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        if stream.channels > MAX_CHANNELS:
            raise AudioDecodeError(
                f"the file has {stream.channels} channels; at most {MAX_CHANNELS} can be transcribed apart",
                param="file",
            )
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=SAMPLE_RATE)
        rows = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
        rows += [f.to_ndarray() for f in resampler.resample(None)]
    if not rows:
        return np.zeros((max(stream.channels, 1), 0), np.float32)
    return np.concatenate(rows, axis=1).astype(np.float32, copy=False)


def _checked(data: bytes, filename: str | None, decode: Callable[[], np.ndarray]) -> np.ndarray:
    name = f" '{filename}'" if filename else ""
    if not data:
        raise AudioDecodeError(f"the uploaded file{name} is empty", param="file")
    with _as_decode_error(name):
        audio = decode()
    if audio.size == 0:
        raise AudioDecodeError(f"the uploaded file{name} holds no audio samples", param="file")
    return audio


@contextmanager
def _as_decode_error(name: str) -> Iterator[None]:
    try:
        yield
    except (av.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise AudioDecodeError(f"could not decode the uploaded file{name} as audio: {exc}", param="file") from exc
