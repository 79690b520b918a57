#!/usr/bin/env python3
"""Independent verification of Layer Security AS4 messages with the PyPI package `as4` 0.2.0.

`as4` shares no code with ours: its own MIME split (email package), its own XML model (lxml +
pydantic), exclusive c14n from libxml2, RSA/AES-GCM from `cryptography`. Driven by
tests/interop_as4.rs; one sub-command per check, result on stdout as `key=value` lines.

Exit codes: 0 accepted, 1 rejected by `as4` (the line `REJECTED <exception class>: <detail>`
says why), 2 bad usage or a harness problem, 3 a Python package is missing.

    as4_verify.py deps
    as4_verify.py user-message --content-type CT_FILE --body BODY_FILE --signer-cert PEM
        --recipient-cert PEM --recipient-key PEM --recipient-id ID [--peppol]
        [--expect CID=FILE ...] [--tamper-plaintext CID] [--receipt RECEIPT_XML --receipt-signer PEM]
        [--write-receipt OUT_XML]
    as4_verify.py signal --soap SOAP_XML --signer-cert PEM
"""

import argparse
import base64
import hashlib
import os
import sys


def fail_missing(what):
    print(f"MISSING {what}: install with scripts/deps.sh (pip install as4==0.2.0 xmlsec)", flush=True)
    sys.exit(3)


try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from lxml import etree
except ImportError as e:  # pragma: no cover - reported to the Rust test
    fail_missing(f"{e.name} ({e})")

try:
    import importlib.metadata as md

    AS4_VERSION = md.version("as4")
    from as4 import (
        AS4InternalCredentials,
        AS4InternalParty,
        AS4LocalPrivateKey,
        AS4ParseContext,
        AS4PartyIdentity,
        SecurityPolicy,
        pinned_certificates,
    )
    from as4.core.message import AS4Message
    from as4.core.receipt import AS4Receipt
    from as4.errors import ReceiptVerificationError
    from as4.peppol import PeppolAS4Profile, parse_peppol_message
    from as4.utils.mime_handler import MIMEHandler
except ImportError as e:
    fail_missing(f"as4 ({e})")
except md.PackageNotFoundError:
    fail_missing("as4 (not installed)")

