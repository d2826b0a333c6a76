"""What every churnwatch command shares: the error console, common options, settings
loading, the Redis client helper and its one-line errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from churnwatch.core.errors import ChurnwatchError
from churnwatch.infra.config import Settings
from churnwatch.infra.settings_load import load_settings

err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file "
                                                   "(or CHURNWATCH_CONFIG)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def settings_secrets(settings: Any) -> list[str]:
    """The secrets a process may know from its settings: the webhook secret, the web token,
    the Kafka password, passwords in the Redis and broker URLs, ingest tokens (when the file
    reads) and the send token."""
    from streams.ingest_auth import parse_tokens

    found = [settings.webhook_secret.get_secret_value(), settings.web_token.get_secret_value(),
             settings.kafka_password.get_secret_value(),
             os.environ.get("CHURNWATCH_SEND_TOKEN", "")]
    for url in (settings.redis_url, settings.broker):
        password = urlparse(url).password if url else None
        found.append(password or "")
    if settings.ingest_tokens_file is not None:
        try:
            found += [t.decode() for t in parse_tokens(settings.ingest_tokens_file)]
        except ChurnwatchError:
            pass  # the ingest command reports an unreadable tokens file itself
    return [s for s in found if s]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"churnwatch {version('churnwatch')}")
        raise typer.Exit()


VersionOpt = Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="print the version and exit")]


def load(config: Path | None, service: bool = False, **overrides: object) -> Settings:
    """Settings, with logging configured from them (``churnwatch.infra.runtime.logs``), or exit 2 with the
    configuration error. Services (worker, ingest) log at ``log_level``; other commands show
    only warnings and errors unless ``log_level`` is debug, so their output stays readable."""
    from churnwatch.infra.runtime.logs import configure_logging

    try:
        settings = load_settings(config, **overrides)
    except ChurnwatchError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    level = settings.log_level
    if not service and level == "info":
        level = "warning"
    configure_logging(level, settings_secrets(settings))
    return settings


def event_progress(label: str, quiet: bool) -> Progress:
    """A progress line on stderr counting events (off with ``quiet``, e.g. ``--json``)."""
    return Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed} events"),
                    TimeElapsedColumn(), console=err, disable=quiet)


def fail(exc: Exception) -> typer.Exit:
    """Print an error and return the exit to raise (code 1)."""
    err.print(f"[red]error:[/] {escape(str(redis_error_line(exc) or exc))}")
    return typer.Exit(1)


def require_redis(settings: Settings) -> str:
    """The configured Redis URL, or exit with how to set it."""
    if not settings.redis_url:
        raise fail(ChurnwatchError("set CHURNWATCH_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"))
    return settings.redis_url


def with_redis(settings: Settings, work):  # type: ignore[no-untyped-def]
    """Run ``work(client)`` (a coroutine function) with a redis.asyncio client; errors exit 1."""
    from churnwatch.infra.redis.connect import connect

    require_redis(settings)

    async def main():  # type: ignore[no-untyped-def]
        client = connect(settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except ChurnwatchError as exc:
        raise fail(exc) from None


def redis_error_line(exc: BaseException) -> str | None:
    """One line saying what a Redis connection or permission error means and how to fix it
    (never the password), or None if ``exc`` is not one."""
    from churnwatch.infra.redis.errors import refusal_line

    return refusal_line(exc)
