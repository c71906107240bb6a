"""`stream-server serve`: flags, each with an environment variable, turned into Settings."""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from stream_server.routing.providers import load_providers
from stream_server.settings import MEGABYTE, Settings, default_data_dir
from stream_server.vad.frames import VAD_ENGINES

ENV_PREFIX = "STREAM_SERVER_"
log = logging.getLogger("stream_server")
Number = TypeVar("Number", int, float)
DEVICES = ("cpu", "cuda", "auto")
CLIENT_COMMANDS = {
    "transcribe": "transcribe audio files on the embedded model, or on a server with --url",
    "listen": "live captions in the terminal from a running server",
}
"""Commands in stream_server/commands/, each with its own parser (see `main`)."""


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: object) -> object:
        return env.get(ENV_PREFIX + name, fallback)

    parser = argparse.ArgumentParser(prog="stream-server", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the HTTP server (the default command)")
    for name, summary in CLIENT_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)  # listed in --help; parsed by main
    defaults = Settings()
    serve.add_argument("--host", default=default("HOST", defaults.host), help="address to bind [STREAM_SERVER_HOST]")
    serve.add_argument("--port", type=int, default=default("PORT", defaults.port), help="[STREAM_SERVER_PORT]")
    serve.add_argument(
        "--model",
        default=default("MODEL", defaults.model),
        help="tiny.en, base, small (bundled), a CTranslate2 directory, or a hub id [STREAM_SERVER_MODEL]",
    )
    serve.add_argument("--device", choices=DEVICES, default=default("DEVICE", defaults.device), help="[STREAM_SERVER_DEVICE]")
    serve.add_argument(
        "--compute-type",
        default=default("COMPUTE_TYPE", defaults.compute_type),
        help="auto, int8, int8_float16, float16, float32, ... [STREAM_SERVER_COMPUTE_TYPE]",
    )
    serve.add_argument(
        "--cpu-threads", type=int, default=default("CPU_THREADS", defaults.cpu_threads), help="threads per model call; 0 = the cores shared among --decode-slots [STREAM_SERVER_CPU_THREADS]"
    )
    serve.add_argument(
        "--decode-slots",
        type=int,
        default=default("DECODE_SLOTS", defaults.decode_slots),
        help="model calls run at once, each on --cpu-threads threads [STREAM_SERVER_DECODE_SLOTS]",
    )
    serve.add_argument(
        "--max-streams",
        type=int,
        default=default("MAX_STREAMS", defaults.max_streams),
        help="hard cap on concurrent live streams; 0 = the measured-capacity estimate only [STREAM_SERVER_MAX_STREAMS]",
    )
    serve.add_argument(
        "--max-streams-per-key",
        type=int,
        default=default("MAX_STREAMS_PER_KEY", defaults.max_streams_per_key),
        help="concurrent live streams one API key may hold; 0 = no limit [STREAM_SERVER_MAX_STREAMS_PER_KEY]",
    )
    serve.add_argument(
        "--no-capacity-estimate",
        dest="estimate_capacity",
        action="store_false",
        default=not _truthy(default("NO_CAPACITY_ESTIMATE", "")),
        help="refuse live streams only at --max-streams / --max-streams-per-key, not at the measured "
        "estimate (load benchmarks) [STREAM_SERVER_NO_CAPACITY_ESTIMATE]",
    )
    serve.add_argument(
        "--target-utilisation",
        type=float,
        default=default("TARGET_UTILISATION", defaults.target_utilisation),
        help="share of the decode slots admitted live streams may plan to use, 0..1 [STREAM_SERVER_TARGET_UTILISATION]",
    )
    serve.add_argument(
        "--pack-windows",
        action=argparse.BooleanOptionalAction,
        default=_truthy(default("PACK_WINDOWS", defaults.pack_windows)),
        help="under load, decode several live streams' partial windows in one model call "
        "[STREAM_SERVER_PACK_WINDOWS]",
    )
    serve.add_argument(
        "--vad",
        choices=VAD_ENGINES,
        default=default("VAD", defaults.vad),
        help="voice-activity detector of live streams: silero (Silero VAD v6) or webrtc [STREAM_SERVER_VAD]",
    )
    serve.add_argument(
        "--unsure-word-wait",
        type=float,
        default=default("UNSURE_WORD_WAIT", defaults.unsure_word_wait_s),
        help="seconds of audio after a word Whisper is unsure of before it is committed: lower "
        "commits sooner, at some accuracy [STREAM_SERVER_UNSURE_WORD_WAIT]",
    )
    serve.add_argument(
        "--twilio-auth-token",
        default=default("TWILIO_AUTH_TOKEN", None),
        help="Twilio account auth token: verify X-Twilio-Signature on /v1/twilio/stream [STREAM_SERVER_TWILIO_AUTH_TOKEN]",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accepted bearer key; repeat for several [STREAM_SERVER_API_KEYS, comma separated]",
    )
    serve.add_argument(
        "--admin-key",
        action="append",
        dest="admin_keys",
        help="bearer key that also sees every key's files and usage; repeat for several "
        "[STREAM_SERVER_ADMIN_KEYS, comma separated]",
    )
    serve.add_argument(
        "--key-balance",
        action="append",
        dest="key_balances",
        metavar="KEY=SECONDS",
        help="audio seconds a configured key may use in all; repeat per key "
        "[STREAM_SERVER_KEY_BALANCES, comma separated]",
    )
    serve.add_argument(
        "--prompt-price-per-million",
        type=float,
        default=default("PROMPT_PRICE_PER_MILLION", defaults.prompt_price_per_million),
        help="price of a million prompt tokens, for /api/v2 cost [STREAM_SERVER_PROMPT_PRICE_PER_MILLION]",
    )
    serve.add_argument(
        "--completion-price-per-million",
        type=float,
        default=default("COMPLETION_PRICE_PER_MILLION", defaults.completion_price_per_million),
        help="price of a million completion tokens [STREAM_SERVER_COMPLETION_PRICE_PER_MILLION]",
    )
    serve.add_argument("--currency", default=default("CURRENCY", defaults.currency), help="[STREAM_SERVER_CURRENCY]")
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=_truthy(default("ALLOW_UNAUTHENTICATED", "")),
        help="allow a non-loopback --host with no API keys [STREAM_SERVER_ALLOW_UNAUTHENTICATED]",
    )
    serve.add_argument("--data-dir", type=Path, default=default("DATA_DIR", default_data_dir()), help="[STREAM_SERVER_DATA_DIR]")
    serve.add_argument(
        "--max-upload-mb", type=float, default=default("MAX_UPLOAD_MB", 25), help="[STREAM_SERVER_MAX_UPLOAD_MB]"
    )
    serve.add_argument(
        "--stream-max-queue-s",
        type=float,
        default=default("STREAM_MAX_QUEUE_S", defaults.stream_max_queue_s),
        help="seconds of audio a live WebSocket may have waiting for the decoder before it is closed "
        "with 1013 [STREAM_SERVER_STREAM_MAX_QUEUE_S]",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=default("IDLE_TIMEOUT", defaults.idle_timeout_s),
        help="seconds a live upload or socket may send nothing before it is ended [STREAM_SERVER_IDLE_TIMEOUT]",
    )
    _bound_flags(serve, default, defaults)
    _replica_flags(serve, default, defaults)
    serve.add_argument(
        "--config",
        type=Path,
        default=default("CONFIG", None),
        help="TOML file declaring the transcription backends ([[providers]] tables); without it "
        "one local backend named 'local' serves --model [STREAM_SERVER_CONFIG]",
    )
    serve.add_argument("--log-level", default=default("LOG_LEVEL", "info"), help="[STREAM_SERVER_LOG_LEVEL]")
    return parser


