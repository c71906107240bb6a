"""Admission control for live streams: refuse a new stream up front rather than let every
admitted stream fall behind.

Capacity comes from measured cost: the decode seconds live streams spend on their utterances'
finals per second of audio they send (silence included, since the VAD skips it), smoothed over
the server's recent traffic. `slots` workers at `target_utilisation` carry `slots * target /
cost` real-time streams. Finals are the work a stream cannot do without; its partials are
elastic (a stream alone decodes them whenever a slot is free, an overloaded server packs them
and finals together into shared calls and decodes them less often), so a server at this
capacity serves every stream, with slower commits and fewer partials as it fills, and past it
even the finals would fall behind. Until enough audio has been measured, a default cost is
assumed.
A hard cap and a per-key cap apply on top. File transcriptions are not admitted here: they run
at BATCH priority in whatever the live streams leave.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from stream_server.errors import StreamRefused

CAPACITY = "capacity"
MAX_STREAMS = "max_streams"
PER_KEY = "per_key"
REFUSAL_REASONS = (CAPACITY, MAX_STREAMS, PER_KEY)


@dataclass(frozen=True)
class AdmissionOptions:
    slots: int = 1
    """Decode slots the live streams share."""
    target_utilisation: float = 0.85
    """Share of the slots' time the admitted streams are planned to use; the rest absorbs bursts."""
    default_cost: float = 0.35
    """Finals' decode seconds per audio second assumed until measured: a tiny.en stream of dense
    read speech on 2 cores, 2 slots (about one 1.1 s final per 3.4 s utterance), so a fresh
    server admits what a warm one measures (4 on 2 slots)."""
    max_streams: int = 0
    """Hard cap on concurrent live streams; 0 leaves only the estimate."""
    enforce_estimate: bool = True
    """Refuse beyond the estimate. Off (load benchmarks), only the caps apply; the estimate is
    still measured and reported."""
    max_streams_per_key: int = 0
    """Concurrent live streams one API key may hold; 0 is no limit. The anonymous caller (no
    keys configured) is not limited by this."""
    sample_audio_s: float = 10.0
    """Audio seconds (over all streams) per cost sample."""
    smoothing: float = 0.2
    """Weight of the newest sample in the moving average."""
    retry_after_s: float = 5.0
    """Retry-After given with a refusal: about how soon a stream may have ended."""


class CostEstimate:
    """Exponentially weighted decode seconds per live audio second.

    A sample divides the decode time spent since the last sample by the audio that arrived
    meanwhile. Decodes trail their audio by about a step (plus any queue), so for real-time
    streams a sample of 10 s is close; a client bursting audio faster than real time makes a
    sample too low and the next ones too high, which the average smooths out.
    """

    def __init__(self, default: float, smoothing: float, sample_audio_s: float):
        self.value = default
        self.measured = False
        self._smoothing = smoothing
        self._sample_audio_s = sample_audio_s
        self._audio = 0.0
        self._decode_at_sample = 0.0
        self._audio_at_sample = 0.0

    @property
    def audio_seconds(self) -> float:
        return self._audio

    def observe(self, audio_seconds: float, decode_seconds_total: float) -> None:
        """`audio_seconds` more live audio arrived; `decode_seconds_total` is the running total
        of live decode time. Takes a sample once enough audio has passed."""
        self._audio += audio_seconds
        audio = self._audio - self._audio_at_sample
        if audio < self._sample_audio_s:
            return
        sample = max(0.0, decode_seconds_total - self._decode_at_sample) / audio
        self.value += self._smoothing * (sample - self.value)  # from the default: one sample moves it part way
        self.measured = True
        self._audio_at_sample, self._decode_at_sample = self._audio, decode_seconds_total


class Admission:
    """Counts admitted live streams, hands out tickets, and refuses beyond capacity."""

    def __init__(self, options: AdmissionOptions, live_decode_seconds: Callable[[], float]):
        self.options = options
        self._decode_seconds = live_decode_seconds
        self.cost = CostEstimate(options.default_cost, options.smoothing, options.sample_audio_s)
        self._by_owner: Counter[str] = Counter()
        self.active = 0
        self.admitted = 0
        self.refused: Counter[str] = Counter({reason: 0 for reason in REFUSAL_REASONS})

    @property
    def estimate(self) -> int:
        """Real-time streams the slots carry at the target utilisation (at least one)."""
        cost = max(self.cost.value, 1e-3)
        return max(1, math.floor(self.options.slots * self.options.target_utilisation / cost))

    @property
    def capacity(self) -> float:
        """Streams admitted at once: the estimate (if enforced) capped by `max_streams` (if set);
        infinite with neither."""
        limits = [self.estimate] if self.options.enforce_estimate else []
        limits += [self.options.max_streams] if self.options.max_streams else []
        return min(limits, default=math.inf)

    def check(self, owner: str | None) -> None:
        """Raise the refusal `admit(owner)` would raise now, taking no place: a transport whose
        stream starts later than its connection (at its first audio) refuses at once."""
        options = self.options
        if owner is not None and options.max_streams_per_key and self._by_owner[owner] >= options.max_streams_per_key:
            self.refuse_per_key(self._by_owner[owner])
        if options.max_streams and self.active >= options.max_streams:
            self._refuse(MAX_STREAMS, f"the server is at its limit of {options.max_streams} live streams")
        if self.active >= self.capacity:
            self._refuse(CAPACITY, f"the server is at capacity ({self.estimate} live streams); retry later")

    def admit(self, owner: str | None) -> Ticket:
        """A ticket for one more stream of `owner` (a key id; None: not limited per key), or
        Overloaded."""
        self.check(owner)
        self.active += 1
        self.admitted += 1
        if owner is not None:
            self._by_owner[owner] += 1
        return Ticket(self, owner)

    def refuse_per_key(self, held: int) -> None:
        """Refuse a key that holds `held` live streams, its limit (here, or counted over every
        replica by live_state.py)."""
        self._refuse(PER_KEY, f"this API key already has {held} live streams, its limit")

    def heard(self, audio_seconds: float) -> None:
        """Live audio arrived (any stream): feeds the cost estimate."""
        self.cost.observe(audio_seconds, self._decode_seconds())

    def _refuse(self, reason: str, message: str) -> None:
        self.refused[reason] += 1
        code = "too_many_streams" if reason == PER_KEY else "overloaded"
        raise StreamRefused(message, reason=reason, retry_after=self.options.retry_after_s, code=code)

    def _release(self, owner: str | None) -> None:
        self.active -= 1
        if owner is not None:
            self._by_owner[owner] -= 1
            if self._by_owner[owner] <= 0:
                del self._by_owner[owner]


class Ticket:
    """One admitted stream's place; `release()` gives it back, once, however often called."""

    def __init__(self, admission: Admission, owner: str | None):
        self._admission = admission
        self._owner = owner
        self.released = False

    def heard(self, audio_seconds: float) -> None:
        self._admission.heard(audio_seconds)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._release(self._owner)
