"""Speech a whole-recording decode passed over.

Whisper decodes a long recording 30 s at a time and moves on by the timestamps it predicts;
now and then it predicts a jump past a whole sentence that the VAD heard (on the held-out feed
an 11-word sentence vanished between two others). Each such stretch is found between two
decoded segments and decoded again on its own, so a file loses no sentence that the live
engine, which decodes each utterance alone, would keep.
"""

from __future__ import annotations

from collections.abc import Sequence

SLACK_SECONDS = 1.0
"""How loose a segment's start and end are: speech this close to a decoded segment may be its
own (decoding such stretches again found its last word twice, or words invented on a breath)."""
MIN_SKIPPED_SECONDS = 1.0
"""Speech beyond the slack, no segment covering it, for at least this long was skipped."""


def skipped_speech(speech: Sequence[tuple[float, float]], after: float, before: float) -> tuple[float, float] | None:
    """The stretch from the first to the last speech heard in (`after`, `before`), the gap
    between two decoded segments, when MIN_SKIPPED_SECONDS of it lie more than SLACK_SECONDS
    from both; else None. `speech` is the VAD's spans in seconds, in time order."""
    pieces = [(max(start, after), min(end, before)) for start, end in speech if end > after and start < before]
    inner_after, inner_before = after + SLACK_SECONDS, before - SLACK_SECONDS
    beyond_slack = sum(max(0.0, min(end, inner_before) - max(start, inner_after)) for start, end in pieces)
    if beyond_slack < MIN_SKIPPED_SECONDS:
        return None
    return pieces[0][0], pieces[-1][1]
