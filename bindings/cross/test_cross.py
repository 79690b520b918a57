"""Documents sealed by one binding and opened by another: C, Python, Java, .NET and the openssl
cms command (an independent implementation), every pair, both key types, by the bindings'
seal/open example programs run as processes (their command lines are the C examples':
``seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]`` and ``open KEY CERT SENDER_CERT IN OUT``).

Run by ``make test-cross``, which builds the programs and names them in the environment:
``LS_CROSS_C`` (the folder of examples-c's seal and open), ``LS_CROSS_JAVA`` and
``LS_CROSS_DOTNET`` (their ``seal-open`` launchers), ``LAYERSEC_LIB`` (for Python's
``bindings/python/examples/seal_open.py``). A program that is not there is skipped, or fails
the test under ``LS_REQUIRE_FIXTURES=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PY_EXAMPLE = HERE.parent / "python" / "examples" / "seal_open.py"
BINDINGS = ["c", "python", "java", "dotnet"]
SEALERS = BINDINGS + ["openssl"]
OPENERS = BINDINGS + ["openssl"]

INVOICE = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Invoice id="2026-0042">\n'
           + b'  <Line unit="EA" qty="12">widget \xc3\xa9 \xe2\x82\xac</Line>\n' * 60
           + b"</Invoice>\n")


def random_bytes(n: int) -> bytes:
    x, out = 2463534242, bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x & 0xFF)
    return bytes(out)


# (sender, recipient, document name, content): RSA signs for EC, and EC for RSA.
CASES = {
    "rsa-to-ec-invoice": ("alice", "bob", "invoice.xml", INVOICE),
    "ec-to-rsa-binary": ("bob", "alice", "export.bin", random_bytes(300_000)),
}


def skip_or_fail(reason: str):
    if os.environ.get("LS_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"{reason} (LS_REQUIRE_FIXTURES=1: a missing program fails the test)")
    pytest.skip(reason)


def command(binding: str, op: str) -> list[str]:
    """The command line of `binding`'s seal or open program, without its arguments."""
    if binding == "c":
        folder = os.environ.get("LS_CROSS_C")
        prog = Path(folder or "-", op)
        if not folder or not os.access(prog, os.X_OK):
            skip_or_fail(f"the C example {op} is not built (LS_CROSS_C={folder!r}; make test-cross)")
        return [str(prog)]
    if binding == "python":
        if not os.environ.get("LAYERSEC_LIB"):
            skip_or_fail("LAYERSEC_LIB is not set (make test-cross)")
        return [sys.executable, str(PY_EXAMPLE), op]
    var = {"java": "LS_CROSS_JAVA", "dotnet": "LS_CROSS_DOTNET"}[binding]
    launcher = os.environ.get(var)
    if not launcher or not os.access(launcher, os.X_OK):
        skip_or_fail(f"the {binding} seal-open example is not built ({var}={launcher!r}; "
                     "make test-cross)")
    return [launcher, op]


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=120, **kw)


def openssl(*args) -> bytes:
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is not installed")
    p = run(["openssl", *args])
    assert p.returncode == 0, f"openssl {' '.join(map(str, args))}: {p.stderr.decode(errors='replace')}"
    return p.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """alice (RSA 2048), bob (EC P-256) and carol (EC), as openssl makes them."""
    d = tmp_path_factory.mktemp("keys")
    for who, alg in (("alice", ["rsa:2048"]), ("bob", ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                     ("carol", ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])):
        openssl("req", "-x509", "-newkey", *alg, "-nodes", "-keyout", d / f"{who}.key",
                "-out", d / f"{who}.crt", "-subj", f"/CN={who}", "-days", "30")
    return d


def split_mime(entity: bytes) -> tuple[bytes, bytes]:
    head, sep, body = entity.partition(b"\r\n\r\n")
    assert sep, entity[:200]
    return head, body


def uncompress(der: bytes) -> bytes:
    """The content of a CMS CompressedData (RFC 3274, zlib): by openssl when it was built with
    zlib, else by asn1crypto and Python's zlib."""
    p = run(["openssl", "cms", "-uncompress", "-inform", "DER", "-binary"], input=der)
    if p.returncode == 0:
        return p.stdout
    asn1crypto = pytest.importorskip("asn1crypto.cms") if os.environ.get(
        "LS_REQUIRE_FIXTURES") != "1" else __import__("asn1crypto.cms").cms
    info = asn1crypto.ContentInfo.load(der)
    assert info["content_type"].native == "compressed_data"
    return zlib.decompress(info["content"]["encap_content_info"]["content"].native)


