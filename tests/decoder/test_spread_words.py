"""A segment decoded without word timestamps gets its words from its text, their times spread."""

from __future__ import annotations

import math

from stream_server.decoder.results import Segment


def segment(text: str, start: float, end: float, avg_logprob: float = -0.2) -> Segment:
    return Segment(0, 0, start, end, text, (), 0.0, avg_logprob, 1.0, 0.0)


def test_words_share_the_segment_by_their_length_and_join_back_into_its_text():
    words = segment(" I am here.", 1.0, 2.0).spread_words()
    assert "".join(w.text for w in words) == " I am here."
    assert [(w.start, w.end) for w in words] == [(1.0, 1.125), (1.125, 1.375), (1.375, 2.0)]
    assert all(math.isclose(w.probability, math.exp(-0.2)) for w in words)


def test_a_segment_without_text_has_no_words():
    assert segment("", 1.0, 2.0).spread_words() == ()
