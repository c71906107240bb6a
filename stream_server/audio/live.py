"""Audio that arrives a piece at a time, turned into 16 kHz float32 as it comes: mixed to mono,
or (split) a (channels, samples) array per piece with each channel kept apart.

Raw PCM and G.711 are decoded chunk by chunk; containers (wav, ogg/opus, webm, mp3, flac)
are read by FFmpeg on a worker thread from a pipe the upload feeds. Both ends are bounded:
the upload is not read further while the pipe holds `PIPE_BYTES`, and FFmpeg's thread waits
while `DECODED_DEPTH` of its pieces are not taken, so a container body that arrives faster than
it is taken is held back by TCP, as a raw body is. A container FFmpeg cannot read from a pipe
(mp4/m4a with its index at the end) is decoded whole when the upload ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import av
import numpy as np

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_channels, decode_file
from stream_server.errors import AudioDecodeError, PayloadTooLarge

RAW_CODECS = {
    "s16le": "pcm_s16le",
    "s16be": "pcm_s16be",
    "f32le": "pcm_f32le",
    "mulaw": "pcm_mulaw",
    "alaw": "pcm_alaw",
}
"""Raw encodings we accept, and the FFmpeg codec that reads each."""
PIPE_BYTES = 64 * 1024
"""Upload bytes queued towards FFmpeg before the upload is not read further (2 s of 16 kHz
PCM in a WAV, a minute of speech-rate Opus); one read larger than this still goes in alone."""
DECODED_DEPTH = 16
"""Decoded pieces (up to BATCH_SAMPLES each) not yet taken before FFmpeg's thread waits."""
BATCH_SAMPLES = SAMPLE_RATE // 4
"""While the upload is ahead of FFmpeg (a file sent whole), decoded audio is handed to the event
loop in pieces up to this long rather than frame by frame (a 140 s WAV is 2186 frames, and
handing each over cost more than decoding it); when a read would wait, what is decoded goes at
once. Short enough that DECODED_DEPTH pieces hold at most 4 s."""


@dataclass(frozen=True)
class RawFormat:
    encoding: str
    sample_rate: int = SAMPLE_RATE
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in RAW_CODECS:
            raise AudioDecodeError(
                f"unknown encoding '{self.encoding}'; use one of {', '.join(RAW_CODECS)}",
                param="encoding",
            )
        if not 1000 <= self.sample_rate <= 384_000:
            raise AudioDecodeError("sample rate must be between 1000 and 384000", param="sample_rate")
        if not 1 <= self.channels <= 8:
            raise AudioDecodeError("channels must be between 1 and 8", param="channels")


class _To16k:
    """FFmpeg's resampler, stateful across calls, to 16 kHz float32: mono, or (split) planar
    with the input's channels, as a (channels, samples) array."""

    def __init__(self, split: bool = False, channels: int = 1) -> None:
        self._split, self._channels = split, channels
        self._resampler: av.AudioResampler | None = None
        if not split:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def __call__(self, frame: av.AudioFrame | None) -> np.ndarray:
        if self._resampler is None:
            if frame is None:
                return self.empty()
            self._channels = len(frame.layout.channels)
            self._resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=SAMPLE_RATE)
        frames = self._resampler.resample(frame)
        if not frames:
            return self.empty()
        if self._split:
            return np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.float32, copy=False)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)

    def empty(self) -> np.ndarray:
        return np.zeros((self._channels, 0) if self._split else 0, np.float32)


