"""Replay an audio file at real-time pace over the live transport and measure what a user sees.

    python scripts/bench_stream.py --audio ../shared/audio/en_dev_feed_16k.wav --model tiny.en
    python scripts/bench_stream.py --protocol openai-realtime   # the same, over OpenAI Realtime

Starts `stream-server serve` in its own process (or uses --url), streams the file as raw s16le
with `stream=true&partials=true` (or, `--protocol deepgram`, over Deepgram's /v1/listen), and reports: latency from a word's end in the audio to its
first appearance (in a partial) and to its commit; from an utterance's last word to its final
event; streaming WER vs faster-whisper run offline on the same file; server CPU seconds per
audio second.

`--protocol openai-realtime` sends the file instead as OpenAI Realtime `input_audio_buffer.append`
events (pcm at 24 kHz, server VAD) to /v1/realtime?intent=transcription, which sends no partials:
a word's commit is the `...transcription.delta` that carries it, an utterance's final its
`...transcription.completed`, its end the `speech_stopped`'s `audio_end_ms`. Realtime events
carry no word times, so each delta is paired with the native delta it was made from (the
session's own log, replayed at /v1/audio/sessions/{id}/events afterwards) and its words timed as
the native measure times them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream_server.audio import SAMPLE_RATE  # noqa: E402
from stream_server.audio.decode import decode_file  # noqa: E402
from scripts.bench_record import delays, run_context, write_results  # noqa: E402

CHUNK_S = 0.1
"""Audio per upload chunk, as a microphone or telephony feed sends it."""


@dataclass
class StreamResult:
    text: str = ""
    first_seen: list[float] = field(default_factory=list)
    """Per committed word: seconds from its end in the audio to its first appearance."""
    committed: list[float] = field(default_factory=list)
    """Per committed word: seconds from its end to its commit."""
    finals: list[float] = field(default_factory=list)
    """Per utterance: seconds from its last word's end to its final event."""
    utterance_done: list[float] = field(default_factory=list)
    """Per utterance: seconds from its `end` (where the VAD or a cut ended it) to its final event."""
    lengths: list[float] = field(default_factory=list)
    """Per utterance: `end - start`, seconds."""
    lag_at_end: float = 0.0
    """Seconds from the end of the upload to the done event."""
    error: str | None = None


async def replay(url: str, audio: np.ndarray, *, speed: float = 1.0, api_key: str | None = None, start_delay: float = 0.0) -> StreamResult:
    """Stream `audio` at `speed` x real time; time stream events against the audio clock."""
    await asyncio.sleep(start_delay)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    chunk = int(CHUNK_S * SAMPLE_RATE) * 2
    clock: dict[str, float] = {}

    def audio_now() -> float:
        return (time.monotonic() - clock["t0"]) * speed

    async def body():
        clock["t0"] = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), chunk)):
            yield pcm[offset : offset + chunk]
            due = clock["t0"] + (i + 1) * CHUNK_S / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        clock["sent"] = time.monotonic()

    result = StreamResult()
    partials: list[tuple[float, float, float]] = []  # (seen at, start, end)
    headers = {"Content-Type": "audio/pcm;encoding=s16le;rate=16000"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(f"{url}/v1/audio/transcriptions?model=whisper-1&stream=true&partials=true", data=body(), headers=headers) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {await response.text()}"
                return result
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data: {"):
                    _observe(json.loads(line[6:]), audio_now(), result, partials, clock)
    return result


def _observe(event: dict, now: float, result: StreamResult, partials: list, clock: dict[str, float]) -> None:
    """One native event (SSE or WebSocket), seen at `now` on the audio clock."""
    kind = event.get("type")
    if kind == "transcript.text.partial":
        partials.append((now, event["start"], event["end"]))
    elif kind == "transcript.text.delta" and "end" in event:
        _committed(event, now, result, partials)
    elif kind == "transcript.utterance.done":
        result.utterance_done.append(now - event["end"])
        result.lengths.append(event["end"] - event["start"])
        if event["words"]:
            result.finals.append(now - event["words"][-1]["end"])
    elif kind == "transcript.text.done":
        result.text = event["text"]
        result.lag_at_end = time.monotonic() - clock.get("sent", time.monotonic())
    elif kind == "error":
        result.error = event["error"]["message"]


def _committed(delta: dict, now: float, result: StreamResult, partials: list) -> None:
    """Commit latency and first-seen latency of a delta's words."""
    for word_end, word_start in _word_spans(delta):
        result.committed.append(now - word_end)
        seen = [t for t, s, e in partials if s <= word_start + 0.1 and e >= word_end - 0.1]
        result.first_seen.append(min(seen + [now]) - word_end)


async def _send_paced(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, speed: float, clock: dict[str, float], close: dict) -> None:
    """Audio in CHUNK_S messages at `speed` x real time, then the `close` control."""
    chunk = int(CHUNK_S * SAMPLE_RATE) * 2
    clock["t0"] = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), chunk)):
        await ws.send_bytes(pcm[offset : offset + chunk])
        await asyncio.sleep(max(0.0, clock["t0"] + (i + 1) * CHUNK_S / speed - time.monotonic()))
    await ws.send_str(json.dumps(close))
    clock["sent"] = time.monotonic()


