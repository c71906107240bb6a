"""Clients that drop mid-stream: the server's tasks, memory and descriptors come back to baseline.

    python scripts/fault_disconnects.py                      # 100 clients a round, 3 rounds
    python scripts/fault_disconnects.py --clients 20 --rounds 1

Starts `stream-server serve` in a child process (bench_stream.Server, with the capacity estimate
off and no per-address limit, so that every client is admitted and streams), warms it up with
one whole stream and a round of drops, and reads the baseline from its /metrics:
`stream_server_asyncio_tasks`, `process_resident_memory_bytes`, `process_open_fds` (and, from
/proc/PID/smaps, how much of the RSS is the main heap, other anonymous memory, files). Then each
round starts `--clients` clients at once, half over the WebSocket and half as chunked HTTP
uploads (`PUT ... stream=true`, raw s16le), each sending the JFK clip looped at `--speed` times
real time and vanishing at a random point (uniform over 0.2-8 s) without a goodbye: the
socket is aborted. After each round the script waits for the server's live streams to reach 0,
then reads the three figures again; at the end one whole stream checks the server still
transcribes. Prints one JSON line per round and a summary; the exit code is 1 if, after the
last round, the tasks or descriptors did not come back, or RSS grew by more than
`--rss-slack-mb` over the baseline, or the server no longer transcribes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
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

FRAME_S = 0.1
RAW = "audio/pcm;encoding=s16le;rate=16000"


def clip_bytes() -> bytes:
    audio = decode_file((REPO.parent / "shared" / "audio" / "en_jfk_16k.wav").read_bytes())
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def frames(data: bytes, speed: float):
    """(frame, seconds to wait after it), the clip looped for as long as it is asked."""
    size = int(SAMPLE_RATE * FRAME_S) * 2
    while True:
        for offset in range(0, len(data), size):
            yield data[offset : offset + size], FRAME_S / speed


async def websocket_client(url: str, data: bytes, speed: float, drop_after: float) -> None:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url.replace("http", "ws") + "/v1/audio/stream")
        deadline = time.monotonic() + drop_after
        for frame, wait in frames(data, speed):
            if time.monotonic() >= deadline:
                break
            await ws.send_bytes(frame)
            await asyncio.sleep(wait)
        ws._response.connection.transport.abort()  # gone, no close frame
    finally:
        await session.close()


async def http_client(url: str, data: bytes, speed: float, drop_after: float) -> None:
    session = aiohttp.ClientSession()

    async def body():
        for frame, wait in frames(data, speed):
            yield frame
            await asyncio.sleep(wait)

    async def upload() -> None:
        async with session.put(
            f"{url}/v1/audio/transcriptions?stream=true&partials=true", data=body(), headers={"Content-Type": RAW}
        ) as response:
            async for _ in response.content:
                pass

    task = asyncio.ensure_future(upload())
    try:
        await asyncio.wait_for(asyncio.shield(task), drop_after)
    except asyncio.TimeoutError:
        pass
    finally:
        task.cancel()  # the request is torn down mid-body: the connection is closed under it
        await asyncio.gather(task, return_exceptions=True)
        await session.close()


def resident_by_mapping(pid: int) -> dict[str, float]:
    """The server's resident MB in the main heap (brk), in anonymous mappings (the threads'
    malloc arenas and mmapped blocks) and in files (code, the model), from /proc/PID/smaps."""
    totals = {"heap_mb": 0.0, "anon_mb": 0.0, "file_mb": 0.0}
    kind = "anon_mb"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
            name = fields[5] if len(fields) > 5 else ""
            kind = "heap_mb" if name == "[heap]" else "file_mb" if name.startswith("/") else "anon_mb"
        elif fields[0] == "Rss:":
            totals[kind] += int(fields[1]) / 1024
    return {key: round(value, 1) for key, value in totals.items()}


async def figures(url: str, pid: int) -> dict[str, float]:
    samples = await scrape(url)
    return {
        "tasks": samples["stream_server_asyncio_tasks"],
        "rss_mb": round(samples["process_resident_memory_bytes"] / 2**20, 1),
        **resident_by_mapping(pid),
        "open_fds": samples["process_open_fds"],
        "live_streams": samples["stream_server_live_streams"],
    }


async def settle(url: str, pid: int, timeout_s: float = 180.0, quiet_reads: int = 12) -> dict[str, float]:
    """The figures once no stream is live and the task count held still for `quiet_reads`
    reads a second apart (aborted connections linger in aiohttp for a few seconds)."""
    deadline = time.monotonic() + timeout_s
    history: list[float] = []
    while True:
        now = await figures(url, pid)
        history.append(now["tasks"] if now["live_streams"] == 0 else -1)
        if len(history) >= quiet_reads and len(set(history[-quiet_reads:])) == 1 and history[-1] >= 0:
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(1.0)


async def storm(url: str, data: bytes, clients: int, speed: float, rng: random.Random) -> float:
    started = time.monotonic()
    jobs = [
        (websocket_client if i % 2 == 0 else http_client)(url, data, speed, rng.uniform(0.2, 8.0)) for i in range(clients)
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        print(f"# {len(failures)} clients failed to connect: {failures[0]!r}", file=sys.stderr)
    return time.monotonic() - started


async def whole_stream(url: str, data: bytes) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.put(
            f"{url}/v1/audio/transcriptions?stream=true", data=data, headers={"Content-Type": RAW}
        ) as response:
            text = ""
            async for line in response.content:
                if line.startswith(b"data: {") and b'"transcript.text.done"' in line:
                    text = json.loads(line[6:])["text"]
            return text


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--speed", type=float, default=2.0, help="pace of each client, x real time")
    parser.add_argument("--rss-slack-mb", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for stream-server serve")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    data = clip_bytes()
    server = Server("tiny.en", Path(tempfile.mkdtemp(prefix="fault-disconnects-")), [
        "--no-capacity-estimate", "--max-connections-per-address", "0", "--stream-max-queue-s", "120", *args.server_arg,
    ])
    try:
        await server.ready()
        assert "country" in (await whole_stream(server.url, data)).lower()
        await storm(server.url, data, max(10, args.clients // 5), args.speed, rng)  # warm the allocator
        baseline = await settle(server.url, server.process.pid)
        print(json.dumps({"baseline": baseline}))
        rounds = []
        for index in range(args.rounds):
            seconds = await storm(server.url, data, args.clients, args.speed, rng)
            after = await settle(server.url, server.process.pid)
            rounds.append(after)
            print(json.dumps({"round": index + 1, "clients": args.clients, "storm_s": round(seconds, 1), **after}))
        final = rounds[-1]
        text = await whole_stream(server.url, data)
        ok = (
            final["tasks"] <= baseline["tasks"]
            and final["open_fds"] <= baseline["open_fds"]
            and final["rss_mb"] <= baseline["rss_mb"] + args.rss_slack_mb
            and "country" in text.lower()
        )
        print(json.dumps({"after_last_round": final, "transcribes_after": "country" in text.lower(), "ok": ok}))
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
