"""Structured logs: JSON lines off a terminal, readable lines on one, and no phone number or
secret in either (including tracebacks and log arguments)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from churnwatch.cli.common import settings_secrets
from churnwatch.infra.config import Settings
from churnwatch.infra.runtime.logs import PHONE, SECRET, Redactor, configure_logging

PHONES = ["+44 7700 900001", "+447700900001", "+44-7700-900001", "+1 (415) 555-0100",
          "07700 900001", "(415) 555-0100", "415-555-0100", "415.555.0100",
          "0044 7700 900001", "447700900001", "06 12 34 56 78", "+49 (0)30 1234567",
          "+33 6 12 34 56 78"]
KEPT = ["2026-11-22T10:16:19.123456Z", "2026-11-22 10:16:19", "took 0.8333333333 s",
        "alert 3f2a9b12345678901abc4de", "version 0.15.3", "127.0.0.1:9464",
        "batch of 2000 records", "offset 12345", "ruleset default-2", "lr-2",
        "http://127.0.0.1:39123/metrics", "partitions 0-3", "550e8400-e29b-41d4-a716-446655440000"]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers_are_redacted(phone: str) -> None:
    assert Redactor()(f"subscriber {phone}: 2 complaints") == f"subscriber {PHONE}: 2 complaints"

HOOK_SECRET = "whsec_aG9vay1zZWNyZXQtOS1ob29rLXNlY3JldC05"  # 27 bytes


def test_phone_numbers_inside_raw_record_reprs_are_redacted() -> None:
    raw = repr(b"\x00\x1a+447700900101\xb0\x1d{\"subscriber_id\":\"4155550104\"}")
    out = Redactor()(raw)
    assert "447700900101" not in out and "4155550104" not in out


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_numbers_are_kept(text: str) -> None:
    assert Redactor()(text) == text


def test_secrets_are_redacted() -> None:
    redactor = Redactor(["hunter2-token"])
    assert redactor("token hunter2-token used") == f"token {SECRET} used"
    assert redactor("redis://:pa55word@redis:6379/0") == f"redis://:{SECRET}@redis:6379/0"
    assert redactor("redis://user:pa55word@redis/0") == f"redis://user:{SECRET}@redis/0"
    assert redactor("Authorization: Bearer abc.DEF-123") == f"Authorization: Bearer {SECRET}"
    assert redactor("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == f"secret {SECRET}"


def test_settings_secrets(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[tokens]\n"feed-token-1234" = "crm"\n')
    monkeypatch.setenv("CHURNWATCH_SEND_TOKEN", "send-token-5678")
    settings = Settings(redis_url="redis://:redispass@127.0.0.1:6379/0",
                        webhook_secret=HOOK_SECRET, ingest_tokens_file=tokens,
                        web_token="web-token-0123456789abc", kafka_security_protocol="SASL_SSL",
                        kafka_username="churn", kafka_password="kafka-pass-42")
    assert set(settings_secrets(settings)) == {HOOK_SECRET, "redispass", "feed-token-1234",
                                               "send-token-5678", "web-token-0123456789abc",
                                               "kafka-pass-42"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_off_a_terminal_with_redacted_args_and_traceback(restore_logging) -> None:
    out = io.StringIO()
    configure_logging("info", ["s3cret-value"], stream=out)
    log = logging.getLogger("churnwatch.test")
    log.info("scored %s with %s", "+44 7700 900001", "s3cret-value")
    log.debug("not shown at info")
    try:
        raise KeyError("07700 900001")
    except KeyError:
        log.exception("batch failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["level"] for r in lines] == ["info", "error"]
    assert lines[0]["event"] == f"scored {PHONE} with {SECRET}"
    assert lines[0]["logger"] == "churnwatch.test" and lines[0]["timestamp"].endswith("Z")
    assert "KeyError" in lines[1]["exception"] and PHONE in lines[1]["exception"]
    for secret in ("7700 900001", "7700900001", "s3cret-value"):
        assert secret not in out.getvalue()


def test_readable_lines_on_a_terminal(restore_logging) -> None:
    out = _Terminal()
    configure_logging("debug", stream=out)
    logging.getLogger("churnwatch.test").warning("subscriber %s is quiet", "+447700900001")
    text = out.getvalue()
    assert not text.startswith("{")
    assert "subscriber [phone] is quiet" in text and "warning" in text.lower()
    assert "447700900001" not in text


def test_reconfiguring_replaces_only_its_own_handler_and_follows_stderr(
        restore_logging, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    configure_logging("info")
    configure_logging("info")
    handlers = logging.getLogger().handlers
    assert foreign in handlers and sum(h.get_name() == "churnwatch" for h in handlers) == 1
    swapped = io.StringIO()
    monkeypatch.setattr("sys.stderr", swapped)  # e.g. a test runner capturing stderr
    logging.getLogger("churnwatch.test").warning("to the current stderr")
    assert json.loads(swapped.getvalue())["event"] == "to the current stderr"


def test_a_phone_number_inside_a_longer_digit_run_is_redacted() -> None:
    from churnwatch.infra.runtime.logs import PHONE, Redactor

    redact = Redactor()
    text = 'rejected {"subscriber_id":"+44 7700 900199 1234567890"}'
    assert "7700" not in redact(text) and PHONE in redact(text)
