#!/usr/bin/env python3
"""Seal a document for a partner and open it, with the Python binding of liblayersec.

With no arguments: a self-contained demo. Identities for alice and bob are made in memory, alice
seals a small invoice for bob, bob opens it and proves alice signed it.

With arguments, the same two operations as the C examples (examples-c/seal.c, open.c), with
their arguments and output, for scripts and the cross-binding tests:

    seal_open.py seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]
    seal_open.py open KEY CERT SENDER_CERT IN OUT

KEY and CERT are our identity (PEM files, the key unencrypted). `seal` signs IN, encrypts it
for RECIPIENT_CERT and writes the sealed message (DER) to OUT; `open` decrypts IN, requires
SENDER_CERT to be its signer and writes the document to OUT (nothing is written unless every
check passed), printing its file name, MIME type and signer. A failure prints the LS_ERR_* name
and the library's message and exits 1; a usage error exits 2.

The library is found through LAYERSEC_LIB (see bindings/python/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bindings/python

import layersec  # noqa: E402

USAGE = """usage: seal_open.py                     (the demo)
       seal_open.py seal KEY CERT RECIPIENT_CERT IN OUT [FILENAME]
       seal_open.py open KEY CERT SENDER_CERT IN OUT"""

INVOICE = b"""<?xml version="1.0"?>
<Invoice id="42">
  <Total currency="EUR">1234.50</Total>
</Invoice>
"""


def demo() -> None:
    with layersec.Identity.generate("alice", "ec") as alice, \
         layersec.Identity.generate("bob", "ec") as bob:
        sealed = layersec.seal(INVOICE, alice, [bob.certificate], filename="invoice.xml")
        print(f"alice sealed invoice.xml ({len(INVOICE)} bytes) for bob: {len(sealed)} bytes "
              "of S/MIME, signed and encrypted")
        opened = layersec.open(sealed, bob, sender=alice.certificate)
        assert opened.document == INVOICE
        print(f"bob opened it: {opened.filename} ({opened.mime_type}, {len(opened.document)} "
              f"bytes), signed by {opened.signer_subject} at {opened.signing_time}")
        try:
            layersec.open(sealed, bob, sender=bob.certificate)
        except layersec.SignerMismatchError as e:
            print(f"expecting it from someone else is refused: {e.name}")


def seal(key: str, cert: str, recipient: str, src: str, dst: str, filename: str | None) -> None:
    with layersec.Identity.load(key, cert) as me, layersec.Certificate.load(recipient) as to:
        sealed = layersec.seal(Path(src).read_bytes(), me, [to],
                               filename=filename or Path(src).name)
    Path(dst).write_bytes(sealed)


def open_(key: str, cert: str, sender: str, src: str, dst: str) -> None:
    with layersec.Identity.load(key, cert) as me, layersec.Certificate.load(sender) as frm:
        opened = layersec.open(Path(src).read_bytes(), me, sender=frm)
    Path(dst).write_bytes(opened.document)
    print(f"filename: {opened.filename}")
    print(f"MIME type: {opened.mime_type}")
    print(f"signer: {opened.signer_subject}")


def main(argv: list[str]) -> int:
    try:
        if not argv:
            demo()
        elif argv[0] == "seal" and len(argv) in (6, 7):
            seal(*argv[1:6], argv[6] if len(argv) == 7 else None)
        elif argv[0] == "open" and len(argv) == 6:
            open_(*argv[1:6])
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except layersec.LayerSecError as e:
        print(f"seal_open: {argv[0] if argv else 'demo'} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
