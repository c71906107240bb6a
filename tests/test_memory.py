"""memory.py: a live stream's cyclic garbage (its transcriber, its FFmpeg decoder) is freed by
the periodic full collection, not left for CPython's rare ones; the start-up objects are frozen
while the app runs; the heap is trimmed once the streams have ended, not while one runs; the
threads share a capped number of malloc arenas."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import subprocess
import sys
import weakref

import pytest

from stream_server import memory
from stream_server.app import create_app
from stream_server.audio import SAMPLE_RATE
from stream_server.audio.live import RawDecoder
from stream_server.engine.stream import LiveTranscriber
from stream_server.transports.appkeys import ADMISSION
from tests.live_helpers import RAW_S16LE, PacedUpload, of_type, pcm16k, read_sse, s16le

LIVE_URL = "/v1/audio/transcriptions?model=whisper-1&stream=true"
KINDS = (LiveTranscriber, RawDecoder)


def alive(kinds: tuple[type, ...]) -> dict[int, object]:
    return {id(o): o for o in gc.get_objects() if isinstance(o, kinds)}


async def collecting_client(aiohttp_client, settings, speech_model):
    """A test client of an app with memory.py's cleanup context, as `serve` runs it."""
    app = create_app(settings, model=speech_model)
    app.cleanup_ctx.append(memory.collect_periodically)
    return await aiohttp_client(app)


def held_stream(client, held: asyncio.Event) -> asyncio.Future:
    """A live upload of 3 s of JFK, kept open until `held` is set; its response."""
    audio = s16le(pcm16k("en_jfk_16k.wav")[: 3 * SAMPLE_RATE])
    upload = PacedUpload(audio, 2 * SAMPLE_RATE, hold_open=held)
    return asyncio.ensure_future(client.post(LIVE_URL, data=upload, headers={"Content-Type": RAW_S16LE}))


@pytest.fixture
def automatic_collection_off():
    """Only memory.py's collections run: what they do not free stays."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


async def test_an_ended_streams_cycles_are_freed_by_the_periodic_collection(
    aiohttp_client, settings, speech_model, monkeypatch, automatic_collection_off
):
    """With CPython's own collections off, nothing but memory.py's can free a stream's
    transcriber and decoder once it has ended (they are held in cycles: without the cleanup
    context below, this test fails with them still alive)."""
    monkeypatch.setattr(memory, "COLLECT_EVERY_S", 0.2)
    client = await collecting_client(aiohttp_client, settings, speech_model)
    assert gc.get_freeze_count() > 0  # the start-up objects are left out of every collection

    before = alive(KINDS)
    held = asyncio.Event()
    streaming = held_stream(client, held)
    async with asyncio.timeout(60):  # hang guard: the stream's transcriber and decoder are made
        while {type(o) for key, o in alive(KINDS).items() if key not in before} != set(KINDS):
            await asyncio.sleep(0.05)
    stream_objects = [weakref.ref(o) for key, o in alive(KINDS).items() if key not in before]
    held.set()
    assert of_type(await read_sse(await streaming), "transcript.text.done")
    async with asyncio.timeout(30):  # hang guard: freed within a few collections of the end
        while any(ref() is not None for ref in stream_objects):
            await asyncio.sleep(0.1)


async def test_the_start_up_objects_are_unfrozen_when_the_app_stops(aiohttp_client, settings, speech_model):
    client = await collecting_client(aiohttp_client, settings, speech_model)
    assert gc.get_freeze_count() > 0
    await client.close()
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_trim"), reason="not glibc")
async def test_the_heap_is_trimmed_once_the_stream_has_ended_not_while_it_runs(
    aiohttp_client, settings, speech_model, monkeypatch
):
    monkeypatch.setattr(memory, "COLLECT_EVERY_S", 0.1)
    client = await collecting_client(aiohttp_client, settings, speech_model)
    app = client.app
    trims = app[memory.TRIMS]

    held = asyncio.Event()
    streaming = held_stream(client, held)
    async with asyncio.timeout(60):  # hang guard: the stream is admitted
        while app[ADMISSION].active == 0:
            await asyncio.sleep(0.05)
    before = trims.count
    await asyncio.sleep(0.5)
    assert trims.count == before  # five collections while it runs, no trim
    held.set()
    assert of_type(await read_sse(await streaming), "transcript.text.done")
    async with asyncio.timeout(30):  # hang guard: a collection after its end trims
        while trims.count == before:
            await asyncio.sleep(0.05)


ARENAS_OF_EIGHT_THREADS = """
import ctypes, sys, tempfile, threading
from stream_server.memory import cap_malloc_arenas
capped = cap_malloc_arenas({} if sys.argv[1] == "cap" else {"MALLOC_ARENA_MAX": ""})
both = threading.Barrier(9)
def allocate():
    held = [bytearray(1000) for _ in range(1000)]
    both.wait()
    both.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
both.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile() as report:
    out = ctypes.c_void_p(libc.fopen(report.name.encode(), b"w"))
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(capped, open(report.name).read().count("<heap nr="))
both.wait()
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_info"), reason="glibc's malloc only")
@pytest.mark.parametrize("mode", ["cap", "MALLOC_ARENA_MAX set"])
def test_eight_allocating_threads_share_the_capped_arenas(mode):
    """What `serve` does before its threads start: eight threads that allocate at once share
    MALLOC_ARENAS arenas (uncapped, each takes its own); an operator's MALLOC_ARENA_MAX wins."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    command = [sys.executable, "-c", ARENAS_OF_EIGHT_THREADS, mode]
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    capped, arenas = run.stdout.split()
    if mode == "cap":
        assert (capped, int(arenas)) == ("True", memory.MALLOC_ARENAS)
    else:
        assert capped == "False" and int(arenas) > memory.MALLOC_ARENAS
