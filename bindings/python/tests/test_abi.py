"""The ctypes declarations agree with include/layersec.h: every function with its argument and
result types, the constants, and the options structs' layout (checked against gcc)."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from ctypes import POINTER

import pytest

import layersec
from conftest import skip_or_fail
from layersec import _lib


def strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", " ", src)


def header_code(header_text: str) -> str:
    """The header without comments and preprocessor lines."""
    code = strip_comments(header_text)
    lines = []
    continued = False
    for line in code.splitlines():
        is_pp = continued or line.lstrip().startswith("#")
        continued = is_pp and line.rstrip().endswith("\\")
        if not is_pp:
            lines.append(line)
    return "\n".join(lines)


def header_functions(header_text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (return type, [parameter types]) of every function the header declares."""
    code = header_code(header_text)
    funcs = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(ls_\w+)\s*\(([^)]*)\)\s*;", code):
        ret, name, params = m.group(1), m.group(2), m.group(3)
        ret = " ".join(ret.split())
        ptypes = []
        params = " ".join(params.split())
        if params and params != "void":
            for p in params.split(","):
                p = p.strip()
                # Drop the parameter name (the last identifier).
                ptypes.append(re.sub(r"\b\w+$", "", p).strip())
        funcs[name] = (ret, ptypes)
    return funcs


def header_defines(header_text: str) -> dict[str, str]:
    defs = {}
    for m in re.finditer(r"^\s*#define\s+(LS_\w+)\s+(.+?)\s*$", header_text, flags=re.M):
        defs[m.group(1)] = m.group(2)
    return defs


def int_define(expr: str) -> int:
    if not re.fullmatch(r"[\d\s()<<]+", expr):
        raise ValueError(expr)
    return int(eval(expr, {"__builtins__": {}}))  # digits, parentheses and << only


_BASE = {
    "char": ctypes.c_char,
    "uint8_t": ctypes.c_uint8,
    "size_t": ctypes.c_size_t,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "int": ctypes.c_int,
    "ls_result": ctypes.c_int32,
    "ls_key_type": ctypes.c_uint32,
    "ls_identity": _lib.ls_identity,
    "ls_cert": _lib.ls_cert,
    "ls_certstore": _lib.ls_certstore,
    "ls_opened": _lib.ls_opened,
    "ls_bytes": _lib.ls_bytes,
    "ls_seal_options": _lib.ls_seal_options,
    "ls_open_options": _lib.ls_open_options,
    "ls_client": _lib.ls_client,
    "ls_send_options": _lib.ls_send_options,
    "ls_received": _lib.ls_received,
    "ls_received_cb": _lib.ls_received_cb,
    "ls_read_callback": _lib.ls_read_callback,
    "ls_write_callback": _lib.ls_write_callback,
}


def ctype_of(c_type: str, allow_buffer: bool = True):
    """The ctypes type for a C type of the header. `const char *` is c_char_p; so is a
    `const uint8_t *` input buffer (the binding passes Python bytes through it)."""
    if c_type == "void":
        return None
    stars = c_type.count("*")
    words = [w for w in re.sub(r"\*", " ", c_type).split() if w not in ("const", "struct")]
    assert len(words) == 1, c_type
    if words[0] == "void" and stars == 1:
        return ctypes.c_void_p  # userdata, passed through untouched
    base = _BASE[words[0]]
    if stars == 1 and base is ctypes.c_char:
        return ctypes.c_char_p
    if stars == 1 and base is ctypes.c_uint8 and allow_buffer and c_type.startswith("const"):
        return ctypes.c_char_p
    t = base
    for _ in range(stars):
        t = POINTER(t)
    return t


def test_every_header_function_is_declared_with_its_types(header_text):
    funcs = header_functions(header_text)
    assert len(funcs) >= 30, "the header parser found too few functions"
    assert set(funcs) == set(_lib._FUNCTIONS), "functions of the header vs. _lib._FUNCTIONS"
    for name, (ret, params) in funcs.items():
        f = getattr(_lib.lib, name)
        expected_args = [ctype_of(p) for p in params]
        assert list(f.argtypes) == expected_args, name
        assert f.restype is ctype_of(ret), name
        checked = ret == "ls_result"
        assert (getattr(f, "errcheck", None) is _lib._errcheck) == checked, name


def test_flag_and_key_constants_match_header(header_text):
    defs = header_defines(header_text)
    prefixes = ("LS_SEAL_", "LS_OPEN_", "LS_KEY_", "LS_PROFILE_")
    wanted = {k: v for k, v in defs.items() if k.startswith(prefixes)}
    assert len(wanted) == 22
    for name, expr in wanted.items():
        assert getattr(_lib, name) == int_define(expr), name
    assert defs["LS_NO_TIME"] == "INT64_MIN"
    assert _lib.LS_NO_TIME == -(2**63)
    assert int(defs["LS_OK"]) == _lib.LS_OK == 0