NS = {
    "S12": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


def out(key, value):
    print(f"{key}={value}", flush=True)


def harness_error(msg):
    print(f"HARNESS {msg}", flush=True)
    sys.exit(2)


def rejected(name, detail):
    print(f"REJECTED {name}: {detail}", flush=True)
    sys.exit(1)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def fingerprint(cert):
    return cert.fingerprint(hashes.SHA256()).hex()


def local_party(party_id, party_type, cert, key):
    return AS4InternalParty(
        identity=AS4PartyIdentity(party_id=party_id, party_type=party_type),
        credentials=AS4InternalCredentials(certificate=cert, private_key=AS4LocalPrivateKey(key)),
    )


def split_mime(content_type, body):
    """The SOAP part and the attachments by Content-ID, with the standard library's MIME parser."""
    msg = MIMEHandler.parser.parsebytes(MIMEHandler.payload_from_request({"Content-Type": content_type}, body))
    if msg.get_content_type() != "multipart/related":
        harness_error(f"not multipart/related: {msg.get_content_type()}")
    soap, attachments = None, {}
    for part in msg.iter_parts():
        data = part.get_payload(decode=True)
        if part.get_content_type() == "application/soap+xml" and soap is None:
            soap = data
            continue
        cid = MIMEHandler.get_content_id(part)
        if not cid:
            harness_error("an attachment without Content-ID")
        attachments[cid] = data
    if soap is None:
        harness_error("no application/soap+xml part")
    return soap, attachments


def tamper_plaintext(soap, attachments, cid, key):
    """Decrypt attachment `cid`, change one byte of its (compressed) plaintext and encrypt it again
    with the same session key: it still decrypts, so only the signed attachment digest can catch it."""
    env = etree.fromstring(soap)
    ek = env.find("S12:Header/wsse:Security/xenc:EncryptedKey", NS)
    session = key.decrypt(
        base64.b64decode(ek.findtext("xenc:CipherData/xenc:CipherValue", namespaces=NS)),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    blob = attachments[cid]
    plain = bytearray(AESGCM(session).decrypt(blob[:12], blob[12:], None))
    plain[len(plain) // 2] ^= 0x01
    nonce = os.urandom(12)
    attachments[cid] = nonce + AESGCM(session).encrypt(nonce, bytes(plain), None)


def cmd_user_message(a):
    with open(a.content_type) as f:
        content_type = f.read().strip()
    with open(a.body, "rb") as f:
        body = f.read()
    signer = load_cert(a.signer_cert)
    rcpt_cert, rcpt_key = load_cert(a.recipient_cert), load_key(a.recipient_key)
    party_type = "urn:fdc:peppol.eu:2017:identifiers:ap" if a.peppol else None
    me = local_party(a.recipient_id, party_type, rcpt_cert, rcpt_key)
    # Default policy of `as4`: signature and encryption required, the signature must cover
    # eb:Messaging, the SOAP Body and every payload, all digests verified. Trust: the pinned signer.
    policy = SecurityPolicy(signer_resolver=pinned_certificates(signer))

    soap, attachments = split_mime(content_type, body)
    out("attachments", len(attachments))
    if a.tamper_plaintext:
        tamper_plaintext(soap, attachments, a.tamper_plaintext, rcpt_key)

    # 1. The core parser: signature, coverage, reference digests (incl. cid: on the decrypted
    #    bytes), decryption (RSA-OAEP + AES-128-GCM), decompression.
    ctx = AS4ParseContext(local_party=me, security_policy=policy)
    m = AS4Message.parse(parse_context=ctx, soap_bytes=soap, mime_attachments=attachments)
    if not m.parse_successful:
        rejected(type(m.parse_error).__name__, m.parse_error.detail)
    if m.signer_certificate is None or fingerprint(m.signer_certificate) != fingerprint(signer):
        rejected("WrongSigner", "the verified signer is not the pinned certificate")
    out("core", "accepted")
    out("message_id", m.message_id)
    out("signer", m.signer_certificate.subject.rfc4514_string())
    out("addressed_to", m.addressed_to.party_id if m.addressed_to else "")
    out("signed_references", " ".join(r.uri for r in m.signed_references))
    for cid, data in sorted(m.decrypted_data.items()):
        out(f"decrypted[{cid}]", f"{len(data)} {hashlib.sha256(data).hexdigest()}")
    for spec in a.expect or []:
        cid, _, path = spec.partition("=")
        with open(path, "rb") as f:
            want = f.read()
        got = m.decrypted_data.get(cid)
        if got != want:
            rejected("PayloadMismatch", f"cid:{cid} decrypted to {None if got is None else len(got)} bytes, "
                     f"expected {len(want)}")
        out(f"payload[{cid}]", "matches")

    # 2. The Peppol profile's receiving path (HTTP headers + body, its own MIME unpacking, party id
    #    types, SBDH schema validation, originalSender/finalRecipient against the SBDH).
    if a.peppol:
        ex = parse_peppol_message(
            {"Content-Type": content_type}, body, local_party=me, security_policy=policy
        )
        pm = ex.message
        if pm is None or not pm.parse_successful:
            err = pm.parse_error if pm is not None else None
            rejected("peppol:" + type(err).__name__, getattr(err, "detail", ""))
        out("peppol", "accepted")
        out("peppol_sender", pm.sender)
        out("peppol_recipient", pm.recipient)
        out("peppol_document_type", pm.document_type_identifier_value)
        out("peppol_process", pm.process_identifier)
        if a.write_receipt:
            # `as4`'s own signed NRR receipt for our message, for our side to check.
            _headers, receipt_xml = ex.build_signal()
            with open(a.write_receipt, "wb") as f:
                f.write(receipt_xml)
            out("receipt_written", a.write_receipt)

    # 3. Our NRR receipt for this message, as `as4`'s sending side checks a receipt: signed by the
    #    expected partner, covering eb:Messaging, and acknowledging exactly what was signed.
    if a.receipt:
        with open(a.receipt, "rb") as f:
            receipt_xml = f.read()
        try:
            r = AS4Receipt.parse(receipt_xml, load_cert(a.receipt_signer))
            if r.original_message_id != m.message_id:
                raise ReceiptVerificationError(
                    f"receipt refers to {r.original_message_id!r}, not {m.message_id!r}")
            r.verify_non_repudiation(m.signed_references)
        except ReceiptVerificationError as e:
            rejected("receipt:ReceiptVerificationError", str(e))
        out("receipt", "accepted")
        out("receipt_acknowledges", " ".join(x.uri for x in r.non_repudiated_references))


def cmd_signal(a):
    """A signed signal (our NRR receipt or Error) through `as4`'s signal verifier."""
    with open(a.soap, "rb") as f:
        xml = f.read()
    try:
        r = AS4Receipt.parse(xml, load_cert(a.signer_cert))
    except ReceiptVerificationError as e:
        rejected("ReceiptVerificationError", str(e))
    out("signal", "accepted")
    if r.error is not None:
        out("error_code", r.error.error_code)
        out("error_severity", r.error.severity)
    if r.receipt is not None:
        out("acknowledges", " ".join(x.uri for x in r.non_repudiated_references))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deps")
    u = sub.add_parser("user-message")
    u.add_argument("--content-type", required=True)
    u.add_argument("--body", required=True)
    u.add_argument("--signer-cert", required=True)
    u.add_argument("--recipient-cert", required=True)
    u.add_argument("--recipient-key", required=True)
    u.add_argument("--recipient-id", required=True)
    u.add_argument("--peppol", action="store_true")
    u.add_argument("--expect", action="append")
    u.add_argument("--tamper-plaintext")
    u.add_argument("--receipt")
    u.add_argument("--receipt-signer")
    u.add_argument("--write-receipt")
    s = sub.add_parser("signal")
    s.add_argument("--soap", required=True)
    s.add_argument("--signer-cert", required=True)
    a = p.parse_args()
    if a.cmd == "deps":
        out("as4", AS4_VERSION)
        if AS4_VERSION != "0.2.0":
            print(f"MISSING as4==0.2.0 (found {AS4_VERSION}): run scripts/deps.sh", flush=True)
            sys.exit(3)
    elif a.cmd == "user-message":
        if bool(a.receipt) != bool(a.receipt_signer):
            harness_error("--receipt and --receipt-signer go together")
        cmd_user_message(a)
    else:
        cmd_signal(a)


if __name__ == "__main__":
    main()
