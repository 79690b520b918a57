"""Every way opening must fail raises its typed exception. Inputs the library would never produce
(unsigned, SHA-1, legacy ciphers, expired signers) come from the openssl CLI."""

from __future__ import annotations

import datetime as dt
import os

import pytest

import layersec
from conftest import import_or_skip, run_openssl, write_identity

DOC = os.urandom(20000)


@pytest.fixture(scope="module")
def sealed(alice_ec, bob_ec):
    return layersec.seal(DOC, alice_ec, [bob_ec.certificate], compress=False)


@pytest.fixture
def files(tmp_path, alice_rsa, bob_rsa):
    """alice/bob key and certificate PEM files plus a small document, for openssl."""
    write_identity(alice_rsa, tmp_path, "alice")
    write_identity(bob_rsa, tmp_path, "bob")
    (tmp_path / "doc.txt").write_bytes(b"made by openssl\n")
    return tmp_path


def test_wrong_recipient(sealed, alice_ec, carol):
    with pytest.raises(layersec.NotARecipientError) as ei:
        layersec.open(sealed, carol, sender=alice_ec.certificate)
    assert ei.value.code == 201 and ei.value.name == "LS_ERR_NOT_A_RECIPIENT"
    assert "CN=bob-ec" in ei.value.message
    with pytest.raises(layersec.NotARecipientError):
        layersec.open(sealed, None, sender=alice_ec.certificate)


def test_signer_mismatch(sealed, bob_ec, carol):
    with pytest.raises(layersec.SignerMismatchError) as ei:
        layersec.open(sealed, bob_ec, sender=carol.certificate)
    assert ei.value.code == 204
    assert isinstance(ei.value, layersec.CryptoError)


def test_unknown_signer(sealed, bob_ec, carol):
    store = layersec.CertStore()
    store.add_partner(carol.certificate, "carol")
    with pytest.raises(layersec.UnknownSignerError) as ei:
        layersec.open(sealed, bob_ec, partners=store)
    assert ei.value.code == 303


def test_no_sender_policy_is_an_argument_error(sealed, bob_ec):
    # A signed message never opens without someone to verify it against (layersec.h: ls_open).
    with pytest.raises(layersec.ArgumentError, match="LS_ERR_INVALID_ARGUMENT"):
        layersec.open(sealed, bob_ec)


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75, -20])
def test_tampered_gcm_is_a_decryption_error(sealed, alice_ec, bob_ec, where):
    pos = int(len(sealed) * where) if where > 0 else len(sealed) + where
    bad = bytearray(sealed)
    bad[pos] ^= 0x01
    with pytest.raises(layersec.DecryptionError) as ei:
        layersec.open(bytes(bad), bob_ec, sender=alice_ec.certificate)
    assert ei.value.code == 200


def test_tampered_cbc_never_opens(alice_ec, bob_ec):
    sealed = layersec.seal(DOC, alice_ec, [bob_ec.certificate], cbc=True, compress=False)
    for where in (0.3, 0.6, 0.9):
        bad = bytearray(sealed)
        bad[int(len(bad) * where)] ^= 0x80
        with pytest.raises(layersec.LayerSecError):
            layersec.open(bytes(bad), bob_ec, sender=alice_ec.certificate)


def test_tampered_signed_data(files, alice_rsa):
    d = files
    signed = run_openssl("cms", "-sign", "-in", d / "doc.txt", "-signer", d / "alice.crt",
                         "-inkey", d / "alice.key", "-nodetach", "-binary", "-outform", "DER")
    assert layersec.open(signed, sender=alice_rsa.certificate).encrypted is False
    content = bytearray(signed)
    content[signed.index(b"made by openssl")] ^= 0x01
    with pytest.raises(layersec.SignatureError) as ei:
        layersec.open(bytes(content), sender=alice_rsa.certificate)
    assert ei.value.name == "LS_ERR_DIGEST_MISMATCH"
    signature = bytearray(signed)
    signature[-1] ^= 0x01  # the last byte of the RSA signature value
    with pytest.raises(layersec.SignatureError) as ei:
        layersec.open(bytes(signature), sender=alice_rsa.certificate)
    assert ei.value.name == "LS_ERR_BAD_SIGNATURE"


