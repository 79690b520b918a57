"""The loader's search order: LAYERSEC_LIB, then the package folder and next to it, then the
SONAME through the dynamic loader. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PY_ROOT
from layersec import _lib

LIB = Path(_lib.path).resolve() if os.path.sep in _lib.path else None

PROBE = "import layersec, layersec._lib as l; print(l.path); print(layersec.__version__)"


def run_probe(cwd: Path, env_changes: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LAYERSEC_LIB", "LD_LIBRARY_PATH")}
    env.pop("PYTHONPATH", None)
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture
def pkg_copy(tmp_path):
    """A copy of the package in tmp_path/site/layersec (no library inside)."""
    if LIB is None:
        pytest.skip("the library was not loaded from a path")
    site = tmp_path / "site"
    shutil.copytree(PY_ROOT / "layersec", site / "layersec",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
    return site


def test_env_var_wins(pkg_copy):
    p = run_probe(pkg_copy, {"LAYERSEC_LIB": str(LIB)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == str(LIB)


def test_env_var_that_does_not_load_is_an_error(pkg_copy, tmp_path):
    (pkg_copy / "layersec" / "liblayersec.so").symlink_to(LIB)  # would be found otherwise
    p = run_probe(pkg_copy, {"LAYERSEC_LIB": str(tmp_path / "nope.so")})
    assert p.returncode != 0
    assert "ImportError" in p.stderr and "LAYERSEC_LIB" in p.stderr


@pytest.mark.parametrize("where", ["inside", "beside"])
def test_library_next_to_the_package(pkg_copy, where):
    folder = pkg_copy / "layersec" if where == "inside" else pkg_copy
    (folder / "liblayersec.so").symlink_to(LIB)
    p = run_probe(pkg_copy, {})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == str(folder / "liblayersec.so")


def test_soname_through_the_loader_search(pkg_copy, tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / _lib.SONAME).symlink_to(LIB)
    p = run_probe(pkg_copy, {"LD_LIBRARY_PATH": str(libdir)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == _lib.SONAME


def test_nothing_found_explains_what_to_do(pkg_copy):
    p = run_probe(pkg_copy, {})
    if p.returncode == 0:
        pytest.skip(f"{_lib.SONAME} is installed system-wide")
    assert "ImportError" in p.stderr
    assert "LAYERSEC_LIB" in p.stderr and _lib.SONAME in p.stderr


def test_soname_is_the_one_of_the_library_version():
    """The binding looks for the SONAME before it can ask the library anything: the name it
    knows is the one the library of its version has (liblayersec.so.<major>, ls-ffi/build.rs)."""
    import layersec

    assert _lib.SONAME == f"liblayersec.so.{layersec.version().split('.')[0]}"
