"""Cross-stream window packing: several live windows decoded in one Whisper pass.

On CPU a model call costs about the same for 3 s of audio as for 30 s: the encoder always
reads a 30 s window. Windows laid end to end with silence between them are decoded once, with
word timestamps, and each window gets back the words that start inside it, timed from its own
start, as if it had been decoded alone. A word that lies in a gap belongs to no window and is
dropped.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Segment, Transcription, Word
from stream_server.decoder.whisper import TranscribeOptions

Transcribe = Callable[[np.ndarray, TranscribeOptions], Transcription]

EDGE_S = 0.25
"""A word starting this close to a piece, in the gap, is still the piece's: Whisper times a
piece's first word a little early and stretches its last one into the silence after it."""
MAX_PACK_TOKENS = 220
"""Whisper's decoder holds 448 tokens and faster-whisper lets a prompt (on a second pass, the
first pass's text) fill half of them: a longer cap fails the call."""


@dataclass(frozen=True)
class PackOptions:
    gap_s: float = 1.0
    """Silence between two windows (0.5 s and 2 s did worse, same measurement as `prompt`)."""
    gap_noise: float = 0.003
    """RMS of the white noise that fills a gap (about -50 dBFS). Digital silence looks like the
    padding after the end of the audio, and Whisper tends to stop there."""
    max_seconds: float = 30.0
    """Longest packed input, gaps included (Whisper's window is 30 s)."""
    max_pieces: int = 8
    """Most windows in one call."""
    prompt: bool = False
    """Condition the call on the first window's prompt. Off: that stream's context misleads the
    decoder on the other streams' speech (partial-window WER 14.2 % unprompted, 23.1 % with it;
    BENCHMARKS.md, "Packed windows against the same windows alone")."""
    finals_after_s: float | None = 0.5
    """An utterance's final is decoded alone, with its stream's text as prompt, unless the
    window a free slot takes has already waited this long for one: the server is behind, and
    finals share calls too (unprompted, they cost some accuracy) rather than every stream
    falling further behind. None: finals always run alone."""
    finals_slot: bool = True
    """With two or more slots, partials may hold all but one: the last is left to utterance
    finals, which then start at their pause instead of queueing behind other streams' partials,
    and the partials that wait share calls (under load, more of them in each)."""


@dataclass(frozen=True, eq=False)
class Window:
    """A live window decode that may share its call: its audio and its own options."""

    audio: np.ndarray
    options: TranscribeOptions

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def key(self) -> TranscribeOptions | None:
        """Windows with equal keys may share a call: their options differ only in prompt and
        token cap, which a packed call sets for all of them. None: the window's language is
        still to be detected, which one pass does once for all it holds, so it runs alone."""
        if self.options.language is None:
            return None
        return replace(self.options, prompt=None, max_new_tokens=None)


@dataclass(frozen=True)
class Layout:
    """Where each piece lies in the packed audio, in seconds."""

    starts: tuple[float, ...]
    durations: tuple[float, ...]

    def piece_of(self, word: Word) -> int | None:
        """The piece a decoded word belongs to: the one it starts in, give or take EDGE_S; else
        the one it reaches into from the gap before it (Whisper times a piece's first word, or a
        second pass's, from inside the gap). None: the word lies in a gap, in no piece's audio."""
        for index, (start, duration) in enumerate(zip(self.starts, self.durations)):
            if start - EDGE_S <= word.start < start + duration + EDGE_S:
                return index
        for index, start in enumerate(self.starts):
            if word.start < start < word.end:
                return index
        return None


def packed_seconds(durations: Sequence[float], gap_s: float) -> float:
    """Length of the pieces laid end to end with `gap_s` of silence between them."""
    return sum(durations) + gap_s * max(0, len(durations) - 1)


def companions(lead_s: float, queued_s: Sequence[float], options: PackOptions) -> list[int]:
    """Which of the queued windows (their lengths, most urgent first) share the lead window's
    call: each in turn that still fits, up to `max_pieces`."""
    chosen: list[int] = []
    durations = [lead_s]
    for index, seconds in enumerate(queued_s):
        if len(durations) >= options.max_pieces:
            break
        if packed_seconds([*durations, seconds], options.gap_s) <= options.max_seconds:
            chosen.append(index)
            durations.append(seconds)
    return chosen


