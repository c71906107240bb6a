"""`stream-server listen FILE | -`: live captions in the terminal from a running server.

The audio goes over the server's live WebSocket (docs/PROTOCOL_WEBSOCKET.md) as 16-bit PCM: a
file is decoded here (any container FFmpeg reads) and sent at real-time pace, as a live feed
arrives; `-` sends raw s16le from stdin as it comes (`ffmpeg ... -f s16le - | stream-server
listen -`). The end of the input or Ctrl-C ends the stream: the server then decodes what it
has and the last captions come; a second Ctrl-C quits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import aiohttp

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file
from stream_server.audio.wav import s16le
from stream_server.commands.captions import Captions
from stream_server.errors import ServiceError
from stream_server.transports.auth import STREAM_PATH

CHUNK_S = 0.1
"""Audio per message: the 100 ms frames the browser page sends."""
READ_BYTES = 8192


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-server listen", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="FILE", help="an audio file, or - for raw s16le PCM on stdin")
    parser.add_argument(
        "--url",
        default=env.get("STREAM_SERVER_URL", "http://127.0.0.1:8000"),
        help="the server [STREAM_SERVER_URL, default http://127.0.0.1:8000]",
    )
    parser.add_argument("--api-key", default=env.get("STREAM_SERVER_API_KEY"), help="[STREAM_SERVER_API_KEY]")
    parser.add_argument("--model", help="a model the server serves [default: its own]")
    parser.add_argument("--language", help="ISO-639-1 code; detected if not given (English-only models: en)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="of the PCM on stdin [default 16000]")
    parser.add_argument("--channels", type=int, default=1, help="of the PCM on stdin, interleaved [default 1]")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="a file is sent at this many times real time [default 1]"
    )
    return parser


def main(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """0 once the server sent the whole transcript; 1 when the stream failed or was refused."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be above 0")
    captions = Captions(sys.stdout, live=sys.stdout.isatty())
    try:
        if args.source == "-":
            audio, rate, channels = stdin_chunks(sys.stdin.buffer), args.sample_rate, args.channels
        else:
            pcm = s16le(decode_file(Path(args.source).read_bytes(), args.source))
            audio, rate, channels = paced(pcm, args.speed), SAMPLE_RATE, 1
        return asyncio.run(listen(args, audio, {"sample_rate": rate, "channels": channels}, captions))
    except KeyboardInterrupt:
        captions.close()
        return 130
    except (ServiceError, OSError, aiohttp.ClientError) as exc:
        captions.close()
        print(f"stream-server listen: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1


async def listen(
    args: argparse.Namespace, audio: AsyncIterator[bytes], pcm_format: Mapping[str, int], captions: Captions
) -> int:
    url = args.url.rstrip("/") + STREAM_PATH
    query = {"encoding": "pcm_s16le", **pcm_format, "partials": "true" if captions.live else "false"}
    query |= {name: value for name in ("model", "language") if (value := getattr(args, name))}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, params=query, headers=headers)
        except aiohttp.WSServerHandshakeError:
            raise await refusal(http, url, query, headers) from None
        async with ws:
            sender = asyncio.create_task(send(ws, audio))
            stop_on_ctrl_c(sender)
            try:
                return await receive(ws, captions)
            finally:
                sender.cancel()


async def refusal(http: aiohttp.ClientSession, url: str, query: Mapping, headers: Mapping) -> ServiceError:
    """Why the upgrade was refused: the same GET without it answers the OpenAI-style error."""
    async with http.get(url, params=query, headers=headers) as response:
        with contextlib.suppress(ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
            return ServiceError(str((await response.json())["error"]["message"]))
        return ServiceError(f"the server refused the stream (HTTP {response.status})")


async def send(ws: aiohttp.ClientWebSocketResponse, audio: AsyncIterator[bytes]) -> None:
    """The audio, then `close`, also when Ctrl-C cancelled the sending."""
    with contextlib.suppress(ConnectionError):
        try:
            async for chunk in audio:
                await ws.send_bytes(chunk)
        finally:
            await ws.send_str(json.dumps({"type": "close"}))


def stop_on_ctrl_c(sender: asyncio.Task) -> None:
    """The first Ctrl-C stops sending; the default handler is back for a second one."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        sender.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals here (Windows, a thread)
        loop.add_signal_handler(signal.SIGINT, stop)


async def receive(ws: aiohttp.ClientWebSocketResponse, captions: Captions) -> int:
    done = False
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        event = json.loads(message.data)
        if event.get("type") == "warning":  # the stream goes on
            captions.note(f"stream-server listen: warning: {event.get('message')}", sys.stderr)
        elif event.get("type") == "error":  # the stream ends: what was committed stays on screen
            captions.close()
            print(f"stream-server listen: {event.get('error', {}).get('message')}", file=sys.stderr)
        done = done or event.get("type") == "transcript.text.done"
        captions.show(event)
    captions.close()
    return 0 if done else 1


async def paced(pcm: bytes, speed: float) -> AsyncIterator[bytes]:
    """16 kHz s16le in CHUNK_S messages, each sent when its audio would have been heard."""
    step = int(SAMPLE_RATE * CHUNK_S) * 2
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), step)):
        yield pcm[offset : offset + step]
        await asyncio.sleep(max(0.0, started + (index + 1) * CHUNK_S / speed - time.monotonic()))


async def stdin_chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    """What the pipe holds, as it comes. Read in a daemon thread: a read blocked on a quiet
    pipe must not keep the process from exiting."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed first
            while chunk := stream.read1(READ_BYTES):
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            loop.call_soon_threadsafe(queue.put_nowait, b"")

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while chunk := await queue.get():
        yield chunk
