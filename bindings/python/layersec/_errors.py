"""The exceptions of layersec and the ``ls_result`` codes of layersec.h they map from.

Every failure the library reports becomes a :class:`LayerSecError` (or a subclass) with the code
(``.code``), its macro name (``.name``, from ``ls_result_name``) and the library's message
(``.message``, from ``ls_last_error_message``). The class follows the code's family, the
hundreds digit (1xx arguments, 2xx cryptography, 3xx certificates, 4xx format, 5xx message
protocol, 6xx transport, 7xx the client's configuration and state, 9xx internal),
with a narrower subclass for the codes a program typically handles on its own. A code this
binding does not know (from a newer library) maps by its family, as the header asks.
"""

from __future__ import annotations

import errno as _errno
import os
import re

# The LS_ERR_* codes of include/layersec.h (append-only there; a test checks this list against
# the header).
LS_ERR_NULL_ARGUMENT = 100
LS_ERR_INVALID_ARGUMENT = 101
LS_ERR_IO = 102
LS_ERR_BAD_PASSWORD = 103
LS_ERR_UNSUPPORTED_KEY = 104
LS_ERR_PIN_INCORRECT = 105
LS_ERR_TOKEN_UNAVAILABLE = 106
LS_ERR_KEY_NOT_FOUND = 107
LS_ERR_DECRYPT_FAILED = 200
LS_ERR_NOT_A_RECIPIENT = 201
LS_ERR_KEY_UNWRAP_FAILED = 202
LS_ERR_BAD_SIGNATURE = 203
LS_ERR_SIGNER_MISMATCH = 204
LS_ERR_UNSIGNED = 205
LS_ERR_DIGEST_MISMATCH = 206
LS_ERR_UNSUPPORTED_ALGORITHM = 207
LS_ERR_WEAK_ALGORITHM = 208
LS_ERR_RECEIPT_MISMATCH = 209
LS_ERR_MECHANISM_UNSUPPORTED = 210
LS_ERR_CERT_EXPIRED = 300
LS_ERR_CERT_NOT_YET_VALID = 301
LS_ERR_CERT_KEY_USAGE = 302
LS_ERR_UNKNOWN_SIGNER = 303
LS_ERR_CERT_UNTRUSTED = 304
LS_ERR_CERT_INVALID = 305
LS_ERR_KEY_CERT_MISMATCH = 306
LS_ERR_CERT_NOT_FOUND = 307
LS_ERR_MALFORMED = 400
LS_ERR_TRUNCATED = 401
LS_ERR_MALFORMED_MIME = 402
LS_ERR_TOO_DEEP = 403
LS_ERR_TOO_LARGE = 404
LS_ERR_DECOMPRESS_FAILED = 405
LS_ERR_EXPANSION_TOO_LARGE = 406
LS_ERR_MUST_UNDERSTAND = 500
LS_ERR_SIGNATURE_REQUIRED = 501
LS_ERR_SIGNATURE_WRAPPING = 502
LS_ERR_UNSIGNED_PART = 503
LS_ERR_INVALID_EBMS = 504
LS_ERR_EBMS_ERROR = 505
LS_ERR_CONNECT_FAILED = 600
LS_ERR_TIMEOUT = 601
LS_ERR_TLS_FAILED = 602
LS_ERR_HTTP_STATUS = 603
LS_ERR_BAD_RESPONSE = 604
LS_ERR_REFUSED = 605
LS_ERR_MAIL_STATUS = 606
LS_ERR_LOGIN_FAILED = 607
LS_ERR_RECEIPT_PENDING = 608
LS_ERR_STATE_CORRUPT = 700
LS_ERR_CONFIG_INVALID = 701
LS_ERR_STATE_LOCKED = 702
LS_ERR_INTERNAL = 900
LS_ERR_PANIC = 901

#: Every LS_ERR_* name of this module and its number.
CODES = {k: v for k, v in dict(globals()).items() if k.startswith("LS_ERR_")}


class LayerSecError(Exception):
    """A failure reported by liblayersec.

    Attributes: ``code`` (the ``ls_result``, e.g. 201), ``name`` (``"LS_ERR_NOT_A_RECIPIENT"``),
    ``message`` (the library's explanation, for humans: branch on the class or the code, not on
    the text), ``function`` (the C function that failed, or None) and ``transient`` (True when
    the same call may succeed later: the service could not be reached, timed out, answered HTTP
    5xx/408/429, a mail server refused for now, a receipt is still pending; from
    ``ls_last_error_is_transient``).
    """

    def __init__(
        self,
        code: int,
        name: str,
        message: str,
        function: str | None = None,
        transient: bool = False,
    ):
        self.code = code
        self.name = name
        self.message = message
        self.function = function
        self.transient = transient
        super().__init__(code, name, message)

    def __str__(self) -> str:
        text = f"{self.name} ({self.code})"
        return f"{text}: {self.message}" if self.message else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.name!r}, {self.message!r})"

    @property
    def family(self) -> str:
        """The code's family, as the error objects of the JSON output name it: ``argument``,
        ``crypto``, ``certificate``, ``format``, ``protocol``, ``transport``, ``store`` or
        ``internal``."""
        return family_of(self.code)


