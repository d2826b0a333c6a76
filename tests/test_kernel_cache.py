"""numba's kernel cache is kept per version of the sources (churnwatch/infra/runtime/kernel_cache.py): a
change in any module, also one a cached kernel only calls, selects a fresh directory."""

from __future__ import annotations

from pathlib import Path

from churnwatch.infra.runtime import kernel_cache


def _tree(root: Path) -> None:
    for package in kernel_cache.PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "features" / "kernel.py").write_text("NF = 27\n")
    (root / "features" / "batch_kernel.py").write_text("from features.kernel import NF\n")


def test_a_change_in_a_callee_module_changes_the_directory(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = kernel_cache.fingerprint(tmp_path)
    assert kernel_cache.fingerprint(tmp_path) == before
    (tmp_path / "features" / "kernel.py").write_text("NF = 28\n")  # the caller is unchanged
    assert kernel_cache.fingerprint(tmp_path) != before


def test_configure_sets_the_directory_unless_the_user_did(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    path = kernel_cache.configure(env)
    assert path is not None and env["NUMBA_CACHE_DIR"] == path and Path(path).is_dir()
    assert Path(path).name == kernel_cache.fingerprint()
    assert Path(path).is_relative_to(tmp_path)
    mine = {"NUMBA_CACHE_DIR": "/somewhere/else"}
    assert kernel_cache.configure(mine) is None and mine["NUMBA_CACHE_DIR"] == "/somewhere/else"
