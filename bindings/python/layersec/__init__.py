"""Layer Security for Python: seal documents as S/MIME (CMS) for their recipients, and open what
partners sealed for you with proof of who sent them.

A thin ctypes binding of liblayersec (include/layersec.h)::

    import layersec

    with layersec.Identity.generate("alice", "ec") as alice, \\
         layersec.Identity.generate("bob", "ec") as bob:
        sealed = layersec.seal(b"<invoice/>", alice, [bob.certificate], filename="inv.xml")
        opened = layersec.open(sealed, bob, sender=alice.certificate)
        assert opened.document == b"<invoice/>"

Handles (:class:`Identity`, :class:`Certificate`, :class:`CertStore`) free their C object on
``close()``, at the end of a ``with`` block, or when garbage collected. Closing twice is
harmless; using a closed handle raises :class:`ClosedError`. Closing a handle that another
thread is using right now is safe too: the C object is freed when that call returns.

Identities, certificates and filled certificate stores may be shared by any number of threads
(the library releases the GIL while it works). ``CertStore.add_*`` waits until no other thread
is using the store.

A :class:`Client` sends documents to partners through a Layer Security Messaging Service and
fetches what partners sent, as a ``layersec`` configuration file describes it::

    with layersec.Client("alice/layersec.toml") as client:
        message_id = client.send(b"<invoice/>", "invoice.xml", to="bob")
        for doc in client.poll():
            print(doc.path, doc.sender, doc.size)

Failures raise :class:`LayerSecError` subclasses by the library's result code; see
:mod:`layersec._errors`. ``open`` and ``inspect`` are not in ``__all__`` (they would shadow the
builtins of a ``from layersec import *``): call them as ``layersec.open``/``layersec.inspect``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import os
import threading
from ctypes import POINTER, byref, c_int32, c_size_t, c_uint8, c_uint64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional, Sequence, Union

from . import _lib
from ._errors import (
    ArgumentError,
    BadPasswordError,
    CertificateError,
    CertificateExpiredError,
    CertificateNotYetValidError,
    CryptoError,
    DecryptionError,
    FileError,
    FilePermissionError,
    FormatError,
    InternalError,
    LayerSecError,
    MissingFileError,
    NotARecipientError,
    ProtocolError,
    QueuedForRetry,
    StoreError,
    TransportError,
    SignatureError,
    SignerMismatchError,
    TooLargeError,
    TruncatedError,
    UnknownSignerError,
    UnsignedError,
    UnsupportedAlgorithmError,
    WeakAlgorithmError,
    error_from_report,
)
from ._lib import lib

__all__ = [
    "__version__",
    "version",
    "Identity",
    "Certificate",
    "CertStore",
    "Opened",
    "seal",
    "seal_file",
    "seal_stream",
    "open_file",
    "open_stream",
    "Client",
    "Received",
    "ClosedError",
    "QueuedForRetry",
    "LayerSecError",
    "ArgumentError",
    "BadPasswordError",
    "FileError",
    "MissingFileError",
    "FilePermissionError",
    "CryptoError",
    "DecryptionError",
    "NotARecipientError",
    "SignatureError",
    "SignerMismatchError",
    "UnsignedError",
    "UnsupportedAlgorithmError",
    "WeakAlgorithmError",
    "CertificateError",
    "CertificateExpiredError",
    "CertificateNotYetValidError",
    "UnknownSignerError",
    "FormatError",
    "TooLargeError",
    "TruncatedError",
    "ProtocolError",
    "TransportError",
    "StoreError",
    "InternalError",
    "error_from_report",
]

# The exceptions show as layersec.X in tracebacks.
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and issubclass(_obj, LayerSecError):
        _obj.__module__ = __name__
del _name, _obj

BytesLike = Union[bytes, bytearray, memoryview]
StrOrBytes = Union[str, bytes]
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def version() -> str:
    """The version of the loaded liblayersec (``ls_version()``), e.g. ``"0.1.0"``."""
    return _lib.version()


__version__ = version()


class ClosedError(ValueError):
    """A handle (Identity, Certificate, CertStore) was used after ``close()``."""


# --- helpers ----------------------------------------------------------------------------------


def _bytes(value: BytesLike, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def _cstr(value: Optional[StrOrBytes], what: str) -> Optional[bytes]:
    """A NUL-terminated UTF-8 string argument (None stays NULL)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def _path(value: PathLike, what: str) -> bytes:
    try:
        raw = os.fsencode(value)
    except TypeError:
        raise TypeError(f"{what} must be a path, not {type(value).__name__}") from None
    return _cstr(raw, what)  # type: ignore[return-value]


