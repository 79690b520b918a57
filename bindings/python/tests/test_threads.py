"""Identities, certificates and filled stores are shared by threads (layersec.h: immutable,
usable by any number of threads); the binding keeps close() and CertStore.add_* safe under
concurrency and releases the GIL during library calls."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import layersec

N_THREADS = 8
ROUNDS = 12


def test_concurrent_seal_open_with_shared_handles(alice_rsa, bob_rsa, alice_ec, bob_ec, carol):
    store = layersec.CertStore()
    store.add_partner(alice_rsa.certificate, "alice")
    store.add_partner(alice_ec.certificate, "alice-ec")
    # Shared Certificate objects (not fresh ones per call).
    certs = {i: i.certificate for i in (alice_rsa, bob_rsa, alice_ec, bob_ec, carol)}
    barrier = threading.Barrier(N_THREADS)

    def worker(seed: int) -> int:
        rnd = random.Random(seed)
        barrier.wait()
        done = 0
        for n in range(ROUNDS):
            sender = rnd.choice([alice_rsa, alice_ec])
            recipient = rnd.choice([bob_rsa, bob_ec])
            doc = os.urandom(rnd.randrange(0, 3000)) + b"%d-%d" % (seed, n)
            sealed = layersec.seal(doc, sender, [certs[recipient], certs[carol]],
                                   output=rnd.choice(["der", "smime", "pem"]),
                                   cbc=rnd.random() < 0.5, compress=rnd.choice([None, True, False]),
                                   filename=f"f{seed}-{n}.bin")
            opened = layersec.open(sealed, recipient,
                                   **rnd.choice([{"sender": certs[sender]}, {"partners": store}]))
            assert opened.document == doc
            assert opened.filename == f"f{seed}-{n}.bin"
            assert opened.signer_subject == certs[sender].subject
            # The third party can read it too; the wrong sender is refused.
            assert layersec.open(sealed, carol, partners=store).document == doc
            with pytest.raises(layersec.SignerMismatchError):
                layersec.open(sealed, recipient, sender=certs[carol])
            assert layersec.inspect(sealed, recipient, certs[sender])["verified"] is True
            done += 1
        return done

    with ThreadPoolExecutor(N_THREADS) as pool:
        results = list(pool.map(worker, range(N_THREADS)))
    assert results == [ROUNDS] * N_THREADS
    store.close()


def test_gil_is_released_during_library_calls():
    ticks = 0
    finished = threading.Event()

    def slow():
        try:
            layersec.Identity.generate("slow", "rsa3072").close()
        finally:
            finished.set()

    t = threading.Thread(target=slow)
    start = time.monotonic()
    t.start()
    while not finished.is_set():
        ticks += 1
        time.sleep(0)
    t.join()
    elapsed = time.monotonic() - start
    # While the key is generated (typically 0.2 s or more) this thread keeps running.
    if elapsed < 0.05:
        pytest.skip("key generation was too quick to tell")
    assert ticks > 100, (ticks, elapsed)


def test_close_while_other_threads_use_the_handle(bob_ec):
    """close() during concurrent use never frees under a running call: the users finish or get
    ClosedError, and the C object is freed once."""
    for _ in range(5):
        ident = layersec.Identity.generate("short-lived", "ec")
        cert = ident.certificate
        outcomes = []
        go = threading.Event()

        def user():
            go.wait()
            for _ in range(30):
                try:
                    s = layersec.seal(b"doc", ident, [bob_ec.certificate, cert])
                    layersec.open(s, bob_ec, sender=cert)
                    outcomes.append("ok")
                except layersec.ClosedError:
                    outcomes.append("closed")
                    return

        threads = [threading.Thread(target=user) for _ in range(4)]
        for t in threads:
            t.start()
        go.set()
        time.sleep(0.005)
        ident.close()
        cert.close()
        for t in threads:
            t.join()
        assert ident.closed and cert.closed
        assert ident._ptr is None and cert._ptr is None  # freed after the last user
        assert set(outcomes) <= {"ok", "closed"}


def test_store_additions_wait_for_readers(alice_ec, bob_ec, carol):
    store = layersec.CertStore()
    store.add_partner(alice_ec.certificate)
    from_alice = layersec.seal(b"a", alice_ec, [bob_ec.certificate])
    from_carol = layersec.seal(b"c", carol, [bob_ec.certificate])
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                assert layersec.open(from_alice, bob_ec, partners=store).document == b"a"
                try:
                    layersec.open(from_carol, bob_ec, partners=store)
                except layersec.UnknownSignerError:
                    pass  # not added yet
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
                return

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(30):
        store.add_partner(carol.certificate, f"carol-{i}")
        store.add_anchor(carol.certificate)
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert layersec.open(from_carol, bob_ec, partners=store).document == b"c"