def _bound_flags(serve: argparse.ArgumentParser, default, defaults: Settings) -> None:
    """The limits on what one client may hold or send (README, "Bounds")."""
    for flag, kind, value, text in (
        ("max-session-events", int, defaults.max_session_events, "events a live session keeps for replay; the oldest partials go first"),
        ("max-finished-sessions", int, defaults.max_finished_sessions, "ended sessions kept in memory for replay"),
        ("max-messages-per-second", float, defaults.max_messages_per_s, "messages a live WebSocket may send per second (bursts of as many); past it: 1008"),
        ("max-connections-per-key", int, defaults.max_connections_per_key, "requests one API key may have open at once; 0 = no limit"),
        ("max-connections-per-address", int, defaults.max_connections_per_address, "requests one client address may have open at once; 0 = no limit"),
        ("max-failed-auth", int, defaults.max_failed_auth, "failed key checks per address per minute before 429; 0 = no limit"),
        ("sse-send-timeout", float, defaults.sse_send_timeout_s, "seconds an SSE client may read nothing, once its buffer is full, before it is dropped"),
        ("shutdown-drain", float, defaults.shutdown_drain_s, "on SIGTERM, seconds live streams get to decode the audio already sent"),
    ):
        _flag(serve, default, flag, kind, value, text)
    serve.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        help="an origin allowed to call the API from a browser, e.g. https://app.example.com; repeat for "
        "several; none by default [STREAM_SERVER_CORS_ORIGINS, comma separated]",
    )