def _text(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else raw.decode("utf-8", "replace")


def _take_bytes(func, *args) -> bytes:
    """Calls ``func(*args, &out)`` for an ls_bytes out-parameter; copies and frees it at once."""
    out = _lib.ls_bytes()
    try:
        func(*args, byref(out))
        return ctypes.string_at(out.data, out.len) if out.data and out.len else b""
    finally:
        lib.ls_bytes_free(byref(out))


# --- handles ----------------------------------------------------------------------------------


class _Handle:
    """Owns one C handle: frees it exactly once, never while a call uses it."""

    _FREE = ""  # name of the ls_*_free function

    def __init__(self) -> None:  # pragma: no cover - subclasses construct through _adopt
        raise TypeError(f"use the classmethods of {type(self).__name__} to create one")

    @classmethod
    def _adopt(cls, ptr):
        self = cls.__new__(cls)
        self._setup(ptr)
        return self

    def _setup(self, ptr) -> None:
        if not ptr:
            raise InternalError(900, "LS_ERR_INTERNAL", "the library returned a NULL handle")
        self._ptr = ptr
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._closing = False

    def _closed_error(self) -> ClosedError:
        return ClosedError(f"this {type(self).__name__} is closed")

    @contextlib.contextmanager
    def _use(self) -> Iterator:
        """Borrows the pointer for one C call (shared: any number of threads at once)."""
        with self._cond:
            if self._ptr is None or self._closing:
                raise self._closed_error()
            self._users += 1
            ptr = self._ptr
        try:
            yield ptr
        finally:
            doomed = None
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    if self._closing:
                        doomed, self._ptr, self._closing = self._ptr, None, False
                    self._cond.notify_all()
            if doomed is not None:
                getattr(lib, self._FREE)(doomed)

    @contextlib.contextmanager
    def _use_exclusive(self) -> Iterator:
        """Borrows the pointer for a call that needs it alone (waits for the other users)."""
        with self._cond:
            while self._users and not self._closing and self._ptr is not None:
                self._cond.wait()
            if self._ptr is None or self._closing:
                raise self._closed_error()
            # Holding the lock keeps new users (and close) waiting until we are done.
            yield self._ptr

    @property
    def closed(self) -> bool:
        cond = getattr(self, "_cond", None)
        if cond is None:
            return True
        with cond:
            return self._ptr is None or self._closing

    def close(self) -> None:
        """Frees the C object (at once, or when the calls using it right now return).
        Closing again does nothing."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            ptr = self._ptr
            if ptr is None or self._closing:
                return
            if self._users:
                self._closing = True
                return
            self._ptr = None
        getattr(lib, self._FREE)(ptr)

    def __enter__(self):
        if self.closed:
            raise self._closed_error()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # No thread can be using the handle any more (users hold a reference). At interpreter
        # shutdown the module may already be torn down: then leave the memory to the OS.
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            try:
                self._ptr = None
                getattr(lib, self._FREE)(ptr)
            except Exception:  # pragma: no cover
                pass

    # Handles are immutable (or shared on purpose): a copy is the same object. Pickling would
    # need the key material, which the ABI does not hand out.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")


class Certificate(_Handle):
    """An X.509 certificate (``ls_cert``): a partner's, a trust anchor or our own. Immutable."""

    _FREE = "ls_cert_free"

    @classmethod
    def load(cls, path: PathLike) -> "Certificate":
        """Loads a PEM (first certificate) or DER file."""
        out = POINTER(_lib.ls_cert)()
        lib.ls_cert_load(_path(path, "path"), byref(out))
        return cls._adopt(out)

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "Certificate":
        """A certificate from PEM or DER bytes."""
        data = _bytes(data, "data")
        out = POINTER(_lib.ls_cert)()
        lib.ls_cert_from_memory(data, len(data), byref(out))
        return cls._adopt(out)

    @property
    def subject(self) -> str:
        """The subject name, e.g. ``"CN=acme, O=ACME Corp"``."""
        with self._use() as p:
            return _text(lib.ls_cert_subject(p)) or ""

    def to_pem(self) -> bytes:
        """The certificate as PEM text (bytes)."""
        with self._use() as p:
            return _take_bytes(lib.ls_cert_to_pem, p)

    def __repr__(self) -> str:
        if self.closed:
            return "<layersec.Certificate (closed)>"
        return f"<layersec.Certificate {self.subject!r}>"


_KEY_TYPES = {
    "rsa2048": _lib.LS_KEY_RSA_2048,
    "rsa3072": _lib.LS_KEY_RSA_3072,
    "rsa4096": _lib.LS_KEY_RSA_4096,
    "ec": _lib.LS_KEY_EC_P256,
    "ec-p256": _lib.LS_KEY_EC_P256,
    "p256": _lib.LS_KEY_EC_P256,
}

_UINT32_MAX = 2**32 - 1


class Identity(_Handle):
    """Our own identity (``ls_identity``): a private key, its certificate and chain. Immutable."""

    _FREE = "ls_identity_free"

    def _setup(self, ptr) -> None:
        super()._setup(ptr)
        self._cert: Optional[Certificate] = None

    @classmethod
    def load(
        cls,
        key_path: PathLike,
        cert_path: Optional[PathLike] = None,
        password: Optional[StrOrBytes] = None,
    ) -> "Identity":
        """Loads a PKCS#12 file (then ``cert_path`` is ignored) or a PEM private key with its
        certificate(s) in ``cert_path`` (None: in the key file). ``password`` decrypts an
        encrypted key or the PKCS#12 file."""
        out = POINTER(_lib.ls_identity)()
        lib.ls_identity_load(
            _path(key_path, "key_path"),
            None if cert_path is None else _path(cert_path, "cert_path"),
            _cstr(password, "password"),
            byref(out),
        )
        return cls._adopt(out)

    @classmethod
    def from_bytes(
        cls,
        key: BytesLike,
        cert: Optional[BytesLike] = None,
        password: Optional[StrOrBytes] = None,
    ) -> "Identity":
        """Like :meth:`load`, from memory: ``key`` is PKCS#12 DER or a PEM key; ``cert`` the PEM
        certificate(s) for a PEM key."""
        key = _bytes(key, "key")
        certb = None if cert is None else _bytes(cert, "cert")
        out = POINTER(_lib.ls_identity)()
        lib.ls_identity_from_memory(
            key,
            len(key),
            certb,
            0 if certb is None else len(certb),
            _cstr(password, "password"),
            byref(out),
        )
        return cls._adopt(out)

    @classmethod
    def load_pkcs11(
        cls,
        uri: str,
        module: Optional[PathLike] = None,
        pin: Optional[StrOrBytes] = None,
        certificate: Optional[PathLike] = None,
    ) -> "Identity":
        """An identity whose private key stays on a PKCS#11 token (an HSM, a smart card,
        SoftHSM2): signing and decryption happen on the token.

        ``uri`` is an RFC 7512 URI naming the token and the key, e.g.
        ``"pkcs11:token=acme;object=signing;type=private"`` (a ``pin-value`` in it is refused).
        ``module`` is the token's PKCS#11 module (``.so``); it wins over a ``module-path`` in
        the URI, one of the two is needed. ``pin`` (str or bytes; None: no login) is the user
        PIN: read it from an environment variable or a file, never from a configuration.
        ``certificate`` names the PEM certificate (and chain) of the key; None takes the
        certificate object stored on the token beside the key.

        The token is logged in once, here; a wrong PIN is never tried again by the library (each
        try counts towards the token's lock-out). Errors: :class:`ArgumentError` with code
        ``LS_ERR_PIN_INCORRECT`` (105) for a wrong, locked or expired PIN,
        :class:`ArgumentError` with ``LS_ERR_TOKEN_UNAVAILABLE`` (106, ``transient`` True) when
        the module cannot be loaded or the token is absent, ``LS_ERR_KEY_NOT_FOUND`` (107) when
        no such key is on the token; later, :class:`CryptoError` with
        ``LS_ERR_MECHANISM_UNSUPPORTED`` (210) when the token cannot do what a document needs.
        The identity cannot serve TLS. Some tokens (SoftHSM2) read their configuration once per
        process, when the module is first loaded."""
        if not isinstance(uri, str):
            raise TypeError(f"uri must be str, not {type(uri).__name__}")
        out = POINTER(_lib.ls_identity)()
        lib.ls_identity_load_pkcs11(
            _cstr(uri, "uri"),
            None if module is None else _path(module, "module"),
            _cstr(pin, "pin"),
            None if certificate is None else _path(certificate, "certificate"),
            byref(out),
        )
        return cls._adopt(out)

    @classmethod
    def generate(
        cls,
        party_id: str,
        key_type: str = "rsa3072",
        days: int = 730,
        password: Optional[StrOrBytes] = None,
    ) -> "Identity":
        """A new key pair with a self-signed certificate (CN = ``party_id``) valid for ``days``
        days (0: expires at once, for tests) and a CSR. ``key_type`` is ``"rsa2048"``,
        ``"rsa3072"``, ``"rsa4096"`` or ``"ec"`` (P-256). ``password`` encrypts the key PEM
        that :meth:`key_pem` exports (the ABI fixes it here, at generation)."""
        try:
            kt = _KEY_TYPES[key_type.lower()]
        except (KeyError, AttributeError):
            raise ValueError(
                f"key_type must be one of {sorted(_KEY_TYPES)}, not {key_type!r}"
            ) from None
        if isinstance(days, bool) or not isinstance(days, int):
            raise TypeError("days must be an int")
        if not 0 <= days <= _UINT32_MAX:
            raise ValueError(f"days must be between 0 and {_UINT32_MAX}")
        out = POINTER(_lib.ls_identity)()
        lib.ls_identity_generate(
            _cstr(party_id, "party_id"), kt, days, _cstr(password, "password"), byref(out)
        )
        return cls._adopt(out)

    @property
    def certificate(self) -> Certificate:
        """Our certificate. The same object on every access until someone closes it (it is
        independent of the identity: closing the identity leaves it open)."""
        with self._use() as p:
            with self._cond:
                cert = self._cert
            if cert is not None and not cert.closed:
                return cert
            out = POINTER(_lib.ls_cert)()
            lib.ls_identity_cert(p, byref(out))
            cert = Certificate._adopt(out)
            with self._cond:
                if self._cert is None or self._cert.closed:
                    self._cert = cert
                return self._cert

    @property
    def on_token(self) -> bool:
        """True when the private key is on a PKCS#11 token (:meth:`load_pkcs11`), False when it
        is in memory (``ls_identity_is_on_token``). Work with a key on a token waits on the
        token."""
        with self._use() as p:
            return lib.ls_identity_is_on_token(p) == 1

    def key_pem(self) -> bytes:
        """The private key as PKCS#8 PEM, encrypted with the password given to
        :meth:`generate` (if any). Only for generated identities: a loaded one raises
        :class:`ArgumentError` (its key is already in your file)."""
        with self._use() as p:
            return _take_bytes(lib.ls_identity_key_pem, p)

    def csr_pem(self) -> bytes:
        """The certificate signing request (PEM) of a generated identity, to send to a CA."""
        with self._use() as p:
            return _take_bytes(lib.ls_identity_csr_pem, p)

    def __repr__(self) -> str:
        if self.closed:
            return "<layersec.Identity (closed)>"
        try:
            return f"<layersec.Identity {self.certificate.subject!r}>"
        except Exception:  # pragma: no cover - closed meanwhile
            return "<layersec.Identity>"


class CertStore(_Handle):
    """Partner certificates (each optionally named by a party id) and trust anchors
    (``ls_certstore``). Fill it, then share it: adding waits for running ``open`` calls."""

    _FREE = "ls_certstore_free"

    def __init__(self) -> None:
        """A new, empty store."""
        out = POINTER(_lib.ls_certstore)()
        lib.ls_certstore_new(byref(out))
        self._setup(out)

    @classmethod
    def load_dir(cls, path: PathLike) -> "CertStore":
        """Each ``*.pem``/``*.crt``/``*.cer``/``*.der`` in ``path`` is a partner named by its file
        name without extension; the files in ``path/anchors/`` are trust anchors."""
        out = POINTER(_lib.ls_certstore)()
        lib.ls_certstore_load_dir(_path(path, "path"), byref(out))
        return cls._adopt(out)

    def add_partner(self, cert: Certificate, party_id: Optional[str] = None) -> None:
        """Adds (a copy of) a partner certificate, optionally under a party id."""
        _check(cert, Certificate, "cert")
        pid = _cstr(party_id, "party_id")
        with cert._use() as c, self._use_exclusive() as s:
            lib.ls_certstore_add_partner(s, c, pid)

    def add_anchor(self, cert: Certificate) -> None:
        """Adds (a copy of) a trust anchor (a CA certificate)."""
        _check(cert, Certificate, "cert")
        with cert._use() as c, self._use_exclusive() as s:
            lib.ls_certstore_add_anchor(s, c)

    def __repr__(self) -> str:
        return "<layersec.CertStore (closed)>" if self.closed else "<layersec.CertStore>"


def _check(value, cls, what: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, cls):
        raise TypeError(f"{what} must be a layersec.{cls.__name__}, not {type(value).__name__}")


# --- seal / open / inspect --------------------------------------------------------------------

_OUTPUTS = {"der": 0, "smime": _lib.LS_SEAL_SMIME, "pem": _lib.LS_SEAL_PEM}
_PROFILES = {
    None: _lib.LS_PROFILE_NONE,
    "modern": _lib.LS_PROFILE_MODERN,
    "legacy-as2": _lib.LS_PROFILE_LEGACY_AS2,
}
_KEY_TRANSPORTS = {
    None: 0,
    "rsa-pkcs1v15": _lib.LS_SEAL_RSA_PKCS1V15,
    "rsa-oaep-sha1": _lib.LS_SEAL_RSA_OAEP_SHA1,
}


def _profile(profile: Optional[str]) -> int:
    try:
        return _PROFILES[profile]
    except (KeyError, TypeError):
        raise ValueError(f"profile must be 'modern', 'legacy-as2' or None, not {profile!r}") from None
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _unix_time(t: Union[datetime, int], what: str) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"{what} must be timezone-aware (e.g. tzinfo=timezone.utc)")
        return (t - _EPOCH) // timedelta(seconds=1)
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    raise TypeError(f"{what} must be a datetime or Unix seconds")


