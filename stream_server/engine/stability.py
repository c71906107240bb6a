"""LocalAgreement-2: a word is committed once two consecutive hypotheses agree on it.

Hypotheses are decodes of a growing window; each re-reads audio whose words were already
committed, so those are dropped first (by time: a word centred before the last committed
word's end is old; then by matching the committed tail).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from stream_server.decoder.results import Word

MAX_OVERLAP_WORDS = 5
"""Longest run of committed words searched for at the head of a new hypothesis."""

_NON_WORD = re.compile(r"[^\w']+")


def normalise(word: str) -> str:
    """Compare words ignoring case and punctuation: 'country,' agrees with 'Country'."""
    return _NON_WORD.sub("", word.lower())


@dataclass
class LocalAgreement:
    committed: list[Word] = field(default_factory=list)
    """Every word committed so far, in order."""
    tail: list[Word] = field(default_factory=list)
    """The last hypothesis past the committed words: the unstable tail."""

    @property
    def committed_end(self) -> float:
        return self.committed[-1].end if self.committed else 0.0

    def update(
        self,
        hypothesis: list[Word],
        settled: Callable[[Word], bool] | None = None,
        sure: Callable[[Word], bool] | None = None,
    ) -> list[Word]:
        """Take a new hypothesis; return the words it newly commits: those it agrees on with
        the previous one, up to the first that is not yet settled, then, if it disagreed with
        none, those past the previous hypothesis that `sure` accepts from this decode alone."""
        new = self.unseen(hypothesis)
        agreed: list[Word] = []
        for previous, current in zip(self.tail, new):
            if normalise(previous.text) != normalise(current.text) or (settled and not settled(current)):
                break
            agreed.append(current)
        if sure is not None and len(agreed) == len(self.tail):
            for current in new[len(agreed) :]:
                if not sure(current):
                    break
                agreed.append(current)
        self.committed += agreed
        self.tail = new[len(agreed) :]
        return agreed

    def commit_all(self, hypothesis: list[Word]) -> list[Word]:
        """The last decode of an utterance: everything past the committed words is final."""
        words = self.unseen(hypothesis)
        self.committed += words
        self.tail = []
        return words

    def commit_tail_before(self, time: float) -> list[Word]:
        """Force-commit the tail words that end before `time` (bounds the window on long speech)."""
        forced = [w for w in self.tail if w.end <= time]
        self.committed += forced
        self.tail = self.tail[len(forced) :]
        return forced

    def unseen(self, hypothesis: list[Word]) -> list[Word]:
        """Drop the words of `hypothesis` that repeat committed ones."""
        if not self.committed:
            return list(hypothesis)
        fresh = [w for w in hypothesis if (w.start + w.end) / 2 >= self.committed_end]
        return without_overlap(fresh, self.committed)


def words_after(hypothesis: list[Word], previous: list[Word]) -> list[Word]:
    """The words of `hypothesis` that follow `previous`, decoded from a window that starts
    inside it: those reaching past the start of its last word, less a head that repeats its
    tail. Times are loose here: prompted with `previous`, Whisper often goes straight on to the
    next word and times it from the window's start ("around" at 6.83-7.89 s after "built" at
    7.66-7.98 s), so only the text tells a word heard again from a new one."""
    last_start = previous[-1].start if previous else 0.0
    return without_overlap([w for w in hypothesis if w.end > last_start], previous)


def without_overlap(fresh: list[Word], previous: list[Word]) -> list[Word]:
    """`fresh` less its longest head that repeats the end of `previous`."""
    tail = [normalise(w.text) for w in previous[-MAX_OVERLAP_WORDS:]]
    head = [normalise(w.text) for w in fresh[:MAX_OVERLAP_WORDS]]
    for n in range(min(len(tail), len(head)), 0, -1):
        if tail[-n:] == head[:n]:
            return fresh[n:]
    return fresh