class ArgumentError(LayerSecError):
    """1xx: the caller's arguments, files and passwords."""


class BadPasswordError(ArgumentError):
    """LS_ERR_BAD_PASSWORD: the password does not decrypt the key or PKCS#12 file."""


class FileError(ArgumentError, OSError):
    """LS_ERR_IO: a file cannot be read or written. Also an :class:`OSError`, as Python's own
    file functions raise: ``errno`` and ``strerror`` are the system's error when the library
    names it (else None and the message), ``filename`` the path argument the message names.
    A missing file is a :class:`MissingFileError` (a :class:`FileNotFoundError` too), one the
    process may not open a :class:`FilePermissionError` (a :class:`PermissionError` too)."""

    def __init__(
        self,
        code: int,
        name: str,
        message: str,
        function: str | None = None,
        transient: bool = False,
    ):
        super().__init__(code, name, message, function, transient)
        # OSError's __init__ took (code, name, message) for (errno, strerror, filename).
        self.args = (code, name, message)
        number = _os_errno(message)
        self.errno = number
        self.strerror = os.strerror(number) if number is not None else message
        self.filename = None


class MissingFileError(FileError, FileNotFoundError):
    """LS_ERR_IO for a file that does not exist (ENOENT)."""


class FilePermissionError(FileError, PermissionError):
    """LS_ERR_IO for a file the process may not open (EACCES, EPERM)."""


def _os_errno(message: str) -> int | None:
    """The system error number a library message ends with (``... (os error 2)``), if any."""
    m = re.search(r"\(os error (\d+)\)", message)
    return int(m.group(1)) if m else None


_FILE_ERRORS = {
    _errno.ENOENT: MissingFileError,
    _errno.EACCES: FilePermissionError,
    _errno.EPERM: FilePermissionError,
}


class CryptoError(LayerSecError):
    """2xx: cryptographic failures."""


class DecryptionError(CryptoError):
    """LS_ERR_DECRYPT_FAILED, LS_ERR_KEY_UNWRAP_FAILED: the content or its key does not decrypt
    (tampered, or not really for us)."""


class NotARecipientError(CryptoError):
    """LS_ERR_NOT_A_RECIPIENT: the message is not encrypted for our key."""


class SignatureError(CryptoError):
    """LS_ERR_BAD_SIGNATURE, LS_ERR_DIGEST_MISMATCH: a signature does not verify."""


class SignerMismatchError(CryptoError):
    """LS_ERR_SIGNER_MISMATCH: validly signed, but by someone other than the expected sender."""


class UnsignedError(CryptoError):
    """LS_ERR_UNSIGNED: the message carries no signature (and unsigned ones were not allowed)."""


class UnsupportedAlgorithmError(CryptoError):
    """LS_ERR_UNSUPPORTED_ALGORITHM: an algorithm this library does not implement."""


class WeakAlgorithmError(UnsupportedAlgorithmError):
    """LS_ERR_WEAK_ALGORITHM: an algorithm refused by policy (SHA-1, or legacy ciphers with
    ``reject_legacy``). A subclass of UnsupportedAlgorithmError: either way the message cannot be
    accepted as it is."""


class CertificateError(LayerSecError):
    """3xx: certificates and trust."""


class CertificateExpiredError(CertificateError):
    """LS_ERR_CERT_EXPIRED: a certificate is past its validity period."""


class CertificateNotYetValidError(CertificateError):
    """LS_ERR_CERT_NOT_YET_VALID: a certificate is not valid yet."""


class UnknownSignerError(CertificateError):
    """LS_ERR_UNKNOWN_SIGNER: the signer is neither the expected sender nor a known partner."""


class FormatError(LayerSecError):
    """4xx: malformed or hostile input."""


class TruncatedError(FormatError):
    """LS_ERR_TRUNCATED: the input ends early."""


class TooLargeError(FormatError):
    """LS_ERR_TOO_LARGE: the input or the opened document would exceed its limit
    (``max_output``); LS_ERR_EXPANSION_TOO_LARGE: compressed content expands beyond it (a
    decompression bomb is refused without being expanded in memory)."""


class ProtocolError(LayerSecError):
    """5xx: the message protocol (ebMS3/AS4, SOAP, WS-Security)."""


class TransportError(LayerSecError):
    """6xx: carrying messages: LS_ERR_CONNECT_FAILED, LS_ERR_TIMEOUT, LS_ERR_TLS_FAILED,
    LS_ERR_HTTP_STATUS, LS_ERR_BAD_RESPONSE, LS_ERR_REFUSED, and by e-mail LS_ERR_MAIL_STATUS (a
    mail server's temporary refusal), LS_ERR_LOGIN_FAILED (the mail server refused the user name
    or password), LS_ERR_RECEIPT_PENDING (handed over by e-mail, the service's receipt not come
    yet). Connect failures, timeouts, HTTP 5xx/408/429, mail servers' temporary refusals and
    pending receipts are worth a retry; TLS failures, bad responses, refused logins and refusals
    (a permanent HTTP status such as 413: larger than the service accepts; a mail server's
    permanent refusal such as its size limit) are not."""


