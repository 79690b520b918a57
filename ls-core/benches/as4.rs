//! AS4 messages, in process, with their anchors measured in the same run:
//! - the exclusive C14N + SHA-256 of a typical `eb:Messaging` header vs one RSA-2048 signature;
//! - build+sign and verify (+ encrypt / decrypt) of a UserMessage with 1 KiB, 1 MiB and 50 MiB
//!   payloads vs SHA-256 over the same bytes.
//!
//! `scripts/bench-report.py` prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::*;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::{c14n, envelope, xml};
use ls_core::*;
use std::time::Duration;

fn party(v: &str) -> Party {
    Party {
        ids: vec![PartyId {
            value: v.into(),
            r#type: Some("urn:oasis:names:tc:ebcore:partyid-type:unregistered".into()),
        }],
        role: "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator".into(),
    }
}

fn messaging() -> Messaging {
    Messaging {
        user_messages: vec![UserMessage {
            info: MessageInfo {
                timestamp: timestamp_now(),
                message_id: new_message_id("bench.layersec").unwrap(),
                ref_to_message_id: None,
            },
            mpc: None,
            from: party("acme"),
            to: party("globex"),
            agreement_ref: Some(AgreementRef {
                value: "urn:layersec:agreement:1".into(),
                r#type: None,
                pmode: None,
            }),
            service: Service {
                value: "urn:layersec:documents".into(),
                r#type: Some("urn:layersec".into()),
            },
            action: "Deliver".into(),
            conversation_id: "bench".into(),
            properties: vec![
                Property::new("originalSender", "acme"),
                Property::new("finalRecipient", "globex"),
            ],
            payloads: vec![],
        }],
        signals: vec![],
    }
}

fn outgoing<'a>(
    signer: &'a Identity,
    rcpt: Option<&'a Certificate>,
    data: Vec<u8>,
) -> Outgoing<'a> {
    Outgoing {
        messaging: messaging(),
        payloads: vec![Payload {
            content_id: "doc@bench".into(),
            mime_type: "application/pkcs7-mime".into(),
            data,
            compress: false,
            properties: vec![],
        }],
        signer,
        encrypt_for: rcpt,
        soap: SoapVersion::Soap12,
    }
}

fn benches(c: &mut Criterion) {
    let alice = Identity::generate("acme", KeyType::Rsa(2048), 2, None)
        .unwrap()
        .identity;
    let bob = Identity::generate("globex", KeyType::Rsa(2048), 2, None)
        .unwrap()
        .identity;

    // Anchor 1: one RSA-2048 signature (PKCS#1 v1.5, SHA-256) over a SignedInfo-sized input.
    let si = vec![b'x'; 900];
    let key = openssl::pkey::PKey::private_key_from_pem(
        &Identity::generate("k", KeyType::Rsa(2048), 1, None)
            .unwrap()
            .key_pem,
    )
    .unwrap();
    c.bench_function("as4/anchor_rsa2048_sign", |b| {
        b.iter(|| {
            let mut s =
                openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
            s.sign_oneshot_to_vec(&si).unwrap()
        })
    });
    // The C14N + digest of the eb:Messaging header of a built message.
    let built = message::build(outgoing(&alice, None, vec![1; 1024])).unwrap();
    let pkg = ls_core::as4::package::Package::parse(
        &built.content_type,
        &built.body,
        &xml::Limits::default(),
    )
    .unwrap();
    let soap = String::from_utf8(pkg.soap.clone()).unwrap();
    let doc = xml::parse(&soap, &xml::Limits::default()).unwrap();
    let env = envelope::read(&doc, envelope::UNDERSTOOD).unwrap();
    let m = env.messaging.unwrap();
    eprintln!(
        "typical eb:Messaging header: {} bytes canonical",
        c14n::canonicalize(m, &[]).unwrap().len()
    );
    c.bench_function("as4/c14n+sha256_messaging_header", |b| {
        b.iter(|| openssl::sha::sha256(&c14n::canonicalize(m, &[]).unwrap()))
    });

    for (name, n) in [
        ("1KiB", 1usize << 10),
        ("1MiB", 1 << 20),
        ("50MiB", 50 << 20),
    ] {
        let data: Vec<u8> = (0..n)
            .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[1])
            .collect();
        let mut g = c.benchmark_group(format!("as4/{name}"));
        g.throughput(Throughput::Bytes(n as u64));
        if n >= 50 << 20 {
            g.sample_size(10).measurement_time(Duration::from_secs(6));
        }
        // Anchor 2: SHA-256 over the same bytes.
        g.bench_function("sha256", |b| b.iter(|| openssl::sha::sha256(&data)));
        let signed = message::build(outgoing(&alice, None, data.clone())).unwrap();
        let sealed =
            message::build(outgoing(&alice, Some(bob.certificate()), data.clone())).unwrap();
        let opts = ReadOptions {
            recipient: Some(&bob),
            policy: VerifyPolicy {
                signer: Some(alice.certificate()),
                ..Default::default()
            },
            limits: xml::Limits {
                max_part: 1 << 30,
                ..Default::default()
            },
        };
        g.bench_function("build+sign", |b| {
            b.iter(|| message::build(outgoing(&alice, None, data.clone())).unwrap())
        });
        // The receiver owns the body it received; the clone standing in for it is subtracted.
        g.bench_function("verify", |b| {
            b.iter(|| {
                message::read_owned(&signed.content_type, signed.body.clone(), &opts).unwrap()
            })
        });
        g.bench_function("build+sign+encrypt", |b| {
            b.iter(|| {
                message::build(outgoing(&alice, Some(bob.certificate()), data.clone())).unwrap()
            })
        });
        g.bench_function("decrypt+verify", |b| {
            b.iter(|| {
                message::read_owned(&sealed.content_type, sealed.body.clone(), &opts).unwrap()
            })
        });
        // What the clone of the input inside the timed closures costs (subtracted in the report).
        g.bench_function("input_clone", |b| b.iter(|| data.clone()));
        g.finish();
    }
}

criterion_group! {
    name = all;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(all);