def seal(
    document: BytesLike,
    signer: Identity,
    recipients: Union[Sequence[Certificate], Certificate],
    *,
    filename: Optional[str] = None,
    mime_type: Optional[str] = None,
    compress: Optional[bool] = None,
    cbc: bool = False,
    pss: bool = False,
    output: str = "der",
    encrypt_to_self: bool = False,
    compression_level: Optional[int] = None,
    signing_time: Optional[Union[datetime, int]] = None,
    profile: Optional[str] = None,
    key_transport: Optional[str] = None,
    multipart_signed: bool = False,
) -> bytes:
    """Seals ``document``: MIME-wraps it (with ``filename``/``mime_type``), compresses it
    (``compress``: None when it pays, True always, False never), signs it with ``signer``
    (RSA PKCS#1 v1.5, or RSASSA-PSS with ``pss``; ECDSA for EC keys) and encrypts it to
    ``recipients`` (AES-256-GCM AuthEnvelopedData, or AES-256-CBC EnvelopedData with ``cbc``),
    plus the signer with ``encrypt_to_self``.

    ``output`` is ``"der"``, ``"smime"`` (an ``application/pkcs7-mime`` entity) or ``"pem"``.
    ``compression_level`` is the zlib level 1-9 (None: the library's default);
    ``signing_time`` (aware datetime or Unix seconds; None: now) is the time to state.

    ``profile`` is what the recipients' software reads: ``"modern"`` (the defaults above) or
    ``"legacy-as2"`` (compressed, multipart/signed, AES-256-CBC EnvelopedData, RSA PKCS#1 v1.5
    key transport; RSA keys only, else InvalidArgumentError). The other options add to it:
    ``key_transport`` ``"rsa-pkcs1v15"`` or ``"rsa-oaep-sha1"`` for RSA recipients (None: the
    profile's, RSA-OAEP-SHA-256 by default), ``multipart_signed`` for a multipart/signed
    signature. Returns the sealed message."""
    doc = _bytes(document, "document")
    recipients = _recipients(signer, recipients)
    opts = _seal_options(
        filename=filename,
        mime_type=mime_type,
        compress=compress,
        cbc=cbc,
        pss=pss,
        output=output,
        encrypt_to_self=encrypt_to_self,
        compression_level=compression_level,
        signing_time=signing_time,
        profile=profile,
        key_transport=key_transport,
        multipart_signed=multipart_signed,
    )
    with contextlib.ExitStack() as stack:
        sp, arr, n = _use_sealing(stack, signer, recipients)
        return _take_bytes(lib.ls_seal, sp, arr, n, doc, len(doc), byref(opts))