class StoreError(LayerSecError):
    """7xx: the client's configuration and local state: LS_ERR_STATE_CORRUPT (a journal file
    cannot be read as written), LS_ERR_CONFIG_INVALID (a missing or bad setting; the message is
    ``<file>: <key>: <what is expected>``), LS_ERR_STATE_LOCKED (another process works on the
    same state; try again later)."""


class InternalError(LayerSecError):
    """9xx: a bug in the library (please report it)."""


class QueuedForRetry(LayerSecError):
    """A send that is not delivered yet but not lost either (``Client.send``/``send_file``).

    The attempt failed for a reason that may pass (the service could not be reached, timed out,
    answered HTTP 5xx...). The message stays in the client's journal (its state folder) and is
    pushed again with the same MessageId by the client daemon of the configuration
    (``layersec run``). ``message_id`` is that MessageId, to track the document; ``code``,
    ``name`` and ``message`` describe the failed attempt, and ``cause`` is the exception it
    would have raised (usually a :class:`TransportError`, e.g. LS_ERR_CONNECT_FAILED).

    Not a subclass of that exception on purpose: a :class:`TransportError` (or any other
    failure) raised by a send means nothing is queued (e.g. HTTP 400: the document was moved to
    ``failed/``), while this means the document will still go.
    """

    def __init__(self, message_id: str, cause: LayerSecError):
        super().__init__(cause.code, cause.name, cause.message, cause.function, cause.transient)
        self.message_id = message_id
        self.cause = cause

    def __repr__(self) -> str:
        return f"QueuedForRetry({self.message_id!r}, {self.cause!r})"


_BY_CODE = {
    LS_ERR_IO: FileError,
    LS_ERR_BAD_PASSWORD: BadPasswordError,
    LS_ERR_DECRYPT_FAILED: DecryptionError,
    LS_ERR_KEY_UNWRAP_FAILED: DecryptionError,
    LS_ERR_NOT_A_RECIPIENT: NotARecipientError,
    LS_ERR_BAD_SIGNATURE: SignatureError,
    LS_ERR_DIGEST_MISMATCH: SignatureError,
    LS_ERR_SIGNER_MISMATCH: SignerMismatchError,
    LS_ERR_UNSIGNED: UnsignedError,
    LS_ERR_UNSUPPORTED_ALGORITHM: UnsupportedAlgorithmError,
    LS_ERR_WEAK_ALGORITHM: WeakAlgorithmError,
    LS_ERR_CERT_EXPIRED: CertificateExpiredError,
    LS_ERR_CERT_NOT_YET_VALID: CertificateNotYetValidError,
    LS_ERR_UNKNOWN_SIGNER: UnknownSignerError,
    LS_ERR_TRUNCATED: TruncatedError,
    LS_ERR_TOO_LARGE: TooLargeError,
    LS_ERR_EXPANSION_TOO_LARGE: TooLargeError,
}

_BY_FAMILY = {
    1: ArgumentError,
    2: CryptoError,
    3: CertificateError,
    4: FormatError,
    5: ProtocolError,
    6: TransportError,
    7: StoreError,
    9: InternalError,
}


def error_class(code: int) -> type[LayerSecError]:
    """The exception class for an ``ls_result`` code (by the code, else by its family)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = _BY_FAMILY.get(code // 100, LayerSecError) if code > 0 else LayerSecError
    return cls


def error_from_code(
    code: int,
    name: str,
    message: str,
    function: str | None = None,
    transient: bool = False,
) -> LayerSecError:
    cls = error_class(code)
    if cls is FileError:
        cls = _FILE_ERRORS.get(_os_errno(message), FileError)
    return cls(code, name, message, function, transient)


_FAMILY_NAMES = {
    1: "argument",
    2: "crypto",
    3: "certificate",
    4: "format",
    5: "protocol",
    6: "transport",
    7: "store",
}


def family_of(code: int) -> str:
    """The family of an ``ls_result`` code (its hundreds digit), as the JSON names it."""
    return _FAMILY_NAMES.get(code // 100, "internal") if code > 0 else "internal"


def error_from_report(report: dict) -> LayerSecError:
    """The exception for an error object of the library's JSON output — ``{"code": 400,
    "name": "LS_ERR_MALFORMED", "family": "format", "message": "…", "transient": false}``, as
    :func:`layersec.inspect` reports it in ``"error"`` (and ``layersec --json``, ``layersec
    status --json`` and the service's admin API print it). Raises ``ValueError`` for anything
    else, such as the earlier form whose ``code`` was the name."""
    if not isinstance(report, dict):
        raise ValueError(f"not an error object: {report!r}")
    code, name, message = report.get("code"), report.get("name"), report.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ValueError(f"not an error object (its code must be a number): {report!r}")
    if not isinstance(name, str) or not isinstance(message, str):
        raise ValueError(f"not an error object (name and message are text): {report!r}")
    return error_from_code(code, name, message, transient=report.get("transient") is True)
