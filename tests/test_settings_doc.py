"""docs/settings.md is generated from the settings the code declares, and kept current."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from churnwatch.cli.main import app
from churnwatch.cli.settings_doc import render
from churnwatch.infra.config import Settings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_the_committed_page_is_what_the_code_declares() -> None:
    assert PAGE.read_text() == render(), "run `churnwatch settings-doc` and commit docs/settings.md"


def test_every_setting_is_on_the_page_with_its_variable() -> None:
    text = render()
    for key in Settings.model_fields:
        assert f"| `{key}` | `CHURNWATCH_{key.upper()}` |" in text


def test_the_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text(render().replace("| `broker` |", "| `brokers` |"))
    result = CliRunner().invoke(app, ["settings-doc", str(stale), "--check"])
    assert result.exit_code == 1 and "churnwatch settings-doc" in result.output
    assert CliRunner().invoke(app, ["settings-doc", str(PAGE), "--check"]).exit_code == 0
