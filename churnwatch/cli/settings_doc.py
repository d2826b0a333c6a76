"""``docs/settings.md``: the reference of every setting, generated from :class:`Settings`.

The page lists each key with its environment variable, type, default, bounds and meaning,
exactly as the code declares them; ``churnwatch settings-doc --check`` (run by the tests)
fails when the committed page and the code disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from churnwatch.infra.config import ENV_PREFIX, Settings

HEADER = """# Settings reference

<!-- generated from churnwatch/infra/config.py by `churnwatch settings-doc`; do not edit -->

Every setting of churnwatch, as the code declares it. Set one with the environment variable
`CHURNWATCH_<KEY>` or the key in a TOML file (`--config FILE` or `CHURNWATCH_CONFIG`, at top
level or under `[churnwatch]`); environment variables win. An invalid value stops the program
at startup naming the key, where it came from and the fix. [configuration.md](configuration.md)
explains how the settings work together.

| key | environment variable | type | default | allowed | meaning |
|---|---|---|---|---|---|
"""

_BOUNDS = ((Ge, "≥ {}", "ge"), (Gt, "> {}", "gt"), (Le, "≤ {}", "le"), (Lt, "< {}", "lt"),
           (MinLen, "length ≥ {}", "min_length"),
           (MaxLen, "length ≤ {}", "max_length"))


def _type(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("<class '", "").replace("'>", "")
    return text.replace("pydantic.types.", "").replace("Literal", "one of ")


def _default(info: FieldInfo) -> str:
    value: Any = info.default
    if value is PydanticUndefined or value is None or value == "":
        return "—"
    if hasattr(value, "get_secret_value"):
        return "—" if not value.get_secret_value() else "(secret)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, frozenset, set)):
        return ", ".join(str(v) for v in value) or "—"
    return str(value)


def _allowed(info: FieldInfo) -> str:
    out = []
    for meta in info.metadata:
        for kind, form, attr in _BOUNDS:
            if isinstance(meta, kind):
                out.append(form.format(getattr(meta, attr)))
        pattern = getattr(meta, "pattern", None)
        if pattern:
            out.append(f"`{pattern}`")
    return ", ".join(out) or "—"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    """The page, from the settings' declarations."""
    rows = []
    for key, info in Settings.model_fields.items():
        rows.append(f"| `{key}` | `{ENV_PREFIX}{key.upper()}` | {_cell(_type(info))} | "
                    f"{_cell(_default(info))} | {_cell(_allowed(info))} | "
                    f"{_cell(info.description or '')} |")
    return HEADER + "\n".join(rows) + "\n"


def write(path: Path) -> None:
    path.write_text(render())


def stale(path: Path) -> bool:
    """Whether the page at ``path`` differs from what the code declares."""
    return not path.is_file() or path.read_text() != render()