def _use_sealing(stack, signer, recipients):
    """Borrows the signer and the recipients for a seal call: (signer pointer, array of
    certificate pointers or None, its length)."""
    sp = stack.enter_context(signer._use())
    ptrs = [stack.enter_context(r._use()) for r in recipients]
    arr = (POINTER(_lib.ls_cert) * len(ptrs))(*ptrs) if ptrs else None
    return sp, arr, len(ptrs)


def _recipients(signer, recipients) -> list:
    _check(signer, Identity, "signer")
    if isinstance(recipients, Certificate):
        recipients = [recipients]
    recipients = list(recipients)
    for i, r in enumerate(recipients):
        _check(r, Certificate, f"recipients[{i}]")
    return recipients


def _seal_options(
    *,
    filename: Optional[str] = None,
    mime_type: Optional[str] = None,
    compress: Optional[bool] = None,
    cbc: bool = False,
    pss: bool = False,
    output: str = "der",
    encrypt_to_self: bool = False,
    compression_level: Optional[int] = None,
    signing_time: Optional[Union[datetime, int]] = None,
    profile: Optional[str] = None,
    key_transport: Optional[str] = None,
    multipart_signed: bool = False,
):
    opts = _lib.ls_seal_options()
    lib.ls_seal_options_init(byref(opts))
    flags = 0
    try:
        flags |= _OUTPUTS[output]
    except (KeyError, TypeError):
        raise ValueError(f"output must be one of {sorted(_OUTPUTS)}, not {output!r}") from None
    if compress is True:
        flags |= _lib.LS_SEAL_FORCE_COMPRESS
    elif compress is False:
        flags |= _lib.LS_SEAL_NO_COMPRESS
    elif compress is not None:
        raise TypeError("compress must be None (when it pays), True or False")
    if cbc:
        flags |= _lib.LS_SEAL_CBC
    if pss:
        flags |= _lib.LS_SEAL_PSS
    if encrypt_to_self:
        flags |= _lib.LS_SEAL_ENCRYPT_TO_SELF
    if multipart_signed:
        flags |= _lib.LS_SEAL_MULTIPART_SIGNED
    try:
        flags |= _KEY_TRANSPORTS[key_transport]
    except (KeyError, TypeError):
        raise ValueError(
            f"key_transport must be 'rsa-pkcs1v15', 'rsa-oaep-sha1' or None, not {key_transport!r}"
        ) from None
    opts.flags = flags
    opts.profile = _profile(profile)
    opts.filename = _cstr(filename, "filename")
    opts.mime_type = _cstr(mime_type, "mime_type")
    if compression_level is not None:
        if isinstance(compression_level, bool) or not isinstance(compression_level, int):
            raise TypeError("compression_level must be an int")
        if not 1 <= compression_level <= 9:
            raise ValueError("compression_level must be between 1 and 9")
        opts.compression_level = compression_level
    if signing_time is not None:
        t = _unix_time(signing_time, "signing_time")
        if t == 0:
            # The ABI reads 0 as "now"; refuse rather than silently state another time.
            raise ValueError("signing_time 1970-01-01T00:00:00Z cannot be stated (0 means now)")
        if not -(2**63) < t < 2**63:
            raise ValueError("signing_time is out of range")
        opts.signing_time = t
    return opts


