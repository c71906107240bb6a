"""The shared call as a telephony client sends it: interleaved 8 kHz 16-bit PCM, or G.711 µ-law."""

from __future__ import annotations

import wave

import av
import numpy as np

from tests.conftest import audio_path
from tests.speech import CALL

CALL_RATE = 8000


def call_s16() -> np.ndarray:
    """The call's samples as (channels, samples) int16, at 8 kHz."""
    with wave.open(str(audio_path(CALL))) as wav:
        assert (wav.getframerate(), wav.getsampwidth()) == (CALL_RATE, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        return frames.reshape(-1, wav.getnchannels()).T


def interleaved_pcm(rows: np.ndarray) -> bytes:
    return rows.T.astype("<i2").tobytes()


def mulaw(rows: np.ndarray) -> bytes:
    """(channels, samples) int16 as interleaved µ-law bytes (FFmpeg's G.711 encoder)."""
    layout = {1: "mono", 2: "stereo"}[rows.shape[0]]
    codec = av.CodecContext.create("pcm_mulaw", "w")
    codec.sample_rate, codec.layout, codec.format = CALL_RATE, layout, "s16"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(rows.T).reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = CALL_RATE
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
