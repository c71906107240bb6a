"""A file posted with and without `stream=true`: the same accuracy, and text while it decodes?

    python scripts/bench_file_stream.py --audio /tmp/feeds/feed_heldout.wav [--model tiny.en]

Starts `stream-server serve` in its own process, then posts the file as the openai SDK does
(multipart, with a Content-Length) once without `stream` (json) and once with `stream=true`, and
reports each one's WER against the reference (the audio's .txt beside it, or --reference), the
streamed one's time to its first non-empty delta and to its done event, both from the start of
the request, and, as the yardstick for the first, how long a request without `stream` takes for
the file's first whole window alone (30 s, cut out and posted as a WAV; median of 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.bench_stream import Server, wer  # noqa: E402
from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.audio.wav import wav_bytes  # noqa: E402
from stream_server.engine.whole_windows import WINDOW_S  # noqa: E402

URL = "/v1/audio/transcriptions"


def form(name: str, data: bytes, stream: bool) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("model", "whisper-1")
    if stream:
        body.add_field("stream", "true")
    body.add_field("file", data, filename=name)
    return body


async def post_file(url: str, name: str, data: bytes) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + URL, data=form(name, data, stream=False)) as response:
            return (await response.json())["text"]


async def post_stream(url: str, name: str, data: bytes) -> tuple[str, float, float]:
    """The streamed text; seconds from the request's start to its first text and to its end."""
    first = None
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.post(url + URL, data=form(name, data, stream=True)) as response:
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "transcript.text.delta" and event["delta"] and first is None:
                    first = time.monotonic() - started
                elif event["type"] == "transcript.text.done":
                    return event["text"], first or float("nan"), time.monotonic() - started
                elif event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
    raise RuntimeError("the stream ended without a done event")


async def one_window_seconds(url: str, path: Path, runs: int = 3) -> float:
    """Median seconds of a request without `stream` for the file's first whole window alone."""
    window = wav_bytes(decode_file(path.read_bytes())[: int(WINDOW_S * SAMPLE_RATE)])
    times = []
    for _ in range(runs):
        started = time.monotonic()
        await post_file(url, "window.wav", window)
        times.append(time.monotonic() - started)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="reference text (default: the audio's .txt beside it)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for stream-server serve")
    args = parser.parse_args()

    reference = (args.reference or args.audio.with_suffix(".txt")).read_text()
    data = args.audio.read_bytes()
    server = Server(args.model, Path(tempfile.mkdtemp(prefix="bench-file-stream-")), args.server_arg)
    try:
        await server.ready()
        await post_file(server.url, args.audio.name, data)  # warm-up
        plain = await post_file(server.url, args.audio.name, data)
        streamed, first, done = await post_stream(server.url, args.audio.name, data)
        window = await one_window_seconds(server.url, args.audio)
    finally:
        server.stop()
    duration = len(decode_file(data)) / SAMPLE_RATE
    plain_wer, streamed_wer = wer(reference, plain), wer(reference, streamed)
    relative = (streamed_wer - plain_wer) / plain_wer if plain_wer else float("nan")
    print(f"model {args.model}, {args.audio.name} ({duration:.1f} s), posted whole")
    print(f"WER without stream {plain_wer:.2%}  with stream=true {streamed_wer:.2%}  ({relative:+.1%} relative)")
    print(f"stream=true: first delta {first:.2f} s, done {done:.2f} s after the request started")
    print(f"its first {WINDOW_S:g} s posted alone without stream: {window:.2f} s (median of 3)")


if __name__ == "__main__":
    asyncio.run(main())
