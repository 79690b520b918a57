"""Shared fixtures. The package is imported from bindings/python without installation."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PY_ROOT = Path(__file__).resolve().parent.parent  # bindings/python
REPO_ROOT = PY_ROOT.parent.parent
HEADER = REPO_ROOT / "include" / "layersec.h"

if str(PY_ROOT) not in sys.path:
    sys.path.insert(0, str(PY_ROOT))

import layersec  # noqa: E402


def skip_or_fail(reason: str):
    """A tool, package or service the test needs is missing: the test is skipped (pytest -rs
    lists the reason), or fails under LS_REQUIRE_FIXTURES=1, as in CI."""
    if os.environ.get("LS_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"{reason} (LS_REQUIRE_FIXTURES=1: a missing fixture, tool or service fails "
                    "the test)")
    pytest.skip(reason)


def import_or_skip(module: str):
    """The module, or :func:`skip_or_fail` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        skip_or_fail(f"cannot import {module}: {e} (scripts/deps.sh installs it)")


def run_openssl(*args, input: bytes | None = None, cwd=None) -> bytes:
    """Runs the openssl CLI; fails the test with its stderr if it fails."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is not installed")
    p = subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True, cwd=cwd)
    if p.returncode != 0:
        pytest.fail(f"openssl {' '.join(map(str, args))} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout


@pytest.fixture(scope="session")
def header_text() -> str:
    if not HEADER.exists():
        skip_or_fail(f"{HEADER} not found")
    return HEADER.read_text()


@pytest.fixture(scope="session")
def alice_rsa():
    with layersec.Identity.generate("alice", "rsa2048") as i:
        yield i


@pytest.fixture(scope="session")
def bob_rsa():
    with layersec.Identity.generate("bob", "rsa2048") as i:
        yield i


@pytest.fixture(scope="session")
def alice_ec():
    with layersec.Identity.generate("alice-ec", "ec") as i:
        yield i


@pytest.fixture(scope="session")
def bob_ec():
    with layersec.Identity.generate("bob-ec", "ec") as i:
        yield i


@pytest.fixture(scope="session")
def carol():
    with layersec.Identity.generate("carol", "ec") as i:
        yield i


@pytest.fixture(params=["rsa", "ec"])
def pair(request, alice_rsa, bob_rsa, alice_ec, bob_ec):
    """(sender, recipient) identities of one key type."""
    return (alice_rsa, bob_rsa) if request.param == "rsa" else (alice_ec, bob_ec)


def write_identity(identity: layersec.Identity, folder: Path, name: str) -> tuple[Path, Path]:
    """Writes a generated identity's key and certificate PEM files; returns their paths."""
    key = folder / f"{name}.key"
    crt = folder / f"{name}.crt"
    key.write_bytes(identity.key_pem())
    crt.write_bytes(identity.certificate.to_pem())
    return key, crt