class RawDecoder:
    """Decode raw PCM / G.711 chunks of any size (a sample split across chunks is carried);
    `split` keeps interleaved channels apart."""

    def __init__(self, fmt: RawFormat, split: bool = False):
        self._codec = av.CodecContext.create(RAW_CODECS[fmt.encoding], "r")
        self._codec.sample_rate = fmt.sample_rate
        self._codec.layout = {1: "mono", 2: "stereo"}.get(fmt.channels, f"{fmt.channels}c")
        width = 4 if fmt.encoding == "f32le" else 2 if fmt.encoding.startswith("s16") else 1
        self._block = width * fmt.channels
        self._floats = fmt.encoding == "f32le"
        self._carry = b""
        self._to_16k = _To16k(split, fmt.channels)

    def decode(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        whole = len(data) // self._block * self._block
        self._carry = data[whole:]
        if not whole:
            return self._to_16k.empty()
        if self._floats and not np.isfinite(np.frombuffer(data, "<f4", whole // 4)).all():
            raise AudioDecodeError(
                "the f32le audio holds samples that are not numbers (NaN or infinity): it is not float PCM",
                param="encoding",
            )
        frames = self._codec.decode(av.Packet(data[:whole]))
        pieces = [self._to_16k(f) for f in frames]
        return np.concatenate(pieces, axis=-1) if pieces else self._to_16k.empty()

    def flush(self) -> np.ndarray:
        return self._to_16k(None)


async def raw_pcm(chunks: AsyncIterator[bytes], fmt: RawFormat, split: bool = False) -> AsyncIterator[np.ndarray]:
    decoder = RawDecoder(fmt, split)
    async for chunk in chunks:
        pcm = decoder.decode(chunk)
        if pcm.shape[-1]:
            yield pcm
    tail = decoder.flush()
    if tail.shape[-1]:
        yield tail


class _Batch:
    """Decoded pieces not handed to the event loop yet."""

    def __init__(self) -> None:
        self._pieces: list[np.ndarray] = []
        self.samples = 0

    def add(self, pcm: np.ndarray) -> None:
        if pcm.shape[-1]:
            self._pieces.append(pcm)
            self.samples += pcm.shape[-1]

    def take(self) -> np.ndarray:
        """The pieces joined (at least one), and the batch emptied."""
        pcm = np.concatenate(self._pieces, axis=-1) if len(self._pieces) > 1 else self._pieces[0]
        self._pieces, self.samples = [], 0
        return pcm


class _Pipe(io.RawIOBase):
    """A blocking read end for FFmpeg's thread; the event loop puts chunks in (`put` waits while
    `PIPE_BYTES` are queued), and `end` marks the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._chunks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._queued = 0
        """Bytes put and not yet read by FFmpeg (counted on the event loop only)."""
        self._taken = asyncio.Event()
        self._buffer = b""
        self._ended = False

    async def put(self, chunk: bytes) -> None:
        while self._queued and self._queued + len(chunk) > PIPE_BYTES:
            self._taken.clear()
            await self._taken.wait()
        self._queued += len(chunk)
        self._chunks.put(chunk)

    def end(self) -> None:
        """The end mark; it never waits, so that a cancelled upload still ends FFmpeg's read."""
        self._chunks.put(b"")

    def _took(self, size: int) -> None:
        self._queued -= size
        self._taken.set()

    def _report_taken(self, size: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits to put any more
            self._loop.call_soon_threadsafe(self._took, size)

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._buffer and not self._ended:
            chunk = self._chunks.get()
            self._ended = chunk == b""
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        self._report_taken(size)  # counted as taken once FFmpeg has it, not while held here
        return size

    def holds_more(self) -> bool:
        """Whether a read now would return at once (the upload is ahead of FFmpeg)."""
        return bool(self._buffer) or self._ended or not self._chunks.empty()

    def drain(self) -> None:
        """Take what the feeder still sends, up to its end mark, so that it never waits on a
        full pipe once FFmpeg stops reading (at the end, or early on an error)."""
        self._report_taken(len(self._buffer))
        while not self._ended:
            chunk = self._chunks.get()
            self._ended = chunk == b""
            self._report_taken(len(chunk))


def _frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    """The stream's frames, less those of packets FFmpeg cannot decode (a file cut off mid-frame
    ends with one): a whole file is decoded the same way (faster-whisper's decode_audio)."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            continue


async def container_pcm(
    chunks: AsyncIterator[bytes], filename: str | None, max_buffer_bytes: int, split: bool = False
) -> AsyncIterator[np.ndarray]:
    """Decode a container while it uploads; fall back to decoding it whole if FFmpeg needs to seek."""
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(DECODED_DEPTH)
    """Places for decoded pieces in `out`: FFmpeg's thread waits for one before each piece."""
    stopped = threading.Event()
    """Set when the consumer stops early: a waiting thread then ends instead of decoding on."""
    pipe = _Pipe(loop)
    streamed = threading.Event()
    """Set once FFmpeg produced audio: from then on the upload is not kept for a fallback."""

    def hand_on(pcm: np.ndarray) -> bool:
        """Put a piece in `out` once it has a place; False if the consumer stopped meanwhile."""
        room.acquire()
        if stopped.is_set():
            return False
        loop.call_soon_threadsafe(out.put_nowait, pcm)
        return True

    def decode_in_thread() -> None:
        to_16k, decoded = _To16k(split), _Batch()
        try:
            with av.open(pipe, mode="r") as container:
                stream = container.streams.audio[0]
                for frame in _frames(container, stream):
                    decoded.add(to_16k(frame))
                    if decoded.samples:
                        streamed.set()
                    if decoded.samples >= BATCH_SAMPLES or (decoded.samples and not pipe.holds_more()):
                        if not hand_on(decoded.take()):
                            return
            decoded.add(to_16k(None))
            if not decoded.samples or hand_on(decoded.take()):
                loop.call_soon_threadsafe(out.put_nowait, None)
        except BaseException as exc:  # handed to the event loop, which decides
            if decoded.samples:  # what was decoded before it broke off
                loop.call_soon_threadsafe(out.put_nowait, decoded.take())
            loop.call_soon_threadsafe(out.put_nowait, exc)
        finally:
            pipe.drain()

    kept = bytearray()

    async def feed() -> None:
        try:
            async for chunk in chunks:
                if not streamed.is_set():
                    kept.extend(chunk)
                    if len(kept) > max_buffer_bytes:
                        raise PayloadTooLarge("the upload is larger than the limit", param="file")
                await pipe.put(chunk)
        finally:
            pipe.end()

    thread = threading.Thread(target=decode_in_thread, name="container-decode", daemon=True)
    thread.start()
    feeder = asyncio.ensure_future(feed())
    try:
        while True:
            item = await out.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                if streamed.is_set():
                    raise AudioDecodeError(f"the audio stream broke off: {item}", param="file") from item
                await feeder  # FFmpeg could not stream it: take the whole upload, then decode
                decode = decode_channels if split else decode_file
                yield await loop.run_in_executor(None, decode, bytes(kept), filename)
                return
            room.release()
            if item.shape[-1]:
                yield item
        await feeder
    finally:
        stopped.set()
        room.release()  # a thread waiting for a place wakes, and ends
        if not feeder.done():
            feeder.cancel()
            pipe.end()  # FFmpeg's read ends even if the feeder is cancelled before it first ran
