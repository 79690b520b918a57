"""Every LS_ERR_* code of include/layersec.h maps to the right Python exception class and value,
and failures carry the code, its name and the library's message."""

from __future__ import annotations

import errno
import os
import re
import threading

import pytest

import layersec
from layersec import _errors, _lib

# The classification this binding promises, written out independently of the implementation.
EXPECTED = {
    "LS_ERR_NULL_ARGUMENT": layersec.ArgumentError,
    "LS_ERR_INVALID_ARGUMENT": layersec.ArgumentError,
    "LS_ERR_IO": layersec.FileError,
    "LS_ERR_BAD_PASSWORD": layersec.BadPasswordError,
    "LS_ERR_UNSUPPORTED_KEY": layersec.ArgumentError,
    "LS_ERR_PIN_INCORRECT": layersec.ArgumentError,
    "LS_ERR_TOKEN_UNAVAILABLE": layersec.ArgumentError,
    "LS_ERR_KEY_NOT_FOUND": layersec.ArgumentError,
    "LS_ERR_DECRYPT_FAILED": layersec.DecryptionError,
    "LS_ERR_NOT_A_RECIPIENT": layersec.NotARecipientError,
    "LS_ERR_KEY_UNWRAP_FAILED": layersec.DecryptionError,
    "LS_ERR_BAD_SIGNATURE": layersec.SignatureError,
    "LS_ERR_SIGNER_MISMATCH": layersec.SignerMismatchError,
    "LS_ERR_UNSIGNED": layersec.UnsignedError,
    "LS_ERR_DIGEST_MISMATCH": layersec.SignatureError,
    "LS_ERR_UNSUPPORTED_ALGORITHM": layersec.UnsupportedAlgorithmError,
    "LS_ERR_WEAK_ALGORITHM": layersec.WeakAlgorithmError,
    "LS_ERR_RECEIPT_MISMATCH": layersec.CryptoError,
    "LS_ERR_MECHANISM_UNSUPPORTED": layersec.CryptoError,
    "LS_ERR_CERT_EXPIRED": layersec.CertificateExpiredError,
    "LS_ERR_CERT_NOT_YET_VALID": layersec.CertificateNotYetValidError,
    "LS_ERR_CERT_KEY_USAGE": layersec.CertificateError,
    "LS_ERR_UNKNOWN_SIGNER": layersec.UnknownSignerError,
    "LS_ERR_CERT_UNTRUSTED": layersec.CertificateError,
    "LS_ERR_CERT_INVALID": layersec.CertificateError,
    "LS_ERR_KEY_CERT_MISMATCH": layersec.CertificateError,
    "LS_ERR_CERT_NOT_FOUND": layersec.CertificateError,
    "LS_ERR_MALFORMED": layersec.FormatError,
    "LS_ERR_TRUNCATED": layersec.TruncatedError,
    "LS_ERR_MALFORMED_MIME": layersec.FormatError,
    "LS_ERR_TOO_DEEP": layersec.FormatError,
    "LS_ERR_TOO_LARGE": layersec.TooLargeError,
    "LS_ERR_DECOMPRESS_FAILED": layersec.FormatError,
    "LS_ERR_EXPANSION_TOO_LARGE": layersec.TooLargeError,
    "LS_ERR_MUST_UNDERSTAND": layersec.ProtocolError,
    "LS_ERR_SIGNATURE_REQUIRED": layersec.ProtocolError,
    "LS_ERR_SIGNATURE_WRAPPING": layersec.ProtocolError,
    "LS_ERR_UNSIGNED_PART": layersec.ProtocolError,
    "LS_ERR_INVALID_EBMS": layersec.ProtocolError,
    "LS_ERR_EBMS_ERROR": layersec.ProtocolError,
    "LS_ERR_CONNECT_FAILED": layersec.TransportError,
    "LS_ERR_TIMEOUT": layersec.TransportError,
    "LS_ERR_TLS_FAILED": layersec.TransportError,
    "LS_ERR_HTTP_STATUS": layersec.TransportError,
    "LS_ERR_BAD_RESPONSE": layersec.TransportError,
    "LS_ERR_REFUSED": layersec.TransportError,
    "LS_ERR_MAIL_STATUS": layersec.TransportError,
    "LS_ERR_LOGIN_FAILED": layersec.TransportError,
    "LS_ERR_RECEIPT_PENDING": layersec.TransportError,
    "LS_ERR_STATE_CORRUPT": layersec.StoreError,
    "LS_ERR_CONFIG_INVALID": layersec.StoreError,
    "LS_ERR_STATE_LOCKED": layersec.StoreError,
    "LS_ERR_INTERNAL": layersec.InternalError,
    "LS_ERR_PANIC": layersec.InternalError,
}

FAMILY = {
    1: layersec.ArgumentError,
    2: layersec.CryptoError,
    3: layersec.CertificateError,
    4: layersec.FormatError,
    5: layersec.ProtocolError,
    6: layersec.TransportError,
    7: layersec.StoreError,
    9: layersec.InternalError,
}


def header_error_codes(header_text: str) -> dict[str, int]:
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^#define\s+(LS_ERR_\w+)\s+(\d+)\s*$", header_text, flags=re.M)
    }


