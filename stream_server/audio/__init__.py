"""Bytes in, 16 kHz mono float32 PCM out."""

SAMPLE_RATE = 16_000
"""Whisper's input rate; every stage after decoding works at this rate."""
