"""Identities, certificates and certificate stores: generate, load, export, and their errors."""

from __future__ import annotations

import shutil

import pytest

import layersec
from conftest import run_openssl, write_identity


@pytest.mark.parametrize("key_type", ["rsa2048", "rsa3072", "ec"])
def test_generate(key_type, tmp_path):
    with layersec.Identity.generate(f"party-{key_type}", key_type, days=10) as i:
        assert i.certificate.subject == f"CN=party-{key_type}"
        key = i.key_pem()
        assert key.startswith(b"-----BEGIN PRIVATE KEY-----")
        csr = i.csr_pem()
        assert csr.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
        (tmp_path / "r.csr").write_bytes(csr)
        text = run_openssl("req", "-in", tmp_path / "r.csr", "-noout", "-verify", "-subject")
        assert b"party-" + key_type.encode() in text
        (tmp_path / "c.pem").write_bytes(i.certificate.to_pem())
        text = run_openssl("x509", "-in", tmp_path / "c.pem", "-noout", "-text").decode()
        bits = {"rsa2048": "2048 bit", "rsa3072": "3072 bit", "ec": "256 bit"}[key_type]
        assert bits in text


def test_generate_default_is_rsa3072_for_two_years(tmp_path):
    with layersec.Identity.generate("default") as i:
        (tmp_path / "c.pem").write_bytes(i.certificate.to_pem())
    text = run_openssl("x509", "-in", tmp_path / "c.pem", "-noout", "-text").decode()
    assert "3072 bit" in text


def test_generate_arguments():
    with pytest.raises(ValueError):
        layersec.Identity.generate("x", "dsa")
    with pytest.raises(ValueError):
        layersec.Identity.generate("x", "ec", days=-1)
    with pytest.raises(ValueError):
        layersec.Identity.generate("x", "ec", days=2**32)
    with pytest.raises(ValueError):
        layersec.Identity.generate("x\0y", "ec")
    for bad in ("", "x" * 65, "tab\there"):
        with pytest.raises(layersec.ArgumentError) as ei:
            layersec.Identity.generate(bad, "ec")
        assert ei.value.code == 101


def test_load_pem_files_and_password(tmp_path):
    with layersec.Identity.generate("pw", "ec", password="s3cret") as gen:
        key, crt = write_identity(gen, tmp_path, "pw")
        subject = gen.certificate.subject
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    for password in ("s3cret", b"s3cret"):
        with layersec.Identity.load(key, crt, password=password) as i:
            assert i.certificate.subject == subject
    with layersec.Identity.load(str(key), str(crt), "s3cret"):
        pass
    with pytest.raises(layersec.BadPasswordError) as ei:
        layersec.Identity.load(key, crt, password="Zq9-not-it")
    assert ei.value.code == 103 and ei.value.name == "LS_ERR_BAD_PASSWORD"
    assert "Zq9" not in ei.value.message and "s3cret" not in ei.value.message
    with pytest.raises(layersec.BadPasswordError):
        layersec.Identity.load(key, crt)
    # From memory, and with the certificate in the key file.
    with layersec.Identity.from_bytes(key.read_bytes(), crt.read_bytes(), "s3cret") as i:
        assert i.certificate.subject == subject
    both = tmp_path / "both.pem"
    both.write_bytes(key.read_bytes() + crt.read_bytes())
    with layersec.Identity.load(both, password="s3cret") as i:
        assert i.certificate.subject == subject


def test_loaded_identity_exports_no_key(tmp_path, alice_ec):
    key, crt = write_identity(alice_ec, tmp_path, "alice")
    with layersec.Identity.load(key, crt) as i:
        with pytest.raises(layersec.ArgumentError) as ei:
            i.key_pem()
        assert ei.value.code == 101
        with pytest.raises(layersec.ArgumentError):
            i.csr_pem()


def test_load_pkcs12(tmp_path, alice_rsa, bob_rsa):
    key, crt = write_identity(alice_rsa, tmp_path, "alice")
    p12 = tmp_path / "alice.p12"
    run_openssl("pkcs12", "-export", "-inkey", key, "-in", crt, "-out", p12,
                "-passout", "pass:p12pass")
    with layersec.Identity.load(p12, password="p12pass") as i:
        assert i.certificate.subject == "CN=alice"
        sealed = layersec.seal(b"from p12", i, [bob_rsa.certificate])
        assert layersec.open(sealed, bob_rsa, sender=alice_rsa.certificate).document == b"from p12"
    with layersec.Identity.from_bytes(p12.read_bytes(), password="p12pass") as i:
        assert i.certificate.subject == "CN=alice"
    with pytest.raises(layersec.BadPasswordError):
        layersec.Identity.load(p12, password="nope")