async def _over_websocket(url: str, audio: np.ndarray, speed: float, headers: dict, close: dict, observe, clock: dict) -> None:
    """Stream `audio` over a WebSocket while `observe(message, audio_now)` reads each JSON
    message, until the server closes; `clock` gets `t0` and `sent`."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    clock["t0"] = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers=headers) as ws:
            sender = asyncio.ensure_future(_send_paced(ws, pcm, speed, clock, close))
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                observe(json.loads(message.data), (time.monotonic() - clock["t0"]) * speed)
            await sender


async def replay_websocket(url: str, audio: np.ndarray, *, speed: float = 1.0, api_key: str | None = None) -> StreamResult:
    """The replay over the native WebSocket (/v1/audio/stream), paced by its inbox as /v1/listen is."""
    result, partials, clock = StreamResult(), [], {}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    stream = f"{url}/v1/audio/stream?encoding=pcm_s16le&sample_rate=16000"
    await _over_websocket(stream, audio, speed, headers, {"type": "close"}, lambda e, now: _observe(e, now, result, partials, clock), clock)
    return result


async def replay_deepgram(url: str, audio: np.ndarray, *, speed: float = 1.0, api_key: str | None = None) -> StreamResult:
    """The same replay and measures over Deepgram's live WebSocket (/v1/listen, interim results
    on): interim Results are the partials, final Results the commits (timed like the native
    deltas: their words spread evenly over the span), a speech_final Results an utterance's final."""
    result, partials, finals, clock = StreamResult(), [], [], {}
    headers = {"Authorization": f"Token {api_key}"} if api_key else {}
    query = "model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true&punctuate=true"

    def observe(event: dict, now: float) -> None:
        if event["type"] == "Error":
            result.error = event["description"]
        if event["type"] != "Results":
            return
        words = event["channel"]["alternatives"][0]["words"]
        if not event["is_final"]:
            partials.extend((now, w["start"], w["end"]) for w in words)
            return
        if words:
            finals.append(event["channel"]["alternatives"][0]["transcript"])
            text = " ".join(w["punctuated_word"] for w in words)
            _committed({"delta": text, "start": words[0]["start"], "end": words[-1]["end"]}, now, result, partials)
        if event["speech_final"]:
            result.utterance_done.append(now - (event["start"] + event["duration"]))
            if words:
                result.finals.append(now - words[-1]["end"])

    await _over_websocket(f"{url}/v1/listen?{query}", audio, speed, headers, {"type": "CloseStream"}, observe, clock)
    result.lag_at_end = time.monotonic() - clock["sent"]
    result.text = " ".join(finals)
    return result


