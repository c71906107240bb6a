"""TrackAligner: timestamped packets of several tracks lined up on one clock."""

import numpy as np

from stream_server.audio.live import RawFormat
from stream_server.audio.tracks import MAX_SKEW_S, TrackAligner

PCM = RawFormat("s16le", 8000)
FRAME = 160  # 20 ms at 8 kHz


def tone(seconds: float = 0.02) -> bytes:
    samples = int(8000 * seconds)
    return (np.full(samples, 8000, "<i2")).tobytes()


def total(aligner: TrackAligner, pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([*pieces, aligner.flush()], axis=1)


def test_a_lost_packet_is_silence_and_the_tracks_stay_the_same_length():
    aligner = TrackAligner(["inbound", "outbound"], PCM)
    pieces = []
    for chunk in range(50):
        for track in ("inbound", "outbound"):
            if not (track == "inbound" and chunk == 20):
                pieces.append(aligner.add(track, chunk * 20, tone()))
    audio = total(aligner, pieces)
    assert audio.shape == (2, 16000)
    lost = audio[0, 20 * 320 + 40 : 21 * 320 - 40]  # the lost 20 ms, away from the resampler's edges
    assert np.abs(lost).max() < 0.01 and np.abs(audio[1, 20 * 320 : 21 * 320]).min() > 0.2


def test_a_silent_track_is_filled_once_the_other_runs_ahead():
    aligner = TrackAligner(["inbound", "outbound"], PCM)
    handed = sum(aligner.add("inbound", chunk * 20, tone()).shape[1] for chunk in range(150))  # 3 s, outbound silent
    assert handed >= (3.0 - MAX_SKEW_S - 0.05) * 16000


def test_an_overlapping_packet_loses_only_its_overlap():
    aligner = TrackAligner(["inbound"], PCM)
    first = aligner.add("inbound", 0, tone(0.04))
    second = aligner.add("inbound", 20, tone(0.04))  # its first 20 ms were already there
    assert total(aligner, [first, second]).shape == (1, 960)
