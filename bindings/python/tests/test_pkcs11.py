"""Identities whose key stays on a PKCS#11 token (Identity.load_pkcs11), with SoftHSM2: seal and
open with the key on the token on either side, and each failure's code (wrong PIN, missing
module, unknown key)."""

from __future__ import annotations

import pytest

import layersec

LS_ERR_PIN_INCORRECT = 105
LS_ERR_TOKEN_UNAVAILABLE = 106
LS_ERR_KEY_NOT_FOUND = 107

MISSING_MODULE = "/nonexistent/layersec-tests/pkcs11-module.so"


def _load(token, **kw):
    args = dict(module=token.module, pin=token.pin, certificate=token.cert)
    args.update(kw)
    return layersec.Identity.load_pkcs11(token.uri, **args)


def test_a_token_identity_opens_what_a_file_identity_sealed_for_it(softhsm_token, alice_ec):
    with _load(softhsm_token) as tok:
        assert tok.on_token
        assert not alice_ec.on_token
        assert tok.certificate.subject == "CN=token-party"
        doc = b"<Invoice>for the key on the token</Invoice>" * 50
        sealed = layersec.seal(doc, alice_ec, [tok.certificate], filename="inv.xml")
        # ECDH with the key on the token.
        opened = layersec.open(sealed, tok, sender=alice_ec.certificate)
        assert opened.document == doc
        assert opened.encrypted
        assert opened.signer_subject == alice_ec.certificate.subject
        # Only the token's key opens it: a file identity is not a recipient.
        with pytest.raises(layersec.NotARecipientError):
            layersec.open(sealed, alice_ec, sender=alice_ec.certificate)


def test_a_token_identity_signs_what_a_file_identity_opens(softhsm_token, bob_ec, bob_rsa):
    with _load(softhsm_token) as tok:
        doc = b"signed on the token"
        # ECDSA on the token, to an EC and an RSA recipient.
        sealed = layersec.seal(doc, tok, [bob_ec.certificate, bob_rsa.certificate])
        for bob in (bob_ec, bob_rsa):
            opened = layersec.open(sealed, bob, sender=tok.certificate)
            assert opened.document == doc
            assert opened.signer_subject == "CN=token-party"
            assert opened.signer.to_pem() == tok.certificate.to_pem()
        # The signature is the token key's: another sender's certificate does not match.
        with pytest.raises(layersec.SignerMismatchError):
            layersec.open(sealed, bob_ec, sender=bob_rsa.certificate)


def test_the_certificate_object_on_the_token_and_a_pin_as_bytes(softhsm_token, alice_ec):
    # No certificate file: the certificate object beside the key on the token.
    with _load(softhsm_token, certificate=None, pin=softhsm_token.pin.encode()) as tok:
        assert tok.on_token
        assert tok.certificate.to_pem() == softhsm_token.cert.read_bytes()
        # Signed and opened on the token (ECDSA, then ECDH).
        sealed = layersec.seal(b"x", tok, [tok.certificate, alice_ec.certificate])
        assert layersec.open(sealed, tok, sender=tok.certificate).document == b"x"
        assert layersec.open(sealed, alice_ec, sender=tok.certificate).document == b"x"


def test_a_wrong_pin_is_pin_incorrect_and_not_transient(softhsm_token):
    with pytest.raises(layersec.ArgumentError) as ei:
        _load(softhsm_token, pin="0000-wrong")
    e = ei.value
    assert e.code == LS_ERR_PIN_INCORRECT
    assert e.name == "LS_ERR_PIN_INCORRECT"
    assert not e.transient
    assert "0000-wrong" not in e.message
    assert e.function == "ls_identity_load_pkcs11"
    # The right PIN still works afterwards.
    with _load(softhsm_token) as tok:
        assert tok.on_token


def test_an_unknown_key_is_key_not_found(softhsm_token):
    uri = softhsm_token.uri.replace("object=token-party", "object=nobody-here")
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load_pkcs11(uri, softhsm_token.module, softhsm_token.pin)
    assert ei.value.code == LS_ERR_KEY_NOT_FOUND
    assert ei.value.name == "LS_ERR_KEY_NOT_FOUND"
    assert not ei.value.transient


def test_a_missing_module_is_token_unavailable_and_transient():
    # No token needed: the module cannot even be loaded.
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load_pkcs11(
            "pkcs11:token=none;object=key", module=MISSING_MODULE, pin="1234"
        )
    assert ei.value.code == LS_ERR_TOKEN_UNAVAILABLE
    assert ei.value.name == "LS_ERR_TOKEN_UNAVAILABLE"
    assert ei.value.transient is True
    # The module given wins over a module-path in the URI.
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load_pkcs11(
            "pkcs11:token=none;object=key?module-path=/usr/lib/x.so", MISSING_MODULE, "1234"
        )
    assert ei.value.code == LS_ERR_TOKEN_UNAVAILABLE


def test_arguments_are_checked_before_the_token():
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load_pkcs11("pkcs11:token=t;object=k;pin-value=1234", MISSING_MODULE)
    assert ei.value.code == 101  # LS_ERR_INVALID_ARGUMENT
    assert "1234" not in ei.value.message
    with pytest.raises(TypeError):
        layersec.Identity.load_pkcs11(b"pkcs11:token=t;object=k", MISSING_MODULE)  # type: ignore
    with pytest.raises(TypeError):
        layersec.Identity.load_pkcs11("pkcs11:token=t;object=k", MISSING_MODULE, pin=1234)  # type: ignore
    with pytest.raises(ValueError):
        layersec.Identity.load_pkcs11("pkcs11:token=t;object=k", MISSING_MODULE, pin="12\x0034")