@dataclass(frozen=True, repr=False)
class Opened:
    """An opened document with the proof of who sent it.

    ``filename`` is exactly what the sender stated (it may contain directories or ``..``): to
    write the document into a folder, use ``safe_filename``. ``signer`` is an owned copy of the
    verified signer's certificate (None when unsigned documents were allowed and this one was).
    ``signing_time`` is the time the signer stated (aware, UTC), or None. ``encrypted`` is True
    when an encryption layer was removed."""

    document: bytes
    filename: Optional[str]
    safe_filename: Optional[str]
    mime_type: str
    signer_subject: Optional[str]
    signer: Optional[Certificate]
    signing_time: Optional[datetime]
    encrypted: bool
    #: The document's size in bytes (also from :func:`open_file` and :func:`open_stream`,
    #: whose ``document`` is empty: the document went to the file or stream).
    size: int = 0

    def __repr__(self) -> str:
        # Not the document itself: it may be large, and confidential in logs.
        return (
            f"Opened(document=<{len(self.document)} bytes>, size={self.size}, "
            f"filename={self.filename!r}, "
            f"mime_type={self.mime_type!r}, signer_subject={self.signer_subject!r}, "
            f"signing_time={self.signing_time!r}, encrypted={self.encrypted!r})"
        )


def open(  # noqa: A001 - layersec.open, on purpose
    data: BytesLike,
    recipient: Optional[Identity] = None,
    *,
    sender: Optional[Certificate] = None,
    partners: Optional[CertStore] = None,
    allow_unsigned: bool = False,
    allow_expired: bool = False,
    reject_legacy: bool = False,
    allow_sha1: bool = False,
    max_output: Optional[int] = None,
    kek: Optional[tuple] = None,
    profile: Optional[str] = None,
    reject_3des: bool = False,
) -> Opened:
    """Opens a sealed message (DER, BER, PEM or S/MIME): decrypts it with ``recipient`` (None
    for a signed-only message), verifies every signature against ``sender`` (the one partner
    who must have signed) or ``partners`` (any partner of the store, or a certificate chaining
    to its anchors), and undoes compression and MIME.

    Without ``sender`` or ``partners`` a signed message fails with UnknownSignerError.
    ``allow_unsigned`` accepts a message without signature, ``allow_expired`` a signer
    certificate outside its validity, ``allow_sha1`` SHA-1 signatures. ``profile`` accepts what
    that profile's partners send: ``"modern"`` none of AES-CBC, 3DES, RSA PKCS#1 v1.5 key
    transport and multipart/signed, ``"legacy-as2"`` all of them (None: all of them, as
    before); ``reject_legacy`` then refuses 3DES and RSA PKCS#1 v1.5 key transport,
    ``reject_3des`` 3DES. ``max_output`` limits the document's size in bytes
    (None: the library's 1 GiB). ``kek`` is a pre-shared ``(key_id, key)`` pair for
    KEKRecipientInfo."""
    data = _bytes(data, "data")
    opts = _open_options(
        recipient,
        sender=sender,
        partners=partners,
        allow_unsigned=allow_unsigned,
        allow_expired=allow_expired,
        reject_legacy=reject_legacy,
        allow_sha1=allow_sha1,
        max_output=max_output,
        kek=kek,
        profile=profile,
        reject_3des=reject_3des,
    )
    out = POINTER(_lib.ls_opened)()
    with contextlib.ExitStack() as stack:
        rp = _use_open(stack, opts, recipient, sender, partners)
        lib.ls_open(rp, data, len(data), byref(opts), byref(out))
    try:
        return _read_opened(out)
    finally:
        lib.ls_opened_free(out)


def _use_open(stack, opts, recipient, sender, partners):
    """Borrows the handles of an open for the call; returns the recipient's pointer."""
    rp = stack.enter_context(recipient._use()) if recipient is not None else None
    if sender is not None:
        opts.sender = stack.enter_context(sender._use())
    if partners is not None:
        opts.partners = stack.enter_context(partners._use())
    return rp