def test_load_errors(tmp_path, alice_ec, bob_ec):
    akey, _ = write_identity(alice_ec, tmp_path, "alice")
    _, bcrt = write_identity(bob_ec, tmp_path, "bob")
    with pytest.raises(layersec.CertificateError) as ei:
        layersec.Identity.load(akey, bcrt)
    assert ei.value.name == "LS_ERR_KEY_CERT_MISMATCH"
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Identity.load(tmp_path / "none.key")
    assert ei.value.name == "LS_ERR_IO"
    (tmp_path / "junk.key").write_bytes(b"not a key")
    with pytest.raises(layersec.LayerSecError):
        layersec.Identity.load(tmp_path / "junk.key", bcrt)
    with pytest.raises(TypeError):
        layersec.Identity.from_bytes("a str is not bytes")


def test_certificate_pem_der_and_errors(tmp_path, alice_rsa):
    pem = alice_rsa.certificate.to_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    (tmp_path / "a.pem").write_bytes(pem)
    run_openssl("x509", "-in", tmp_path / "a.pem", "-outform", "DER", "-out", tmp_path / "a.der")
    der = (tmp_path / "a.der").read_bytes()
    for c in (layersec.Certificate.load(tmp_path / "a.pem"),
              layersec.Certificate.load(tmp_path / "a.der"),
              layersec.Certificate.from_bytes(pem),
              layersec.Certificate.from_bytes(bytearray(der))):
        with c:
            assert c.subject == "CN=alice"
            assert c.to_pem() == pem
            assert repr(c) == "<layersec.Certificate 'CN=alice'>"
    with pytest.raises(layersec.CertificateError) as ei:
        layersec.Certificate.from_bytes(b"junk")
    assert ei.value.name == "LS_ERR_CERT_INVALID"
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.Certificate.load(tmp_path / "missing.pem")
    assert ei.value.name == "LS_ERR_IO"


@pytest.fixture
def ca_issued(tmp_path):
    """A CA (openssl) that issues a certificate for a generated identity's CSR."""
    run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", tmp_path / "ca.key", "-out", tmp_path / "ca.crt",
                "-subj", "/CN=Test CA", "-days", "30")
    with layersec.Identity.generate("dave", "ec") as gen:
        (tmp_path / "dave.key").write_bytes(gen.key_pem())
        (tmp_path / "dave.csr").write_bytes(gen.csr_pem())
    run_openssl("x509", "-req", "-in", tmp_path / "dave.csr", "-CA", tmp_path / "ca.crt",
                "-CAkey", tmp_path / "ca.key", "-CAcreateserial", "-days", "10",
                "-out", tmp_path / "dave.crt")
    return tmp_path


def test_anchor_vouches_for_csr_issued_certificate(ca_issued, bob_ec, alice_ec):
    d = ca_issued
    with layersec.Identity.load(d / "dave.key", d / "dave.crt") as dave, \
            layersec.Certificate.load(d / "ca.crt") as ca:
        sealed = layersec.seal(b"via CA", dave, [bob_ec.certificate])
        store = layersec.CertStore()
        with pytest.raises(layersec.UnknownSignerError):
            layersec.open(sealed, bob_ec, partners=store)
        store.add_anchor(ca)
        opened = layersec.open(sealed, bob_ec, partners=store)
        assert opened.signer_subject == "CN=dave"
        # The CA is no partner itself, and vouches for nobody it did not sign.
        with pytest.raises(layersec.UnknownSignerError, match="does not chain"):
            layersec.open(layersec.seal(b"x", alice_ec, [bob_ec.certificate]), bob_ec,
                          partners=store)


def test_certstore_load_dir(ca_issued, alice_ec, bob_ec, carol):
    d = ca_issued
    store_dir = d / "store"
    (store_dir / "anchors").mkdir(parents=True)
    shutil.copy(d / "ca.crt", store_dir / "anchors" / "ca.pem")
    (store_dir / "alice.pem").write_bytes(alice_ec.certificate.to_pem())
    store = layersec.CertStore.load_dir(store_dir)
    with layersec.Identity.load(d / "dave.key", d / "dave.crt") as dave:
        for who in (alice_ec, dave):
            sealed = layersec.seal(b"hi", who, [bob_ec.certificate])
            assert layersec.open(sealed, bob_ec, partners=store).document == b"hi"
    # With anchors in the store, a stranger is still an unknown signer (it does not chain to them).
    with pytest.raises(layersec.UnknownSignerError, match="does not chain"):
        layersec.open(layersec.seal(b"x", carol, [bob_ec.certificate]), bob_ec, partners=store)
    with pytest.raises(layersec.ArgumentError) as ei:
        layersec.CertStore.load_dir(d / "missing")
    assert ei.value.name == "LS_ERR_IO"
    store.close()
