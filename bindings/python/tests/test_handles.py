"""Handle lifetimes: context managers, idempotent close, clear errors after close, no crashes."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest

import layersec


def fresh_identity():
    return layersec.Identity.generate("tmp", "ec")


def test_close_twice_is_harmless():
    i = fresh_identity()
    c = i.certificate
    s = layersec.CertStore()
    for h in (i, c, s):
        assert not h.closed
        h.close()
        assert h.closed
        h.close()
        assert h.closed


def test_context_managers_close():
    with fresh_identity() as i:
        with i.certificate as c:
            assert c.subject == "CN=tmp"
        assert c.closed
        with layersec.CertStore() as s:
            pass
        assert s.closed
    assert i.closed
    with pytest.raises(layersec.ClosedError):
        with i:
            pass


def test_closed_handles_raise_a_clear_error(bob_ec):
    i = fresh_identity()
    cert = i.certificate
    i.close()
    # The certificate is independent of the identity.
    assert cert.subject == "CN=tmp"
    with pytest.raises(layersec.ClosedError, match="Identity is closed"):
        layersec.seal(b"x", i, [bob_ec.certificate])
    with pytest.raises(layersec.ClosedError):
        i.certificate
    with pytest.raises(layersec.ClosedError):
        i.key_pem()
    with pytest.raises(layersec.ClosedError):
        layersec.open(b"x", i)
    assert "closed" in repr(i)

    cert.close()
    with pytest.raises(layersec.ClosedError, match="Certificate is closed"):
        cert.subject
    with pytest.raises(layersec.ClosedError):
        cert.to_pem()
    with pytest.raises(layersec.ClosedError):
        layersec.seal(b"x", bob_ec, [cert])
    with pytest.raises(layersec.ClosedError):
        layersec.open(b"x", bob_ec, sender=cert)
    with pytest.raises(layersec.ClosedError):
        layersec.inspect(b"x", sender=cert)

    store = layersec.CertStore()
    store.close()
    with pytest.raises(layersec.ClosedError):
        store.add_partner(bob_ec.certificate)
    with pytest.raises(layersec.ClosedError):
        layersec.open(b"x", bob_ec, partners=store)
    # A ValueError, like I/O on a closed file.
    assert issubclass(layersec.ClosedError, ValueError)


def test_identity_certificate_is_cached_until_closed():
    with fresh_identity() as i:
        c1 = i.certificate
        assert i.certificate is c1
        c1.close()
        c2 = i.certificate
        assert c2 is not c1 and not c2.closed
        assert c2.subject == "CN=tmp"


def test_handles_cannot_be_constructed_directly_or_pickled():
    with pytest.raises(TypeError):
        layersec.Identity()
    with pytest.raises(TypeError):
        layersec.Certificate()
    with fresh_identity() as i:
        with pytest.raises(TypeError):
            pickle.dumps(i)
        with pytest.raises(TypeError):
            pickle.dumps(i.certificate)
        # Copies are the same immutable object (never a second owner of the C handle).
        assert copy.copy(i) is i and copy.deepcopy(i.certificate) is i.certificate


def test_garbage_collection_frees_handles(alice_ec, bob_ec):
    for _ in range(200):
        i = fresh_identity()
        c = i.certificate
        s = layersec.CertStore()
        s.add_partner(c)
        o = layersec.open(layersec.seal(b"x", i, [bob_ec.certificate]), bob_ec, partners=s)
        del i, c, s, o
    gc.collect()


def test_wrong_types_are_type_errors(bob_ec):
    with pytest.raises(TypeError):
        layersec.CertStore().add_partner(bob_ec)
    with pytest.raises(TypeError):
        layersec.open(b"x", bob_ec.certificate)
    with pytest.raises(TypeError):
        layersec.inspect(b"x", recipient=bob_ec.certificate)


def test_close_during_a_call_defers_the_free():
    i = fresh_identity()
    with i._use() as ptr:  # what seal/open do around their C call
        i.close()
        assert i.closed  # new calls are refused at once...
        with pytest.raises(layersec.ClosedError):
            i.key_pem()
        assert i._ptr is not None  # ...but the running one keeps its object
        assert ptr
    assert i._ptr is None  # freed when the last user returned
    i.close()
