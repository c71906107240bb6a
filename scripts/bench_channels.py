"""What a two-channel call costs live, against the same call mixed to mono: the engine alone
(no HTTP), the shared call pushed in 100 ms chunks at `--speed` times real time.

    python scripts/bench_channels.py --speed 4

Per run: live decode seconds per second of the call (what admission measures), model calls,
and WER: per channel against its reference for the two-channel run, and for the mono mix
against the turns' references in time order (both speakers in one text).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.app import load_model  # noqa: E402
from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_channels, decode_file  # noqa: E402
from stream_server.engine.channels import MultiChannelTranscriber  # noqa: E402
from stream_server.engine.packing import PackOptions  # noqa: E402
from stream_server.engine.stream import LiveTranscriber  # noqa: E402
from stream_server.service import TranscriptionService  # noqa: E402
from stream_server.settings import Settings  # noqa: E402
from scripts.bench_stream import wer  # noqa: E402
from scripts.feed import AUDIO  # noqa: E402

CALL = AUDIO / "en_call_stereo_8k.wav"


def references() -> tuple[dict[int, str], str]:
    """Per-channel references, and the turns' references in time order (the mono mix's)."""
    lines = CALL.with_suffix(".txt").read_text().splitlines()
    per_channel = {int(c): text for c, text in (line.split("\t", 1) for line in lines if line.strip())}
    turns = CALL.with_suffix(".turns.tsv").read_text().splitlines()[1:]
    return per_channel, " ".join(row.split("\t")[4] for row in turns if row.strip())


async def run(service: TranscriptionService, audio: np.ndarray, split: bool, speed: float) -> tuple[object, float, int]:
    model = service.model
    decode = service.window_decoder(model, "en")
    scheduler = service.scheduler
    events: list = []
    if split:
        transcriber = MultiChannelTranscriber(lambda publish: LiveTranscriber(decode, publish), events.append, (), len(audio))
    else:
        transcriber = LiveTranscriber(decode, events.append)
    before, calls = scheduler.live_decode_seconds, scheduler.decodes
    step = SAMPLE_RATE // 10
    started = time.monotonic()
    for number, offset in enumerate(range(0, audio.shape[-1], step), start=1):
        transcriber.push(audio[..., offset : offset + step])
        await asyncio.sleep(max(0.0, started + number * 0.1 / speed - time.monotonic()))
    await transcriber.finish()
    return events[-1], scheduler.live_decode_seconds - before, scheduler.decodes - calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=4.0)
    args = parser.parse_args()
    settings = Settings()
    model = load_model(settings)
    service = TranscriptionService(ThreadPoolExecutor(4), settings.decode_slots, PackOptions())
    service.use(model)
    data = CALL.read_bytes()
    per_channel, mixed_reference = references()
    seconds = decode_file(data).shape[-1] / SAMPLE_RATE
    print(f"call {seconds:.1f} s, speed {args.speed:g}x, {settings.decode_slots} slots")
    done, decode_s, calls = await run(service, decode_channels(data), True, args.speed)
    scores = ", ".join(f"channel {c.channel.index} WER {wer(per_channel[c.channel.index], c.text):.2%}" for c in done.channels)
    print(f"two channels: {decode_s / seconds:.3f} decode s per call s, {calls} model calls; {scores}")
    done, decode_s, calls = await run(service, decode_file(data), False, args.speed)
    print(f"mono mix: {decode_s / seconds:.3f} decode s per call s, {calls} model calls; WER {wer(mixed_reference, done.text):.2%}")


if __name__ == "__main__":
    asyncio.run(main())
