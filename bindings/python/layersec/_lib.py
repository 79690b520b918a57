"""Loads liblayersec and declares the C ABI of include/layersec.h for ctypes.

Nothing here is public API: `layersec` (``__init__.py``) wraps it. Every function of the header
is declared once below with its argument and result types; every function returning an
``ls_result`` gets an ``errcheck`` that turns a non-zero code into a typed exception
(:mod:`layersec._errors`) carrying the code, its name (``ls_result_name``) and the thread's
``ls_last_error_message()``.

The library is looked for, in this order:

1. the path in the environment variable ``LAYERSEC_LIB`` (an error if it does not load: a
   variable that is set must not be silently ignored);
2. a ``liblayersec.so`` (or ``liblayersec.so.0``) inside this package's folder, then next to it;
3. the SONAME ``liblayersec.so.0`` through the dynamic loader's normal search
   (``LD_LIBRARY_PATH``, the ld.so cache, ...).
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

from ._errors import error_from_code

# liblayersec.so.<major> of the library version this binding is for (a test checks it against
# the loaded library's ls_version()).
SONAME = "liblayersec.so.0"
ENV_VAR = "LAYERSEC_LIB"

# --- Constants of layersec.h ------------------------------------------------------------------

LS_OK = 0
LS_NO_TIME = -(2**63)  # INT64_MIN

LS_SEAL_NO_COMPRESS = 1 << 0
LS_SEND_NO_RECEIPT = 1 << 0
LS_RECEIPT_UNKNOWN = 0
LS_RECEIPT_NOT_REQUESTED = 1
LS_RECEIPT_WAITING = 2
LS_RECEIPT_PROCESSED = 3
LS_RECEIPT_FAILED = 4
LS_SEAL_FORCE_COMPRESS = 1 << 1
LS_SEAL_CBC = 1 << 2
LS_SEAL_PSS = 1 << 3
LS_SEAL_SMIME = 1 << 4
LS_SEAL_PEM = 1 << 5
LS_SEAL_ENCRYPT_TO_SELF = 1 << 6
LS_SEAL_MULTIPART_SIGNED = 1 << 7
LS_SEAL_RSA_PKCS1V15 = 1 << 8
LS_SEAL_RSA_OAEP_SHA1 = 1 << 9

LS_PROFILE_NONE = 0
LS_PROFILE_MODERN = 1
LS_PROFILE_LEGACY_AS2 = 2

LS_OPEN_ALLOW_UNSIGNED = 1 << 0
LS_OPEN_ALLOW_EXPIRED = 1 << 1
LS_OPEN_REJECT_LEGACY = 1 << 2
LS_OPEN_ALLOW_SHA1 = 1 << 3
LS_OPEN_REJECT_3DES = 1 << 4

LS_KEY_RSA_2048 = 1
LS_KEY_RSA_3072 = 2
LS_KEY_RSA_4096 = 3
LS_KEY_EC_P256 = 4

# --- Types ------------------------------------------------------------------------------------

ls_result = c_int32
ls_key_type = c_uint32

# Marks the functions returning an ls_result in _FUNCTIONS: they get restype ls_result plus the
# errcheck. (A marker, not `restype is ls_result`: ctypes.c_int is c_int32, and
# ls_opened_was_encrypted returns a plain int.)
_RESULT = object()


class ls_identity(Structure):
    """Opaque."""


class ls_cert(Structure):
    """Opaque."""


class ls_certstore(Structure):
    """Opaque."""


class ls_opened(Structure):
    """Opaque."""


class ls_client(Structure):
    """Opaque."""


class ls_bytes(Structure):
    _fields_ = [
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
    ]


class ls_seal_options(Structure):
    # Field order and types exactly as in layersec.h.
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("filename", c_char_p),
        ("mime_type", c_char_p),
        ("compression_level", c_uint32),
        ("signing_time", c_int64),
        ("profile", c_uint32),
    ]


class ls_open_options(Structure):
    # Field order and types exactly as in layersec.h. The byte pointers (`const uint8_t *`) are
    # declared c_char_p so that Python bytes can be assigned (ctypes keeps them alive with the
    # struct); the ABI is the same pointer.
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_output", c_uint64),
        ("sender", POINTER(ls_cert)),
        ("partners", POINTER(ls_certstore)),
        ("kek_id", c_char_p),
        ("kek_id_len", c_size_t),
        ("kek", c_char_p),
        ("kek_len", c_size_t),
        ("profile", c_uint32),
    ]


class ls_send_options(Structure):
    # Field order and types exactly as in layersec.h.
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("service", c_char_p),
        ("action", c_char_p),
        ("conversation", c_char_p),
    ]


class ls_received(Structure):
    # Field order and types exactly as in layersec.h. Made by the library; the strings are
    # borrowed for the duration of the callback only.
    _fields_ = [
        ("path", c_char_p),
        ("name", c_char_p),
        ("sender", c_char_p),
        ("message_id", c_char_p),
        ("conversation_id", c_char_p),
        ("size", c_uint64),
        ("signing_time", c_int64),
        ("received_at", c_int64),
    ]


# typedef int32_t (*ls_received_cb)(void *userdata, const ls_received *doc);
ls_received_cb = CFUNCTYPE(c_int32, c_void_p, POINTER(ls_received))


# `const uint8_t *` inputs are passed as c_char_p: Python bytes go in without a copy, and the
# length travels separately (embedded NULs are fine).
_buf = c_char_p
_str = c_char_p

# The I/O callbacks of ls_seal_stream / ls_open_stream: (userdata, buf, len, out_n) -> errno.
ls_read_callback = CFUNCTYPE(c_int, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_size_t))
ls_write_callback = CFUNCTYPE(c_int, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_size_t))

# name: (restype, argtypes); _RESULT: returns an ls_result, checked by _errcheck.
_FUNCTIONS = {
    "ls_version": (c_char_p, []),
    "ls_result_name": (c_char_p, [ls_result]),
    "ls_last_error_message": (c_char_p, []),
    "ls_last_error_is_transient": (c_int, []),
    "ls_bytes_free": (None, [POINTER(ls_bytes)]),
    "ls_identity_load": (_RESULT, [_str, _str, _str, POINTER(POINTER(ls_identity))]),
    "ls_identity_from_memory": (
        _RESULT,
        [_buf, c_size_t, _buf, c_size_t, _str, POINTER(POINTER(ls_identity))],
    ),
    "ls_identity_generate": (
        _RESULT,
        [_str, ls_key_type, c_uint32, _str, POINTER(POINTER(ls_identity))],
    ),
    "ls_identity_load_pkcs11": (
        _RESULT,
        [_str, _str, _str, _str, POINTER(POINTER(ls_identity))],
    ),
    "ls_identity_key_pem": (_RESULT, [POINTER(ls_identity), POINTER(ls_bytes)]),
    "ls_identity_csr_pem": (_RESULT, [POINTER(ls_identity), POINTER(ls_bytes)]),
    "ls_identity_cert": (_RESULT, [POINTER(ls_identity), POINTER(POINTER(ls_cert))]),
    "ls_identity_is_on_token": (c_int, [POINTER(ls_identity)]),
    "ls_identity_free": (None, [POINTER(ls_identity)]),
    "ls_cert_load": (_RESULT, [_str, POINTER(POINTER(ls_cert))]),
    "ls_cert_from_memory": (_RESULT, [_buf, c_size_t, POINTER(POINTER(ls_cert))]),
    "ls_cert_subject": (c_char_p, [POINTER(ls_cert)]),
    "ls_cert_to_pem": (_RESULT, [POINTER(ls_cert), POINTER(ls_bytes)]),
    "ls_cert_free": (None, [POINTER(ls_cert)]),
    "ls_certstore_new": (_RESULT, [POINTER(POINTER(ls_certstore))]),
    "ls_certstore_load_dir": (_RESULT, [_str, POINTER(POINTER(ls_certstore))]),
    "ls_certstore_add_partner": (_RESULT, [POINTER(ls_certstore), POINTER(ls_cert), _str]),
    "ls_certstore_add_anchor": (_RESULT, [POINTER(ls_certstore), POINTER(ls_cert)]),
    "ls_certstore_free": (None, [POINTER(ls_certstore)]),
    "ls_seal_options_init": (None, [POINTER(ls_seal_options)]),
    "ls_seal": (
        _RESULT,
        [
            POINTER(ls_identity),
            POINTER(POINTER(ls_cert)),
            c_size_t,
            _buf,
            c_size_t,
            POINTER(ls_seal_options),
            POINTER(ls_bytes),
        ],
    ),
    "ls_open_options_init": (None, [POINTER(ls_open_options)]),
    "ls_open": (
        _RESULT,
        [
            POINTER(ls_identity),
            _buf,
            c_size_t,
            POINTER(ls_open_options),
            POINTER(POINTER(ls_opened)),
        ],
    ),
    "ls_seal_stream": (
        _RESULT,
        [
            POINTER(ls_identity),
            POINTER(POINTER(ls_cert)),
            c_size_t,
            ls_read_callback,
            c_void_p,
            ls_write_callback,
            c_void_p,
            POINTER(ls_seal_options),
            POINTER(c_uint64),
        ],
    ),
    "ls_seal_file": (
        _RESULT,
        [
            POINTER(ls_identity),
            POINTER(POINTER(ls_cert)),
            c_size_t,
            _str,
            _str,
            POINTER(ls_seal_options),
        ],
    ),
    "ls_open_stream": (
        _RESULT,
        [
            POINTER(ls_identity),
            ls_read_callback,
            c_void_p,
            ls_write_callback,
            c_void_p,
            POINTER(ls_open_options),
            POINTER(POINTER(ls_opened)),
        ],
    ),
    "ls_open_file": (
        _RESULT,
        [POINTER(ls_identity), _str, _str, POINTER(ls_open_options), POINTER(POINTER(ls_opened))],
    ),
    "ls_opened_size": (c_uint64, [POINTER(ls_opened)]),
    "ls_opened_document": (
        _RESULT,
        [POINTER(ls_opened), POINTER(POINTER(c_uint8)), POINTER(c_size_t)],
    ),
    "ls_opened_filename": (c_char_p, [POINTER(ls_opened)]),
    "ls_opened_safe_filename": (c_char_p, [POINTER(ls_opened)]),
    "ls_opened_mime_type": (c_char_p, [POINTER(ls_opened)]),
    "ls_opened_signer": (POINTER(ls_cert), [POINTER(ls_opened)]),
    "ls_opened_signing_time": (c_int64, [POINTER(ls_opened)]),
    "ls_opened_was_encrypted": (c_int, [POINTER(ls_opened)]),
    "ls_opened_free": (None, [POINTER(ls_opened)]),
    "ls_inspect": (
        _RESULT,
        [_buf, c_size_t, POINTER(ls_identity), POINTER(ls_cert), POINTER(ls_bytes)],
    ),
    "ls_client_new_from_config": (_RESULT, [_str, POINTER(POINTER(ls_client))]),
    "ls_send_options_init": (None, [POINTER(ls_send_options)]),
    "ls_client_send": (
        _RESULT,
        [
            POINTER(ls_client),
            _buf,
            c_size_t,
            _str,
            _str,
            POINTER(ls_send_options),
            POINTER(ls_bytes),
        ],
    ),
    "ls_client_send_file": (
        _RESULT,
        [POINTER(ls_client), _str, _str, POINTER(ls_send_options), POINTER(ls_bytes)],
    ),
    "ls_client_poll": (
        _RESULT,
        [POINTER(ls_client), ls_received_cb, c_void_p, POINTER(c_size_t)],
    ),
    "ls_client_run_due_jobs": (_RESULT, [POINTER(ls_client), POINTER(c_size_t)]),
    "ls_client_receipt_state": (_RESULT, [POINTER(ls_client), c_char_p, POINTER(c_int32)]),
    "ls_client_receipts": (_RESULT, [POINTER(ls_client), c_int32, POINTER(ls_bytes)]),
    "ls_client_free": (None, [POINTER(ls_client)]),
}


def _candidates():
    """(description, path or name) pairs in search order (after LAYERSEC_LIB)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        for name in ("liblayersec.so", SONAME):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                yield path
    yield SONAME