REALTIME_RATE = 24000
"""OpenAI Realtime's pcm rate."""


def pcm24k(audio: np.ndarray) -> bytes:
    """16 kHz float32 as 24 kHz s16le, FFmpeg resampling."""
    import av

    frame = av.AudioFrame.from_ndarray((np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=REALTIME_RATE)
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype("<i2").tobytes()


async def replay_realtime(url: str, audio: np.ndarray, *, speed: float = 1.0, api_key: str | None = None) -> StreamResult:
    """Stream `audio` over OpenAI Realtime at `speed` x real time; time its events as `replay`."""
    pcm = pcm24k(audio)
    chunk = int(CHUNK_S * REALTIME_RATE) * 2
    clock: dict[str, float] = {}
    result = StreamResult()
    arrivals: list[tuple[float, dict]] = []  # (audio clock, event)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    ws_url = url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.ws_connect(ws_url, headers=headers, max_msg_size=0) as ws:
            created = await ws.receive_json()
            if created.get("type") != "session.created":
                result.error = json.dumps(created)
                return result
            session_id = created["session"]["id"]
            update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": REALTIME_RATE}}}}
            await ws.send_json({"type": "session.update", "session": update})

            async def send() -> None:
                clock["t0"] = time.monotonic()
                for i, offset in enumerate(range(0, len(pcm), chunk)):
                    data = base64.b64encode(pcm[offset : offset + chunk]).decode()
                    await ws.send_json({"type": "input_audio_buffer.append", "audio": data})
                    due = clock["t0"] + (i + 1) * CHUNK_S / speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                clock["sent"] = time.monotonic()
                await ws.send_json({"type": "input_audio_buffer.commit"})  # ends a turn still open

            sender = asyncio.ensure_future(send())
            counts = {"started": 0, "committed": 0, "completed": 0}
            end_ms = len(pcm) / 2 / REALTIME_RATE * 1000
            reached_end = False
            """The final commit was handled: it found no turn open (an error), or cut the open one."""
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(message.data)
                now = (time.monotonic() - clock.get("t0", time.monotonic())) * speed
                arrivals.append((now, event))
                kind = event["type"]
                if kind == "error":
                    if event["error"].get("code") != "input_audio_buffer_commit_empty":
                        result.error = event["error"]["message"]
                        break
                    reached_end = True
                reached_end |= kind.endswith("speech_stopped") and event["audio_end_ms"] >= end_ms - 100
                for name, suffix in (("started", "speech_started"), ("committed", "committed"), ("completed", "completed")):
                    counts[name] += kind.endswith(suffix)
                if reached_end and counts["committed"] == counts["completed"] >= counts["started"]:
                    result.lag_at_end = time.monotonic() - clock["sent"]
                    break
            sender.cancel()
        native = await _native_deltas(session, url, session_id)
    _time_realtime(result, arrivals, native)
    return result


async def _native_deltas(session: aiohttp.ClientSession, url: str, session_id: str) -> list[dict]:
    """The session's own `transcript.text.delta` events, replayed from its log once it ends."""
    deltas = []
    async with session.get(f"{url}/v1/audio/sessions/{session_id}/events") as response:
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if event["type"] == "transcript.text.delta":
                    deltas.append(event)
    return deltas


def _time_realtime(result: StreamResult, arrivals: list[tuple[float, dict]], native: list[dict]) -> None:
    """Each realtime delta is the next native delta of the session (the same committed text), so
    its words are timed by that delta's span; each item's final by its last word."""
    spans = iter(native)
    stopped: dict[str, dict] = {}
    last_word: dict[str, float] = {}
    for now, event in arrivals:
        kind = event["type"]
        if kind == "input_audio_buffer.speech_stopped":
            stopped[event["item_id"]] = event
        elif kind.endswith(".delta"):
            source = next(spans)
            assert source["delta"].strip() == event["delta"].strip(), (source["delta"], event["delta"])
            for word_end, _ in _word_spans(source):
                result.committed.append(now - word_end)
                result.first_seen.append(now - word_end)  # no partials in this protocol
                last_word[event["item_id"]] = word_end
        elif kind.endswith(".completed"):
            result.text = f"{result.text} {event['transcript']}".strip()
            if event["item_id"] in last_word:
                result.finals.append(now - last_word[event["item_id"]])
            stop = stopped.get(event["item_id"])
            if stop is not None:
                result.utterance_done.append(now - stop["audio_end_ms"] / 1000)
                started = next(e for _, e in arrivals if e["type"].endswith("speech_started") and e["item_id"] == event["item_id"])
                result.lengths.append((stop["audio_end_ms"] - started["audio_start_ms"]) / 1000)


REPLAYS = {"native": replay, "websocket": replay_websocket, "deepgram": replay_deepgram, "openai-realtime": replay_realtime}


def _word_spans(delta: dict) -> list[tuple[float, float]]:
    """(end, start) of each word of a delta, spread evenly when the wire gives only the span."""
    words = delta["delta"].split()
    if not words:
        return []
    span = (delta["end"] - delta["start"]) / len(words)
    return [(delta["start"] + (i + 1) * span, delta["start"] + i * span) for i in range(len(words))]


def wer(reference: str, hypothesis: str) -> float:
    return pooled_wer([reference], [hypothesis])


def pooled_wer(references: list[str], hypotheses: list[str]) -> float:
    """All pairs' word errors over all their reference words, after Whisper's English normaliser."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    return jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses])


def offline_text(audio_path: Path, model: str, data_dir: Path) -> str:
    from faster_whisper import WhisperModel

    from stream_server.models import resolve_model

    source = resolve_model(model, data_dir / "models")
    whisper = WhisperModel(source.location, device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    segments, _ = whisper.transcribe(str(audio_path), beam_size=5, vad_filter=True)
    return " ".join(s.text.strip() for s in segments)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`stream-server serve` in a child process, for CPU accounting apart from the client."""

    def __init__(self, model: str, data_dir: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "stream_server", "serve", "--port", str(self.port), "--model", model, "--data-dir", str(data_dir), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                try:
                    async with session.get(self.url + "/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("server did not become healthy")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class StreamReport:
    """What one replay measured, as printed and as `--json` writes it (beside the raw delays)."""

    partial_p50: float
    partial_p95: float
    commit_p50: float
    commit_p95: float
    commit_max: float
    final_p50: float
    final_p95: float
    finals: int
    done_minus_end_p50: float
    done_minus_end_p95: float
    utterances: int
    length_p50: float
    length_max: float
    lag_at_end: float
    wer: float
    wer_offline: float
    cpu_s: float | None
    """Server CPU seconds over the replay; None with --url."""
    cpu_per_audio_s: float | None
    rss_mb: float | None

    @classmethod
    def of(cls, result: StreamResult, streaming_wer: float, offline_wer: float, duration: float, cpu: float | None, rss: float | None) -> StreamReport:
        return cls(
            partial_p50=percentile(result.first_seen, 50),
            partial_p95=percentile(result.first_seen, 95),
            commit_p50=percentile(result.committed, 50),
            commit_p95=percentile(result.committed, 95),
            commit_max=max(result.committed, default=float("nan")),
            final_p50=percentile(result.finals, 50),
            final_p95=percentile(result.finals, 95),
            finals=len(result.finals),
            done_minus_end_p50=percentile(result.utterance_done, 50),
            done_minus_end_p95=percentile(result.utterance_done, 95),
            utterances=len(result.lengths),
            length_p50=percentile(result.lengths, 50),
            length_max=max(result.lengths, default=float("nan")),
            lag_at_end=result.lag_at_end,
            wer=streaming_wer,
            wer_offline=offline_wer,
            cpu_s=cpu,
            cpu_per_audio_s=None if cpu is None else cpu / duration,
            rss_mb=rss,
        )

    def lines(self) -> list[str]:
        """The printed report, after its first line."""
        lines = [
            f"partial (first seen) latency p50 {self.partial_p50:.2f} s  p95 {self.partial_p95:.2f} s",
            f"commit latency           p50 {self.commit_p50:.2f} s  p95 {self.commit_p95:.2f} s  max {self.commit_max:.2f} s",
            f"utterance final latency  p50 {self.final_p50:.2f} s  p95 {self.final_p95:.2f} s  ({self.finals} utterances)",
            f"utterance done - its end p50 {self.done_minus_end_p50:.2f} s  p95 {self.done_minus_end_p95:.2f} s;"
            f"  length p50 {self.length_p50:.1f} s  max {self.length_max:.1f} s  ({self.utterances} utterances)",
            f"done after upload end    {self.lag_at_end:.2f} s",
            f"WER streaming {self.wer:.1%}  offline {self.wer_offline:.1%}",
        ]
        if self.cpu_s is not None:
            lines.append(f"server CPU {self.cpu_s:.1f} s = {self.cpu_per_audio_s:.2f} CPU-s per audio second; RSS {self.rss_mb:.0f} MB")
        return lines


async def main() -> None:
    context = run_context()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "audio" / "en_dev_feed_16k.wav")
    parser.add_argument("--reference", type=Path, help="reference text (default: the audio's .txt beside it)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--url", help="an already running server (CPU is then not measured)")
    parser.add_argument("--speed", type=float, default=1.0, help="pace, x real time")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for stream-server serve")
    parser.add_argument("--transcript", type=Path, help="write the streamed transcript here")
    parser.add_argument(
        "--protocol",
        choices=REPLAYS,
        default="native",
        help="native: the SSE upload; websocket: /v1/audio/stream; deepgram: /v1/listen; openai-realtime: /v1/realtime",
    )
    parser.add_argument("--json", type=Path, help="also write the measures and each word's delays here (scripts/bench_record.py)")
    args = parser.parse_args()

    audio = decode_file(args.audio.read_bytes())
    reference = (args.reference or args.audio.with_suffix(".txt")).read_text()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    server = None if args.url else Server(args.model, data_dir, args.server_arg)
    url = args.url or server.url
    cpu = rss = None
    if server:
        await server.ready()
        cpu_before = server.cpu_seconds()
    result = await REPLAYS[args.protocol](url, audio, speed=args.speed)
    if server:
        cpu = server.cpu_seconds() - cpu_before
        rss = server.rss_mb()
        server.stop()
    if result.error:
        print("stream failed:", result.error)
    if args.transcript:
        args.transcript.write_text(result.text + "\n")
    offline = offline_text(args.audio, args.model, data_dir)
    duration = len(audio) / SAMPLE_RATE
    report = StreamReport.of(result, wer(reference, result.text), wer(reference, offline), duration, cpu, rss)
    print(f"model {args.model}, {args.audio.name} ({duration:.1f} s) at {args.speed:g}x real time over {args.protocol}, {os.cpu_count()} cores")
    for line in report.lines():
        print(line)
    if args.json:
        settings = {"audio": str(args.audio), "feed": args.audio.stem, "audio_s": duration, "model": args.model, "protocol": args.protocol}
        settings |= {"speed": args.speed, "server_args": args.server_arg, "url": args.url}
        raw = {"error": result.error, "commit_delays": delays(result.committed), "first_seen_delays": delays(result.first_seen)}
        raw |= {"final_delays": delays(result.finals)}
        write_results(args.json, "stream", context, settings, [asdict(report) | raw])

if __name__ == "__main__":
    asyncio.run(main())
