"""Decode a whole audio file (any container, rate and channel count) to 16 kHz mono float32."""

from __future__ import annotations

import io

import av
import numpy as np
from faster_whisper.audio import decode_audio

from stream_server.audio import SAMPLE_RATE
from stream_server.errors import AudioDecodeError


def decode_file(data: bytes, filename: str | None = None) -> np.ndarray:
    """Decode with PyAV (FFmpeg); raise AudioDecodeError for anything that is not audio."""
    name = f" '{filename}'" if filename else ""
    if not data:
        raise AudioDecodeError(f"the uploaded file{name} is empty", param="file")
    try:
        audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except (av.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise AudioDecodeError(
            f"could not decode the uploaded file{name} as audio: {exc}", param="file"
        ) from exc
    if audio.size == 0:
        raise AudioDecodeError(f"the uploaded file{name} holds no audio samples", param="file")
    return audio
