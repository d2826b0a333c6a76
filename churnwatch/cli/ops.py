"""Operator commands: rulesets (check, test, push), the do-not-contact list, storm holds and
accepting a broker reset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from churnwatch.cli.common import (
    ConfigOpt,
    JsonOpt,
    err,
    fail,
    load,
    require_redis,
    with_redis,
)
from churnwatch.core.errors import ChurnwatchError

rules_app = typer.Typer(no_args_is_help=True, help="Check, try and publish rulesets.")


def _load_rules(file: Path):  # type: ignore[no-untyped-def]
    from rules.engine import compile_ruleset
    from rules.ruleset import load_ruleset

    try:
        return compile_ruleset(load_ruleset(file))
    except ChurnwatchError as exc:
        raise fail(exc) from None


@rules_app.command("check")
def rules_check(file: Annotated[Path, typer.Argument(help="rules TOML")],
                json_out: JsonOpt = False) -> None:
    """Validate and compile a ruleset."""
    compiled = _load_rules(file)
    rs = compiled.ruleset
    info = {"file": str(file), "version": rs.version, "indicators": [i.name for i in rs.indicators],
            "rules": [r.id for r in rs.rules], "segments": list(rs.segment_names)}
    if json_out:
        print(orjson.dumps(info).decode())
    else:
        err.print(f"[green]ok[/] {file}: version {rs.version}, {len(rs.indicators)} indicators, "
                  f"{len(rs.rules)} rules, {len(rs.segments)} segments")


@rules_app.command("test")
def rules_test(file: Annotated[Path, typer.Argument(help="rules TOML")],
               events: Annotated[Path, typer.Argument(help="NDJSON events")],
               json_out: JsonOpt = False) -> None:
    """Show what a ruleset would raise on an event file, without acting (no Kafka/Redis)."""
    from alerting.dryrun import dry_run

    compiled = _load_rules(file)
    try:
        with events.open("rb") as fh:
            report = dry_run(compiled, fh)
    except OSError as exc:
        raise fail(exc) from None
    if json_out:
        print(orjson.dumps(report).decode())
        return
    for alert in report["alerts"]:
        err.print(f"line {alert['line']}: {alert['severity']:<6} {escape(alert['subscriber_id'])} "
                  f"rules {','.join(alert['rules'])} indicators {','.join(alert['indicators'])}")
    err.print(f"events {report['events']}  rule hits {report['rule_hits']}  "
              f"alerts {len(report['alerts'])}")


@rules_app.command("push")
def rules_push(file: Annotated[Path, typer.Argument(help="rules TOML")],
               config: ConfigOpt = None) -> None:
    """Validate and publish a ruleset; running workers switch to it within seconds."""

    from rules.registry import publish

    settings = load(config)
    require_redis(settings)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(exc) from None

    ruleset = with_redis(settings, lambda client: publish(client, text, str(file)))
    err.print(f"published ruleset {ruleset.version} from {file}")


dnc_app = typer.Typer(no_args_is_help=True, help="The do-not-contact list (workers reload it "
                      "every 10 s): contact actions are withheld, internal ones still run.")


def _dnc(config: Path | None, op: str, subscribers: list[str]) -> list[str]:
    from churnwatch.core.events import normalise_subscriber
    from churnwatch.core.keys import Keys
    from churnwatch.infra.redis.connect import connect_sync

    settings = load(config)
    require_redis(settings)
    try:
        ids = [normalise_subscriber(s) for s in subscribers]
    except ChurnwatchError as exc:
        raise fail(exc) from None
    client = connect_sync(settings)
    key = Keys().do_not_contact()
    if op == "add" and ids:
        client.sadd(key, *ids)
    elif op == "remove" and ids:
        client.srem(key, *ids)
    return sorted(m.decode() for m in client.smembers(key))


@dnc_app.command("add")
def dnc_add(subscribers: Annotated[list[str], typer.Argument(help="phone numbers or ids")],
            config: ConfigOpt = None) -> None:
    """Add subscribers to the do-not-contact list."""
    err.print(f"do-not-contact list: {len(_dnc(config, 'add', subscribers))} subscribers")


@dnc_app.command("remove")
def dnc_remove(subscribers: Annotated[list[str], typer.Argument(help="phone numbers or ids")],
               config: ConfigOpt = None) -> None:
    """Remove subscribers from the do-not-contact list."""
    err.print(f"do-not-contact list: {len(_dnc(config, 'remove', subscribers))} subscribers")


@dnc_app.command("list")
def dnc_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Print the do-not-contact list."""
    members = _dnc(config, "list", [])
    print(orjson.dumps(members).decode() if json_out else "\n".join(members))


storm_app = typer.Typer(no_args_is_help=True, help="Alerts whose actions storm protection "
                        "holds: list, release (deliver the actions) or discard them.")


def _storm_redis(config: Path | None):  # type: ignore[no-untyped-def]
    from churnwatch.infra.redis.connect import connect_sync

    settings = load(config)
    require_redis(settings)
    return connect_sync(settings)


@storm_app.command("list")
def storm_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Held alerts per rule."""
    from churnwatch.core.keys import Keys

    client = _storm_redis(config)
    prefix = Keys().held("")
    held = {key.decode()[len(prefix):]: client.llen(key)
            for key in client.scan_iter(f"{prefix}*")}
    print(orjson.dumps(held).decode() if json_out else
          "\n".join(f"{rule}: {n} held" for rule, n in sorted(held.items())) or "nothing held")


@storm_app.command("release")
def storm_release(rule: Annotated[str, typer.Argument(help="rule id")],
                  config: ConfigOpt = None) -> None:
    """Hand a rule's held alerts to the workers, which deliver their actions."""
    from churnwatch.core.keys import Keys

    client, keys = _storm_redis(config), Keys()
    moved = 0
    while client.lmove(keys.held(rule), keys.released(), "LEFT", "RIGHT") is not None:
        moved += 1
    err.print(f"released {moved} held alerts of {rule}")


@storm_app.command("discard")
def storm_discard(rule: Annotated[str, typer.Argument(help="rule id")],
                  config: ConfigOpt = None) -> None:
    """Drop a rule's held alerts: their actions are never performed."""
    from churnwatch.core.keys import Keys

    client, keys = _storm_redis(config), Keys()
    count = client.llen(keys.held(rule))
    client.delete(keys.held(rule))
    err.print(f"discarded {count} held alerts of {rule}")


broker_app = typer.Typer(no_args_is_help=True, help="The broker-reset check: the offsets of "
                         "churn.events a worker group has seen, kept in Redis.")


@broker_app.command("accept-reset")
def broker_accept_reset(config: ConfigOpt = None) -> None:
    """After a broker lost data (workers exit with code 3 and refuse to start): forget the
    offsets the group (CHURNWATCH_APP_ID) has seen and applied, so workers start on the broker
    as it is.
    Decide first what to replay (`churnwatch replay`); replayed events are deduplicated."""
    from churnwatch.core.keys import Keys

    settings = load(config)

    async def work(client) -> int:  # type: ignore[no-untyped-def]
        keys = Keys()  # one hash tag: the group's
        return await client.delete(keys.broker_offsets(settings.app_id),
                                   keys.applied_offsets(settings.app_id))

    forgot = with_redis(settings, work)
    err.print(f"group {settings.app_id}: "
              + ("remembered offsets forgotten" if forgot else "nothing was remembered"))
