"""`churnwatch demo` stopped by SIGTERM (or Ctrl-C) leaves nothing behind: its worker, the
embedded broker and redis-server exit and their temporary directories are removed, whether it
was still streaming or serving the page afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _run_and_stop(args: list[str], marker: str, tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    demo = subprocess.Popen([sys.executable, "-m", "churnwatch", "demo", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    while marker not in log.read_text(errors="replace"):
        assert demo.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    children = psutil.Process(demo.pid).children(recursive=True)
    assert len(children) >= 3, [c.cmdline() for c in children]  # broker, redis, worker
    # the demo's own temporary directories: the servers run in theirs, the worker's log and
    # the alerts file are in the demo's
    tmp = tempfile.gettempdir()
    dirs = {c.cwd() for c in children
            if Path(c.cwd()).parent == Path(tmp) and Path(c.cwd()).name.startswith("churnwatch-")}
    dirs |= set(re.findall(re.escape(tmp) + r"/churnwatch-demo-[\w]+", log.read_text()))
    assert len(dirs) >= 3, dirs
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(60) in (0, 130), log.read_text()[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [c.cmdline() for c in alive]
    assert not [d for d in dirs if Path(d).exists()], dirs


def test_sigterm_while_streaming_stops_everything(tmp_path: Path) -> None:
    _run_and_stop(["--subscribers", "300", "--days", "120"], "retention team's page", tmp_path)


def test_sigterm_while_serving_the_page_stops_everything(tmp_path: Path) -> None:
    _run_and_stop(["--subscribers", "40", "--days", "20", "--keep-serving"],
                  "the worker keeps running", tmp_path)
