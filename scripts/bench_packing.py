"""Packing on recorded live windows: what sharing a call does to each window's words.

    python scripts/bench_packing.py
    python scripts/bench_packing.py --gap 0.5 1 2 --gap-noise 0 0.003 --prompt --seeds 1 2 3

1. One stream replays the dev feed through the engine on a virtual clock (simulate_load.py) and
   every window decode it asks for is recorded, with its solo result.
2. Per configuration, the partial windows, shuffled (per seed), are packed the way the scheduler
   packs a queue (`companions`), never two windows of one utterance in a call (streams say
   different things), and each call is decoded and split.
3. Each window's words, solo and packed, are scored against its utterance's solo final
   words that end inside the window, after dropping segments Whisper itself would call failed
   (compression ratio over 2.4). With `--finals` the utterances' final windows are packed
   instead, and their texts, in utterance order, are scored against the feed's reference.

Reports WER solo and packed, windows that got no words, windows per call, and the cost: on the
first seed each packed call is followed by the solo decodes of its windows, so both are timed
under the same load, and their ratio is the saving.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

from simulate_load import REPO, Call, Costs, simulate  # noqa: I001  (puts the repo on the path)

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

from scripts.bench_stream import wer
from scripts.feed import Feed, rotations
from stream_server.app import load_model
from stream_server.audio import SAMPLE_RATE
from stream_server.decoder.results import Transcription
from stream_server.engine.packing import PackOptions, Window, companions, decode_packed
from stream_server.settings import Settings

normalise = EnglishTextNormalizer()
FAILED_COMPRESSION = 2.4
"""faster-whisper's compression_ratio_threshold: above it a decode is a repetition loop."""


def kept_text(result: Transcription) -> str:
    return "".join(s.text for s in result.segments if s.compression_ratio <= FAILED_COMPRESSION)


def record(model, feed: Feed) -> tuple[list[dict], list[dict]]:
    """The partial and the final windows one stream decodes: window, solo result, utterance,
    reference (a partial's: its utterance's final words that end inside it)."""
    log: list[Call] = []
    asyncio.run(simulate(model, [feed], 1, None, Costs(0.3, 0.45, 0.0), 0.0, log))
    finals = [call for call in log if call.final]
    final_windows = [
        {"window": Window(*call.args), "solo": call.result, "utterance": i, "reference": ""} for i, call in enumerate(finals)
    ]
    windows = []
    for call in log:
        if call.final:
            continue
        (audio, options), result = call.args, call.result
        wholes = (final.args[0] for final in finals)
        matches = [i for i, whole in enumerate(wholes) if len(whole) >= len(audio) and (whole[: len(audio)] == audio).all()]
        if not matches:  # a long utterance's window from before it was trimmed
            continue
        utterance = matches[0]
        end = len(audio) / SAMPLE_RATE
        reference = "".join(w.text for w in finals[utterance].result.words if w.end <= end)
        windows.append({"window": Window(audio, options), "solo": result, "utterance": utterance, "reference": reference})
    return windows, final_windows


def packs(windows: list[dict], options: PackOptions, seed: int) -> list[list[dict]]:
    """The windows, shuffled, in calls as the scheduler would pack a queue of them."""
    queue = windows[:]
    random.Random(seed).shuffle(queue)
    calls = []
    while queue:
        lead = queue.pop(0)
        others = [w for w in queue if w["utterance"] != lead["utterance"]]
        chosen = [others[i] for i in companions(lead["window"].seconds, [w["window"].seconds for w in others], options)]
        distinct = []
        for w in chosen:  # one window per utterance in a call
            if all(w["utterance"] != d["utterance"] for d in distinct):
                distinct.append(w)
        queue = [w for w in queue if all(w is not d for d in distinct)]
        calls.append([lead, *distinct])
    return calls


def score(pairs: list[tuple[str, str]]) -> float:
    """Word errors over reference words, all (reference, hypothesis) pairs together."""
    errors = words = 0
    for reference, hypothesis in pairs:
        reference, hypothesis = normalise(reference), normalise(hypothesis)
        if not reference.split():
            errors += len(hypothesis.split())
            continue
        counts = jiwer.process_words(reference, hypothesis or "<nothing>")
        errors += counts.substitutions + counts.deletions + counts.insertions
        words += len(reference.split())
    return errors / max(1, words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--gap", type=float, nargs="+", default=[PackOptions.gap_s])
    parser.add_argument("--gap-noise", type=float, nargs="+", default=[PackOptions.gap_noise])
    parser.add_argument("--max-seconds", type=float, nargs="+", default=[PackOptions.max_seconds])
    parser.add_argument("--max-pieces", type=int, default=PackOptions.max_pieces)
    parser.add_argument("--prompt", action="store_true", help="also try packed calls given the first window's prompt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--finals", action="store_true", help="pack the utterances' final windows instead")
    args = parser.parse_args()
    model = load_model(Settings(data_dir=Path("/tmp/stream-server-sim"), model=args.model))
    (feed,) = rotations(args.audio, 1)
    partials, finals = record(model, feed)
    windows = finals if args.finals else partials

    def scored(results: list[tuple[dict, Transcription]]) -> float:
        if not args.finals:
            return score([(w["reference"], kept_text(r)) for w, r in results])
        in_order = sorted(results, key=lambda pair: pair[0]["utterance"])
        return wer(feed.reference, " ".join(kept_text(r) for _, r in in_order))

    solo = scored([(w, w["solo"]) for w in windows])
    kind = "final" if args.finals else "partial"
    print(f"{len(windows)} {kind} windows of one stream over {args.audio.name}; decoded alone: WER {solo:.2%}")
    print(
        "| gap (s) | gap noise | max seconds | prompt | WER packed | windows with no words | windows per call "
        "| seconds per window, packed / alone |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for gap in args.gap:
        for noise in args.gap_noise:
            for limit in args.max_seconds:
                for prompt in [False, True] if args.prompt else [False]:
                    options = PackOptions(gap, noise, limit, args.max_pieces, prompt)
                    pairs, empty, calls, packed_s, solo_s, timed, errors = [], 0, 0, 0.0, 0.0, 0, []
                    for seed in args.seeds:
                        decoded = []
                        for call in packs(windows, options, seed):
                            started = time.perf_counter()
                            results = decode_packed(model.transcribe, [w["window"] for w in call], options)
                            if seed == args.seeds[0]:
                                packed_s += time.perf_counter() - started
                                started = time.perf_counter()
                                for w in call:
                                    model.transcribe(w["window"].audio, w["window"].options)
                                solo_s += time.perf_counter() - started
                                timed += len(call)
                            calls += 1
                            decoded += list(zip(call, results))
                            empty += sum(not r.words for r in results)
                        errors.append(scored(decoded))
                        pairs += decoded
                    print(
                        f"| {gap:g} | {noise:g} | {limit:g} | {'first window' if prompt else 'none'} | {sum(errors) / len(errors):.2%} "
                        f"| {empty} of {len(pairs)} | {len(pairs) / calls:.1f} | {packed_s / timed:.3f} / {solo_s / timed:.3f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