def test_version_matches_header(header_text):
    defs = header_defines(header_text)
    assert layersec.version() == defs["LS_VERSION_STRING"].strip('"')
    assert layersec.__version__ == layersec.version()
    major, minor, patch = (int(defs[f"LS_VERSION_{p}"]) for p in ("MAJOR", "MINOR", "PATCH"))
    assert layersec.__version__ == f"{major}.{minor}.{patch}"


def header_struct_fields(header_text: str, name: str) -> list[str]:
    code = header_code(header_text)
    m = re.search(r"typedef struct %s\s*\{(.*?)\}\s*%s\s*;" % (name, name), code, flags=re.S)
    assert m, name
    return [re.search(r"(\w+)\s*;", decl + ";").group(1)
            for decl in m.group(1).split(";") if decl.strip()]


STRUCTS = [
    _lib.ls_bytes,
    _lib.ls_seal_options,
    _lib.ls_open_options,
    _lib.ls_send_options,
    _lib.ls_received,
]


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_struct_field_names_in_header_order(header_text, struct):
    assert [f[0] for f in struct._fields_] == header_struct_fields(header_text, struct.__name__)


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory, header_text):
    """sizeof/offsetof of every struct field as a C compiler sees the header."""
    from conftest import HEADER

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        skip_or_fail("no C compiler (gcc) to check the struct layout against")
    d = tmp_path_factory.mktemp("layout")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "layersec.h"', "int main(void) {"]
    for s in STRUCTS:
        n = s.__name__
        lines.append(f'printf("{n} - %zu %zu\\n", sizeof({n}), _Alignof({n}));')
        for field, _ in s._fields_:
            lines.append(
                f'printf("{n} {field} %zu %zu\\n", offsetof({n}, {field}), '
                f"sizeof((({n} *)0)->{field}));"
            )
    lines += ["return 0;", "}"]
    src = d / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = d / "layout"
    p = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", str(HEADER.parent),
                        str(src), "-o", str(exe)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    layout = {}
    for line in out.splitlines():
        struct, field, a, b = line.split()
        layout[(struct, field)] = (int(a), int(b))
    return layout


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_struct_layout_matches_c(c_layout, struct):
    n = struct.__name__
    assert (ctypes.sizeof(struct), ctypes.alignment(struct)) == c_layout[(n, "-")]
    for field, _ in struct._fields_:
        desc = getattr(struct, field)
        assert (desc.offset, desc.size) == c_layout[(n, field)], f"{n}.{field}"


def test_options_init_fills_struct_size():
    so = _lib.ls_seal_options()
    _lib.lib.ls_seal_options_init(ctypes.byref(so))
    assert so.struct_size == ctypes.sizeof(_lib.ls_seal_options)
    assert (so.flags, so.filename, so.mime_type, so.compression_level, so.signing_time) == (
        0, None, None, 0, 0)
    oo = _lib.ls_open_options()
    _lib.lib.ls_open_options_init(ctypes.byref(oo))
    assert oo.struct_size == ctypes.sizeof(_lib.ls_open_options)
    assert oo.flags == 0 and oo.max_output == 0
    assert not oo.sender and not oo.partners
    sendo = _lib.ls_send_options()
    _lib.lib.ls_send_options_init(ctypes.byref(sendo))
    assert sendo.struct_size == ctypes.sizeof(_lib.ls_send_options)
    assert (sendo.flags, sendo.service, sendo.action, sendo.conversation) == (0, None, None, None)


def test_received_callback_type_matches_header(header_text):
    code = " ".join(header_code(header_text).split())
    m = re.search(r"typedef (\w+) \(\*ls_received_cb\)\(([^)]*)\);", code)
    assert m, "ls_received_cb is declared"
    params = [re.sub(r"\b\w+$", "", p.strip()).strip() for p in m.group(2).split(",")]
    assert ctype_of(m.group(1)) is _lib.ls_received_cb._restype_
    assert list(_lib.ls_received_cb._argtypes_) == [ctype_of(p) for p in params]


def test_null_is_accepted_by_free_functions_and_bytes_free_twice():
    for free in ("ls_identity_free", "ls_cert_free", "ls_certstore_free", "ls_opened_free",
                 "ls_client_free"):
        getattr(_lib.lib, free)(None)
    _lib.lib.ls_bytes_free(None)
    b = _lib.ls_bytes()
    _lib.lib.ls_bytes_free(ctypes.byref(b))
    _lib.lib.ls_bytes_free(ctypes.byref(b))


def test_package_version_matches_library():
    tomllib = pytest.importorskip("tomllib")
    from conftest import PY_ROOT

    meta = tomllib.loads((PY_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "layersec"
    assert meta["project"]["version"] == layersec.version()
