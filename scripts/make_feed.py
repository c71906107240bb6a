"""Build a test feed like `en_dev_feed_16k.wav` from the same clips in another order, so that a
policy tuned on the dev feed can be checked on prompts and pauses it was not tuned on.

    python scripts/make_feed.py --order reversed --gap 0.8 --out /tmp/feed_rev.wav
    python scripts/make_feed.py --order shuffled --seed 7 --out /tmp/feed_shuf.wav
    python scripts/make_feed.py --preset tune --out /tmp/feed_tune.wav        # to tune on
    python scripts/make_feed.py --preset heldout --out /tmp/feed_heldout.wav  # the final measurement only

Writes the WAV (16 kHz mono) and, beside it, the reference transcript (`.txt`) from the audio
folder's manifest and where each clip lies (`.segments.tsv`, as beside the dev feed): the layout
`simulate_stream.py`, `bench_stream.py` and `feed.rotations` expect. Gaps are `--gap` seconds of
silence, or, shuffled, drawn between 0.5 and 2.5 s. Each build prints the clips' levels.

A preset is a seeded shuffle with 1-2.5 s gaps, one of them an 8 s stretch with nothing to
transcribe, over continuous room tone: pauses like a real room's, where the dev feed's are
white noise at -54 dBFS. The tone is synthesised because the only noise-alone audio in the
shared folder is not room tone either: the dev feed's 44.5-53.5 s stretch is white at -50.5
dBFS and the call's line noise white at -53.5 dBFS (flat spectra, uncorrelated samples). The
clips' own floors (`noise_floor`: their quietest 20 ms frames) lie between -78 and -41 dBFS,
-56 the median, and fall about 4 dB an octave, most of their power under 250 Hz. The tone has
that tilt, faint mains hum and a slow level drift, and plays on under the clips, ducked to
UNDER_SPEECH_DB under each clip's speech. Same preset, same bytes: all its draws are seeded.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.audio.wav import wav_bytes  # noqa: E402
from scripts.feed import AUDIO, clip_texts, feed_clips  # noqa: E402

LEAD_S = 0.5
"""Pause before the first clip."""
FRAME = SAMPLE_RATE // 50
"""20 ms: the frame of the level measurements."""

PRESET_GAPS_S = (1.0, 2.5)
"""A preset's pauses between clips are drawn in this range (the clips' own silences come on top)."""
NOISE_ONLY_S = 8.0
"""One pause per preset feed is this long: room tone alone, where nothing must be transcribed."""
UNDER_SPEECH_DB = 30.0
"""Under a clip the tone is ducked to this far under the clip's speech level (never raised)."""
RAMP_S = 0.1
"""The duck's fade, in the pause next to the clip."""
LOWEST_HZ = 20.0
"""The tone has no power under this (no DC, no sub-audible rumble)."""
HUM_DB = -10.0
"""Mains hum (fundamental and two harmonics) relative to the tone's noise."""
DRIFT_DB = 1.0
"""Amplitude of each of the two slow sinusoids (5-30 s periods) the tone's level drifts by."""


@dataclass(frozen=True)
class RoomTone:
    level_dbfs: float
    """RMS of the tone in the pauses, before the drift."""
    slope_db_per_octave: float
    """Tilt of its power spectrum; the clips' own floors fall about 4 dB an octave."""
    mains_hz: float
    """Hum fundamental: 50 or 60 Hz."""


@dataclass(frozen=True)
class Preset:
    seed: int
    """Draws the clip order, the gaps, where the noise-only stretch goes and the tone's samples."""
    tone: RoomTone


PRESETS = {
    "tune": Preset(seed=16, tone=RoomTone(level_dbfs=-48.0, slope_db_per_octave=-4.0, mains_hz=60.0)),
    "heldout": Preset(seed=1606, tone=RoomTone(level_dbfs=-51.0, slope_db_per_octave=-5.0, mains_hz=50.0)),
}


