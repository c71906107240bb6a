"""What the whole-window policy commits from a whole file's decode (a fake decoder)."""

from __future__ import annotations

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription
from stream_server.engine.whole_windows import WholeWindowTranscriber
from stream_server.events import Event


def segment(text: str, start: float, end: float) -> Segment:
    return Segment(0, 0, start, end, text, (), 0.0, -0.1, 1.0, 0.0)


async def unused(audio, prompt, *, final, deadline):
    raise AssertionError("a whole file is not decoded in whole windows")


async def test_a_file_segment_that_repeats_the_one_before_is_kept():
    async def repeating(audio, prompt, on_segment, *, deadline):
        segments = (segment(" go forward ten meters", 0.0, 2.0), segment(" go forward ten meters", 2.0, 4.0))
        for s in segments:
            on_segment(s)
        return Transcription("en", 5.0, segments)

    events: list[Event] = []
    policy = WholeWindowTranscriber(unused, events.append, file_decode=repeating)
    policy.push(np.zeros(5 * SAMPLE_RATE, np.float32))
    await policy.finish()
    assert policy.text == "go forward ten meters go forward ten meters"
