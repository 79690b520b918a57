"""layersec.Client against a real Messaging Service: the `layersec-server` built next to the
library under test (LAYERSEC_LIB's folder, e.g. target/debug) is started by a fixture; the tests
are skipped with the reason when it is not there (`cargo build -p ls-server`)."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import layersec
from layersec import _errors, _lib

from conftest import skip_or_fail, write_identity


def server_binary() -> Path:
    return Path(_lib.path).resolve().parent / "layersec-server"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A running layersec-server: (folder, config file, AS4 URL)."""
    exe = server_binary()
    if not exe.is_file():
        skip_or_fail(
            f"{exe} is not built (cargo build -p ls-server): the client tests need a real service"
        )
    d = tmp_path_factory.mktemp("service")
    subprocess.run(
        [exe, "init", "--dir", d, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        check=True,
        capture_output=True,
    )
    config = d / "layersec-server.toml"
    proc = subprocess.Popen(
        [exe, "serve", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: queue.Queue = queue.Queue()

    def drain():  # the whole log, so the service never blocks on a full pipe
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            if '"event":"listening"' in line:
                lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        url = json.loads(lines.get(timeout=60))["as4"]
    except queue.Empty:
        proc.kill()
        pytest.fail("layersec-server did not report listening")
    try:
        yield d, config, url
    finally:
        proc.kill()
        proc.wait()


def write_config(folder: Path, party_id: str, url: str, service_cert: Path, ca_file=None) -> Path:
    """A client folder: a generated EC identity and a minimal layersec.toml."""
    (folder / "identity").mkdir(parents=True)
    with layersec.Identity.generate(party_id, "ec", days=30) as ident:
        key, crt = write_identity(ident, folder / "identity", "me")
    q = json.dumps  # a JSON string is a valid TOML basic string for these values
    text = (
        f"[party]\nid = {q(party_id)}\n\n"
        f"[identity]\nkey = {q(str(key))}\ncertificate = {q(str(crt))}\n\n"
        f"[service]\nurl = {q(url)}\nservice_certificate = {q(str(service_cert))}\n"
    )
    if ca_file is not None:
        text += f"ca_file = {q(str(ca_file))}\n"
    cfg = folder / "layersec.toml"
    cfg.write_text(text)
    return cfg


class Party:
    def __init__(self, folder: Path, party_id: str, config: Path):
        self.folder, self.id, self.config = folder, party_id, config
        self.cert = folder / "identity" / "me.crt"

    def trust(self, other: "Party") -> None:
        partners = self.folder / "partners"
        partners.mkdir(exist_ok=True)
        (partners / f"{other.id}.crt").write_bytes(other.cert.read_bytes())


def admin(config: Path, *args: str) -> dict:
    p = subprocess.run(
        [server_binary(), "admin", "--config", config, *args], capture_output=True, check=False
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


@pytest.fixture
def parties(service, tmp_path):
    """Two new parties registered at the service, each trusting the other."""
    d, config, url = service
    made = []
    for n in ("sender", "recipient"):
        pid = f"py-{n}-{os.urandom(4).hex()}"
        folder = tmp_path / pid
        cfg = write_config(folder, pid, url, d / "identity" / "service.crt", d / "tls" / "server.crt")
        sub = admin(config, "subscriber", "add", "--organisation", pid)
        admin(config, "party", "add", "--subscriber", str(sub["id"]), "--party", pid,
              "--certificate", str(folder / "identity" / "me.crt"))
        made.append(Party(folder, pid, cfg))
    a, b = made
    a.trust(b)
    b.trust(a)
    return a, b


def now() -> datetime:
    return datetime.now(timezone.utc)


def test_send_and_poll_round_trip(parties, tmp_path):
    a, b = parties
    doc = b"<Invoice id='7'>" + os.urandom(2000).hex().encode() + b"</Invoice>"
    f = tmp_path / "order.xml"
    f.write_bytes(b"<Order/>")
    with layersec.Client(a.config) as sender, layersec.Client(b.config) as recipient:
        mid = sender.send(doc, "invoice.xml", b.id, conversation="conv-1")
        mid2 = sender.send_file(f, b.id, action="Order")
        assert mid and mid2 and mid != mid2
        got = recipient.poll()
        assert recipient.poll() == []  # receipted: not offered again
    assert sorted(r.message_id for r in got) == sorted([mid, mid2])
    first = next(r for r in got if r.message_id == mid)
    second = next(r for r in got if r.message_id == mid2)
    assert first.name == "invoice.xml" and second.name == "order.xml"
    assert (first.sender, second.sender) == (a.id, a.id)
    assert first.conversation_id == "conv-1"
    assert second.conversation_id == mid2
    assert (first.size, second.size) == (len(doc), 8)
    assert Path(first.path).read_bytes() == doc
    assert Path(first.path).parent == b.folder / "inbox"
    assert Path(second.path).read_bytes() == b"<Order/>"
    assert Path(first.path + ".meta.json").is_file()
    for r in got:
        assert abs(r.received_at - now()) < timedelta(minutes=5)
        assert r.signing_time is not None and abs(r.signing_time - now()) < timedelta(minutes=5)
    # The sender keeps its copies in sent/.
    assert (a.folder / "sent" / "invoice.xml").read_bytes() == doc


def test_signed_receipts_come_back_and_can_be_switched_off(parties):
    a, b = parties
    with layersec.Client(a.config) as sender, layersec.Client(b.config) as recipient:
        asked = sender.send(b"<Invoice n='1'/>", "asked.xml", b.id)
        quiet = sender.send(b"<Invoice n='2'/>", "quiet.xml", b.id, receipt=False)
        assert sender.receipt_state(asked) == "waiting"
        assert sender.receipt_state(quiet) == "not_requested"
        assert sender.receipt_state("no-such-id@nowhere") == "unknown"
        assert [r["message_id"] for r in sender.receipts(waiting=True)] == [asked]
        assert len(recipient.poll()) == 2
        assert sender.poll() == []  # a receipt is no document
        assert sender.receipt_state(asked) == "processed"
        assert sender.receipts(waiting=True) == []
        listed = {r["message_id"]: r for r in sender.receipts()}
    r = listed[asked]["receipt"]
    assert r["verified"] is True and r["partner"] == b.id and r["disposition"] == "processed"
    assert listed[quiet]["state"] == "not_requested"
    assert (a.folder / "sent" / "asked.xml.receipt.p7m").is_file()
    assert (a.folder / "sent" / "asked.xml.signed.p7m").is_file()
    assert not (a.folder / "sent" / "quiet.xml.signed.p7m").exists()


def test_unknown_partner_raises_and_queues_nothing(parties):
    a, _ = parties
    with layersec.Client(a.config) as c:
        with pytest.raises(layersec.CertificateError) as ei:
            c.send(b"x", "x.txt", "nobody-knows-me")
    e = ei.value
    assert not isinstance(e, layersec.QueuedForRetry)
    assert e.name == "LS_ERR_CERT_NOT_FOUND" and "nobody-knows-me" in e.message
    assert e.function == "ls_client_send"
    assert e.transient is False
    assert list((a.folder / "state" / "outgoing").iterdir()) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_service_down_queues_for_retry(tmp_path):
    # No service needed: nobody listens on the port.
    url = f"https://127.0.0.1:{free_port()}/as4"
    with layersec.Identity.generate("the-service", "ec", days=30) as svc:
        service_cert = tmp_path / "service.crt"
        service_cert.write_bytes(svc.certificate.to_pem())
    a = Party(tmp_path / "a", "down-a", write_config(tmp_path / "a", "down-a", url, service_cert))
    b = Party(tmp_path / "b", "down-b", write_config(tmp_path / "b", "down-b", url, service_cert))
    a.trust(b)
    with layersec.Client(a.config) as c:
        with pytest.raises(layersec.QueuedForRetry) as ei:
            c.send(b"doc", "doc.txt", b.id)
        e = ei.value
        assert e.message_id and e.message_id in e.message
        assert isinstance(e.cause, layersec.TransportError)
        assert (e.code, e.name) == (_errors.LS_ERR_CONNECT_FAILED, "LS_ERR_CONNECT_FAILED")
        assert isinstance(e, layersec.LayerSecError) and not isinstance(e, layersec.TransportError)
        assert e.__cause__ is e.cause
        assert e.transient is True and e.cause.transient is True
        assert len(list((a.folder / "state" / "outgoing").iterdir())) == 1  # waits there
        assert c.run_due_jobs() == 0  # still down: nothing delivered, still queued
        assert len(list((a.folder / "state" / "outgoing").iterdir())) == 1
        # Polling a service that is down raises the transport error itself.
        with pytest.raises(layersec.TransportError) as pe:
            c.poll()
        assert pe.value.code == _errors.LS_ERR_CONNECT_FAILED
        assert pe.value.transient is True
        assert pe.value.received == []


def test_configuration_errors_and_closed_client(tmp_path):
    with pytest.raises(layersec.StoreError) as ei:
        layersec.Client(tmp_path / "missing.toml")
    assert ei.value.name == "LS_ERR_CONFIG_INVALID"
    assert "missing.toml" in ei.value.message
    bad = tmp_path / "bad.toml"
    bad.write_text("[party]\nid = 1\n")
    with pytest.raises(layersec.StoreError) as ei:
        layersec.Client(bad)
    assert "party.id" in ei.value.message

    with layersec.Identity.generate("svc", "ec", days=30) as svc:
        (tmp_path / "svc.crt").write_bytes(svc.certificate.to_pem())
    cfg = write_config(tmp_path / "c", "closer", "https://127.0.0.1:9/as4", tmp_path / "svc.crt")
    c = layersec.Client(cfg)
    assert repr(c) == "<layersec.Client>"
    with pytest.raises(TypeError):
        c.send("not bytes", "a.txt", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.send(b"x", "a\0b", "x")
    with pytest.raises(layersec.ArgumentError) as ei:
        c.send(b"x", "dir/", "x")  # no base name
    assert ei.value.name == "LS_ERR_INVALID_ARGUMENT"
    with pytest.raises(layersec.ArgumentError) as ei:
        c.send_file(tmp_path / "nope.txt", "x")
    assert ei.value.name == "LS_ERR_IO"
    c.close()
    c.close()
    assert c.closed and repr(c) == "<layersec.Client (closed)>"
    with pytest.raises(layersec.ClosedError):
        c.poll()


def test_error_table_is_still_complete(header_text):
    """QueuedForRetry is no code of its own: the code table stays the header's."""
    import re

    codes = {m.group(1) for m in re.finditer(r"^#define\s+(LS_ERR_\w+)\s+\d+", header_text, re.M)}
    assert codes == set(_errors.CODES)
    for name, value in _errors.CODES.items():
        assert _errors.error_class(value) is not layersec.QueuedForRetry, name
    assert issubclass(layersec.QueuedForRetry, layersec.LayerSecError)
    assert layersec.QueuedForRetry.__module__ == "layersec"
    assert {"Client", "Received", "QueuedForRetry"} <= set(layersec.__all__)
