"""`churnwatch model`: list the published model versions and switch the active one."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import orjson
import typer

from churnwatch.cli.common import (
    ConfigOpt,
    JsonOpt,
    err,
    load,
    require_redis,
    with_redis,
)

model_app = typer.Typer(no_args_is_help=True, help="Model versions: list, promote, rollback.")


def _versions(client):  # type: ignore[no-untyped-def]
    from online_models.versions import ModelVersions

    return ModelVersions(client)


@model_app.command("list")
def model_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Published versions, oldest first: labels learned, stream position, active / head."""
    settings = load(config)
    require_redis(settings)

    async def work(client):  # type: ignore[no-untyped-def]
        versions = _versions(client)
        return await versions.list(), bool(await client.exists(versions.keys.model("pinned")))

    rows, pinned = with_redis(settings, work)
    if json_out:
        print(orjson.dumps({"versions": rows, "pinned": pinned}).decode())
        return
    if not rows:
        err.print("no model version published yet")
        return
    for row in rows:
        when = datetime.fromtimestamp(row["created_ms"] / 1000, timezone.utc)
        flags = " ".join(f for f, on in (("active", row["active"]), ("head", row["head"])) if on)
        err.print(f"{row['version']:<16} {when:%Y-%m-%d %H:%M:%S}Z  positives "
                  f"{row['positives']:>7}  negatives {row['negatives']:>7}  "
                  f"offset {row['offset']}  {flags}")
    err.print("active version pinned by an operator" if pinned
              else "active version follows the learner")


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="a version from `model list`, or `latest` to "
                                                "follow the learner again")],
    config: ConfigOpt = None,
) -> None:
    """Make VERSION the one every worker scores with (picked up within seconds) and pin it."""
    settings = load(config)
    require_redis(settings)
    target = with_redis(settings, lambda client: _versions(client).promote(version))
    err.print(f"active model version: {target}"
              + (" (following the learner)" if version == "latest" else " (pinned)"))


@model_app.command("rollback")
def model_rollback(config: ConfigOpt = None) -> None:
    """Re-activate the version that was active before the current one, and pin it."""
    settings = load(config)
    require_redis(settings)
    target = with_redis(settings, lambda client: _versions(client).rollback())
    err.print(f"active model version: {target} (pinned)")
