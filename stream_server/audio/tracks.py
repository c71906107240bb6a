"""Several tracks of one call arriving as separate timestamped packets (Twilio's inbound and
outbound), lined up on the call's clock as one (channels, samples) stream at 16 kHz.

Positions are kept in the tracks' own samples: a packet that starts later than its track has
reached (a lost packet) is preceded by silence, one that overlaps what the track already has
loses the overlap, and a track that falls more than MAX_SKEW_S behind the others (no packets:
nothing is played on it) is filled with silence, so the tracks stay aligned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream_server.audio.live import RawDecoder, RawFormat

MAX_SKEW_S = 1.0
"""How far one track may run ahead of another before the one behind is filled with silence."""
SILENCE = {"mulaw": b"\xff", "alaw": b"\xd5", "s16le": b"\x00\x00"}
"""One sample of silence in each encoding."""


class TrackAligner:
    def __init__(self, tracks: Sequence[str], fmt: RawFormat):
        if fmt.channels != 1:
            raise ValueError("each track is one channel")
        self.tracks = tuple(tracks)
        self._fmt = fmt
        self._silence = SILENCE[fmt.encoding]
        self._width = len(self._silence)
        self._decoders = {t: RawDecoder(fmt) for t in self.tracks}
        self._written = dict.fromkeys(self.tracks, 0)
        """Samples (at the tracks' rate) each track has reached."""
        self._ready = {t: np.zeros(0, np.float32) for t in self.tracks}
        """Decoded 16 kHz audio not yet handed on."""

    def add(self, track: str, timestamp_ms: float, payload: bytes) -> np.ndarray:
        """A packet of `track` that starts `timestamp_ms` into the call; returns the audio now
        complete on every track, as (channels, samples) 16 kHz float32."""
        start = round(timestamp_ms * self._fmt.sample_rate / 1000)
        have = self._written[track]
        if start > have:
            self._append(track, self._silence * (start - have))
        elif start < have:
            payload = payload[(have - start) * self._width :]
        self._append(track, payload)
        lead = max(self._written.values())
        for other in self.tracks:
            behind = lead - self._written[other] - int(MAX_SKEW_S * self._fmt.sample_rate)
            if behind > 0:
                self._append(other, self._silence * behind)
        return self._take(min(len(a) for a in self._ready.values()))

    def flush(self) -> np.ndarray:
        """The end of the call: everything left, the shorter tracks padded with silence."""
        for track, decoder in self._decoders.items():
            self._ready[track] = np.concatenate([self._ready[track], decoder.flush()])
        return self._take(max(len(a) for a in self._ready.values()), pad=True)

    def _append(self, track: str, data: bytes) -> None:
        if data:
            self._written[track] += len(data) // self._width
            self._ready[track] = np.concatenate([self._ready[track], self._decoders[track].decode(data)])

    def _take(self, samples: int, pad: bool = False) -> np.ndarray:
        rows = []
        for track in self.tracks:
            row, self._ready[track] = self._ready[track][:samples], self._ready[track][samples:]
            rows.append(np.pad(row, (0, samples - len(row))) if pad else row)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
