"""A file posted with and without `stream=true`: the same accuracy, and text while it decodes?

    python scripts/bench_file_stream.py --audio /tmp/feeds/feed_heldout.wav [--model tiny.en]

Starts `stream-server serve` in its own process, then posts the file as the openai SDK does
(multipart, with a Content-Length) once without `stream` (json) and once with `stream=true`, and
reports each one's WER against the reference (the audio's .txt beside it, or --reference), the
streamed one's time to its first non-empty delta and to its done event, both from the start of
the request, and how long the server's first model call of the streamed request took (from
/metrics, read when the first delta came: one window's decode under the same load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

URL = "/v1/audio/transcriptions"


def form(path: Path, stream: bool) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("model", "whisper-1")
    if stream:
        data.add_field("stream", "true")
    data.add_field("file", path.read_bytes(), filename=path.name)
    return data


async def post_file(url: str, path: Path) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + URL, data=form(path, stream=False)) as response:
            return (await response.json())["text"]


async def post_stream(url: str, path: Path) -> tuple[str, float, float, float]:
    """The streamed text; seconds from the request's start to its first text and to its end;
    and the seconds of the model calls that had finished when the first text came (the first
    window's decode, measured by the server)."""
    first = first_decode = None
    before, _ = await decode_counters(url)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.post(url + URL, data=form(path, stream=True)) as response:
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "transcript.text.delta" and event["delta"] and first is None:
                    first = time.monotonic() - started
                    first_decode = (await decode_counters(url))[0] - before
                elif event["type"] == "transcript.text.done":
                    return event["text"], first or float("nan"), time.monotonic() - started, first_decode or float("nan")
                elif event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
    raise RuntimeError("the stream ended without a done event")


async def decode_counters(url: str) -> tuple[float, int]:
    """The server's model-call seconds and count so far (GET /metrics)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            values = dict(line.rsplit(" ", 1) for line in (await response.text()).splitlines() if not line.startswith("#"))
    return float(values["stream_server_decode_seconds_total"]), int(float(values["stream_server_decodes_total"]))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="reference text (default: the audio's .txt beside it)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for stream-server serve")
    args = parser.parse_args()

    reference = (args.reference or args.audio.with_suffix(".txt")).read_text()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-file-stream-"))
    server = Server(args.model, data_dir, args.server_arg)
    try:
        await server.ready()
        await post_file(server.url, args.audio)  # warm-up
        plain = await post_file(server.url, args.audio)
        streamed, first, done, first_decode = await post_stream(server.url, args.audio)
    finally:
        server.stop()
    duration = len(decode_file(args.audio.read_bytes())) / SAMPLE_RATE
    plain_wer, streamed_wer = wer(reference, plain), wer(reference, streamed)
    relative = (streamed_wer - plain_wer) / plain_wer if plain_wer else float("nan")
    print(f"model {args.model}, {args.audio.name} ({duration:.1f} s), posted whole")
    print(f"WER without stream {plain_wer:.2%}  with stream=true {streamed_wer:.2%}  ({relative:+.1%} relative)")
    print(f"stream=true: first delta {first:.2f} s, done {done:.2f} s after the request started")
    print(f"the first window's decode (server's model call) {first_decode:.2f} s: first delta {first - first_decode:+.2f} s after it")


if __name__ == "__main__":
    asyncio.run(main())
