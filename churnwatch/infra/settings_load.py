"""Loading the settings: explicit overrides > environment > TOML file > defaults, and an
invalid value explained with the key, where it came from and the fix."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from churnwatch.core.errors import ConfigError
from churnwatch.infra.config import _OTHER_ENV, ENV_PREFIX, Settings

__all__ = ["load_settings"]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror}). "
                          f"Fix: correct the path in {ENV_PREFIX}CONFIG or --config.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}. Fix the syntax at that line.") from None
    return data.get("churnwatch", data)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from overrides, environment and the optional TOML file."""
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    file_values = _read_toml(Path(path)) if path else {}
    env_keys = {k[len(ENV_PREFIX):].lower() for k in os.environ if k.startswith(ENV_PREFIX)}
    unknown = sorted(env_keys - set(Settings.model_fields) - _OTHER_ENV)
    if unknown:
        raise ConfigError(
            f"unknown environment variable {ENV_PREFIX}{unknown[0].upper()}. Fix: remove it or "
            f"use one of {', '.join(ENV_PREFIX + k.upper() for k in sorted(Settings.model_fields))}")
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path, set(overrides), env_keys)) from None


def _explain(exc: ValidationError, path: Any, overridden: set[str], env_keys: set[str]) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        if not err["loc"]:  # a rule across settings: the message names them and the fix
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
            continue
        key = str(err["loc"][0])
        if key in overridden:
            where = f"--{key.replace('_', '-')}"
        elif key in env_keys:
            where = f"environment variable {ENV_PREFIX}{key.upper()}"
        elif path:
            where = f"{path}: key '{key}'"
        else:
            where = f"{ENV_PREFIX}{key.upper()}"
        if err["type"] == "extra_forbidden":
            fix = f"remove it; known keys: {', '.join(sorted(Settings.model_fields))}"
            lines.append(f"  {where}: unknown setting. Fix: {fix}")
            continue
        field = Settings.model_fields.get(key)
        hint = f" ({field.description})" if field is not None and field.description else ""
        lines.append(f"  {where}: {err['msg']}. Fix: set a valid value{hint}")
    return "\n".join(lines)