def _replica_flags(serve: argparse.ArgumentParser, default, defaults: Settings) -> None:
    """State that replicas share (docs/DEPLOY.md)."""
    _flag(serve, default, "database-url", str, defaults.database_url, "postgresql://... for usage, balances, files' metadata and sessions shared by replicas; empty = SQLite under --data-dir")
    _flag(serve, default, "blob-dir", Path, defaults.blob_dir, "directory of stored files' bytes, one every replica mounts; default under --data-dir")
    _flag(serve, default, "redis-url", str, defaults.redis_url, "redis://... for live sessions' event logs, their registry and stream counts shared by replicas; empty = in-process")
    _flag(serve, default, "live-lease", float, defaults.live_lease_s, "with --redis-url: seconds after which a crashed replica's streams are released and failed")
    _flag(serve, default, "ended-log-keep", float, defaults.ended_log_keep_s, "with --redis-url: seconds an ended session's event log is kept for replay")


def _flag(serve: argparse.ArgumentParser, default, flag: str, kind: type, value: object, text: str) -> None:
    """`--flag` with its STREAM_SERVER_FLAG environment variable."""
    env = flag.upper().replace("-", "_")
    serve.add_argument(f"--{flag}", type=kind, default=default(env, value), help=f"{text} [STREAM_SERVER_{env}]")


def _truthy(value: object) -> bool:
    return str(value).lower() in {"1", "true", "yes", "on"}


