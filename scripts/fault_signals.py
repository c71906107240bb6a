"""SIGTERM and SIGKILL under load: what a client and a restarted server see.

    python scripts/fault_signals.py term     # SIGTERM during live streams and file jobs
    python scripts/fault_signals.py kill     # SIGKILL during uploads and streams, then a restart
    python scripts/fault_signals.py both
    python scripts/fault_signals.py term -- --shutdown-drain 60   # more serve flags after --

`term`: starts `stream-server serve --api-key k1` (bench_stream.Server) and, at once, 3 live
WebSocket streams of the dev feed at real-time pace and `--files` (2) transcriptions of a 60 s file;
after `--after` seconds sends SIGTERM. Each stream must end with an `error` event
(`server_shutdown`) and close 1001, having kept the text committed before it; each file must
either finish (200, the text) or fail with an OpenAI-shaped error, never a reset connection;
the server must exit 0. Then a restart on the same data dir must list the 3 sessions as
`failed` with `server_shutdown`, each holding the text its client received.

`kill`: uploads 5 files and runs 2 short streams to the end (usage, finished sessions), then
starts 3 more uploads (2 minutes of audio each) and 2 more streams and SIGKILLs the server
0.4 s later, in the middle of them. After
a restart on the same data dir: every file that was answered 200 is listed with the same bytes,
any file listed is whole (its content is the bytes that were sent), no temporary file is listed,
the usage records and the finished sessions are all there, and the key still works.

Prints JSON lines, and `ok` per scenario; the exit code is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import REPO, Server  # noqa: E402

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from stream_server.audio.wav import wav_bytes  # noqa: E402

AUDIO = REPO.parent / "shared" / "audio"
KEY = {"Authorization": "Bearer k1"}
SERVER_ARGS = ["--api-key", "k1", "--no-capacity-estimate", *sys.argv[sys.argv.index("--") + 1 :]] if "--" in sys.argv else [
    "--api-key", "k1", "--no-capacity-estimate",
]
"""`--` and what follows it are more `serve` flags (e.g. `-- --shutdown-drain 60` on a loaded machine)."""


def s16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def stream(url: str, pcm: bytes, speed: float, stop: asyncio.Event | None = None) -> dict:
    """A live WebSocket stream; what came back: committed text, the last event, the close code."""
    async with aiohttp.ClientSession(headers=KEY) as session:
        ws = await session.ws_connect(url.replace("http", "ws") + "/v1/audio/stream")
        created = json.loads((await ws.receive()).data)
        committed, last = "", None

        async def send() -> None:
            size = SAMPLE_RATE // 10 * 2
            for offset in range(0, len(pcm), size):
                if ws.closed or (stop is not None and stop.is_set()):
                    return
                await ws.send_bytes(pcm[offset : offset + size])
                await asyncio.sleep(0.1 / speed)
            if not ws.closed:
                await ws.send_str(json.dumps({"type": "close"}))

        sender = asyncio.ensure_future(send())
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                last = json.loads(message.data)
                if last["type"] == "transcript.text.delta":
                    committed += last["delta"]
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        return {"session_id": created["session_id"], "text": committed, "last": last, "close_code": ws.close_code}


async def transcribe_file(url: str, data: bytes) -> dict:
    try:
        async with aiohttp.ClientSession(headers=KEY) as session:
            form = aiohttp.FormData()
            form.add_field("model", "whisper-1")
            form.add_field("file", data, filename="long.wav")
            async with session.post(url + "/v1/audio/transcriptions", data=form) as response:
                body = await response.json()
                return {"status": response.status, "text": body.get("text"), "error": body.get("error")}
    except aiohttp.ClientError as exc:
        return {"status": None, "connection_error": repr(exc)}


async def upload(url: str, data: bytes, name: str) -> dict:
    try:
        async with aiohttp.ClientSession(headers=KEY) as session:
            form = aiohttp.FormData()
            form.add_field("purpose", "user_data")
            form.add_field("file", data, filename=name)
            async with session.post(url + "/v1/files", data=form) as response:
                return {**(await response.json()), "status": response.status}
    except aiohttp.ClientError as exc:
        return {"status": None, "connection_error": repr(exc)}


async def get(url: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(headers=KEY) as session:
        async with session.get(url + path) as response:
            return response.status, await response.read()


async def scenario_term(after_s: float, file_jobs: int, data_dir: Path) -> bool:
    feed = s16(decode_file((AUDIO / "en_dev_feed_16k.wav").read_bytes()))
    long_file = wav_bytes(np.concatenate([decode_file((AUDIO / "en_dev_feed_16k.wav").read_bytes())[: 60 * SAMPLE_RATE]]))
    server = Server("tiny.en", data_dir, SERVER_ARGS)
    await server.ready()
    streams = [asyncio.ensure_future(stream(server.url, feed, 1.0)) for _ in range(3)]
    files = [asyncio.ensure_future(transcribe_file(server.url, long_file)) for _ in range(file_jobs)]
    await asyncio.sleep(after_s)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    stream_results = await asyncio.gather(*streams)
    file_results = await asyncio.gather(*files)
    code = await asyncio.get_running_loop().run_in_executor(None, server.process.wait, 120)
    exit_s = time.monotonic() - signalled
    for result in stream_results:
        print(json.dumps({"stream": result["session_id"], "close_code": result["close_code"], "last": result["last"], "chars": len(result["text"])}))
    for result in file_results:
        print(json.dumps({"file_job": {k: (v[:60] if isinstance(v, str) else v) for k, v in result.items()}}))
    streams_ok = all(
        r["close_code"] == 1001 and r["last"]["type"] == "error" and r["last"]["error"]["code"] == "server_shutdown" and r["text"]
        for r in stream_results
    )
    files_ok = all((r["status"] == 200 and r["text"]) or (r["status"] and r.get("error")) for r in file_results)
    restarted = Server("tiny.en", data_dir, SERVER_ARGS)
    await restarted.ready()
    kept_ok = True
    for result in stream_results:
        status, body = await get(restarted.url, f"/v1/audio/sessions/{result['session_id']}")
        stored = json.loads(body)
        same = stored.get("text", "").strip() == result["text"].strip()
        print(json.dumps({"stored": result["session_id"], "status": stored.get("status"), "error": (stored.get("error") or {}).get("code"), "text_as_received": same}))
        kept_ok &= status == 200 and stored["status"] == "failed" and stored["error"]["code"] == "server_shutdown" and same
    restarted.stop()
    ok = streams_ok and files_ok and kept_ok and code == 0
    print(json.dumps({"scenario": "term", "exit_code": code, "exit_s": round(exit_s, 2), "streams_ok": streams_ok, "files_ok": files_ok, "kept_ok": kept_ok, "ok": ok}))
    return ok


async def scenario_kill(data_dir: Path) -> bool:
    speech = decode_file((AUDIO / "en_dev_feed_16k.wav").read_bytes())
    clips = [wav_bytes(speech[i * 5 * SAMPLE_RATE : (i + 1) * 5 * SAMPLE_RATE]) for i in range(5)]
    clips += [wav_bytes(np.roll(speech, i)[: 120 * SAMPLE_RATE]) for i in range(1, 4)]  # ~3.8 MB each: in flight at the kill
    short = s16(decode_file((AUDIO / "en_jfk_16k.wav").read_bytes()))
    server = Server("tiny.en", data_dir, SERVER_ARGS)
    await server.ready()
    uploaded = [await upload(server.url, clip, f"clip{i}.wav") for i, clip in enumerate(clips[:5])]
    finished = [await stream(server.url, short, 8.0) for _ in range(2)]
    sent = {f"clip{i}.wav": hashlib.sha256(clip).hexdigest() for i, clip in enumerate(clips)}
    _, usage_before = await get(server.url, "/v1/usage")
    in_flight = [asyncio.ensure_future(upload(server.url, clip, f"clip{5 + i}.wav")) for i, clip in enumerate(clips[5:])]
    stop = asyncio.Event()
    live = [asyncio.ensure_future(stream(server.url, short, 1.0, stop)) for _ in range(2)]
    await asyncio.sleep(0.4)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    stop.set()
    late = await asyncio.gather(*in_flight)
    await asyncio.gather(*live, return_exceptions=True)

    restarted = Server("tiny.en", data_dir, SERVER_ARGS)
    await restarted.ready()
    _, listing = await get(restarted.url, "/v1/files")
    listed = {f["id"]: f for f in json.loads(listing)["data"]}
    answered = [u for u in uploaded + late if u["status"] == 200]
    all_answered_listed = all(u["id"] in listed for u in answered)
    whole = True
    for file_id, record in listed.items():
        status, content = await get(restarted.url, f"/v1/files/{file_id}/content")
        whole &= status == 200 and hashlib.sha256(content).hexdigest() == sent.get(record["filename"]) and len(content) == record["bytes"]
    no_temp_listed = not any(f["id"].startswith(".tmp") or f["filename"].startswith(".tmp") for f in listed.values())
    sessions_kept = True
    for result in finished:
        status, body = await get(restarted.url, f"/v1/audio/sessions/{result['session_id']}")
        stored = json.loads(body)
        sessions_kept &= status == 200 and stored["status"] == "completed" and stored["text"].strip() == result["text"].strip()
    _, usage_after = await get(restarted.url, "/v1/usage")
    requests = lambda body: sum(d["requests"] for d in json.loads(body)["data"])  # noqa: E731
    usage_kept = requests(usage_after) >= requests(usage_before)
    key_works = (await get(restarted.url, "/v1/models"))[0] == 200
    restarted.stop()
    leftovers = [p.name for p in (data_dir / "storage" / "files").iterdir() if p.name.startswith(".tmp-")]
    report = {
        "scenario": "kill",
        "answered_200": len(answered),
        "in_flight_at_kill": len(in_flight),
        "in_flight_answered": sum(u["status"] == 200 for u in late),
        "listed_after_restart": len(listed),
        "all_answered_listed": all_answered_listed,
        "every_listed_file_whole": whole,
        "no_temp_listed": no_temp_listed,
        "temp_files_on_disk": len(leftovers),
        "finished_sessions_kept": sessions_kept,
        "usage_requests_before_after": [requests(usage_before), requests(usage_after)],
        "usage_kept": usage_kept,
        "key_works": key_works,
    }
    report["ok"] = all(report[k] for k in ("all_answered_listed", "every_listed_file_whole", "no_temp_listed", "finished_sessions_kept", "usage_kept", "key_works"))
    print(json.dumps(report))
    return report["ok"]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["term", "kill", "both"])
    parser.add_argument("--after", type=float, default=12.0, help="seconds of load before SIGTERM")
    parser.add_argument("--files", type=int, default=2, help="file transcriptions running at the SIGTERM")
    args = parser.parse_args(sys.argv[1 : sys.argv.index("--")] if "--" in sys.argv else None)
    ok = True
    if args.scenario in ("term", "both"):
        ok &= await scenario_term(args.after, args.files, Path(tempfile.mkdtemp(prefix="fault-term-")))
    if args.scenario in ("kill", "both"):
        ok &= await scenario_kill(Path(tempfile.mkdtemp(prefix="fault-kill-")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
