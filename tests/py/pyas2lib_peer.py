#!/usr/bin/env python3
"""pyas2lib (PyPI) as the AS2-era peer of Layer Security's `legacy-as2` profile.

pyas2lib shares no code with ours: its own MIME (the email package), asn1crypto for CMS,
oscrypto for RSA and the ciphers. Driven by ls-cli/tests/interop_pyas2lib.rs; one sub-command
per direction, results on stdout as `key=value` lines.

Exit codes: 0 accepted, 1 refused by pyas2lib (the line `REJECTED <exception class>: <detail>`
says why), 2 bad usage, 3 pyas2lib is missing or cannot load OpenSSL (scripts/deps.sh installs
it and runs scripts/patch-oscrypto.py).

    pyas2lib_peer.py deps
    pyas2lib_peer.py parse --org-key PEM --org-cert PEM --partner-cert PEM --in MSG --out DOC
        MSG is an S/MIME entity (application/pkcs7-mime; smime-type=enveloped-data) from
        partner "acme" to us, "globex"; pyas2lib must find it encrypted and signed (the
        partner is set up to require both), decrypt it with our key, verify it against the
        partner's certificate and decompress it. DOC receives what pyas2lib delivers.
    pyas2lib_peer.py build --sender-key PEM --sender-cert PEM --partner-cert PEM --in DOC
        --out MSG [--content-type TYPE] [--compress] [--enc-alg ALG]
        pyas2lib signs and encrypts DOC from "acme" to "globex" with its defaults (3DES unless
        --enc-alg, RSA PKCS#1 v1.5 key transport, SHA-256 multipart/signed) and writes the
        whole entity, AS2 headers included, to MSG.
"""

import argparse
import sys


def missing(what):
    print(f"MISSING {what}: run scripts/deps.sh (pip install pyas2lib, then "
          "scripts/patch-oscrypto.py for OpenSSL 3)", flush=True)
    sys.exit(3)


try:
    import importlib.metadata as md

    VERSION = md.version("pyas2lib")
    from pyas2lib import as2
    from pyas2lib.utils import mime_to_bytes
except ImportError as e:
    missing(f"pyas2lib ({e})")
except Exception as e:  # oscrypto's LibraryNotFoundError on an unpatched OpenSSL 3 check
    missing(f"a loadable oscrypto ({type(e).__name__}: {e})")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def cmd_deps(_):
    import oscrypto

    print(f"pyas2lib={VERSION}")
    print(f"oscrypto={md.version('oscrypto')} backend={oscrypto.backend()}")
    return 0


def cmd_parse(a):
    key = read(a.org_key) + read(a.org_cert)
    org = as2.Organization(as2_name="globex", sign_key=key, decrypt_key=key)
    partner = as2.Partner(as2_name="acme", verify_cert=read(a.partner_cert),
                          encrypt_cert=read(a.partner_cert), sign=True, encrypt=True)
    # The AS2 HTTP headers pyas2lib routes by, before the S/MIME entity.
    raw = (b"AS2-Version: 1.2\r\nAS2-From: acme\r\nAS2-To: globex\r\n"
           b"Message-ID: <interop@layersec>\r\n" + read(a.input))
    msg = as2.Message()
    status, (exc, _tb), _mdn = msg.parse(raw, find_org_cb=lambda _: org,
                                         find_partner_cb=lambda _: partner)
    print(f"status={status}")
    print(f"encrypted={msg.encrypted} signed={msg.signed} compressed={msg.compressed}")
    print(f"digest_alg={msg.digest_alg} enc_alg={msg.enc_alg}")
    if exc is not None or status != "processed":
        print(f"REJECTED {type(exc).__name__}: {exc}")
        return 1
    with open(a.out, "wb") as f:
        f.write(msg.content)
    return 0


def cmd_build(a):
    key = read(a.sender_key) + read(a.sender_cert)
    org = as2.Organization(as2_name="acme", sign_key=key, decrypt_key=key)
    kw = {"enc_alg": a.enc_alg} if a.enc_alg else {}
    partner = as2.Partner(as2_name="globex", encrypt_cert=read(a.partner_cert),
                          sign=True, encrypt=True, compress=a.compress, **kw)
    msg = as2.Message(sender=org, receiver=partner)
    msg.build(read(a.input), filename="document", content_type=a.content_type)
    with open(a.out, "wb") as f:
        f.write(mime_to_bytes(msg.payload))
    print(f"enc_alg={msg.enc_alg} digest_alg={msg.digest_alg} compressed={msg.compressed}")
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deps")
    s = sub.add_parser("parse")
    for o in ("--org-key", "--org-cert", "--partner-cert", "--out"):
        s.add_argument(o, required=True)
    s.add_argument("--in", required=True, dest="input")
    b = sub.add_parser("build")
    for o in ("--sender-key", "--sender-cert", "--partner-cert", "--out"):
        b.add_argument(o, required=True)
    b.add_argument("--in", required=True, dest="input")
    b.add_argument("--content-type", default="application/octet-stream")
    b.add_argument("--compress", action="store_true")
    b.add_argument("--enc-alg")
    a = p.parse_args()
    return {"deps": cmd_deps, "parse": cmd_parse, "build": cmd_build}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
