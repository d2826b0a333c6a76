"""The ingest tokens file over time (streams/ingest_auth.TokenStore) and the ingest's log:
a deleted or emptied file revokes every token (logged), every token the file ever held is
redacted from the log, and a malformed HTTP request is one log line without traceback."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from churnwatch.infra.config import Settings
from churnwatch.infra.runtime.logs import SECRET, configure_logging
from streams.ingest import create_ingest_app
from streams.ingest_auth import TokenStore
from streams.ingest_http import HTTP_LOG, runner_options
from tests.support.ingest_bounds import Instant


def test_deleting_or_emptying_the_file_revokes_every_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[tokens]\n"tok-one-1" = "one"\n')
    store = TokenStore(path)
    assert store.feed_for("Bearer tok-one-1") == "one"
    with caplog.at_level(logging.INFO, logger="churnwatch.ingest"):
        path.unlink()
        assert store.feed_for("Bearer tok-one-1") is None
        path.write_text('[tokens]\n"tok-two-2" = "two"\n')
        assert store.feed_for("Bearer tok-two-2") == "two"
        path.write_text("")
        assert store.feed_for("Bearer tok-two-2") is None
        path.write_text('[tokens]\n"tok-two-2" = "two"\n')
        assert store.feed_for("Bearer tok-two-2") == "two"
        path.write_text("[tokens]\n")  # a table without tokens
        assert store.feed_for("Bearer tok-two-2") is None
    revoked = [r.getMessage() for r in caplog.records if "revoked" in r.getMessage()]
    assert len(revoked) == 3 and "is gone" in revoked[0] and "holds no token" in revoked[1]


def test_every_token_the_file_ever_held_is_redacted(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        redactor = configure_logging("info", stream=stream, json=True)
        path = tmp_path / "tokens.toml"
        path.write_text('[tokens]\n"first-token-1111" = "a"\n')
        store = TokenStore(path, on_tokens=redactor.add_all)
        path.write_text('[tokens]\n"added-later-2222" = "b"\n')  # after startup
        assert store.feed_for("Bearer added-later-2222") == "b"
        path.write_text('[tokens]\n"third-token-3333" = "c"\n')  # the second one is removed
        assert store.feed_for("Bearer third-token-3333") == "c"
        logging.getLogger("test").warning("saw first-token-1111 added-later-2222 "
                                          "third-token-3333")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out = stream.getvalue()
    assert "1111" not in out and "2222" not in out and "3333" not in out
    assert out.count(SECRET) == 3


def test_a_malformed_request_is_one_log_line_without_traceback_or_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[tokens]\n"tok-one-1" = "one"\n')

    async def main() -> list[bytes]:
        server = TestServer(create_ingest_app(Settings(ingest_tokens_file=path), Instant(),
                                              TokenStore(path)))
        await server.start_server(**runner_options())
        answers = []
        try:
            for raw in (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        b"tok-one-1\x01\r\nContent-Length: 2\r\n\r\n{}",
                        b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                        b"NOT HTTP AT ALL tok-one-1\r\n\r\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(raw)
                answers.append(await reader.read())
                writer.close()
        finally:
            await server.close()
        return answers

    with caplog.at_level(logging.DEBUG, logger=HTTP_LOG):
        answers = asyncio.run(main())
    assert [a.split(b"\r\n", 1)[0].split()[1] for a in answers] == [b"400"] * 3
    records = [r for r in caplog.records if r.name == HTTP_LOG and r.levelno >= logging.INFO]
    assert len(records) == 2  # the non-HTTP first request is logged at debug by aiohttp
    for record in records:
        assert record.exc_info is None and record.levelname == "WARNING"
        assert "tok-one-1" not in record.getMessage()
        assert record.getMessage().startswith("malformed HTTP request from 127.0.0.1")
