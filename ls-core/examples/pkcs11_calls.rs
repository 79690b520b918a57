//! Where the time of a seal+open with keys on a token goes, for `scripts/bench-pkcs11.sh`: the
//! PKCS#11 calls one 1 KiB seal+open makes (EC P-256, the sender's and the recipient's keys on
//! SoftHSM2), counted by OpenSC's pkcs11-spy over `rounds` round trips after one to warm up,
//! and printed per round trip as one JSON line. Sessions and logins should cost nothing once
//! warm (the pool reuses them); what is left is the signature (`C_SignInit`, `C_Sign` — twice:
//! cryptoki asks the signature's length first) and the key agreement (`C_DeriveKey`, the
//! secret's value read, the object destroyed).
//!
//! usage: pkcs11_calls [rounds]   (needs softhsm2 and opensc-pkcs11: scripts/deps.sh)

use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::*;
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN};
use std::collections::BTreeMap;
use std::sync::Arc;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("rounds: a number"))
        .unwrap_or(100);
    let Some(hsm) = SoftHsm::get() else {
        eprintln!("pkcs11_calls: SoftHSM2 is not installed");
        std::process::exit(3)
    };
    let Some(spy) = hsm.spy() else {
        eprintln!("pkcs11_calls: OpenSC's pkcs11-spy is not installed (opensc-pkcs11)");
        std::process::exit(3)
    };
    let party = |name: &str| {
        let label = format!("calls-{name}-{}", std::process::id());
        let key = Pkcs11Key::generate(&hsm.uri(EC_TOKEN, &label), Some(spy), PIN, KeyType::EcP256)
            .unwrap();
        CertificateBuilder::new(name, CertPurpose::Party)
            .private_key(Arc::new(key))
            .valid_days(30)
            .build(None)
            .unwrap()
            .identity
    };
    let (alice, bob) = (party("alice"), party("bob"));
    let doc = vec![0x42u8; 1024];
    let opts = SealOptions {
        compression: Compression::Never,
        ..Default::default()
    };
    let open_opts = OpenOptions {
        recipient: Some(&bob),
        sender: Some(alice.certificate()),
        ..Default::default()
    };
    let round = || {
        let s = seal(&doc, &alice, std::slice::from_ref(bob.certificate()), &opts).unwrap();
        assert_eq!(open(&s, &open_opts).unwrap().document, doc);
    };
    round();
    // The spy writes each call as a line `<n>: C_Name` (hex dumps of arguments may hold the
    // letters "C_" too: only those lines count).
    let calls = |log: &str| {
        let mut m = BTreeMap::<String, usize>::new();
        for line in log.lines() {
            let Some((n, name)) = line.split_once(": ") else {
                continue;
            };
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && name.starts_with("C_") {
                *m.entry(name.trim().to_string()).or_default() += 1;
            }
        }
        m
    };
    let before = calls(&hsm.spy_log());
    for _ in 0..rounds {
        round();
    }
    let after = calls(&hsm.spy_log());
    let per: BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, v)| {
            (
                k,
                (v - before.get(k).copied().unwrap_or(0)) as f64 / rounds as f64,
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let total: f64 = per.values().sum();
    println!(
        "{{\"rounds\":{rounds},\"pkcs11_calls_per_seal_open\":{total:.2},\"by_function\":{}}}",
        serde_json::to_string(&per).unwrap()
    );
}
