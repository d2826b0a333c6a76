"""A short, bounded atheris (libFuzzer) run of the event decoder (tests/fuzz/fuzz_decoder.py);
``CHAOS_FUZZ_RUNS`` sets its length (default 20,000 inputs, a few seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chaos

pytest.importorskip("atheris", reason="atheris is in the [test] extra (Python < 3.12)")
FUZZ = Path(__file__).parent / "fuzz"


def test_decoder_survives_libfuzzer(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "seeds", corpus)
    runs = os.environ.get("CHAOS_FUZZ_RUNS", "20000")
    out = subprocess.run([sys.executable, str(FUZZ / "fuzz_decoder.py"), f"-runs={runs}",
                          "-max_len=4096", "-timeout=10", str(corpus)],
                         capture_output=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(FUZZ.parent.parent)})
    log = out.stderr.decode(errors="replace")
    assert out.returncode == 0, log[-3000:]
    assert f"Done {runs} runs" in log
