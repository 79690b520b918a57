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


class SoftHsmToken:
    """A SoftHSM2 token made by scripts/softhsm-token.sh: one EC P-256 key with its
    certificate (file and token object)."""

    def __init__(self, values: dict[str, str]):
        self.conf = values["SOFTHSM2_CONF"]
        self.module = values["LS_TOKEN_MODULE"]
        self.pin = values["LS_TOKEN_PIN"]
        self.uri = values["LS_TOKEN_URI"]
        self.cert = Path(values["LS_TOKEN_CERT"])


_TOKEN_SCRIPT = REPO_ROOT / "scripts" / "softhsm-token.sh"


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory) -> SoftHsmToken:
    """The test process's SoftHSM2 token. SoftHSM2 reads SOFTHSM2_CONF once per process, when
    the library first loads the module, and the library loads a module once per process: so
    this fixture sets SOFTHSM2_CONF in this process before any test loads an identity from the
    token, and every test of the process uses this one token. Missing SoftHSM2 or pkcs11-tool:
    :func:`skip_or_fail`."""
    already = os.environ.get("SOFTHSM2_CONF")
    folder = tmp_path_factory.mktemp("softhsm")
    p = subprocess.run(["bash", str(_TOKEN_SCRIPT), str(folder)], capture_output=True)
    if p.returncode == 3:
        skip_or_fail(p.stderr.decode(errors="replace").strip())
    if p.returncode != 0:
        pytest.fail(f"{_TOKEN_SCRIPT} failed: {p.stderr.decode(errors='replace')}")
    values = dict(line.split("=", 1) for line in p.stdout.decode().splitlines() if "=" in line)
    token = SoftHsmToken(values)
    if already is not None and already != token.conf:
        # Harmless unless SoftHSM2 was loaded before this fixture ran; then it would not see
        # our token and the tests fail with "no such token" (LS_ERR_TOKEN_UNAVAILABLE).
        print(f"note: SOFTHSM2_CONF was {already}; replaced by {token.conf}")
    os.environ["SOFTHSM2_CONF"] = token.conf
    return token