def _open_options(
    recipient,
    *,
    sender=None,
    partners=None,
    allow_unsigned: bool = False,
    allow_expired: bool = False,
    reject_legacy: bool = False,
    allow_sha1: bool = False,
    max_output: Optional[int] = None,
    kek: Optional[tuple] = None,
    profile: Optional[str] = None,
    reject_3des: bool = False,
):
    _check(recipient, Identity, "recipient", optional=True)
    _check(sender, Certificate, "sender", optional=True)
    _check(partners, CertStore, "partners", optional=True)

    opts = _lib.ls_open_options()
    lib.ls_open_options_init(byref(opts))
    flags = 0
    if allow_unsigned:
        flags |= _lib.LS_OPEN_ALLOW_UNSIGNED
    if allow_expired:
        flags |= _lib.LS_OPEN_ALLOW_EXPIRED
    if reject_legacy:
        flags |= _lib.LS_OPEN_REJECT_LEGACY
    if allow_sha1:
        flags |= _lib.LS_OPEN_ALLOW_SHA1
    if reject_3des:
        flags |= _lib.LS_OPEN_REJECT_3DES
    opts.flags = flags
    opts.profile = _profile(profile)
    if max_output is not None:
        if isinstance(max_output, bool) or not isinstance(max_output, int):
            raise TypeError("max_output must be an int")
        # 0 would mean "the default" (1 GiB) to the library: refuse it rather than surprise.
        if not 1 <= max_output < 2**64:
            raise ValueError("max_output must be at least 1 byte")
        opts.max_output = max_output
    if kek is not None:
        try:
            kek_id, kek_key = kek
        except (TypeError, ValueError):
            raise TypeError("kek must be a (key_id, key) pair of bytes") from None
        kek_id = _bytes(kek_id, "kek key_id")
        kek_key = _bytes(kek_key, "kek key")
        opts.kek_id, opts.kek_id_len = kek_id, len(kek_id)
        opts.kek, opts.kek_len = kek_key, len(kek_key)
        # The key bytes must outlive the call: kept on the options object.
        opts._keep = (kek_id, kek_key)
    return opts


def _fspath(p, what: str) -> bytes:
    if isinstance(p, (str, bytes)) or hasattr(p, "__fspath__"):
        return os.fsencode(p)
    raise TypeError(f"{what} must be a path (str, bytes or os.PathLike)")


def seal_file(
    src, dst, signer: Identity, recipients: Union[Sequence[Certificate], Certificate], **options
) -> None:
    """:func:`seal` from the file ``src`` to the file ``dst`` in constant memory: the document
    is never read whole (indefinite-length BER as ``openssl cms -stream`` writes it). ``dst``
    appears only once complete; a failed seal leaves no file. ``options`` are those of
    :func:`seal` (``filename`` defaults to none: pass ``filename=os.path.basename(src)`` to
    name the document)."""
    recipients = _recipients(signer, recipients)
    opts = _seal_options(**options)
    s, d = _fspath(src, "src"), _fspath(dst, "dst")
    with contextlib.ExitStack() as stack:
        sp, arr, n = _use_sealing(stack, signer, recipients)
        lib.ls_seal_file(sp, arr, n, s, d, byref(opts))


def open_file(src, dst, recipient: Optional[Identity] = None, **options) -> Opened:
    """:func:`open` from the file ``src`` to the file ``dst`` in constant memory. ``dst``
    (mode 0600) appears only once the signature and the authentication tag verified: a refused
    message leaves no file. Returns the :class:`Opened` description with an empty
    ``document`` and its ``size``. ``options`` are those of :func:`open`."""
    opts = _open_options(recipient, **options)
    s, d = _fspath(src, "src"), _fspath(dst, "dst")
    out = POINTER(_lib.ls_opened)()
    with contextlib.ExitStack() as stack:
        rp = _use_open(stack, opts, recipient, options.get("sender"), options.get("partners"))
        lib.ls_open_file(rp, s, d, byref(opts), byref(out))
    try:
        return _read_opened(out)
    finally:
        lib.ls_opened_free(out)


class _Callbacks:
    """ctypes read/write callbacks over Python file objects; an exception raised by the file
    is kept and raised again after the library call (the library sees EIO)."""

    def __init__(self, reader, writer):
        self.error: Optional[BaseException] = None
        self._reader = reader
        self._writer = writer
        self.read = _lib.ls_read_callback(self._read)
        self.write = _lib.ls_write_callback(self._write)

    def _read(self, _ud, buf, length, out_n):
        try:
            chunk = self._reader.read(min(length, 1 << 20))
            if chunk is None:
                # A non-blocking file with nothing yet: not the end of the document.
                raise BlockingIOError("read() returned None (non-blocking file without data)")
            n = len(chunk)
            if n > length:
                raise ValueError("read() returned more bytes than asked for")
            ctypes.memmove(buf, chunk, n)
            out_n[0] = n
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised after the call
            self.error = self.error or e
            return errno.EIO

    def _write(self, _ud, buf, length, out_n):
        try:
            data = ctypes.string_at(buf, length)
            n = self._writer.write(data)
            if n is None:
                if isinstance(self._writer, io.RawIOBase):
                    # A non-blocking raw file that took nothing.
                    raise BlockingIOError("write() returned None (non-blocking file not ready)")
                n = length  # a writer that returns nothing took everything
            if not 0 < n <= length:
                raise OSError(f"write() reported {n} bytes written of {length}")
            out_n[0] = n
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised after the call
            self.error = self.error or e
            return errno.EIO

    def raise_kept(self) -> None:
        if self.error is not None:
            raise self.error


def seal_stream(
    reader, writer, signer: Identity, recipients: Union[Sequence[Certificate], Certificate], **options
) -> int:
    """:func:`seal` from the binary file object ``reader`` (its ``read(n)``) to ``writer`` (its
    ``write(b)``) in constant memory. Returns the number of bytes written. On an error what was
    written is incomplete: discard it. ``options`` are those of :func:`seal`."""
    recipients = _recipients(signer, recipients)
    opts = _seal_options(**options)
    cb = _Callbacks(reader, writer)
    size = c_uint64()
    with contextlib.ExitStack() as stack:
        sp, arr, n = _use_sealing(stack, signer, recipients)
        try:
            lib.ls_seal_stream(
                sp, arr, n, cb.read, None, cb.write, None, byref(opts), byref(size)
            )
        except LayerSecError:
            cb.raise_kept()
            raise
    return size.value


