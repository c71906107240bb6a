"""`stream-server serve`: the flags Settings declares (each with its environment variable)
turned into Settings, and the server run on them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from aiohttp import web

from stream_server.flags import NOT_GIVEN, Flag, flag_of
from stream_server.settings import Settings

log = logging.getLogger("stream_server")
CLIENT_COMMANDS = {
    "transcribe": "transcribe audio files on the embedded model, or on a server with --url",
    "listen": "live captions in the terminal from a running server",
}
"""Commands in stream_server/commands/, each with its own parser (see `main`)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """`serve` takes one flag per declared setting; one left out is read from its variable when
    the settings are made."""
    parser = argparse.ArgumentParser(prog="stream-server", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the HTTP server (the default command)")
    for name, summary in CLIENT_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)  # listed in --help; parsed by main
    for field in dataclasses.fields(Settings):
        if (flag := flag_of(field)) is not None:
            _add_flag(serve, field.name, flag)
    return parser


ACTIONS = {"value": "store", "repeat": "append", "on": "store_true", "off": "store_false", "both": argparse.BooleanOptionalAction}


def _add_flag(serve: argparse.ArgumentParser, dest: str, flag: Flag) -> None:
    """Every flag defaults to None (not given): its variable, then the field's default, apply."""
    options: dict = {"dest": dest, "action": ACTIONS[flag.kind], "default": None, "help": flag.help_text}
    if flag.choices:
        options["choices"] = flag.choices
    elif flag.kind in ("value", "repeat"):
        options["metavar"] = flag.metavar or flag.upper_name
    serve.add_argument(flag.name, **options)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Each setting from its flag, else its variable, else its default (ValueError: a bad one)."""
    values = {}
    for field in dataclasses.fields(Settings):
        if (flag := flag_of(field)) is not None and (value := flag.value(getattr(args, field.name), env)) is not NOT_GIVEN:
            values[field.name] = value
    settings = Settings(**values)
    settings.check_balances()
    return settings


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
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args, env)
    except ValueError as exc:
        logging.basicConfig(format=LOG_FORMAT)
        log.error("%s", exc)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
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
    from stream_server.memory import cap_malloc_arenas, collect_periodically

    cap_malloc_arenas(env)  # before the model's and the decoders' threads start
    from stream_server.app import create_app  # imported late: it pulls in the model libraries
    from stream_server.transports.access_log import AccessLogger

    app = create_app(settings)
    app.cleanup_ctx.append(collect_periodically)  # memory.py: ended streams' cycles freed within seconds
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log_class=AccessLogger)
    return 0
