#!/usr/bin/env python3
"""Let the installed oscrypto 1.3.0 (a dependency of pyas2lib) load OpenSSL 3.0.x.

oscrypto reads the OpenSSL version with the pattern `\\d\\.\\d\\.\\d`, one digit per field, so
"OpenSSL 3.0.19" (Debian 12) is not recognised and `import oscrypto.asymmetric` (so `import
pyas2lib`) fails with "Error detecting the version of libcrypto". oscrypto fixed the pattern on
its master branch after 1.3.0 (wbond/oscrypto issues #75 and #78, pull request #76), but no
release on PyPI has the fix. This script makes the equivalent change, several digits per field,
in the installed copy: `_openssl/_libcrypto_cffi.py` and `_openssl/_libcrypto_ctypes.py`.
Idempotent; run by scripts/deps.sh after installing pyas2lib. No copy of oscrypto is kept in
this repository.

Exit status: 0 patched or already patched (and oscrypto imports), 1 oscrypto is missing or its
files do not contain the expected pattern, 2 the import still fails.
"""

import importlib.util
import pathlib
import subprocess
import sys

OLD = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'"
NEW = "'\\\\b(\\\\d+\\\\.\\\\d+\\\\.\\\\d+[a-z]*)\\\\b'"
FILES = ("_openssl/_libcrypto_cffi.py", "_openssl/_libcrypto_ctypes.py")


def main() -> int:
    # find_spec of the top-level package only: importing oscrypto's OpenSSL backend is what fails.
    spec = importlib.util.find_spec("oscrypto")
    if spec is None or not spec.submodule_search_locations:
        print("patch-oscrypto: oscrypto is not installed", file=sys.stderr)
        return 1
    root = pathlib.Path(next(iter(spec.submodule_search_locations)))
    for rel in FILES:
        path = root / rel
        text = path.read_text()
        if NEW in text:
            continue
        if OLD not in text:
            print(f"patch-oscrypto: {path}: the version pattern {OLD} is not there "
                  "(another oscrypto version?)", file=sys.stderr)
            return 1
        path.write_text(text.replace(OLD, NEW))
        # The stale byte code is simply recompiled: its source is newer now.
        print(f"patch-oscrypto: patched {path}", file=sys.stderr)
    check = subprocess.run([sys.executable, "-c", "import oscrypto.asymmetric"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        print(f"patch-oscrypto: oscrypto still does not load:\n{check.stderr}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
