"""N live streams through the engine and the decode scheduler on a virtual clock, packing on
and off: what packing does to accuracy and latency, apart from what else the machine is doing.

    python scripts/simulate_load.py --streams 1 2 4 6 8

Each stream replays its own rotation of the dev feed (scripts/feed.py: every stream hears the
whole feed, starting at a different clip) in 100 ms chunks at real-time pace on a virtual
clock, the streams starting `--stagger` s apart, through the production path: LiveTranscriber,
TranscriptionService.window_decoder, DecodeScheduler (its slots, deadline order and packing).
Decodes are real; each model call costs a fixed virtual time (a partial, an utterance's final,
plus `--piece-cost` per extra window in a packed call), so the outcome depends only on the
policy and the cost model, not on the machine's load. `--calibrate` measures the cost model on
this machine first (`measured_costs`): the defaults are an older, slower machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
from faster_whisper import WhisperModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import stream_server.engine.scheduler as scheduler_module  # noqa: E402
import stream_server.engine.stream as stream_module  # noqa: E402
from scripts.bench_stream import percentile, wer  # noqa: E402
from scripts.feed import Feed, rotations  # noqa: E402
from stream_server.app import load_model  # noqa: E402
from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.engine.packing import PackOptions, decode_packed  # noqa: E402
from stream_server.decoder.results import Transcription  # noqa: E402
from stream_server.engine.stream import LiveTranscriber, StreamOptions, WindowDecoder  # noqa: E402
from stream_server.events import Event, StreamDone, UtteranceDone  # noqa: E402
from stream_server.decoder.whisper import SpeechModel  # noqa: E402
from stream_server.service import TranscriptionService, window_options  # noqa: E402
from stream_server.settings import Settings  # noqa: E402

CHUNK_S = 0.1


@dataclass(frozen=True)
class Costs:
    partial: float
    final: float
    piece: float
    """Added per window beyond the first in a packed call."""
    per_pass: float = 0.0
    per_word: float = 0.0
    """With `per_pass` set, a call costs `per_pass` per encoder pass it made (faster-whisper
    encodes again from the last timestamp when a window's text ends early) plus `per_word` per
    word it decoded, instead of the fixed costs above."""

    def __str__(self) -> str:
        if self.per_pass:
            return f"{self.per_pass:.3f} s per encoder pass + {self.per_word:.4f} s per word"
        return f"partial {self.partial:g} s, final {self.final:g} s, +{self.piece:g} s per packed window"

    def of(self, fn: Callable, args: tuple, final: bool, result: object, passes: int) -> float:
        if self.per_pass:
            results = result if isinstance(result, list) else [result]
            words = sum(len(segment.words) for r in results for segment in r.segments)
            return self.per_pass * passes + self.per_word * words
        if fn is decode_packed:
            return self.partial + self.piece * (len(args[1]) - 1)
        return self.final if final else self.partial


def measured_costs(model: SpeechModel, audio: np.ndarray, repeats: int = 8) -> tuple[Costs, float]:
    """This machine's cost model and slowdown: live-style calls on the feed's first 2 s and
    first 12 s, each timed `repeats` times after two of warm-up (medians), give an encoder pass
    and a decoded word (two unknowns, two windows); the long window decoded twice at once, what
    a call costs more while another runs."""

    def decode(window: np.ndarray) -> tuple[float, int]:
        started = time.perf_counter()
        result = model.transcribe(window, window_options("en", None, seconds=len(window) / SAMPLE_RATE))
        return time.perf_counter() - started, sum(len(segment.words) for segment in result.segments)

    def median_wall(window: np.ndarray, pool: ThreadPoolExecutor | None = None) -> tuple[float, int]:
        walls, words = [], 0
        for _ in range(repeats + 2):
            results = list(pool.map(decode, [window, window])) if pool else [decode(window)]
            walls += [wall for wall, _ in results]
            words = results[0][1]
        return statistics.median(walls[2 * len(results) :]), words

    short, long = audio[: 2 * SAMPLE_RATE], audio[: 12 * SAMPLE_RATE]
    (short_wall, short_words), (long_wall, long_words) = median_wall(short), median_wall(long)
    per_word = max(0.0, (long_wall - short_wall) / max(1, long_words - short_words))
    per_pass = max(0.0, short_wall - per_word * short_words)
    with ThreadPoolExecutor(2) as pool:
        shared_wall, _ = median_wall(long, pool)
    return Costs(0.0, 0.0, 0.0, per_pass, per_word), shared_wall / long_wall


class EncoderPasses:
    """Counts faster-whisper's encoder passes (one per 30 s window it decodes)."""

    def __init__(self) -> None:
        self.count = 0
        encode = WhisperModel.encode

        def counted(model, features):
            self.count += 1
            return encode(model, features)

        WhisperModel.encode = counted


PASSES = EncoderPasses()


class Call(NamedTuple):
    """One model call, as the virtual executor's log keeps it."""

    fn: Callable
    args: tuple
    result: object
    wall: float
    """Seconds it took for real."""
    final: bool
    """It decoded an utterance's final window."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class VirtualExecutor(Executor):
    """Runs a call at once and completes its future when the virtual clock reaches its cost;
    `log` (if given) collects every call (`Call`)."""

    def __init__(self, clock: Clock, costs: Costs, log: list[Call] | None = None, slowdown: float = 1.0):
        self.clock = clock
        self.costs = costs
        self.slowdown = slowdown
        """A call's cost is multiplied by this when it starts while another is running (the
        slots share the cores)."""
        self.log = log
        self.busy_seconds = 0.0
        self.calls = 0
        self._pending: list[tuple[float, int, Future, object]] = []
        self._order = itertools.count()
        self._finals: dict[int, np.ndarray] = {}

    def marking_finals(self, decode: WindowDecoder) -> WindowDecoder:
        """`decode`, noting each final window so that its call is told from a partial's (they
        take the same options): the window reaches `submit` as the same array."""

        async def marked(audio: np.ndarray, prompt: str | None, *, final: bool, deadline: float) -> Transcription:
            if final:
                self._finals[id(audio)] = audio
            return await decode(audio, prompt, final=final, deadline=deadline)

        return marked

    def submit(self, fn, /, *args, **kwargs) -> Future:
        final = fn is not decode_packed and self._finals.pop(id(args[0]), None) is args[0]
        future: Future = Future()
        started, passes = time.perf_counter(), PASSES.count
        result = fn(*args, **kwargs)
        cost = self.costs.of(fn, args, final, result, PASSES.count - passes)
        if any(due > self.clock.now for due, *_ in self._pending):
            cost *= self.slowdown
        self.busy_seconds += cost
        self.calls += 1
        if self.log is not None:
            self.log.append(Call(fn, args, result, time.perf_counter() - started, final))
        heapq.heappush(self._pending, (self.clock.now + cost, next(self._order), future, result))
        return future

    def next_completion(self) -> float:
        return self._pending[0][0] if self._pending else float("inf")

    def complete_due(self) -> None:
        while self._pending and self._pending[0][0] <= self.clock.now:
            _, _, future, result = heapq.heappop(self._pending)
            future.set_result(result)


@dataclass
class SimStream:
    feed: Feed
    start: float
    transcriber: LiveTranscriber | None = None
    pushed: int = 0
    commit_delays: list[float] = field(default_factory=list)
    final_delays: list[float] = field(default_factory=list)
    """Per utterance: its final's arrival less its end."""
    lengths: list[float] = field(default_factory=list)
    """Per utterance: end less start."""
    text: str = ""
    done_at: float | None = None
    finishing: asyncio.Future | None = None

    @property
    def next_push(self) -> float:
        return self.start + (self.pushed + 1) * CHUNK_S

    @property
    def fed(self) -> bool:
        return self.pushed * CHUNK_S * SAMPLE_RATE >= len(self.feed.audio)

    @property
    def end(self) -> float:
        return self.start + len(self.feed.audio) / SAMPLE_RATE

    def partial(self, delay: float) -> None:
        pass

    def committed(self, delays: Sequence[float]) -> None:
        self.commit_delays.extend(delays)


