"""Round trips through seal and open, their options, and inspect."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone

import pytest

import layersec

DOC = b"<invoice><amount>42.00</amount></invoice>\n" * 50  # compressible
RANDOMISH = os.urandom(4000)  # does not compress


def layer_names(info: dict) -> list[str]:
    return [layer["layer"] for layer in info["layers"]]


@pytest.mark.parametrize("output", ["der", "smime", "pem"])
def test_round_trip(pair, output):
    sender, recipient = pair
    sealed = layersec.seal(DOC, sender, [recipient.certificate], filename="invoice.xml",
                           output=output)
    if output == "der":
        assert sealed[:1] == b"\x30"
    elif output == "pem":
        assert sealed.startswith(b"-----BEGIN CMS-----")
    else:
        assert b"application/pkcs7-mime" in sealed.split(b"\r\n\r\n", 1)[0]
    opened = layersec.open(sealed, recipient, sender=sender.certificate)
    assert isinstance(opened, layersec.Opened)
    assert opened.document == DOC
    assert opened.filename == "invoice.xml"
    assert opened.safe_filename == "invoice.xml"
    assert opened.mime_type == "application/xml"
    assert opened.encrypted is True
    assert opened.signer_subject == sender.certificate.subject
    assert isinstance(opened.signer, layersec.Certificate)
    assert opened.signer.to_pem() == sender.certificate.to_pem()
    now = datetime.now(timezone.utc)
    assert opened.signing_time.tzinfo is not None
    assert opened.signing_time.utcoffset() == timedelta(0)
    assert abs(opened.signing_time - now) < timedelta(minutes=5)


def test_opened_is_frozen(alice_ec, bob_ec):
    opened = layersec.open(layersec.seal(b"x", alice_ec, [bob_ec.certificate]), bob_ec,
                           sender=alice_ec.certificate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opened.document = b"y"


def test_signer_outlives_the_opened_handle(alice_rsa, bob_rsa):
    opened = layersec.open(layersec.seal(b"x", alice_rsa, [bob_rsa.certificate]), bob_rsa,
                           sender=alice_rsa.certificate)
    # ls_opened (and the borrowed signer) is freed by now: the copy is ours.
    signer = opened.signer
    assert signer.subject == "CN=alice"
    assert b"BEGIN CERTIFICATE" in signer.to_pem()
    # It works as a sender certificate for the next message.
    again = layersec.open(layersec.seal(b"y", alice_rsa, [bob_rsa.certificate]), bob_rsa,
                          sender=signer)
    assert again.document == b"y"
    signer.close()


@pytest.mark.parametrize("cbc", [False, True])
def test_cipher(pair, cbc):
    sender, recipient = pair
    sealed = layersec.seal(DOC, sender, [recipient.certificate], cbc=cbc)
    info = layersec.inspect(sealed)
    assert layer_names(info)[0] == ("envelopedData" if cbc else "authEnvelopedData")
    assert ("CBC" if cbc else "GCM") in info["layers"][0]["content_encryption"].upper()
    assert layersec.open(sealed, recipient, sender=sender.certificate).document == DOC


@pytest.mark.parametrize("pss", [False, True])
def test_rsa_signature_scheme(alice_rsa, bob_rsa, pss):
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], pss=pss)
    info = layersec.inspect(sealed, bob_rsa, alice_rsa.certificate)
    signed = [layer for layer in info["layers"] if layer["layer"] == "signedData"][0]
    alg = signed["signers"][0]["signature"].lower()
    assert ("pss" in alg) == pss, alg
    assert info["verified"] is True
    assert layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate).document == DOC


def test_ec_signs_with_ecdsa_and_refuses_pss(alice_ec, bob_ec):
    sealed = layersec.seal(DOC, alice_ec, [bob_ec.certificate])
    info = layersec.inspect(sealed, bob_ec, alice_ec.certificate)
    signed = [layer for layer in info["layers"] if layer["layer"] == "signedData"][0]
    assert "ecdsa" in signed["signers"][0]["signature"].lower()
    # layersec.h says of LS_SEAL_PSS "(RSA keys; EC keys always use ECDSA)"; the library
    # refuses the flag with an EC key rather than ignoring it.
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.seal(DOC, alice_ec, [bob_ec.certificate], pss=True)
    assert "EC" in ei.value.message


@pytest.mark.parametrize(
    "compress, data, expect",
    [
        (True, DOC, True),
        (True, RANDOMISH, True),
        (False, DOC, False),
        (None, DOC, True),  # auto: compresses what shrinks...
        (None, RANDOMISH, False),  # ...and leaves alone what does not
    ],
)
def test_compression(pair, compress, data, expect):
    sender, recipient = pair
    sealed = layersec.seal(data, sender, [recipient.certificate], compress=compress)
    names = layer_names(layersec.inspect(sealed, recipient, sender.certificate))
    assert ("compressedData" in names) == expect, names
    assert layersec.open(sealed, recipient, sender=sender.certificate).document == data


def test_compression_level(alice_ec, bob_ec):
    for level in (1, 9):
        sealed = layersec.seal(DOC, alice_ec, [bob_ec.certificate], compress=True,
                               compression_level=level)
        assert layersec.open(sealed, bob_ec, sender=alice_ec.certificate).document == DOC
    for bad in (0, 10):
        with pytest.raises(ValueError):
            layersec.seal(DOC, alice_ec, [bob_ec.certificate], compression_level=bad)


def test_encrypt_to_self(alice_ec, bob_ec):
    plain = layersec.seal(b"archive me", alice_ec, [bob_ec.certificate])
    with pytest.raises(layersec.NotARecipientError):
        layersec.open(plain, alice_ec, sender=alice_ec.certificate)
    both = layersec.seal(b"archive me", alice_ec, [bob_ec.certificate], encrypt_to_self=True)
    assert layersec.open(both, alice_ec, sender=alice_ec.certificate).document == b"archive me"
    assert layersec.open(both, bob_ec, sender=alice_ec.certificate).document == b"archive me"
    only_self = layersec.seal(b"note", alice_ec, [], encrypt_to_self=True)
    assert layersec.open(only_self, alice_ec, sender=alice_ec.certificate).document == b"note"


def test_no_recipient_at_all_is_an_argument_error(alice_ec):
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.seal(b"x", alice_ec, [])
    assert ei.value.code == 101


def test_several_recipients_mixed_key_types(alice_rsa, bob_rsa, bob_ec, carol):
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate, bob_ec.certificate])
    for r in (bob_rsa, bob_ec):
        assert layersec.open(sealed, r, sender=alice_rsa.certificate).document == DOC
    with pytest.raises(layersec.NotARecipientError):
        layersec.open(sealed, carol, sender=alice_rsa.certificate)
    # A single Certificate is accepted as the recipients argument too.
    single = layersec.seal(b"one", alice_rsa, bob_ec.certificate)
    assert layersec.open(single, bob_ec, sender=alice_rsa.certificate).document == b"one"


def test_filename_mime_type_and_safe_filename(alice_ec, bob_ec):
    sealed = layersec.seal(b"%PDF-1.4", alice_ec, [bob_ec.certificate],
                           filename="../../etc/report.pdf", mime_type="application/x-custom")
    opened = layersec.open(sealed, bob_ec, sender=alice_ec.certificate)
    assert opened.filename == "../../etc/report.pdf"
    assert opened.safe_filename == "report.pdf"
    assert opened.mime_type == "application/x-custom"
    bare = layersec.open(layersec.seal(b"x", alice_ec, [bob_ec.certificate]), bob_ec,
                         sender=alice_ec.certificate)
    assert bare.filename is None and bare.safe_filename is None
    assert bare.mime_type == "application/octet-stream"
    guessed = layersec.open(layersec.seal(b"a,b", alice_ec, [bob_ec.certificate],
                                          filename="t.csv"), bob_ec, sender=alice_ec.certificate)
    assert guessed.mime_type.startswith("text/csv")


def test_header_injection_is_refused(alice_ec, bob_ec):
    with pytest.raises(layersec.ArgumentError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], mime_type="text/plain\r\nX-Evil: 1")
    with pytest.raises(layersec.ArgumentError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], filename='a"\r\nb.txt')
    with pytest.raises(ValueError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], filename="a\0b")


def test_signing_time(alice_ec, bob_ec):
    when = (datetime.now(timezone.utc) + timedelta(hours=3)).replace(microsecond=0)
    sealed = layersec.seal(b"x", alice_ec, [bob_ec.certificate], signing_time=when)
    assert layersec.open(sealed, bob_ec, sender=alice_ec.certificate).signing_time == when
    as_int = layersec.seal(b"x", alice_ec, [bob_ec.certificate],
                           signing_time=int(when.timestamp()))
    assert layersec.open(as_int, bob_ec, sender=alice_ec.certificate).signing_time == when
    with pytest.raises(ValueError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], signing_time=datetime(2030, 1, 1))
    # A signing time before the certificate was valid: seal refuses to state it.
    with pytest.raises(layersec.CertificateNotYetValidError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate],
                      signing_time=datetime(2001, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValueError):  # 0 would mean "now" to the library
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], signing_time=0)


def test_empty_and_buffer_documents(alice_ec, bob_ec):
    for doc in (b"", bytearray(b"bytearray doc"), memoryview(b"memoryview doc")):
        sealed = layersec.seal(doc, alice_ec, [bob_ec.certificate])
        opened = layersec.open(memoryview(sealed), bob_ec, sender=alice_ec.certificate)
        assert opened.document == bytes(doc)
    with pytest.raises(TypeError):
        layersec.seal("text is not bytes", alice_ec, [bob_ec.certificate])


def test_binary_document_with_every_byte(alice_rsa, bob_rsa):
    doc = bytes(range(256)) * 64 + b"\r\n.\r\n\x00"
    for output in ("der", "smime", "pem"):
        sealed = layersec.seal(doc, alice_rsa, [bob_rsa.certificate], output=output)
        assert layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate).document == doc


def test_partners_store(alice_rsa, alice_ec, bob_ec, carol):
    store = layersec.CertStore()
    store.add_partner(alice_rsa.certificate, "alice")
    store.add_partner(alice_ec.certificate)
    for s in (alice_rsa, alice_ec):
        sealed = layersec.seal(DOC, s, [bob_ec.certificate])
        opened = layersec.open(sealed, bob_ec, partners=store)
        assert opened.signer_subject == s.certificate.subject
    with pytest.raises(layersec.UnknownSignerError):
        layersec.open(layersec.seal(DOC, carol, [bob_ec.certificate]), bob_ec, partners=store)


def test_max_output(alice_ec, bob_ec):
    sealed = layersec.seal(DOC, alice_ec, [bob_ec.certificate])
    with pytest.raises(layersec.TooLargeError) as ei:
        layersec.open(sealed, bob_ec, sender=alice_ec.certificate, max_output=100)
    assert ei.value.code == 404
    assert layersec.open(sealed, bob_ec, sender=alice_ec.certificate,
                         max_output=len(DOC) + 4096).document == DOC
    with pytest.raises(ValueError):
        layersec.open(sealed, bob_ec, sender=alice_ec.certificate, max_output=0)


def test_bad_option_values(alice_ec, bob_ec):
    with pytest.raises(ValueError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], output="xml")
    with pytest.raises(TypeError):
        layersec.seal(b"x", alice_ec, [bob_ec.certificate], compress="yes")
    with pytest.raises(TypeError):
        layersec.seal(b"x", alice_ec, [bob_ec])  # an Identity is not a Certificate
    with pytest.raises(TypeError):
        layersec.seal(b"x", alice_ec.certificate, [bob_ec.certificate])
    with pytest.raises(TypeError):
        layersec.open(b"x", bob_ec, sender=alice_ec)


def test_inspect_layers(alice_rsa, bob_rsa):
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], filename="a.xml")
    outside = layersec.inspect(sealed)
    assert layer_names(outside) == ["authEnvelopedData"]
    assert outside["complete"] is False and outside["error"] is None
    recipients = outside["layers"][0]["recipients"]
    assert len(recipients) == 1 and "CN=bob" in recipients[0]["id"]

    inside = layersec.inspect(sealed, recipient=bob_rsa, sender=alice_rsa.certificate)
    names = layer_names(inside)
    assert names[0] == "authEnvelopedData" and names[-1] == "document"
    assert "signedData" in names and "compressedData" in names
    assert inside["verified"] is True and inside["complete"] is True
    assert inside["encrypted"] is True and inside["signed"] is True
    assert inside["error"] is None
    assert inside["layers"][-1]["filename"] == "a.xml"
    assert inside["layers"][-1]["size"] == len(DOC)


def test_inspect_reports_problems_in_error_member():
    info = layersec.inspect(b"this is not CMS")
    assert info["complete"] is False
    assert info["error"]["code"] == 400
    assert info["error"]["name"] == "LS_ERR_MALFORMED"
    assert layersec.inspect(b"")["error"]["name"] == "LS_ERR_TRUNCATED"


def test_inspect_errors_are_the_one_error_object():
    err = layersec.inspect(b"this is not CMS")["error"]
    assert set(err) == {"code", "name", "family", "message", "transient"}
    assert err["family"] == "format" and err["transient"] is False
    exc = layersec.error_from_report(err)
    assert isinstance(exc, layersec.FormatError)
    assert (exc.code, exc.name, exc.family) == (400, "LS_ERR_MALFORMED", "format")
    assert exc.message == err["message"]
    truncated = layersec.error_from_report(layersec.inspect(b"")["error"])
    assert isinstance(truncated, layersec.TruncatedError)


def test_inspect_verification_error_is_the_error_object(alice_rsa, bob_rsa, alice_ec):
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate])
    info = layersec.inspect(sealed, recipient=bob_rsa, sender=alice_ec.certificate)
    assert info["verified"] is False
    signed = [layer for layer in info["layers"] if layer["layer"] == "signedData"][0]
    exc = layersec.error_from_report(signed["verification_error"])
    assert isinstance(exc, layersec.SignerMismatchError)
    assert exc.family == "crypto"


def test_error_from_report_refuses_what_is_not_an_error_object():
    for bad in (None, "LS_ERR_IO", {"code": "LS_ERR_IO", "name": "LS_ERR_IO", "message": "m"},
                {"code": True, "name": "x", "message": "m"}, {"code": 102, "message": "m"}):
        with pytest.raises(ValueError):
            layersec.error_from_report(bad)


def test_opened_repr_hides_the_document(alice_ec, bob_ec):
    opened = layersec.open(layersec.seal(b"secret payload", alice_ec, [bob_ec.certificate]),
                           bob_ec, sender=alice_ec.certificate)
    r = repr(opened)
    assert "secret payload" not in r and "<14 bytes>" in r and "CN=alice-ec" in r


def test_profiles(alice_rsa, bob_rsa, alice_ec, bob_ec):
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], profile="legacy-as2")
    info = layersec.inspect(sealed, bob_rsa, alice_rsa.certificate)
    names = layer_names(info)
    assert names[0] == "envelopedData" and "multipart/signed" in names, names
    assert info["layers"][0]["content_encryption"] == "aes256-CBC"
    assert info["layers"][0]["recipients"][0]["algorithm"] == "rsaEncryption"
    assert info["verified"] is True
    for profile in (None, "legacy-as2"):
        opened = layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate, profile=profile)
        assert opened.document == DOC
    for kw in ({"profile": "modern"}, {"profile": "legacy-as2", "reject_legacy": True}):
        with pytest.raises(layersec.WeakAlgorithmError):
            layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate, **kw)
    # Single settings: OAEP-SHA-1 and multipart/signed over the modern defaults.
    sealed = layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], key_transport="rsa-oaep-sha1",
                           multipart_signed=True)
    info = layersec.inspect(sealed, bob_rsa, alice_rsa.certificate)
    assert info["layers"][0]["layer"] == "authEnvelopedData"
    assert info["layers"][0]["recipients"][0]["algorithm"] == "id-RSAES-OAEP"
    assert "multipart/signed" in layer_names(info)
    # legacy-as2 needs RSA keys, ours and the recipients'.
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.seal(DOC, alice_ec, [bob_rsa.certificate], profile="legacy-as2")
    assert "legacy-as2 needs an RSA identity (this one is EC P-256)" in ei.value.message
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.seal(DOC, alice_rsa, [bob_ec.certificate], profile="legacy-as2")
    assert "legacy-as2 needs an RSA certificate" in ei.value.message
    with pytest.raises(ValueError):
        layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], profile="as2")
    with pytest.raises(ValueError):
        layersec.seal(DOC, alice_rsa, [bob_rsa.certificate], key_transport="rsa")
    with pytest.raises(ValueError):
        layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate, profile="old")
