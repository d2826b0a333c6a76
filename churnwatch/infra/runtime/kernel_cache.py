"""Where numba keeps the compiled kernels: one directory per version of churnwatch's sources.

numba checks a cached kernel against its own source file only. A kernel that calls functions
of another module (``features.batch_kernel`` calls ``features.kernel`` and ``features.codec``)
keeps its cached machine code when only the callee's module changed, with the old constants
and layouts compiled in: after such an update every batch failed on a feature row one column
short. So, unless ``NUMBA_CACHE_DIR`` is set, :func:`configure` points numba at a directory
named by a hash of every source file of churnwatch's packages: a changed source compiles every
kernel afresh, once. The CLI and the test suite call it before any kernel is imported.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["configure", "fingerprint"]

PACKAGES = ("alerting", "churnwatch", "features", "online_models", "rules", "streams")
_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the packages


def fingerprint(root: Path = _ROOT) -> str:
    """A short hash of the packages' Python sources (paths and contents)."""
    digest = hashlib.blake2b(digest_size=8)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def configure(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``NUMBA_CACHE_DIR`` (for this process and the ones it starts; or in ``environ``
    only) to this version's directory, unless it is set already; returns the directory set,
    or None."""
    own = environ is None
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    name = fingerprint()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churnwatch"
    path = base / "numba" / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: the temporary directory instead
        path = Path(tempfile.gettempdir()) / "churnwatch-numba" / name
        path.mkdir(parents=True, exist_ok=True)
    environ["NUMBA_CACHE_DIR"] = str(path)
    numba = sys.modules.get("numba") if own else None
    if numba is not None:  # imported already: its configuration was read from the environment
        numba.config.CACHE_DIR = str(path)
    return str(path)