def lay_out(clips: list[np.ndarray], gaps: list[float]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips end to end on silence, each followed by its gap; and each clip's (start, end) sample."""
    parts, spans, at = [np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)], [], int(LEAD_S * SAMPLE_RATE)
    for clip, gap in zip(clips, gaps):
        spans.append((at, at + len(clip)))
        parts += [clip, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        at += len(clip) + len(parts[-1])
    return np.concatenate(parts), spans


def frame_powers(audio: np.ndarray) -> np.ndarray:
    """Mean power of each 20 ms frame, its DC offset removed (some clips have one)."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return frames.var(axis=1)


def dbfs(power: float) -> float:
    return 10 * np.log10(power) if power > 0 else -np.inf


def speech_level(clip: np.ndarray) -> float:
    """A crude active speech level: the mean power of the clip's louder half of frames, dBFS."""
    powers = frame_powers(clip)
    return dbfs(powers[powers >= np.median(powers)].mean())


def noise_floor(clip: np.ndarray) -> float:
    """The recording's own floor: the mean power of its quietest tenth of frames, dBFS."""
    powers = frame_powers(clip)
    return dbfs(powers[powers <= np.percentile(powers, 10)].mean())


def unit_rms(signal: np.ndarray) -> np.ndarray:
    return signal / np.sqrt(np.mean(signal**2))


def room_tone(n: int, tone: RoomTone, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of continuous room tone: Gaussian noise tilted by `slope_db_per_octave` from
    LOWEST_HZ up, mains hum, and a slow drift of up to about ±2 dB."""
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    tilt = np.zeros_like(freqs)
    audible = freqs >= LOWEST_HZ
    tilt[audible] = (freqs[audible] / LOWEST_HZ) ** (tone.slope_db_per_octave / (20 * np.log10(2)))
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * tilt, n)
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * k * tone.mains_hz * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    drift_db = sum(DRIFT_DB * np.sin(2 * np.pi * t / rng.uniform(5, 30) + rng.uniform(0, 2 * np.pi)) for _ in range(2))
    return unit_rms(unit_rms(noise) + 10 ** (HUM_DB / 20) * unit_rms(hum)) * 10 ** ((tone.level_dbfs + drift_db) / 20)


def duck(n: int, spans: list[tuple[int, int]], drops_db: list[float]) -> np.ndarray:
    """Per-sample gain on the tone: 1 in the pauses, each clip's drop while it plays, faded over
    RAMP_S in the pause on either side."""
    ramp = int(RAMP_S * SAMPLE_RATE)
    points, gains = [0], [1.0]
    for (start, end), drop in zip(spans, drops_db):
        points += [start - ramp, start, end, end + ramp]
        gains += [1.0, 10 ** (-drop / 20), 10 ** (-drop / 20), 1.0]
    return np.interp(np.arange(n), points + [n], gains + [1.0])


def pauses(n: int, spans: list[tuple[int, int]]) -> np.ndarray:
    """Where the feed holds neither a clip nor a duck's fade."""
    mask = np.ones(n, bool)
    ramp = int(RAMP_S * SAMPLE_RATE)
    for start, end in spans:
        mask[max(start - ramp, 0) : end + ramp] = False
    return mask


def write_feed(out: Path, audio: np.ndarray, names: list[str], spans: list[tuple[int, int]]) -> None:
    """The WAV, its reference text and its segments, in the dev feed's formats."""
    out.write_bytes(wav_bytes(audio))
    texts = clip_texts(AUDIO)
    out.with_suffix(".txt").write_text(" ".join(texts[name] for name in names) + "\n")
    rows = [f"{round(start / SAMPLE_RATE, 3)}\t{round(end / SAMPLE_RATE, 3)}\t{name}" for name, (start, end) in zip(names, spans)]
    out.with_suffix(".segments.tsv").write_text("\n".join(["start\tend\tsource", *rows]) + "\n")


def report(out: Path, audio: np.ndarray, names: list[str], spans: list[tuple[int, int]], clips: list[np.ndarray], drops_db: list[float]) -> None:
    """Length, pause level and, per clip, where it lies and its levels against the pauses'."""
    pause_db = dbfs(float(np.mean(audio[pauses(len(audio), spans)].astype(np.float64) ** 2)))
    print(f"{out}: {len(audio) / SAMPLE_RATE:.1f} s, {len(names)} clips, pauses {pause_db:.1f} dBFS RMS")
    print("start s  end s  pause after s  speech dBFS  own floor dBFS  speech over pauses dB  tone under dBFS  clip")
    ends = [start for start, _ in spans[1:]] + [len(audio)]
    for name, clip, (start, end), next_start, drop in zip(names, clips, spans, ends, drops_db):
        speech = speech_level(clip)
        print(
            f"{start / SAMPLE_RATE:7.3f} {end / SAMPLE_RATE:6.3f} {(next_start - end) / SAMPLE_RATE:14.3f} {speech:12.1f} "
            f"{noise_floor(clip):15.1f} {speech - pause_db:22.1f} {pause_db - drop:16.1f}  {name}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--order", choices=("reversed", "shuffled"), default="reversed", help="silent gaps")
    kind.add_argument("--preset", choices=sorted(PRESETS), help="a seeded feed over room tone")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds of silence between clips (reversed)")
    parser.add_argument("--seed", type=int, default=7, help="of the order and gaps (shuffled)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    names = [clip["source"] for clip in feed_clips(AUDIO / "en_dev_feed_16k.wav")]
    preset = PRESETS.get(args.preset)
    rng = random.Random(preset.seed if preset else args.seed)
    if preset:
        rng.shuffle(names)
        gaps = [rng.uniform(*PRESET_GAPS_S) for _ in names]
        gaps[rng.randrange(1, len(names) - 1)] = NOISE_ONLY_S
    elif args.order == "reversed":
        names.reverse()
        gaps = [args.gap] * len(names)
    else:
        rng.shuffle(names)
        gaps = [rng.uniform(0.5, 2.5) for _ in names]

    clips = [decode_file((AUDIO / name).read_bytes()) for name in names]
    audio, spans = lay_out(clips, gaps)
    drops_db = [0.0] * len(clips)
    if preset:
        level = preset.tone.level_dbfs
        drops_db = [max(level - (speech_level(clip) - UNDER_SPEECH_DB), 0.0) for clip in clips]
        tone = room_tone(len(audio), preset.tone, np.random.default_rng(preset.seed))
        audio = (audio + tone * duck(len(audio), spans, drops_db)).astype(np.float32)
    write_feed(args.out, audio, names, spans)
    report(args.out, audio, names, spans, clips, drops_db)


if __name__ == "__main__":
    main()