def openssl_open(keys: Path, me: str, sender: str, sealed: Path, work: Path) -> bytes:
    """openssl cms -decrypt, -verify of the SignedData inside against the sender's certificate,
    and -uncompress where there is a compressed layer: the document."""
    decrypted = openssl("cms", "-decrypt", "-inform", "DER", "-in", sealed, "-inkey",
                        keys / f"{me}.key", "-recip", keys / f"{me}.crt", "-binary")
    head, body = split_mime(decrypted)
    assert b"smime-type=signed-data" in head, head
    (work / "signed.der").write_bytes(body)
    verified = openssl("cms", "-verify", "-inform", "DER", "-in", work / "signed.der",
                       "-CAfile", keys / f"{sender}.crt", "-binary")
    head, body = split_mime(verified)
    if b"compressed-data" in head:
        head, body = split_mime(uncompress(body))
    return body


_sealed: dict = {}


def sealed_by(sealer: str, case: str, keys: Path, tmp_path_factory) -> Path:
    """The case's document sealed by `sealer` (once per run)."""
    if (sealer, case) in _sealed:
        return _sealed[(sealer, case)]
    sender, recipient, name, doc = CASES[case]
    d = tmp_path_factory.mktemp(f"sealed-{sealer}-{case}")
    src, out = d / name, d / f"{name}.p7m"
    src.write_bytes(doc)
    if sealer == "openssl":
        openssl("cms", "-sign", "-nodetach", "-binary", "-in", src, "-signer",
                keys / f"{sender}.crt", "-inkey", keys / f"{sender}.key", "-outform", "DER",
                "-out", d / "signed.der")
        openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", d / "signed.der",
                "-recip", keys / f"{recipient}.crt", "-outform", "DER", "-out", out)
    else:
        p = run(command(sealer, "seal") + [keys / f"{sender}.key", keys / f"{sender}.crt",
                                           keys / f"{recipient}.crt", src, out, name])
        assert p.returncode == 0, f"{sealer} seal: {p.stderr.decode(errors='replace')}"
    assert out.stat().st_size > 0
    assert doc[:64] not in out.read_bytes(), "the sealed message shows the document"
    _sealed[(sealer, case)] = out
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("sealer,opener", [
    (s, o) for s in SEALERS for o in OPENERS if "openssl" not in (s, o) or s != o
])
def test_opened_as_sealed(sealer, opener, case, keys, tmp_path, tmp_path_factory):
    sender, recipient, name, doc = CASES[case]
    sealed = sealed_by(sealer, case, keys, tmp_path_factory)
    if opener == "openssl":
        assert openssl_open(keys, recipient, sender, sealed, tmp_path) == doc
        return
    out = tmp_path / "opened"
    p = run(command(opener, "open") + [keys / f"{recipient}.key", keys / f"{recipient}.crt",
                                       keys / f"{sender}.crt", sealed, out])
    stdout = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"{opener} open of {sealer}'s: {p.stderr.decode(errors='replace')}"
    assert out.read_bytes() == doc, f"{opener} opened something else than {sealer} sealed"
    assert f"signer: CN={sender}" in stdout.splitlines(), stdout
    if sealer != "openssl":
        assert f"filename: {name}" in stdout.splitlines(), stdout


@pytest.mark.parametrize("opener", BINDINGS)
def test_refusals_are_the_same_everywhere(opener, keys, tmp_path, tmp_path_factory):
    """Another binding's message opened with the wrong sender expected, by someone it was not
    sealed for, and cut short: exit status 1, the LS_ERR_* name on stderr, nothing written."""
    sealer = BINDINGS[(BINDINGS.index(opener) + 1) % len(BINDINGS)]
    sealed = sealed_by(sealer, "rsa-to-ec-invoice", keys, tmp_path_factory)
    cut = tmp_path / "cut.p7m"
    cut.write_bytes(sealed.read_bytes()[:300])
    cases = [
        # bob expects the message from carol: alice signed it.
        ("bob", "carol", sealed, "LS_ERR_SIGNER_MISMATCH"),
        # carol opens bob's message.
        ("carol", "alice", sealed, "LS_ERR_NOT_A_RECIPIENT"),
        ("bob", "alice", cut, "LS_ERR_TRUNCATED"),
    ]
    for i, (me, sender, msg, name) in enumerate(cases):
        out = tmp_path / f"out{i}"
        p = run(command(opener, "open") + [keys / f"{me}.key", keys / f"{me}.crt",
                                           keys / f"{sender}.crt", msg, out])
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 1, f"{opener}, {name}: exit {p.returncode}: {err}"
        assert name in err, f"{opener}: {err}"
        assert not out.exists(), f"{opener} wrote {out.name} for a refused message"
