"""Replicas as real server processes on loopback, sharing one PostgreSQL database, one Redis
and one blob directory (scripts/cluster.py starts them, scripts/services.py the servers).

The database, the replicas A and B and the balancer in front of them serve the whole package
(each replica costs a process start and a model load). The SIGTERM test stops one of A and B:
it is in test_stopped_replica.py, the package's last file in pytest's (alphabetical) order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.cluster import HAPROXY_CONFIG, Replica, haproxy_env, start_replica
from scripts.services import free_port, fresh_database, haproxy_server

LEASE_S = 6.0
"""Long enough that a replica starved of CPU by a loaded machine still renews its places in time."""
KEYS = {
    "balance": "k-balance", "streams": "k-streams", "follow": "k-follow", "cap": "k-cap", "lost": "k-lost", "drain": "k-drain",
}  # fmt: skip
PER_KEY = 2
"""--max-streams-per-key of every replica."""
BALANCE_SECONDS = 60
STREAMS_BALANCE_SECONDS = 15
REPLICA_ARGS = [
    "--live-lease", str(LEASE_S), "--max-streams-per-key", str(PER_KEY), "--no-capacity-estimate",
    "--key-balance", f"{KEYS['balance']}={BALANCE_SECONDS}",
    "--key-balance", f"{KEYS['streams']}={STREAMS_BALANCE_SECONDS}",
    *(arg for key in KEYS.values() for arg in ("--api-key", key)),
]  # fmt: skip


@dataclass(frozen=True)
class Shared:
    database_url: str
    redis_url: str
    root: Path


@pytest.fixture(scope="package")
def shared(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return Shared(asyncio.run(fresh_database(postgres_url)), redis_url, tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="package")
def replica(shared: Shared) -> Iterator[Callable[[str], Replica]]:
    """Starts a replica named `name` on the shared servers; every one is stopped afterwards."""
    started: list[Replica] = []

    def start(name: str) -> Replica:
        started.append(start_replica(name, shared.root, shared.database_url, shared.redis_url, REPLICA_ARGS))
        return started[-1]

    yield start
    for one in started:
        one.stop(30)


@pytest.fixture(scope="package")
def replicas(replica) -> tuple[Replica, Replica]:
    """Two replicas, A and B, started one after the other (the second finds the model cache made)."""
    return replica("a"), replica("b")


@pytest.fixture(scope="package")
def balancer(replicas: tuple[Replica, Replica]) -> Iterator[str]:
    port = free_port()
    with haproxy_server(HAPROXY_CONFIG, haproxy_env(port, *replicas), port):
        yield f"http://127.0.0.1:{port}"