def open_stream(reader, writer, recipient: Optional[Identity] = None, **options) -> Opened:
    """:func:`open` from the binary file object ``reader`` to ``writer`` in constant memory.

    **What ``writer`` receives is not authentic until this returns**: the signature and the
    authentication tag come after the content they cover. Write to a place nobody uses yet
    (a temporary file) and discard it if this raises; :func:`open_file` does that for files.
    Returns the :class:`Opened` description with an empty ``document`` and its ``size``."""
    opts = _open_options(recipient, **options)
    cb = _Callbacks(reader, writer)
    out = POINTER(_lib.ls_opened)()
    with contextlib.ExitStack() as stack:
        rp = _use_open(stack, opts, recipient, options.get("sender"), options.get("partners"))
        try:
            lib.ls_open_stream(rp, cb.read, None, cb.write, None, byref(opts), byref(out))
        except LayerSecError:
            cb.raise_kept()
            raise
    try:
        return _read_opened(out)
    finally:
        lib.ls_opened_free(out)


def _read_opened(o) -> Opened:
    """Copies everything out of an ls_opened (whose pointers die with it)."""
    dp = POINTER(c_uint8)()
    n = c_size_t()
    lib.ls_opened_document(o, byref(dp), byref(n))
    document = ctypes.string_at(dp, n.value) if dp and n.value else b""

    signer = None
    signer_subject = None
    sp = lib.ls_opened_signer(o)  # borrowed from o: copy it into an owned Certificate
    if sp:
        signer_subject = _text(lib.ls_cert_subject(sp))
        signer = Certificate.from_bytes(_take_bytes(lib.ls_cert_to_pem, sp))

    t = lib.ls_opened_signing_time(o)
    signing_time = None if t == _lib.LS_NO_TIME else _EPOCH + timedelta(seconds=t)

    return Opened(
        document=document,
        filename=_text(lib.ls_opened_filename(o)),
        safe_filename=_text(lib.ls_opened_safe_filename(o)),
        mime_type=_text(lib.ls_opened_mime_type(o)) or "",
        signer_subject=signer_subject,
        signer=signer,
        signing_time=signing_time,
        encrypted=bool(lib.ls_opened_was_encrypted(o)),
        size=int(lib.ls_opened_size(o)),
    )


def inspect(
    data: BytesLike,
    recipient: Optional[Identity] = None,
    sender: Optional[Certificate] = None,
) -> dict:
    """Describes any CMS/S-MIME object: its layers, algorithms, recipients and signers (the
    library's JSON, parsed). With ``recipient`` it also looks inside layers encrypted for us;
    with ``sender`` it verifies signatures. Problems with the input do not raise: they end the
    description and are reported in its ``"error"`` member — ``None``, or the library's error
    object ``{"code", "name", "family", "message", "transient"}`` (a failed signature layer's
    ``"verification_error"`` too); :func:`error_from_report` turns one into the exception the
    library would raise for it."""
    data = _bytes(data, "data")
    _check(recipient, Identity, "recipient", optional=True)
    _check(sender, Certificate, "sender", optional=True)
    with contextlib.ExitStack() as stack:
        rp = stack.enter_context(recipient._use()) if recipient is not None else None
        sp = stack.enter_context(sender._use()) if sender is not None else None
        text = _take_bytes(lib.ls_inspect, data, len(data), rp, sp)
    return json.loads(text.decode("utf-8"))


