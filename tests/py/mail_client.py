#!/usr/bin/env python3
"""Independent SMTP/IMAP/POP3 clients (Python's smtplib, imaplib, poplib) for the mail-server tests.

Reads a JSON list of actions on standard input and writes a JSON list of results (one per
action, in order) on standard output. Every action has "op", "url" (smtp://, smtps://, imap://,
imaps://, pop3://, pop3s:// with host and port), "ca" (the CA file to trust; certificate and host
name are verified), "user" and "password". Plain-text URLs use STARTTLS/STLS first.

  {"op": "send", ..., "from": ADDR, "to": [ADDR...], "data": TEXT | "size": N}
      -> {"ok": true, "refused": {rcpt: [code, text]}} or {"error": ..., "code": N}
  {"op": "imap", ...}  -> {"ok": true, "messages": [TEXT...]} (every message of INBOX)
  {"op": "pop3", ...}  -> {"ok": true, "uidl": [UID...], "sizes": [N...]}
  {"op": "smtp-ehlo", "url": ...} -> {"ok": true, "before_tls": [KEYWORD...], "after_tls": [...]}

Every result has "elapsed" (seconds, connect to quit). A failure is a result, not an exit status:
{"ok": false, "error": "ExceptionName: text", "code": SMTP code if any}.
"""
import email.utils
import imaplib
import json
import poplib
import smtplib
import ssl
import sys
import time
import urllib.parse

TIMEOUT = 20


def ctx(a):
    c = ssl.create_default_context(cafile=a["ca"])
    return c


def hostport(a):
    u = urllib.parse.urlsplit(a["url"])
    return u.scheme, u.hostname, u.port


def smtp_connect(a):
    scheme, host, port = hostport(a)
    if scheme == "smtps":
        s = smtplib.SMTP_SSL(host, port, context=ctx(a), timeout=TIMEOUT)
        s.ehlo()
    else:
        s = smtplib.SMTP(host, port, timeout=TIMEOUT)
        s.ehlo()
        s.starttls(context=ctx(a))
        s.ehlo()
    return s


def message(a):
    if "data" in a:
        return a["data"]
    n = int(a["size"])
    head = (
        f"From: {a['from']}\r\nTo: {', '.join(a['to'])}\r\nSubject: {n} bytes\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n\r\n"
    )
    line = "x" * 76 + "\r\n"
    body = line * (max(0, n - len(head)) // len(line) + 1)
    return head + body


def op_send(a):
    s = smtp_connect(a)
    try:
        s.login(a["user"], a["password"])
        refused = s.sendmail(a["from"], a["to"], message(a))
        return {"ok": True, "refused": {k: [v[0], v[1].decode()] for k, v in refused.items()}}
    finally:
        try:
            s.quit()
        except Exception:
            pass


def op_smtp_ehlo(a):
    scheme, host, port = hostport(a)
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo()
    before = sorted(f"{k} {v}".strip() for k, v in s.esmtp_features.items())
    s.starttls(context=ctx(a))
    s.ehlo()
    after = sorted(f"{k} {v}".strip() for k, v in s.esmtp_features.items())
    s.quit()
    return {"ok": True, "before_tls": before, "after_tls": after}


def op_imap(a):
    scheme, host, port = hostport(a)
    if scheme == "imaps":
        i = imaplib.IMAP4_SSL(host, port, ssl_context=ctx(a), timeout=TIMEOUT)
    else:
        i = imaplib.IMAP4(host, port, timeout=TIMEOUT)
        i.starttls(ssl_context=ctx(a))
    try:
        i.login(a["user"], a["password"])
        typ, data = i.select("INBOX", readonly=True)
        n = int(data[0])
        msgs = []
        for k in range(1, n + 1):
            typ, d = i.fetch(str(k), "(BODY.PEEK[])")
            msgs.append(d[0][1].decode("utf-8", "replace"))
        return {"ok": True, "messages": msgs}
    finally:
        try:
            i.logout()
        except Exception:
            pass


def op_pop3(a):
    scheme, host, port = hostport(a)
    if scheme == "pop3s":
        p = poplib.POP3_SSL(host, port, context=ctx(a), timeout=TIMEOUT)
    else:
        p = poplib.POP3(host, port, timeout=TIMEOUT)
        p.stls(context=ctx(a))
    try:
        p.user(a["user"])
        p.pass_(a["password"])
        uidl = [l.decode().split()[1] for l in p.uidl()[1]]
        sizes = [int(l.decode().split()[1]) for l in p.list()[1]]
        return {"ok": True, "uidl": uidl, "sizes": sizes}
    finally:
        try:
            p.quit()
        except Exception:
            pass


OPS = {"send": op_send, "imap": op_imap, "pop3": op_pop3, "smtp-ehlo": op_smtp_ehlo}


def main():
    results = []
    for a in json.load(sys.stdin):
        t = time.monotonic()
        try:
            r = OPS[a["op"]](a)
        except Exception as e:
            code = getattr(e, "smtp_code", None)
            if isinstance(e, smtplib.SMTPRecipientsRefused):
                code = next(iter(e.recipients.values()))[0]
            r = {"ok": False, "error": f"{type(e).__name__}: {e}", "code": code}
        r["elapsed"] = time.monotonic() - t
        results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
