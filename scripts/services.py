"""PostgreSQL, Redis and HAProxy on loopback, on free ports in temp dirs, for the tests and
scripts/cluster.py (installed from Debian's packages when missing; PostgreSQL runs as its own
user when we are root, since it refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_updated = False


class Unavailable(RuntimeError):
    """The service is not installed and cannot be installed here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install(package: str) -> None:
    """apt-get install `package` (apt-get update once per run), or Unavailable."""
    global _updated
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"{package} is not installed and cannot be installed here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        _updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, capture_output=True)


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields the URL of its `postgres` database."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="stream-server-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    if not shutil.which("redis-server"):
        _install("redis-server")
    root, port = Path(tempfile.mkdtemp(prefix="stream-server-redis-")), free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", root],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: accepts(port), "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


async def fresh_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import asyncpg

    name = f"t_{os.urandom(6).hex()}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def haproxy_server(config: Path, env: Mapping[str, str], port: int) -> Iterator[subprocess.Popen]:
    """HAProxy in the foreground on `config`, its ${VARIABLES} from `env`, listening on `port`."""
    if not shutil.which("haproxy"):
        _install("haproxy")
    process = subprocess.Popen(["haproxy", "-db", "-f", config], env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: accepts(port) or process.poll() is not None, "haproxy")
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode} on {config}")
        yield process
    finally:
        process.terminate()
        process.wait(10)