def _load() -> tuple[ctypes.CDLL, str]:
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise ImportError(f"layersec: cannot load {ENV_VAR}={env!r}: {e}") from e
    tried = []
    for cand in _candidates():
        try:
            return ctypes.CDLL(cand), cand
        except OSError as e:
            tried.append(f"{cand}: {e}")
    raise ImportError(
        "layersec: cannot find liblayersec. Set "
        f"{ENV_VAR} to its path, put liblayersec.so next to the package, or install it so that "
        f"the loader finds {SONAME}. Tried:\n  " + "\n  ".join(tried)
    )


def _errcheck(result, func, args):
    if result != LS_OK:
        # Read the thread's message at once: it is valid until the next ls_result call on this
        # thread, and errcheck runs on the calling thread right after the call.
        raw = lib.ls_last_error_message()
        message = raw.decode("utf-8", "replace") if raw else ""
        transient = bool(lib.ls_last_error_is_transient())
        name = lib.ls_result_name(result)
        error = error_from_code(
            int(result),
            name.decode("ascii", "replace") if name else "LS_UNKNOWN",
            message,
            func.__name__,
            transient,
        )
        if isinstance(error, OSError):
            # The file: the path argument the message names.
            for arg in args:
                if isinstance(arg, bytes) and arg and os.fsdecode(arg) in message:
                    error.filename = os.fsdecode(arg)
                    break
        raise error
    return result


def _declare(cdll: ctypes.CDLL) -> None:
    missing = []
    for name, (restype, argtypes) in _FUNCTIONS.items():
        try:
            f = getattr(cdll, name)
        except AttributeError:
            missing.append(name)
            continue
        f.argtypes = argtypes
        if restype is _RESULT:
            f.restype = ls_result
            f.errcheck = _errcheck
        else:
            f.restype = restype
    if missing:
        raise ImportError(
            f"layersec: {path} lacks functions of layersec.h (too old a library?): "
            + ", ".join(missing)
        )


lib, path = _load()
_declare(lib)


def version() -> str:
    """``ls_version()``: the version of the loaded library."""
    return lib.ls_version().decode("ascii")
