//! The message layer and the transport with a large payload, through a real `layersec-server`
//! over TLS: a pre-sealed payload file (no CMS here: the transport and the service are what
//! must be constant-memory now) pushed from a file with alice's configuration, pulled into a
//! spool with bob's and verified with the digest computed on the way; the peak memory of this
//! process (which did both) and of the service measured. A tampered push and a truncated one
//! are refused and leave nothing in the store. One test in this file: `VmHWM` is the process's.

mod stream;

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, Exchange};
use ls_core::as4::message::{self, FilePayload, OutgoingFile, ReadOptions};
use ls_core::as4::model::Messaging;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::{Certificate, Error, Identity};
use ls_tests::service::{server_bin_beside, RunningService};
use std::io::Read;
use std::path::Path;
use stream::{party, sha256_file, size, write_document, Party, LAYERSEC, MIB};

/// This process's peak memory (pushing, then pulling) and the service's.
const RSS_MAX: u64 = 64 * MIB;

/// A party's side of the exchange, as its `layersec` configuration sets it up.
struct Side {
    transport: ls_client::ServiceNodes,
    me: std::sync::Arc<Identity>,
    service: Certificate,
    limits: Limits,
}

impl Side {
    fn of(p: &Party) -> Side {
        let cfg = ls_client::Config::load(&p.config).unwrap();
        let client = ls_client::Client::from_config(&cfg).unwrap();
        Side {
            transport: ls_client::Client::https_transport(&cfg).unwrap(),
            me: client.identity(),
            service: Certificate::load(&cfg.service.service_certificate).unwrap(),
            limits: Limits {
                max_part: ls_core::as4::coordination::message_limit_for(
                    cfg.limits.max_document_bytes,
                ),
                ..Limits::default()
            },
        }
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            transport: &self.transport,
            me: &self.me,
            service: &self.service,
            service_previous: &[],
            soap: SoapVersion::Soap12,
            domain: "stream.test".into(),
            limits: self.limits.clone(),
        }
    }
}

/// A file read with one byte flipped at `at`, or cut after `cut` bytes.
struct Altered {
    inner: std::fs::File,
    pos: u64,
    flip_at: Option<u64>,
    cut: Option<u64>,
}

impl Read for Altered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = match self.cut {
            Some(c) => (c.saturating_sub(self.pos)).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..room])?;
        if let Some(at) = self.flip_at {
            if at >= self.pos && at < self.pos + n as u64 {
                buf[(at - self.pos) as usize] ^= 1;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Files of the service's payload folder (bodies kept and bodies being received).
fn stored_files(svc: &RunningService) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(svc.dir.join("data/payloads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_large_payload_is_pushed_and_pulled_in_constant_memory_and_tampering_stores_nothing() {
    let n = size();
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "stream-transport", |t| t);
    svc.serve();
    let alice = party(&svc, "alice");
    let bob = party(&svc, "bob");
    let payload = alice.dir.join("presealed.p7m");
    let sha = write_document(&payload, n);

    // Built around the payload file and written out in pieces.
    let a = Side::of(&alice);
    let um =
        exchange::user_message("alice", "bob", "urn:test", "Deliver", "", "stream.test").unwrap();
    let built = message::build_file(OutgoingFile {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payload: FilePayload {
            content_id: "document@stream.test".into(),
            mime_type: "application/pkcs7-mime".into(),
            path: &payload,
            properties: Vec::new(),
        },
        signer: &a.me,
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    assert_eq!(built.payload_sha256, sha);
    let msg = alice.dir.join("message.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&msg).unwrap());
    built.write_to(&mut f).unwrap();
    drop(f);
    let len = built.len();
    let open = || std::fs::File::open(&msg).unwrap();

    // Tampered: one payload byte flipped on the way. Refused (uniformly: before the
    // signature's digests all check, nobody is authenticated) and nothing kept.
    let ex = a.exchange();
    let mut tampered = Altered {
        inner: open(),
        pos: 0,
        flip_at: Some(built.head.len() as u64 + n / 2),
        cut: None,
    };
    let e = ex
        .push_streaming(
            &built.content_type,
            &mut tampered,
            len,
            &built.message_id,
            &built.references,
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::EbmsError { ebms_code, .. } if ebms_code == "EBMS:0101"),
        "{e}"
    );
    // Truncated: the upload stops half way (the client notices first and drops the
    // connection).
    let mut truncated = Altered {
        inner: open(),
        pos: 0,
        flip_at: None,
        cut: Some(len / 2),
    };
    assert!(ex
        .push_streaming(
            &built.content_type,
            &mut truncated,
            len,
            &built.message_id,
            &built.references,
        )
        .is_err());
    ls_tests::wait_for(
        "the refused bodies to be removed",
        std::time::Duration::from_secs(30),
        || stored_files(&svc).is_empty(),
    );
    assert!(svc.admin(&["messages"]).as_array().unwrap().is_empty());

    // The real one.
    let t = std::time::Instant::now();
    let receipt = ex
        .push_streaming(
            &built.content_type,
            &mut open(),
            len,
            &built.message_id,
            &built.references,
        )
        .unwrap();
    let push_secs = t.elapsed().as_secs_f64();
    assert!(!receipt.messaging.signals.is_empty());
    let files = stored_files(&svc);
    assert!(files.len() == 1 && files[0].ends_with(".body"), "{files:?}");
    std::fs::remove_file(&msg).unwrap();
    std::fs::remove_file(&payload).unwrap();

    // Bob pulls it into a spool and verifies it there.
    let b = Side::of(&bob);
    let spool = bob.dir.join("pull.spool");
    let t = std::time::Instant::now();
    let pulled = b
        .exchange()
        .pull_to(&exchange::party_mpc("bob"), &spool)
        .unwrap()
        .unwrap();
    let pull_secs = t.elapsed().as_secs_f64();
    assert!(pulled.spooled.is_some() && pulled.body.is_empty());
    let incoming = pulled
        .read(&ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(a.me.certificate()),
                ..Default::default()
            },
            limits: b.limits.clone(),
        })
        .unwrap();
    let file = incoming.payloads[0].file.as_ref().expect("in the spool");
    assert_eq!(file.len, n);
    assert_eq!(file.sha256.unwrap(), sha);
    let mut whole = file.reader().unwrap();
    let copy = bob.dir.join("payload.copy");
    std::io::copy(&mut whole, &mut std::fs::File::create(&copy).unwrap()).unwrap();
    assert!(sha256_file(&copy) == sha, "the pulled payload differs");

    let mine = ls_tests::peak_rss_of(std::process::id()).unwrap();
    let service = svc.peak_rss().unwrap();
    eprintln!(
        "stream-transport: {n} bytes: push {push_secs:.1} s, pull {pull_secs:.1} s; peak RSS: \
         this process (push and pull) {} MiB, service {} MiB",
        mine / MIB,
        service / MIB
    );
    assert!(
        mine <= RSS_MAX,
        "pushing and pulling peaked at {} MiB",
        mine / MIB
    );
    assert!(
        service <= RSS_MAX,
        "the service peaked at {} MiB",
        service / MIB
    );
}
