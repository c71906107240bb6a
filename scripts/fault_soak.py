"""One long live stream: the server's memory stays flat however long the speech runs.

    python scripts/fault_soak.py --minutes 60                   # the hour the issue asks for
    python scripts/fault_soak.py --minutes 10 --transport both  # a shorter run

Starts `stream-server serve` (bench_stream.Server; `--server-arg` adds flags, e.g. a smaller
`--max-session-events` so that the log's bound is reached within a short run) and streams the
dev feed, looped, at real-time pace, over the WebSocket, a chunked raw HTTP body, or both at
once, for `--minutes`. Every `--every` seconds it reads /metrics (`process_resident_memory_bytes`,
`stream_server_asyncio_tasks`, `process_open_fds`) and each stream's lag (audio sent less the end of
the last text committed to it) and prints a JSON line; at the end, RSS at
the first sample after warm-up (the first tenth of the run), the median, the maximum, the last, and the
slope of a least-squares line through the samples after warm-up, in MB per hour.
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
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import scrape  # noqa: E402
from bench_stream import REPO, Server  # noqa: E402

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402

RAW = "audio/pcm;encoding=s16le;rate=16000"
FRAME = SAMPLE_RATE // 10 * 2


def looped(pcm: bytes, until: float):
    while True:
        for offset in range(0, len(pcm), FRAME):
            if time.monotonic() >= until:
                return
            yield pcm[offset : offset + FRAME]


class Progress:
    """Audio seconds a transport sent, and the stream time of the last text committed to it:
    their difference is how far its decoder lags."""

    def __init__(self) -> None:
        self.sent_s = 0.0
        self.heard_s = 0.0

    def heard(self, event: dict) -> None:
        if event.get("type") == "transcript.text.delta":
            self.heard_s = max(self.heard_s, event.get("end", 0.0))

    @property
    def lag_s(self) -> float:
        return round(self.sent_s - self.heard_s, 1)


async def paced(pcm: bytes, until: float, progress: Progress):
    started, sent = time.monotonic(), 0
    for frame in looped(pcm, until):
        yield frame
        sent += 1
        progress.sent_s = sent * 0.1
        await asyncio.sleep(max(0.0, started + sent * 0.1 - time.monotonic()))


async def over_websocket(url: str, pcm: bytes, until: float, partials: str, progress: Progress) -> dict:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url.replace("http", "ws") + f"/v1/audio/stream?partials={partials}")
        events = 0

        async def read() -> None:
            nonlocal events
            async for message in ws:
                events += 1
                if message.type == aiohttp.WSMsgType.TEXT:
                    progress.heard(json.loads(message.data))

        reader = asyncio.ensure_future(read())
        async for frame in paced(pcm, until, progress):
            if ws.closed:  # ended by the server (falling_behind): its close code says why
                break
            await ws.send_bytes(frame)
        if not ws.closed:
            await ws.send_str(json.dumps({"type": "close"}))
        await reader
        return {"transport": "websocket", "events": events, "close_code": ws.close_code}


async def over_http(url: str, pcm: bytes, until: float, partials: str, progress: Progress) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with session.put(
            f"{url}/v1/audio/transcriptions?stream=true&partials={partials}", data=paced(pcm, until, progress), headers={"Content-Type": RAW}
        ) as response:
            events = 0
            async for line in response.content:
                events += line.startswith(b"data: ")
                if line.startswith(b"data: {"):
                    progress.heard(json.loads(line[6:]))
            return {"transport": "http", "events": events, "status": response.status}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--transport", choices=["websocket", "http", "both"], default="both")
    parser.add_argument("--partials", choices=["true", "false"], default="true")
    parser.add_argument("--server-arg", action="append", default=[])
    args = parser.parse_args()
    audio = decode_file((REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav").read_bytes())
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    server = Server("tiny.en", Path(tempfile.mkdtemp(prefix="fault-soak-")), args.server_arg)
    try:
        await server.ready()
        started = time.monotonic()
        until = started + args.minutes * 60
        kinds = ["websocket", "http"] if args.transport == "both" else [args.transport]
        progress = {k: Progress() for k in kinds}
        jobs = [
            asyncio.ensure_future((over_websocket if k == "websocket" else over_http)(server.url, pcm, until, args.partials, progress[k]))
            for k in kinds
        ]
        samples = []
        while not all(j.done() for j in jobs):
            await asyncio.sleep(args.every)
            metrics = await scrape(server.url)
            sample = {
                "minute": round((time.monotonic() - started) / 60, 2),
                "rss_mb": round(metrics["process_resident_memory_bytes"] / 2**20, 1),
                "tasks": metrics["stream_server_asyncio_tasks"],
                "open_fds": metrics["process_open_fds"],
                "live_streams": metrics["stream_server_live_streams"],
                "lag_s": {k: p.lag_s for k, p in progress.items()},
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        results = [j.result() for j in jobs]
        warm = [s for s in samples if s["minute"] >= args.minutes / 10 and s["live_streams"] > 0] or samples
        minutes = np.array([s["minute"] for s in warm])
        rss = np.array([s["rss_mb"] for s in warm])
        slope = float(np.polyfit(minutes, rss, 1)[0] * 60) if len(warm) > 2 else float("nan")
        print(json.dumps({
            "minutes": args.minutes, "transports": results, "rss_after_warmup_mb": warm[0]["rss_mb"],
            "rss_median_mb": float(np.median(rss)), "rss_max_mb": float(rss.max()), "rss_last_mb": warm[-1]["rss_mb"], "slope_mb_per_hour": round(slope, 1),
        }))
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