def test_header_codes_are_all_classified(header_text):
    codes = header_error_codes(header_text)
    assert len(codes) >= 30, "the header parser found too few LS_ERR_* codes"
    # A code added to the header must be classified here (and in _errors) on purpose.
    assert set(codes) == set(EXPECTED)
    assert set(codes) == set(_errors.CODES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_code_maps_to_class_and_value(header_text, name):
    value = header_error_codes(header_text)[name]
    assert getattr(_errors, name) == value
    assert getattr(layersec._errors, name) == value
    cls = _errors.error_class(value)
    assert cls is EXPECTED[name]
    assert issubclass(cls, FAMILY[value // 100])
    assert issubclass(cls, layersec.LayerSecError)
    # The library names the code the same way.
    assert _lib.lib.ls_result_name(value).decode() == name
    err = _errors.error_from_code(value, name, "some message", "ls_x")
    assert isinstance(err, EXPECTED[name])
    assert (err.code, err.name, err.message, err.function) == (value, name, "some message", "ls_x")
    assert name in str(err) and "some message" in str(err)


def test_unknown_codes_map_by_family():
    assert _errors.error_class(299) is layersec.CryptoError
    assert _errors.error_class(150) is layersec.ArgumentError
    assert _errors.error_class(550) is layersec.ProtocolError
    assert _errors.error_class(650) is layersec.TransportError
    assert _errors.error_class(750) is layersec.StoreError
    assert _errors.error_class(999) is layersec.InternalError
    assert _errors.error_class(850) is layersec.LayerSecError
    assert _errors.error_class(-3) is layersec.LayerSecError
    assert _lib.lib.ls_result_name(299).decode() == "LS_UNKNOWN"
    assert _lib.lib.ls_result_name(0).decode() == "LS_OK"


def test_family_classes_follow_the_brief():
    assert issubclass(layersec.BadPasswordError, layersec.ArgumentError)
    for c in (layersec.DecryptionError, layersec.NotARecipientError, layersec.SignatureError,
              layersec.SignerMismatchError, layersec.UnsignedError,
              layersec.UnsupportedAlgorithmError):
        assert issubclass(c, layersec.CryptoError)
    for c in (layersec.CertificateExpiredError, layersec.UnknownSignerError):
        assert issubclass(c, layersec.CertificateError)
    for c in (layersec.TooLargeError, layersec.TruncatedError):
        assert issubclass(c, layersec.FormatError)
    assert issubclass(layersec.LayerSecError, Exception)
    assert layersec.NotARecipientError.__module__ == "layersec"


def test_failure_carries_code_name_message_and_function(tmp_path):
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load(tmp_path / "missing.key")
    e = ei.value
    assert type(e) is layersec.MissingFileError
    assert e.code == _errors.LS_ERR_IO == 102
    assert e.name == "LS_ERR_IO"
    assert "missing.key" in e.message
    assert e.function == "ls_identity_load"
    assert str(e).startswith("LS_ERR_IO (102): ")


def test_a_missing_file_is_a_layersec_error_and_a_file_not_found_error(tmp_path):
    """Python's own file functions raise OSError: so does a file the library cannot read, as a
    LayerSecError of the arguments' family too."""
    missing = tmp_path / "missing.key"
    with pytest.raises(FileNotFoundError) as ei:
        layersec.Identity.load(missing)
    e = ei.value
    assert isinstance(e, layersec.LayerSecError) and isinstance(e, layersec.ArgumentError)
    assert isinstance(e, layersec.FileError) and isinstance(e, OSError)
    assert (e.code, e.name) == (_errors.LS_ERR_IO, "LS_ERR_IO")
    assert e.errno == errno.ENOENT and e.strerror == os.strerror(errno.ENOENT)
    assert e.filename == str(missing)
    assert "missing.key" in str(e)
    try:
        layersec.Certificate.load(tmp_path / "missing.crt")
    except OSError as caught:  # the way a program catches file errors
        assert isinstance(caught, layersec.MissingFileError)
        assert caught.filename == str(tmp_path / "missing.crt")
    else:
        pytest.fail("no error for a missing certificate file")
    # A folder: an OSError with its errno, not a FileNotFoundError.
    with pytest.raises(layersec.FileError) as ei:
        layersec.Identity.load(tmp_path)
    assert ei.value.errno == errno.EISDIR and not isinstance(ei.value, FileNotFoundError)


def test_messages_are_per_thread(alice_ec, bob_ec, carol):
    """ls_last_error_message() is thread-local: concurrent failures keep their own message."""
    sealed = layersec.seal(b"doc", alice_ec, [bob_ec.certificate])
    problems = []

    def garbage():
        for _ in range(200):
            try:
                layersec.open(b"\x30\x03garbage", bob_ec, sender=alice_ec.certificate)
            except layersec.FormatError as e:
                if "addressed" in e.message or not e.message:
                    problems.append(e)
            else:
                problems.append("no error")

    def wrong_recipient():
        for _ in range(200):
            try:
                layersec.open(sealed, carol, sender=alice_ec.certificate)
            except layersec.NotARecipientError as e:
                if "not addressed to us" not in e.message:
                    problems.append(e)
            else:
                problems.append("no error")

    threads = [threading.Thread(target=f) for f in (garbage, wrong_recipient) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
