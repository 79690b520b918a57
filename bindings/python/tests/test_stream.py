"""Documents of any size in constant memory: seal_file/open_file and seal_stream/open_stream
(the C ABI's file functions and read/write callbacks), peak memory of a large open bounded."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import layersec

# Several of the library's 64 KiB segments and 512 KiB compression chunks.
DOC = b"".join(b"%d;2026-12-07;ACME-%05d;%d.%02d;EUR\n" % (i, i * 7 % 99991, i * 37 % 9973, i % 100)
               for i in range(40000))


def test_files_round_trip(pair, tmp_path):
    sender, recipient = pair
    src = tmp_path / "export.csv"
    src.write_bytes(DOC)
    layersec.seal_file(src, tmp_path / "export.p7m", sender, recipient.certificate,
                       filename="export.csv")
    assert (tmp_path / "export.p7m").read_bytes()[:2] == b"\x30\x80"  # BER, as streamed
    o = layersec.open_file(tmp_path / "export.p7m", tmp_path / "out.csv", recipient,
                           sender=sender.certificate)
    assert (tmp_path / "out.csv").read_bytes() == DOC
    assert o.size == len(DOC) and o.document == b""
    assert o.filename == "export.csv" and o.signer_subject == sender.certificate.subject
    assert oct((tmp_path / "out.csv").stat().st_mode & 0o777) == oct(0o600)
    # What open_file reads, open reads too, and the other way round.
    assert layersec.open((tmp_path / "export.p7m").read_bytes(), recipient,
                         sender=sender.certificate).document == DOC


def test_streams_round_trip(alice_ec, bob_ec):
    sealed = io.BytesIO()
    n = layersec.seal_stream(io.BytesIO(DOC), sealed, alice_ec, bob_ec.certificate,
                             filename="export.csv", output="smime")
    assert n == len(sealed.getvalue())
    out = io.BytesIO()
    o = layersec.open_stream(io.BytesIO(sealed.getvalue()), out, bob_ec,
                             sender=alice_ec.certificate)
    assert out.getvalue() == DOC and o.size == len(DOC)


def test_refused_file_leaves_nothing(alice_ec, bob_ec, tmp_path):
    src = tmp_path / "doc.csv"
    src.write_bytes(DOC)
    layersec.seal_file(src, tmp_path / "doc.p7m", alice_ec, bob_ec.certificate)
    sealed = (tmp_path / "doc.p7m").read_bytes()
    (tmp_path / "cut.p7m").write_bytes(sealed[: len(sealed) - 20])
    with pytest.raises(layersec.TruncatedError):
        layersec.open_file(tmp_path / "cut.p7m", tmp_path / "cut.csv", bob_ec,
                           sender=alice_ec.certificate)
    bad = bytearray(sealed)
    bad[len(bad) // 2] ^= 1
    (tmp_path / "bad.p7m").write_bytes(bytes(bad))
    with pytest.raises(layersec.DecryptionError):
        layersec.open_file(tmp_path / "bad.p7m", tmp_path / "bad.csv", bob_ec,
                           sender=alice_ec.certificate)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.p7m", "cut.p7m", "doc.csv", "doc.p7m"]


def test_a_failing_file_object_raises_its_own_exception(alice_ec, bob_ec):
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def read(self, n=-1):
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        layersec.seal_stream(Broken(), io.BytesIO(), alice_ec, bob_ec.certificate)


def test_open_of_a_large_document_stays_small(alice_ec, bob_ec, tmp_path):
    """64 MiB opened from a file in a child process: its peak RSS stays far below the
    document (memory, unlike time, is stable on shared machines)."""
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    layersec.seal_file(src, tmp_path / "big.p7m", alice_ec, bob_ec.certificate)
    (tmp_path / "small.bin").write_bytes(b"warm-up")
    layersec.seal_file(tmp_path / "small.bin", tmp_path / "small.p7m", alice_ec, bob_ec.certificate)
    for name, ident in (("alice", alice_ec), ("bob", bob_ec)):
        (tmp_path / f"{name}.key").write_bytes(ident.key_pem())
        (tmp_path / f"{name}.crt").write_bytes(ident.certificate.to_pem())
    code = (
        "import sys, resource, layersec\n"
        "d = sys.argv[1]\n"
        "bob = layersec.Identity.load(d + '/bob.key', d + '/bob.crt')\n"
        "alice = layersec.Certificate.load(d + '/alice.crt')\n"
        "small = layersec.open_file(d + '/small.p7m', d + '/small.out', bob, sender=alice)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "o = layersec.open_file(d + '/big.p7m', d + '/out.bin', bob, sender=alice)\n"
        "print(o.size, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(layersec.__file__.rsplit("/", 2)[0])] + sys.path)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, env=env)
    assert p.returncode == 0, p.stderr.decode()
    size, before_kib, after_kib = map(int, p.stdout.split())
    assert size == 64 << 20
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    # Opening the 64 MiB document (after a small one warmed everything up) raises the peak by
    # the library's buffers, not by the document.
    assert after_kib - before_kib < 8 * 1024, f"peak RSS {before_kib} -> {after_kib} KiB"
