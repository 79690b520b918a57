//! Keys on a PKCS#11 token (SoftHSM2) against keys in memory, in one run (issue 17):
//! - `seal+open/1KiB`: a 1 KiB document sealed (signed by the sender, encrypted for the
//!   recipient) and opened, EC P-256 on both sides, the sender's and the recipient's keys in
//!   memory (`memory`, the anchor) or both on the token (`softhsm`: ECDSA and ECDH there);
//! - the two private-key operations alone, each in memory and on the token (`ecdsa_sign`,
//!   `ecdh`), which is where the difference goes.
//!
//! SoftHSM2 is set up as the tests do (`ls_tests::softhsm`: a token folder of the process's own).
//! Without softhsm2 installed the benchmark says so and measures nothing.
//! `scripts/bench-pkcs11.sh` runs it with the service's throughput and prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion};
use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::keys::private::{Digest, PrivateKey, SigAlg};
use ls_core::*;
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN};
use std::sync::Arc;
use std::time::Duration;

/// An identity whose EC P-256 key is generated on the token (label `name`), with a certificate
/// the token key signed.
fn on_token(hsm: &SoftHsm, name: &str) -> (Identity, Arc<Pkcs11Key>) {
    let label = format!("bench-{name}-{}", std::process::id());
    let key = Arc::new(
        Pkcs11Key::generate(
            &hsm.uri(EC_TOKEN, &label),
            Some(hsm.module()),
            PIN,
            KeyType::EcP256,
        )
        .unwrap(),
    );
    let g = CertificateBuilder::new(name, CertPurpose::Party)
        .private_key(key.clone())
        .valid_days(30)
        .build(None)
        .unwrap();
    (g.identity, key)
}

fn in_memory(name: &str) -> Identity {
    Identity::generate(name, KeyType::EcP256, 30, None)
        .unwrap()
        .identity
}

fn benches(c: &mut Criterion) {
    let Some(hsm) = SoftHsm::get() else {
        eprintln!(
            "pkcs11 benchmark: SoftHSM2 is not installed (scripts/deps.sh); nothing measured"
        );
        return;
    };
    let doc = vec![0x42u8; 1024];
    let opts = SealOptions {
        compression: Compression::Never,
        filename: Some("invoice.xml".into()),
        ..Default::default()
    };
    let (m_alice, m_bob) = (in_memory("alice"), in_memory("bob"));
    let ((t_alice, t_alice_key), (t_bob, _)) = (on_token(hsm, "alice"), on_token(hsm, "bob"));

    let mut g = c.benchmark_group("pkcs11/seal+open/1KiB");
    for (name, alice, bob) in [("memory", &m_alice, &m_bob), ("softhsm", &t_alice, &t_bob)] {
        let bob_cert = bob.certificate().clone();
        let open_opts = OpenOptions {
            recipient: Some(bob),
            sender: Some(alice.certificate()),
            ..Default::default()
        };
        // The round trip works before it is timed.
        let s = seal(&doc, alice, std::slice::from_ref(&bob_cert), &opts).unwrap();
        assert_eq!(open(&s, &open_opts).unwrap().document, doc);
        g.bench_function(name, |b| {
            b.iter(|| {
                let s = seal(&doc, alice, std::slice::from_ref(&bob_cert), &opts).unwrap();
                open(&s, &open_opts).unwrap()
            })
        });
    }
    g.finish();

    // The private-key operations alone.
    let peer = in_memory("peer");
    let peer_pub = peer.certificate().public_key().unwrap();
    let mut g = c.benchmark_group("pkcs11/ecdsa_sign");
    let memory_key = m_alice.private_key();
    g.bench_function("memory", |b| {
        b.iter(|| {
            memory_key
                .sign(SigAlg::Ecdsa, Digest::Sha256, &doc)
                .unwrap()
        })
    });
    g.bench_function("softhsm", |b| {
        b.iter(|| {
            t_alice_key
                .sign(SigAlg::Ecdsa, Digest::Sha256, &doc)
                .unwrap()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("pkcs11/ecdh");
    g.bench_function("memory", |b| b.iter(|| memory_key.ecdh(&peer_pub).unwrap()));
    g.bench_function("softhsm", |b| {
        b.iter(|| t_alice_key.ecdh(&peer_pub).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = pkcs11;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(pkcs11);
