"""`promtool check metrics` (Debian package prometheus) as a test helper."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool() -> str:
    """promtool's path; skips the test when it is missing, fails it in CI."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not installed (Debian package prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def promtool_problems(exposition: str) -> list[str]:
    """promtool's lint findings; [] when clean. A problem is a non-zero exit or any output
    (promtool 2.42 prints findings on stderr, other versions on stdout)."""
    run = subprocess.run([promtool(), "check", "metrics"], input=exposition.encode(),
                         capture_output=True, timeout=60)
    text = (run.stdout + run.stderr).decode().strip()
    if run.returncode != 0 or text:
        return [f"exit {run.returncode}", *text.splitlines()]
    return []
