"""`stream-server transcribe FILE...`: transcripts of audio files in any of the API's response
formats, on the embedded model (no server) or, with `--url`, on a running server.

Each file is decoded once and rendered in every `--format` asked for, by the same code as the
HTTP API's responses (formats.render); a server is asked for verbose_json, as the router asks a
remote provider (routing/remote.py), so its answer renders the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp

from stream_server.audio import SAMPLE_RATE
from stream_server.audio.decode import decode_file
from stream_server.commands.progress import Progress
from stream_server.decoder.results import Transcription
from stream_server.decoder.whisper import SpeechModel, TranscribeOptions
from stream_server.errors import ServiceError
from stream_server.formats import RESPONSE_FORMATS, render
from stream_server.routing.providers import REMOTE, ProviderSpec
from stream_server.routing.remote import UPSTREAM_MODEL, transcribe_remote
from stream_server.settings import DEFAULT_MODEL, Settings, default_data_dir

EXTENSIONS = {"text": "txt", "json": "json", "verbose_json": "verbose.json", "srt": "srt", "vtt": "vtt"}
"""The file each format is written to, named after its input: `a.wav` -> `a.srt`."""
REMOTE_TIMEOUT_S = 3600.0
"""A server may take this long over one file (a long recording on a busy server)."""

Transcribe = Callable[[Path, TranscribeOptions], Transcription]


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-server transcribe", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="audio or video files, any container FFmpeg reads"
    )
    parser.add_argument(
        "-f",
        "--format",
        dest="formats",
        action="append",
        choices=RESPONSE_FORMATS,
        metavar="FORMAT",
        help=f"{', '.join(RESPONSE_FORMATS)}; repeat for several (they need --output-dir) [default: text]",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="write one file per input and format there (a.wav -> a.srt, a.txt, a.json, a.verbose.json, a.vtt) "
        "instead of printing to stdout",
    )
    parser.add_argument(
        "--model",
        help=f"local: tiny.en, base, small, a CTranslate2 directory or a hub id [STREAM_SERVER_MODEL, default "
        f"{DEFAULT_MODEL}]; with --url: a model the server serves [default {UPSTREAM_MODEL}]",
    )
    parser.add_argument("--language", help="ISO-639-1 code; detected if not given (English-only models: en)")
    parser.add_argument("--prompt", help="text to condition the decoder on (names, spelling)")
    parser.add_argument("--word-timestamps", action="store_true", help="verbose_json also gets a `words` list")
    parser.add_argument("--url", help="send the files to the server at this URL (e.g. http://127.0.0.1:8000) instead")
    parser.add_argument(
        "--api-key",
        default=env.get("STREAM_SERVER_API_KEY"),
        help="the server's API key, with --url [STREAM_SERVER_API_KEY]",
    )
    return parser


def main(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """0 when every file was transcribed, 1 when some were not (each is named on stderr), 2 for
    bad arguments or a model that does not load, 130 after Ctrl-C."""
    parser = build_parser(env)
    args = parser.parse_intermixed_args(argv)  # options may come before, between or after the files
    formats = list(dict.fromkeys(args.formats or ["text"]))
    check_arguments(parser, args, formats)
    options = TranscribeOptions(
        language=(args.language or "").strip().lower() or None,
        prompt=args.prompt or None,
        word_timestamps=args.word_timestamps,
    )
    try:
        transcribe = remote_transcriber(args) if args.url else local_transcriber(args, env, options.language)
    except ServiceError as exc:
        print(f"stream-server transcribe: {exc.message}", file=sys.stderr)
        return 2
    granularities = frozenset({"segment", "word"} if args.word_timestamps else {"segment"})
    failed = []
    try:
        for path in args.files:
            try:
                result = transcribe(path, options)
                for response_format in formats:
                    body = render(result, response_format, granularities=granularities).body
                    write(body, path, response_format, args.output_dir)
            except (ServiceError, OSError) as exc:
                print(f"stream-server transcribe: {path}: {reason(exc)}", file=sys.stderr)
                failed.append(str(path))
    except KeyboardInterrupt:
        print("stream-server transcribe: interrupted", file=sys.stderr)
        return 130
    if failed:
        summary = f"{len(failed)} of {len(args.files)} files failed: {', '.join(failed)}"
        print(f"stream-server transcribe: {summary}", file=sys.stderr)
    return 1 if failed else 0


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, formats: list[str]) -> None:
    if len(formats) > 1 and args.output_dir is None:
        parser.error("several --format need --output-dir (one file per input and format)")
    if args.word_timestamps and "verbose_json" not in formats:
        parser.error("--word-timestamps adds words to verbose_json: give --format verbose_json")
    if args.output_dir is not None:
        seen: dict[str, Path] = {}
        for path in args.files:
            if path.stem in seen and seen[path.stem] != path:
                parser.error(f"{seen[path.stem]} and {path} would write the same files in --output-dir")
            seen[path.stem] = path


def local_transcriber(args: argparse.Namespace, env: Mapping[str, str], language: str | None) -> Transcribe:
    """The embedded model, on every core (one decode at a time)."""
    from stream_server.app import load_model  # imported late: it pulls in the model libraries

    settings = Settings(
        model=args.model or env.get("STREAM_SERVER_MODEL", DEFAULT_MODEL),
        data_dir=Path(env.get("STREAM_SERVER_DATA_DIR") or default_data_dir()),
        decode_slots=1,
    )
    try:
        model = load_model(settings)
    except (OSError, RuntimeError, ValueError) as exc:  # a hub id that cannot be fetched, a broken directory
        raise ServiceError(f"model '{settings.model}' did not load: {exc}") from exc
    model.check_language(language)

    def transcribe(path: Path, options: TranscribeOptions) -> Transcription:
        audio = decode_file(path.read_bytes(), path.name)
        with Progress(path.name, len(audio) / SAMPLE_RATE, "s") as progress:
            result = model.transcribe(audio, options, on_segment=lambda segment: progress.to(segment.end))
            progress.to(result.duration)
        return result

    return transcribe


def remote_transcriber(args: argparse.Namespace) -> Transcribe:
    """A running server's POST /v1/audio/transcriptions; it answers a file whole, so the
    progress is per file."""
    url = args.url.rstrip("/")
    spec = ProviderSpec(
        name=url, kind=REMOTE, model=args.model, base_url=f"{url}/v1", api_key=args.api_key, timeout_s=REMOTE_TIMEOUT_S
    )

    async def post(data: bytes, filename: str, options: TranscribeOptions) -> Transcription:
        async with aiohttp.ClientSession() as session:
            return await transcribe_remote(session, spec, data, filename, options)

    def transcribe(path: Path, options: TranscribeOptions) -> Transcription:
        data = path.read_bytes()
        with Progress(path.name, 1, "file") as progress:
            result = asyncio.run(post(data, path.name, options))
            progress.to(1)
        return result

    return transcribe


def reason(error: ServiceError | OSError) -> str:
    if isinstance(error, ServiceError):
        return error.message
    return error.strerror or str(error)


def write(body: str, source: Path, response_format: str, output_dir: Path | None) -> None:
    if output_dir is None:
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
        sys.stdout.flush()
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{source.stem}.{EXTENSIONS[response_format]}").write_text(body, encoding="utf-8")