# --- the client of a Messaging Service --------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A document :meth:`Client.poll` wrote to the inbox folder.

    ``path`` is the document in the inbox (its metadata is ``<path>.meta.json``), ``name`` its
    file name there (the sender's, made safe, with ``-1``, ``-2``... if it was taken). ``sender``
    is the sender's party id, verified: the message and the document are signed with that
    partner's certificate. ``signing_time`` is the time the sender stated (aware, UTC) or None;
    ``received_at`` when the document was written (aware, UTC)."""

    path: str
    name: str
    sender: str
    message_id: str
    conversation_id: str
    size: int
    signing_time: Optional[datetime]
    received_at: datetime

    @classmethod
    def _from_c(cls, r: "_lib.ls_received") -> "Received":
        return cls(
            path=_text(r.path) or "",
            name=_text(r.name) or "",
            sender=_text(r.sender) or "",
            message_id=_text(r.message_id) or "",
            conversation_id=_text(r.conversation_id) or "",
            size=int(r.size),
            signing_time=(
                None if r.signing_time == 0 else _EPOCH + timedelta(seconds=r.signing_time)
            ),
            received_at=_EPOCH + timedelta(seconds=r.received_at),
        )


class Client(_Handle):
    """The client of a Layer Security Messaging Service (``ls_client``), as the configuration
    file ``layersec init`` writes describes it: our party id and identity, our partners'
    certificates (``<partners dir>/<party id>.crt``), the service, and the folders (``sent/``,
    ``failed/``, ``inbox/`` and ``state/``, the journal that makes sends and deliveries survive
    crashes).

    One call at a time: calls from several threads wait for each other (the C client is used by
    one thread at a time). Several clients of the same configuration coordinate through the
    state folder, as ``layersec`` processes do.
    """

    _FREE = "ls_client_free"

    def __init__(self, config_path: PathLike) -> None:
        """Reads the configuration file, loads our identity and the certificates, and creates
        the folders that are missing. Nothing is sent yet. A missing file or a bad setting
        raises :class:`StoreError` (LS_ERR_CONFIG_INVALID, the message names file and key)."""
        out = POINTER(_lib.ls_client)()
        lib.ls_client_new_from_config(_path(config_path, "config_path"), byref(out))
        self._setup(out)

    def send(
        self,
        data: BytesLike,
        name: str,
        to: str,
        service: Optional[str] = None,
        action: Optional[str] = None,
        conversation: Optional[str] = None,
        receipt: bool = True,
    ) -> str:
        """Sends ``data`` as the document ``name`` (a base name: the partner's inbox uses it)
        to partner ``to`` (a party id with a certificate in the partners folder): seals it,
        carries it in a signed AS4 message to the service and checks the service's signed
        receipt. ``service``/``action`` default to the configuration's ``[defaults]``;
        ``conversation`` (None: a new one, named by the MessageId) is the ConversationId.

        Returns the MessageId once delivered (the document's copy is then in ``sent/``).
        Raises :class:`QueuedForRetry` (with ``.message_id``) when the attempt failed for a
        reason that may pass and the send waits in the journal; any other
        :class:`LayerSecError` means nothing is queued — e.g. :class:`CertificateError`
        (LS_ERR_CERT_NOT_FOUND) for a partner without certificate, :class:`ProtocolError`
        (LS_ERR_EBMS_ERROR) when the service refused the message (the document is then in
        ``failed/`` with the reason). With ``receipt=False`` no signed receipt is asked of
        the partner (the configuration's ``[receipts] request`` asks by default)."""
        data = _bytes(data, "data")
        return self._send(
            lib.ls_client_send,
            (data, len(data), _cstr(name, "name"), _cstr(to, "to")),
            service,
            action,
            conversation,
            receipt,
        )

    def send_file(
        self,
        path: PathLike,
        to: str,
        service: Optional[str] = None,
        action: Optional[str] = None,
        conversation: Optional[str] = None,
        receipt: bool = True,
    ) -> str:
        """:meth:`send` with the content and the base name of the file at ``path`` (which stays
        where it is). A file that cannot be read raises :class:`ArgumentError` (LS_ERR_IO)."""
        return self._send(
            lib.ls_client_send_file,
            (_path(path, "path"), _cstr(to, "to")),
            service,
            action,
            conversation,
            receipt,
        )

    def _send(self, func, args, service, action, conversation, receipt=True) -> str:
        opts = _lib.ls_send_options()
        lib.ls_send_options_init(byref(opts))
        if not receipt:
            opts.flags |= _lib.LS_SEND_NO_RECEIPT
        opts.service = _cstr(service, "service")
        opts.action = _cstr(action, "action")
        opts.conversation = _cstr(conversation, "conversation")
        out = _lib.ls_bytes()
        try:
            with self._use_exclusive() as p:
                try:
                    func(p, *args, byref(opts), byref(out))
                except LayerSecError as e:
                    if out.data:
                        # Not delivered, but queued: the library still gave the MessageId.
                        mid = ctypes.string_at(out.data, out.len).decode("utf-8", "replace")
                        raise QueuedForRetry(mid, e) from e
                    raise
            return ctypes.string_at(out.data, out.len).decode("utf-8", "replace")
        finally:
            lib.ls_bytes_free(byref(out))

    def poll(self) -> "list[Received]":
        """Fetches every document waiting for us: pulls until none is left, verifies each
        message and its document against the certificate of the partner it comes from, writes
        the document and its metadata to the inbox folder and then receipts it. Returns the
        documents written, in order.

        A message that cannot be accepted (unknown sender, bad signature) is neither written
        nor receipted (the service offers it again later) and does not fail the poll. Failing
        to reach the service raises :class:`TransportError`; another client polling the same
        state folder :class:`StoreError` (LS_ERR_STATE_LOCKED). If the poll fails part way, the
        exception's ``received`` attribute lists the documents written before."""
        received: "list[Received]" = []
        problems: "list[BaseException]" = []

        def on_document(_userdata, doc) -> int:
            # Runs inside the C call (with the GIL): copy now, the strings die with the call.
            try:
                received.append(Received._from_c(doc.contents))
                return 0
            except BaseException as e:  # pragma: no cover - a copy cannot fail in practice
                problems.append(e)
                return 1  # stop after this document (written and receipted all the same)

        cb = _lib.ls_received_cb(on_document)  # referenced until the call returns
        count = c_size_t()
        try:
            with self._use_exclusive() as p:
                lib.ls_client_poll(p, cb, None, byref(count))
        except LayerSecError as e:
            e.received = received
            raise
        if problems:  # pragma: no cover
            raise problems[0]
        return received

    def run_due_jobs(self) -> int:
        """Sends what is due: documents queued for retry whose back-off has passed, and files
        in the outbox folder. Returns how many were delivered. A service that cannot be reached
        is not an error here: the documents stay queued."""
        sent = c_size_t()
        with self._use_exclusive() as p:
            lib.ls_client_run_due_jobs(p, byref(sent))
        return sent.value

    def receipt_state(self, message_id: str) -> str:
        """The state of the partner's signed receipt of the document sent as ``message_id``:
        ``"waiting"``, ``"processed"`` (the partner's end system signed that it received,
        verified and stored it), ``"failed"`` (the partner refused it), ``"not_requested"``, or
        ``"unknown"`` (no such document in the sent folder). Receipts arrive with :meth:`poll`."""
        state = c_int32()
        with self._use() as p:
            lib.ls_client_receipt_state(p, _cstr(message_id, "message_id"), byref(state))
        return {
            _lib.LS_RECEIPT_NOT_REQUESTED: "not_requested",
            _lib.LS_RECEIPT_WAITING: "waiting",
            _lib.LS_RECEIPT_PROCESSED: "processed",
            _lib.LS_RECEIPT_FAILED: "failed",
        }.get(state.value, "unknown")

    def receipts(self, waiting: bool = False) -> "list[dict]":
        """The documents in the sent folder with their receipt state (as ``layersec receipts
        --json`` lists them); ``waiting=True``: only those still waiting."""
        with self._use() as p:
            raw = _take_bytes(lib.ls_client_receipts, p, 1 if waiting else 0)
        return json.loads(raw)["receipts"]

    def __repr__(self) -> str:
        return "<layersec.Client (closed)>" if self.closed else "<layersec.Client>"