def _listed(values: list[str] | None, env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Repeated flags, else the comma-separated environment variable."""
    items = values or env.get(ENV_PREFIX + name, "").split(",")
    return tuple(item.strip() for item in items if item.strip())


def _at_least(floor: Number, value: Number, flag: str) -> Number:
    if value < floor:
        raise ValueError(f"{flag} must be at least {floor}, not {value}")
    return value


def _positive(value: float, flag: str) -> float:
    if not value > 0:
        raise ValueError(f"{flag} must be above 0, not {value}")
    return value


def _one_of(choices: tuple[str, ...], value: str, flag: str) -> str:
    """argparse checks `choices` on the command line only, not on a default from the environment."""
    if value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _utilisation(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"--target-utilisation must be in (0, 1], not {value}")
    return value


def parse_balances(items: tuple[str, ...], known_keys: set[str]) -> tuple[tuple[str, float], ...]:
    balances = []
    for item in items:
        key, sep, seconds = item.rpartition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not key or value < 0:
            raise ValueError(f"--key-balance takes KEY=SECONDS (seconds >= 0), not {item!r}")
        if key not in known_keys:
            raise ValueError("--key-balance names a key that is not given with --api-key or --admin-key")
        balances.append((key, value))
    return tuple(balances)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    api_keys = _listed(args.api_keys, env, "API_KEYS")
    admin_keys = _listed(args.admin_keys, env, "ADMIN_KEYS")
    balances = parse_balances(_listed(args.key_balances, env, "KEY_BALANCES"), {*api_keys, *admin_keys})
    return Settings(
        host=args.host,
        port=int(args.port),
        model=args.model,
        device=_one_of(DEVICES, args.device, "--device"),
        compute_type=args.compute_type,
        cpu_threads=int(args.cpu_threads),
        decode_slots=_at_least(1, int(args.decode_slots), "--decode-slots"),
        max_streams=_at_least(0, int(args.max_streams), "--max-streams"),
        max_streams_per_key=_at_least(0, int(args.max_streams_per_key), "--max-streams-per-key"),
        target_utilisation=_utilisation(float(args.target_utilisation)),
        estimate_capacity=args.estimate_capacity,
        pack_windows=args.pack_windows,
        unsure_word_wait_s=_at_least(0.0, float(args.unsure_word_wait), "--unsure-word-wait"),
        vad=_one_of(VAD_ENGINES, args.vad, "--vad"),
        api_keys=api_keys,
        admin_keys=admin_keys,
        key_balances=balances,
        allow_unauthenticated=args.allow_unauthenticated,
        data_dir=Path(args.data_dir),
        max_upload_bytes=int(float(args.max_upload_mb) * MEGABYTE),
        prompt_price_per_million=float(args.prompt_price_per_million),
        completion_price_per_million=float(args.completion_price_per_million),
        currency=args.currency,
        stream_max_queue_s=float(args.stream_max_queue_s),
        idle_timeout_s=_positive(float(args.idle_timeout), "--idle-timeout"),
        max_session_events=_at_least(10, int(args.max_session_events), "--max-session-events"),
        max_finished_sessions=_at_least(0, int(args.max_finished_sessions), "--max-finished-sessions"),
        max_messages_per_s=_positive(float(args.max_messages_per_second), "--max-messages-per-second"),
        max_connections_per_key=_at_least(0, int(args.max_connections_per_key), "--max-connections-per-key"),
        max_connections_per_address=_at_least(0, int(args.max_connections_per_address), "--max-connections-per-address"),
        max_failed_auth=_at_least(0, int(args.max_failed_auth), "--max-failed-auth"),
        sse_send_timeout_s=_positive(float(args.sse_send_timeout), "--sse-send-timeout"),
        shutdown_drain_s=_at_least(0.0, float(args.shutdown_drain), "--shutdown-drain"),
        cors_origins=_listed(args.cors_origins, env, "CORS_ORIGINS"),
        twilio_auth_token=args.twilio_auth_token or None,
        providers=load_providers(Path(args.config)) if args.config else (),
        database_url=_database_url(args.database_url or ""),
        blob_dir=Path(args.blob_dir) if args.blob_dir else None,
        redis_url=_redis_url(args.redis_url or ""),
        live_lease_s=_positive(float(args.live_lease), "--live-lease"),
        ended_log_keep_s=_positive(float(args.ended_log_keep), "--ended-log-keep"),
    )


def _database_url(url: str) -> str:
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--database-url must be empty (SQLite) or postgresql://..., not {url.split('://')[0]}://...")
    return url


def _redis_url(url: str) -> str:
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("--redis-url must be redis://..., rediss://... or unix://...")
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLIENT_COMMANDS:
        # imported late (the model libraries); their own parser lets options come between files
        return importlib.import_module(f"stream_server.commands.{argv[0]}").main(argv[1:], env)
    if not argv or argv[0].startswith("-") and argv[0] not in {"-h", "--help"}:
        argv.insert(0, "serve")
    args = build_parser(env).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from_args(args, env)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if not settings.api_keys and not settings.admin_keys:
        if not is_loopback(settings.host) and not settings.allow_unauthenticated:
            log.error(
                "refusing to listen on %s with no API keys: give --api-key (or STREAM_SERVER_API_KEYS), "
                "or --allow-unauthenticated to expose an open server",
                settings.host,
            )
            return 2
        log.warning(
            "no API keys configured: anyone who can reach %s:%d can use this server",
            settings.host,
            settings.port,
        )
    from stream_server.app import create_app  # imported late: it pulls in the model libraries
    from stream_server.transports.access_log import AccessLogger

    web.run_app(
        create_app(settings), host=settings.host, port=settings.port, print=None, access_log_class=AccessLogger
    )
    return 0
