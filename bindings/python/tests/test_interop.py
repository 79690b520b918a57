"""Interoperability with an independent implementation: the openssl cms command."""

from __future__ import annotations

import subprocess

import pytest

import layersec
from conftest import run_openssl, write_identity

DOC = b"<?xml version='1.0'?>\n<order id='7'>" + b"<line>widget</line>" * 40 + b"</order>\n"
INFORM = {"der": "DER", "smime": "SMIME", "pem": "PEM"}


@pytest.fixture
def parties(tmp_path, pair):
    sender, recipient = pair
    write_identity(sender, tmp_path, "sender")
    write_identity(recipient, tmp_path, "recipient")
    return tmp_path, sender, recipient


def split_mime(entity: bytes) -> tuple[bytes, bytes]:
    head, sep, body = entity.partition(b"\r\n\r\n")
    assert sep, entity[:200]
    return head, body


def openssl_decrypt_and_verify(d, sealed: bytes, inform: str) -> tuple[bytes, bytes]:
    """openssl cms -decrypt, then -verify of the signed-data inside: (MIME head, body)."""
    (d / "sealed").write_bytes(sealed)
    decrypted = run_openssl("cms", "-decrypt", "-inform", inform, "-in", d / "sealed",
                            "-inkey", d / "recipient.key", "-recip", d / "recipient.crt",
                            "-binary")
    head, body = split_mime(decrypted)
    assert b"smime-type=signed-data" in head
    # The inner entity is binary (openssl's S/MIME reader wants base64): verify its DER body.
    (d / "signed.der").write_bytes(body)
    verified = run_openssl("cms", "-verify", "-inform", "DER", "-in", d / "signed.der",
                           "-CAfile", d / "sender.crt", "-binary")
    return split_mime(verified)


@pytest.mark.parametrize("output", ["der", "smime", "pem"])
@pytest.mark.parametrize("cbc", [False, True], ids=["gcm", "cbc"])
def test_openssl_opens_what_python_sealed(parties, output, cbc):
    d, sender, recipient = parties
    sealed = layersec.seal(DOC, sender, [recipient.certificate], filename="order.xml",
                           output=output, cbc=cbc, compress=False)
    head, body = openssl_decrypt_and_verify(d, sealed, INFORM[output])
    assert body == DOC
    assert b"application/xml" in head and b'filename="order.xml"' in head


def test_openssl_verifies_pss(tmp_path, alice_rsa, bob_rsa):
    write_identity(alice_rsa, tmp_path, "sender")
    write_identity(bob_rsa, tmp_path, "recipient")
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], pss=True, compress=False)
    _, body = openssl_decrypt_and_verify(tmp_path, sealed, "DER")
    assert body == DOC


def test_openssl_decrypts_for_each_recipient(tmp_path, alice_ec, bob_rsa, bob_ec):
    write_identity(alice_ec, tmp_path, "sender")
    sealed = layersec.seal(DOC, alice_ec, [bob_rsa.certificate, bob_ec.certificate],
                           compress=False)
    for r in (bob_rsa, bob_ec):
        write_identity(r, tmp_path, "recipient")
        _, body = openssl_decrypt_and_verify(tmp_path, sealed, "DER")
        assert body == DOC


def test_openssl_and_compressed_layer(tmp_path, alice_ec, bob_ec):
    write_identity(alice_ec, tmp_path, "sender")
    write_identity(bob_ec, tmp_path, "recipient")
    sealed = layersec.seal(DOC, alice_ec, [bob_ec.certificate], compress=True)
    head, body = openssl_decrypt_and_verify(tmp_path, sealed, "DER")
    assert b"smime-type=compressed-data" in head
    (tmp_path / "z.der").write_bytes(body)
    p = subprocess.run(["openssl", "cms", "-uncompress", "-inform", "DER", "-in",
                        tmp_path / "z.der", "-binary"], capture_output=True)
    if p.returncode != 0 and b"unsupported compression" in p.stderr:
        pytest.skip("this openssl is built without zlib")
    assert p.returncode == 0, p.stderr
    assert split_mime(p.stdout)[1] == DOC


@pytest.mark.parametrize("outform", ["DER", "SMIME", "PEM"])
@pytest.mark.parametrize("cipher", ["-aes256", "-aes-256-gcm", "-aes128"])
def test_python_opens_what_openssl_signed_and_encrypted(parties, outform, cipher):
    d, sender, recipient = parties
    (d / "doc.bin").write_bytes(DOC)
    run_openssl("cms", "-sign", "-in", d / "doc.bin", "-signer", d / "sender.crt",
                "-inkey", d / "sender.key", "-nodetach", "-binary", "-outform", "DER",
                "-out", d / "signed.der")
    sealed = run_openssl("cms", "-encrypt", "-in", d / "signed.der", "-binary", cipher,
                         "-recip", d / "recipient.crt", "-outform", outform)
    opened = layersec.open(sealed, recipient, sender=sender.certificate)
    assert opened.document == DOC
    assert opened.encrypted is True
    assert opened.signer_subject == sender.certificate.subject
    assert opened.signing_time is not None
    info = layersec.inspect(sealed, recipient, sender.certificate)
    assert info["verified"] is True
    first = [layer["layer"] for layer in info["layers"] if layer["layer"] != "mime"][0]
    assert first == ("authEnvelopedData" if "gcm" in cipher else "envelopedData")


def test_python_opens_openssl_smime_text_entity(parties):
    d, sender, recipient = parties
    (d / "note.txt").write_bytes(b"line one\nline two\n")
    run_openssl("cms", "-sign", "-text", "-in", d / "note.txt", "-signer", d / "sender.crt",
                "-inkey", d / "sender.key", "-outform", "SMIME", "-out", d / "signed.eml")
    sealed = run_openssl("cms", "-encrypt", "-in", d / "signed.eml", "-aes256", "-recip",
                         d / "recipient.crt", "-outform", "SMIME")
    opened = layersec.open(sealed, recipient, sender=sender.certificate)
    assert opened.mime_type == "text/plain"
    assert opened.document.replace(b"\r\n", b"\n") == b"line one\nline two\n"


def test_python_opens_openssl_signed_only(parties):
    d, sender, _ = parties
    (d / "doc.bin").write_bytes(DOC)
    for outform in ("DER", "PEM", "SMIME"):
        signed = run_openssl("cms", "-sign", "-in", d / "doc.bin", "-signer", d / "sender.crt",
                             "-inkey", d / "sender.key", "-nodetach", "-binary",
                             "-outform", outform)
        opened = layersec.open(signed, sender=sender.certificate)
        assert opened.document == DOC and opened.encrypted is False
