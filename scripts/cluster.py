"""Two replicas behind HAProxy on loopback, sharing PostgreSQL, Redis and a blob directory:
the deployment of docs/DEPLOY.md in miniature, for a demo (`bash scripts/cluster.sh`) and for
the replica tests (tests/cluster/). Everything runs in a temp dir and stops on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from scripts.services import fresh_database, free_port, haproxy_server, postgres_server, redis_server

REPO = Path(__file__).resolve().parents[1]
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 90) -> None:
        """SIGTERM (it drains its streams), and SIGKILL if it is still there after `timeout`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_replica(
    name: str, root: Path, database_url: str, redis_url: str, args: Sequence[str] = (), timeout: float = 180
) -> Replica:
    """`stream-server serve` on a free loopback port, its log at `root/<name>.log`; returns once
    /health says 200. The replicas share `root/data` (the model cache) and `root/blobs`."""
    port = free_port()
    command = [
        sys.executable, "-m", "stream_server", "serve", "--port", str(port),
        "--data-dir", str(root / "data"), "--blob-dir", str(root / "blobs"),
        "--database-url", database_url, "--redis-url", redis_url, *args,
    ]  # fmt: skip
    log = root / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    replica = Replica(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while not healthy(replica.url):
        if process.poll() is not None or time.monotonic() > deadline:
            replica.stop(5)
            raise RuntimeError(f"replica {name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return replica


def haproxy_env(port: int, a: Replica, b: Replica) -> dict[str, str]:
    return {
        "STREAM_SERVER_LB_BIND": f"127.0.0.1:{port}",
        "STREAM_SERVER_REPLICA_A": a.address,
        "STREAM_SERVER_REPLICA_B": b.address,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the load balancer's port on 127.0.0.1")
    parser.add_argument("serve_args", nargs="*", help="more `serve` flags for both replicas (after --)")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C

    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-server-cluster-")))
        print("starting PostgreSQL and Redis ...", flush=True)
        database_url = asyncio.run(fresh_database(stack.enter_context(postgres_server())))
        redis_url = stack.enter_context(redis_server())
        replicas = []
        for name in ("a", "b"):
            print(f"starting replica {name} ...", flush=True)
            replicas.append(start_replica(name, root, database_url, redis_url, options.serve_args))
            stack.callback(replicas[-1].stop)
        stack.enter_context(haproxy_server(HAPROXY_CONFIG, haproxy_env(options.port, *replicas), options.port))
        print(f"PostgreSQL  {database_url}\nRedis       {redis_url}")
        for replica in replicas:
            print(f"replica {replica.name}   {replica.url}  (log {replica.log})")
        print(f"HAProxy     http://127.0.0.1:{options.port}  <- send clients here; Ctrl-C stops everything", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