def test_truncated(sealed, alice_ec, bob_ec):
    for n in (0, 1, 10, len(sealed) // 2, len(sealed) - 1):
        with pytest.raises(layersec.TruncatedError) as ei:
            layersec.open(sealed[:n], bob_ec, sender=alice_ec.certificate)
        assert ei.value.code == 401


def test_truncated_text_formats(alice_ec, bob_ec):
    for output in ("pem", "smime"):
        text = layersec.seal(DOC, alice_ec, [bob_ec.certificate], output=output)
        with pytest.raises(layersec.FormatError):
            layersec.open(text[: len(text) // 2], bob_ec, sender=alice_ec.certificate)


@pytest.mark.parametrize("garbage", [b"garbage", b"\x30\x80\x00\x00", os.urandom(300),
                                     b"-----BEGIN CMS-----\nnot base64!\n-----END CMS-----\n"])
def test_garbage_is_a_format_error(garbage, alice_ec, bob_ec):
    with pytest.raises(layersec.FormatError):
        layersec.open(garbage, bob_ec, sender=alice_ec.certificate)


def test_plain_mime_is_an_unsigned_document(alice_ec, bob_ec):
    plain = b"Content-Type: text/plain\r\n\r\nhello"
    with pytest.raises(layersec.UnsignedError):
        layersec.open(plain, bob_ec, sender=alice_ec.certificate)
    opened = layersec.open(plain, allow_unsigned=True)
    assert (opened.document, opened.mime_type, opened.encrypted) == (b"hello", "text/plain", False)


def test_deep_nesting_is_refused(alice_ec, bob_ec):
    # Indefinite-length SEQUENCEs nested far deeper than any CMS object.
    hostile = b"\x30\x80" * 100000
    with pytest.raises(layersec.FormatError):
        layersec.open(hostile, bob_ec, sender=alice_ec.certificate)


def test_unsigned_refused_unless_allowed(files, alice_rsa, bob_rsa):
    d = files
    unsigned = run_openssl("cms", "-encrypt", "-in", d / "doc.txt", "-aes256", "-recip",
                           d / "bob.crt", "-keyopt", "rsa_padding_mode:oaep", "-binary", "-outform", "DER")
    with pytest.raises(layersec.UnsignedError) as ei:
        layersec.open(unsigned, bob_rsa, sender=alice_rsa.certificate)
    assert ei.value.code == 205
    opened = layersec.open(unsigned, bob_rsa, allow_unsigned=True)
    assert opened.document == b"made by openssl\n"
    assert opened.signer is None and opened.signer_subject is None
    assert opened.signing_time is None and opened.encrypted is True


def test_kek_recipient(files):
    d = files
    key = bytes(range(32))
    msg = run_openssl("cms", "-encrypt", "-in", d / "doc.txt", "-aes256", "-secretkey", key.hex(),
                      "-secretkeyid", b"our-kek".hex(), "-binary", "-outform", "DER")
    opened = layersec.open(msg, kek=(b"our-kek", key), allow_unsigned=True)
    assert opened.document == b"made by openssl\n"
    with pytest.raises(layersec.DecryptionError) as ei:
        layersec.open(msg, kek=(b"our-kek", bytes(32)), allow_unsigned=True)
    assert ei.value.name == "LS_ERR_KEY_UNWRAP_FAILED"
    with pytest.raises(layersec.NotARecipientError):
        layersec.open(msg, kek=(b"other", key), allow_unsigned=True)
    with pytest.raises(TypeError):
        layersec.open(msg, kek=b"just a key", allow_unsigned=True)


def test_sha1_signature_is_weak_unless_allowed(files, alice_rsa):
    d = files
    signed = run_openssl("cms", "-sign", "-in", d / "doc.txt", "-signer", d / "alice.crt",
                         "-inkey", d / "alice.key", "-md", "sha1", "-nodetach", "-binary", "-outform", "DER")
    with pytest.raises(layersec.WeakAlgorithmError) as ei:
        layersec.open(signed, sender=alice_rsa.certificate)
    assert isinstance(ei.value, layersec.UnsupportedAlgorithmError)
    assert ei.value.code == 208
    assert layersec.open(signed, sender=alice_rsa.certificate, allow_sha1=True).document.endswith(
        b"made by openssl\n")


@pytest.mark.parametrize("cipher, keyopt", [("-des3", ["-keyopt", "rsa_padding_mode:oaep"]),
                                            ("-aes256", [])])  # RSA PKCS#1 v1.5 transport
def test_legacy_accepted_unless_rejected(files, alice_rsa, bob_rsa, cipher, keyopt):
    d = files
    signed = run_openssl("cms", "-sign", "-in", d / "doc.txt", "-signer", d / "alice.crt",
                         "-inkey", d / "alice.key", "-nodetach", "-binary", "-outform", "DER")
    (d / "signed.der").write_bytes(signed)
    msg = run_openssl("cms", "-encrypt", "-in", d / "signed.der", "-binary", cipher, "-recip",
                      d / "bob.crt", *keyopt, "-outform", "DER")
    opened = layersec.open(msg, bob_rsa, sender=alice_rsa.certificate)
    assert opened.document == b"made by openssl\n" and opened.encrypted
    with pytest.raises(layersec.WeakAlgorithmError):
        layersec.open(msg, bob_rsa, sender=alice_rsa.certificate, reject_legacy=True)


def _self_signed(tmp_path, name, not_before, not_after):
    """A key and self-signed certificate with the given validity (made with `cryptography`)."""
    x509 = import_or_skip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    kp, cp = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


@pytest.mark.parametrize(
    "years, exc",
    [((2000, 2001), layersec.CertificateExpiredError),
     ((2090, 2091), layersec.CertificateNotYetValidError)],
)
def test_signer_outside_validity(tmp_path, bob_rsa, files, years, exc):
    utc = dt.timezone.utc
    kp, cp = _self_signed(tmp_path, "outside", dt.datetime(years[0], 1, 1, tzinfo=utc),
                          dt.datetime(years[1], 1, 1, tzinfo=utc))
    cert = layersec.Certificate.load(cp)
    # Our library refuses to sign with it, or to encrypt to it...
    with layersec.Identity.load(kp, cp) as ident:
        with pytest.raises(exc):
            layersec.seal(b"x", ident, [bob_rsa.certificate])
    with pytest.raises(exc):
        layersec.seal(b"x", bob_rsa, [cert])
    # ...and openssl signs anyway: opening refuses it unless allowed.
    signed = run_openssl("cms", "-sign", "-in", files / "doc.txt", "-signer", cp, "-inkey", kp,
                         "-nodetach", "-binary", "-outform", "DER")
    with pytest.raises(exc):
        layersec.open(signed, sender=cert)
    opened = layersec.open(signed, sender=cert, allow_expired=True)
    assert opened.signer_subject == "CN=outside"
