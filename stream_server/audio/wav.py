"""16 kHz mono float32 PCM back to bytes: raw 16-bit samples or a WAV file."""

from __future__ import annotations

import io
import wave

import numpy as np

from stream_server.audio import SAMPLE_RATE


def s16le(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit integers."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def wav_bytes(audio: np.ndarray) -> bytes:
    """16 kHz mono float32 as a 16-bit WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(s16le(audio))
    return buffer.getvalue()