@dataclass(frozen=True)
class Outcome:
    streams: int
    packing: bool
    wer_pooled: float
    wer_median: float
    wer_worst: float
    commit_p50: float
    commit_p95: float
    commit_max: float
    final_p50: float
    longest_utterance: float
    worst_lag: float
    calls: int
    packed_share: float
    pieces_per_packed_call: float
    cost_per_audio_second: float

    def row(self) -> str:
        return (
            f"| {self.streams} | {'on' if self.packing else 'off'} | {self.wer_pooled:.2%} | {self.wer_median:.1%} / {self.wer_worst:.1%} "
            f"| {self.commit_p50:.2f} / {self.commit_p95:.2f} / {self.commit_max:.2f} | {self.final_p50:.2f} | {self.longest_utterance:.1f} | {self.worst_lag:.2f} | {self.calls} | {self.packed_share:.0%} "
            f"| {self.pieces_per_packed_call:.1f} | {self.cost_per_audio_second:.3f} |"
        )


HEADER = (
    "| streams | packing | WER pooled | WER median / worst | commit p50 / p95 / max (s) | final p50 (s) | longest utterance (s) "
    "| worst lag at end (s) | model calls | windows in packed calls | windows per packed call | virtual decode s per audio s |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


async def simulate(
    model,
    feeds: list[Feed],
    slots: int,
    packing: PackOptions | None,
    costs: Costs,
    stagger: float,
    log: list[Call] | None = None,
    options: StreamOptions = StreamOptions(),
    slowdown: float = 1.0,
) -> Outcome:
    """One run: live windows decode greedily, in one pass, so the same run gives the same words."""
    clock = Clock()
    stream_module.time = SimpleNamespace(monotonic=clock)  # the engine's deadlines and latencies on the virtual clock
    scheduler_module.time = SimpleNamespace(monotonic=clock)  # and the scheduler's waits
    executor = VirtualExecutor(clock, costs, log, slowdown)
    service = TranscriptionService(executor, slots, packing)
    streams = [SimStream(feed, i * stagger) for i, feed in enumerate(feeds)]
    for s in streams:

        def publish(event: Event, s: SimStream = s) -> None:
            if isinstance(event, StreamDone):
                s.text, s.done_at = event.text, clock.now
            elif isinstance(event, UtteranceDone):
                s.final_delays.append(clock.now - s.start - event.end)
                s.lengths.append(event.end - event.start)

        decode = executor.marking_finals(service.window_decoder(model, "en"))
        s.transcriber = LiveTranscriber(decode, publish, options, observer=s)
    step = int(CHUNK_S * SAMPLE_RATE)
    while True:
        clock.now = max(clock.now, min([s.next_push for s in streams if not s.fed] + [executor.next_completion()]))
        if clock.now == float("inf"):
            break
        executor.complete_due()
        for s in streams:
            while not s.fed and s.next_push <= clock.now:
                s.transcriber.push(s.feed.audio[s.pushed * step : (s.pushed + 1) * step])
                s.pushed += 1
                if s.fed:
                    s.finishing = asyncio.ensure_future(s.transcriber.finish())
        for _ in range(50):  # let every stream and the scheduler act on what just happened
            await asyncio.sleep(0)
    errors = [wer(s.feed.reference, s.text) for s in streams]
    words = [len(s.feed.reference.split()) for s in streams]
    delays = [d for s in streams for d in s.commit_delays]
    audio = sum(len(f.audio) for f in feeds) / SAMPLE_RATE
    scheduler = service.scheduler
    return Outcome(
        streams=len(feeds),
        packing=packing is not None,
        wer_pooled=sum(e * n for e, n in zip(errors, words)) / sum(words),
        wer_median=statistics.median(errors),
        wer_worst=max(errors),
        commit_p50=percentile(delays, 50),
        commit_p95=percentile(delays, 95),
        commit_max=max(delays, default=0.0),
        final_p50=percentile([d for s in streams for d in s.final_delays], 50),
        longest_utterance=max((n for s in streams for n in s.lengths), default=0.0),
        worst_lag=max(s.done_at - s.end for s in streams),
        calls=executor.calls,
        packed_share=scheduler.packed_windows / max(1, scheduler.packed_windows + executor.calls - scheduler.packed_decodes),
        pieces_per_packed_call=scheduler.packed_windows / max(1, scheduler.packed_decodes),
        cost_per_audio_second=executor.busy_seconds / slots / audio,
    )


def stream_options(assignments: list[str]) -> StreamOptions:
    """StreamOptions with `field=value` assignments, each value parsed as its default's type
    (`none` for None; a flag `true` or `false`)."""
    options = StreamOptions()
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        default = getattr(options, name)
        parse = float if default is None else _flag if isinstance(default, bool) else type(default)
        options = replace(options, **{name: None if value == "none" else parse(value)})
    return options


def _flag(value: str) -> bool:
    """`bool("false")` is True: a flag is spelt out."""
    if value.lower() not in ("true", "false"):
        raise ValueError(f"a flag is true or false, not {value!r}")
    return value.lower() == "true"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--packing", choices=["on", "off", "both"], default="both")
    parser.add_argument("--slots", type=int, default=Settings.decode_slots)
    parser.add_argument("--stagger", type=float, default=1.0)
    parser.add_argument("--partial-cost", type=float, default=0.45, help="virtual seconds per greedy partial call")
    parser.add_argument("--final-cost", type=float, default=0.60, help="virtual seconds per final call (a whole utterance)")
    parser.add_argument("--piece-cost", type=float, default=0.10, help="virtual seconds per extra window in a packed call")
    parser.add_argument("--per-pass", type=float, default=0.0, help="virtual seconds per encoder pass (replaces the fixed costs)")
    parser.add_argument("--per-word", type=float, default=0.0, help="with --per-pass: virtual seconds per decoded word")
    parser.add_argument(
        "--slowdown", type=float, default=1.0, help="cost factor of a call that starts while another runs (1.43 measured on 2 x 2 threads)"
    )
    parser.add_argument("--gap", type=float, default=PackOptions.gap_s)
    parser.add_argument("--gap-noise", type=float, default=PackOptions.gap_noise)
    parser.add_argument("--max-pieces", type=int, default=PackOptions.max_pieces)
    parser.add_argument("--max-seconds", type=float, default=PackOptions.max_seconds)
    parser.add_argument("--prompt", action="store_true", help="packed calls get their first window's prompt")
    parser.add_argument(
        "--finals-after", type=float, default=PackOptions.finals_after_s, help="queue wait past which finals share calls (negative: never)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="a StreamOptions field, e.g. sure_probability=0.9 (repeat)"
    )
    parser.add_argument("--calibrate", action="store_true", help="measure --per-pass, --per-word and --slowdown on this machine first")
    parser.add_argument("--alone", action="store_true", help="also decode each of the N feeds as the only stream (the single-stream WER)")
    args = parser.parse_args()
    # the virtual executor makes one model call at a time: give it every core (only wall time changes)
    model = load_model(Settings(data_dir=Path("/tmp/stream-server-sim"), model=args.model, cpu_threads=os.cpu_count() or 1))
    costs = Costs(args.partial_cost, args.final_cost, args.piece_cost, args.per_pass, args.per_word)
    slowdown = args.slowdown
    if args.calibrate:
        costs, slowdown = measured_costs(model, rotations(args.audio, 1)[0].audio)
        print(f"measured here: --per-pass {costs.per_pass:.3f} --per-word {costs.per_word:.4f} --slowdown {slowdown:.2f}")
    finals_after = args.finals_after if args.finals_after >= 0 else None
    packing = PackOptions(args.gap, args.gap_noise, args.max_seconds, args.max_pieces, args.prompt, finals_after)
    modes = {"on": [packing], "off": [None], "both": [None, packing]}[args.packing]
    print(f"{args.slots} slots; costs: {costs}, x{slowdown:.2f} while another call runs; {packing}")
    print(HEADER)

    options = stream_options(args.set)
    print(options)

    def run(feeds: list[Feed], mode: PackOptions | None, stagger: float) -> Outcome:
        return asyncio.run(simulate(model, feeds, args.slots, mode, costs, stagger, options=options, slowdown=slowdown))

    for n in args.streams:
        feeds = rotations(args.audio, n)
        for mode in modes:
            before = PASSES.count
            print(run(feeds, mode, args.stagger).row(), f"encoder passes {PASSES.count - before}", flush=True)
        if args.alone:
            alone = [run([feed], None, 0.0) for feed in feeds]
            words = [len(feed.reference.split()) for feed in feeds]
            pooled = sum(o.wer_pooled * w for o, w in zip(alone, words)) / sum(words)
            print(f"the {n} feeds each decoded as the only stream: WER pooled {pooled:.2%}, per feed {' '.join(f'{o.wer_pooled:.1%}' for o in alone)}")


if __name__ == "__main__":
    main()