def lay_out(pieces: Sequence[np.ndarray], options: PackOptions) -> tuple[np.ndarray, Layout]:
    """The pieces (16 kHz float32) in order with a gap between each two."""
    gap_samples = round(options.gap_s * SAMPLE_RATE)
    noise = np.random.default_rng(0)  # the same gaps every call: a decode is repeatable
    parts: list[np.ndarray] = []
    starts: list[float] = []
    samples = 0
    for index, piece in enumerate(pieces):
        if index:
            parts.append((noise.standard_normal(gap_samples) * options.gap_noise).astype(np.float32))
            samples += gap_samples
        starts.append(samples / SAMPLE_RATE)
        parts.append(piece.astype(np.float32, copy=False))
        samples += len(piece)
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio, Layout(tuple(starts), tuple(len(p) / SAMPLE_RATE for p in pieces))


def decode_packed(transcribe: Transcribe, windows: Sequence[Window], options: PackOptions) -> list[Transcription]:
    """Decode the windows in one call (blocking); one Transcription per window."""
    audio, layout = lay_out([w.audio for w in windows], options)
    lead = windows[0].options
    caps = [w.options.max_new_tokens for w in windows]
    result = transcribe(
        audio,
        replace(
            lead,
            prompt=lead.prompt if options.prompt else None,
            max_new_tokens=min(sum(caps), MAX_PACK_TOKENS) if all(caps) else MAX_PACK_TOKENS,
            # a pass that ends early goes on from its last word: alone, a window's tail after it
            # is mostly a breath, but here it may hold the next pieces, which one pass would drop
            one_window=False,
        ),
    )
    return split(result, layout, [result.prompt_tokens] + [0] * (len(windows) - 1))


def split(result: Transcription, layout: Layout, prompt_tokens: Sequence[int]) -> list[Transcription]:
    """One Transcription per piece, as if the piece had been decoded alone: its words with
    times from its start, grouped by the packed decode's segments.

    Per-segment statistics are recomputed per piece where one pass allows it: the compression
    ratio from the piece's own text and the average log-probability from its words'
    probabilities (a repetition loop or invented text in one piece must not condemn the
    others). The no-speech probability is the pass's own: a pass has only one.
    `prompt_tokens[i]` is what piece i is billed for the prompt."""
    pieces: list[list[Segment]] = [[] for _ in layout.starts]
    for segment in result.segments:
        by_piece: dict[int, list[Word]] = {}
        for word in segment.words:
            index = layout.piece_of(word)
            if index is not None:
                by_piece.setdefault(index, []).append(_shifted(word, layout.starts[index], layout.durations[index]))
        for index, words in by_piece.items():
            whole = len(words) == len(segment.words)
            pieces[index].append(
                replace(
                    segment,
                    id=len(pieces[index]) + 1,
                    start=words[0].start,
                    end=words[-1].end,
                    text="".join(w.text for w in words),
                    tokens=segment.tokens if whole else (),  # a segment cut by a gap: no word-to-token map
                    words=tuple(words),
                )
            )
    return [
        Transcription(language=result.language, duration=duration, segments=_restated(segments), prompt_tokens=tokens)
        for segments, duration, tokens in zip(pieces, layout.durations, prompt_tokens)
    ]


def _shifted(word: Word, start: float, duration: float) -> Word:
    """`word` timed from its piece's start, kept inside the piece."""
    return Word(
        float(min(max(word.start - start, 0.0), duration)),
        float(min(max(word.end - start, 0.0), duration)),
        word.text,
        word.probability,
    )


def _restated(segments: list[Segment]) -> tuple[Segment, ...]:
    """The piece's segments with the compression ratio and average log-probability of the
    piece's text from each pass (faster-whisper gives them per pass, its 30 s seek window)."""
    passes: dict[int, list[Segment]] = {}
    for segment in segments:
        passes.setdefault(segment.seek, []).append(segment)
    restated = []
    for group in passes.values():
        words = [w for s in group for w in s.words]
        text = "".join(s.text for s in group).strip().encode()
        ratio = len(text) / len(zlib.compress(text)) if text else 0.0
        logprob = sum(math.log(max(w.probability, 1e-6)) for w in words) / len(words)
        restated += [replace(s, compression_ratio=ratio, avg_logprob=logprob) for s in group]
    return tuple(restated)
