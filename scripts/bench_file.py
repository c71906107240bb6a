"""File transcription over HTTP vs faster-whisper called directly: what does the server add?

Starts the app in-process on a loopback port with the given model, then for each file runs
N timed rounds. Each round times one POST /v1/audio/transcriptions (upload, decode, model,
render, response) and one direct `WhisperModel.transcribe` on the already decoded PCM with
the server's options (beam 5, VAD filter, same temperature schedule, compute type and
threads), in alternating order so that neither always goes first. One untimed warm-up of
each comes first. Prints the medians of wall time and of this process's CPU time (steadier
when other work shares the cores) and the overhead of HTTP over direct.

    .venv/bin/python scripts/bench_file.py [--runs 5] [--cpu-threads N] [FILE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from faster_whisper import WhisperModel

from stream_server.app import create_app, load_model
from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file
from stream_server.decoder.whisper import TranscribeOptions, temperature_schedule
from stream_server.models import resolve_model
from stream_server.settings import Settings

AUDIO_DIR = Path(__file__).resolve().parents[2] / "shared" / "audio"
DEFAULT_FILES = ("en_jfk_16k.wav", "en_mfa_acoustic_corpus_spontaneous.wav", "en_dev_feed_16k.wav")


@dataclass(frozen=True)
class Timing:
    file: str
    audio_seconds: float
    decode: float
    """Median seconds to decode the file to PCM: in the HTTP path, not in the direct one."""
    http: list[float]
    direct: list[float]
    http_cpu: list[float]
    """CPU seconds of this whole process (server, client, model threads) per HTTP request:
    less disturbed than wall time when other work shares the cores."""
    direct_cpu: list[float]
    same_text: bool

    @property
    def overhead(self) -> float:
        return statistics.median(self.http) / statistics.median(self.direct) - 1.0

    @property
    def cpu_overhead(self) -> float:
        return statistics.median(self.http_cpu) / statistics.median(self.direct_cpu) - 1.0


def direct_transcribe(model: WhisperModel, audio, options: TranscribeOptions) -> str:
    segments, _ = model.transcribe(
        audio,
        language=options.language,
        temperature=temperature_schedule(options.temperature),
        beam_size=options.beam_size,
        vad_filter=options.vad_filter,
    )
    return "".join(s.text for s in segments).strip()


async def http_transcribe(session: aiohttp.ClientSession, url: str, path: Path, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", data, filename=path.name)
    async with session.post(url + "/v1/audio/transcriptions", data=form) as response:
        response.raise_for_status()
        return (await response.json())["text"]


async def bench(paths: list[Path], runs: int, settings: Settings) -> list[Timing]:
    served = load_model(settings)
    source = resolve_model(settings.model, settings.model_cache_dir)
    direct = WhisperModel(
        source.location,
        device=served.device,
        compute_type=served.compute_type,
        cpu_threads=settings.cpu_threads,
    )
    runner = web.AppRunner(create_app(settings, model=served))
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    options = TranscribeOptions()
    timings = []
    try:
        async with aiohttp.ClientSession() as session:
            for path in paths:
                data = path.read_bytes()
                decode = []
                for _ in range(runs):
                    start = time.perf_counter()
                    audio = decode_file(data, path.name)
                    decode.append(time.perf_counter() - start)
                http_text = await http_transcribe(session, url, path, data)  # warm-up
                direct_text = direct_transcribe(direct, audio, options)
                wall: dict[str, list[float]] = {"http": [], "direct": []}
                cpu: dict[str, list[float]] = {"http": [], "direct": []}
                for round_ in range(runs):
                    for which in ("http", "direct") if round_ % 2 == 0 else ("direct", "http"):
                        start, start_cpu = time.perf_counter(), time.process_time()
                        if which == "http":
                            await http_transcribe(session, url, path, data)
                        else:
                            direct_transcribe(direct, audio, options)
                        wall[which].append(time.perf_counter() - start)
                        cpu[which].append(time.process_time() - start_cpu)
                timings.append(
                    Timing(
                        path.name,
                        len(audio) / SAMPLE_RATE,
                        statistics.median(decode),
                        wall["http"],
                        wall["direct"],
                        cpu["http"],
                        cpu["direct"],
                        http_text == direct_text,
                    )
                )
    finally:
        await runner.cleanup()
    return timings


def report(timings: list[Timing], runs: int, threads: int) -> str:
    lines = [
        f"runs={runs} cpu_threads={threads} cores={os.cpu_count()}",
        "| file | audio s | HTTP wall s, median (min-max) | direct wall s, median (min-max) | wall overhead "
        "| HTTP CPU s | direct CPU s | CPU overhead | decode s | same text |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.file} | {t.audio_seconds:.1f} | {_spread(t.http)} | {_spread(t.direct)} | "
            f"{t.overhead:+.1%} | {statistics.median(t.http_cpu):.3f} | "
            f"{statistics.median(t.direct_cpu):.3f} | {t.cpu_overhead:+.1%} | {t.decode:.3f} | "
            f"{'yes' if t.same_text else 'NO'} |"
        )
    total = {
        name: sum(statistics.median(getattr(t, name)) for t in timings)
        for name in ("http", "direct", "http_cpu", "direct_cpu")
    }
    lines.append(
        f"| all (sum of medians) | | {total['http']:.3f} | {total['direct']:.3f} | "
        f"{total['http'] / total['direct'] - 1:+.1%} | {total['http_cpu']:.3f} | "
        f"{total['direct_cpu']:.3f} | {total['http_cpu'] / total['direct_cpu'] - 1:+.1%} | | |"
    )
    return "\n".join(lines)


def _spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.3f} ({min(seconds):.3f}-{max(seconds):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES, help=f"names in {AUDIO_DIR} or paths")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=0, help="0 = any free loopback port")
    args = parser.parse_args()
    paths = [Path(f) if Path(f).is_file() else AUDIO_DIR / f for f in args.files]
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            port=args.port, model=args.model, cpu_threads=args.cpu_threads, data_dir=Path(data_dir)
        )
        timings = asyncio.run(bench(paths, args.runs, settings))
    print(report(timings, args.runs, args.cpu_threads))


if __name__ == "__main__":
    main()
