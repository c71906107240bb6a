"""Replicas as real server processes on loopback, sharing one PostgreSQL database, one Redis
and one blob directory (tests/services.py starts the servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import fresh_database, free_port

REPO = Path(__file__).resolve().parents[2]
LEASE_S = 3.0
KEYS = {"balance": "k-balance", "follow": "k-follow", "cap": "k-cap", "lost": "k-lost"}
BALANCE_SECONDS = 60


@dataclass
class Replica:
    url: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@dataclass(frozen=True)
class Shared:
    database_url: str
    redis_url: str
    root: Path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def shared(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return Shared(asyncio.run(fresh_database(postgres_url)), redis_url, tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def start_replica(shared: Shared) -> Iterator[Callable[[str], Replica]]:
    """Starts a replica named `name` (its own port and log; the model cache is shared)."""
    started: list[Replica] = []

    def start(name: str) -> Replica:
        port = free_port()
        command = [
            sys.executable, "-m", "stream_server", "serve", "--port", str(port),
            "--data-dir", str(shared.root / "data"), "--blob-dir", str(shared.root / "blobs"),
            "--database-url", shared.database_url, "--redis-url", shared.redis_url,
            "--live-lease", str(LEASE_S), "--max-streams-per-key", "1", "--no-capacity-estimate",
            "--key-balance", f"{KEYS['balance']}={BALANCE_SECONDS}",
        ]  # fmt: skip
        for key in KEYS.values():
            command += ["--api-key", key]
        log = shared.root / f"{name}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        replica = Replica(f"http://127.0.0.1:{port}", process, log)
        started.append(replica)
        deadline = time.monotonic() + 180
        while not _healthy(replica.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        return replica

    yield start
    for replica in started:
        if replica.process.poll() is None:
            replica.process.terminate()
            try:
                replica.process.wait(30)
            except subprocess.TimeoutExpired:
                replica.kill()


@pytest.fixture(scope="module")
def replicas(start_replica) -> tuple[Replica, Replica]:
    """Two replicas, A and B, started one after the other."""
    return start_replica("a"), start_replica("b")
