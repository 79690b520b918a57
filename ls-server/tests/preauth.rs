//! A streamed push (a body over 4 MiB, or chunked) is pre-checked as soon as its SOAP part is
//! in: a stranger's upload (a signature by a key the From party did not register, or an
//! `eb:Messaging` header altered after signing) is refused with the uniform EBMS:0101 after a
//! few MiB, not spooled whole first (and so is a lone envelope past the envelope limit); one
//! whose attachment was altered passes the pre-check and is refused at the end; a legitimate
//! large push still goes through.

mod common;

use common::*;
use ls_core::as4::message::Built;
use ls_core::{Identity, KeyType};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1 << 20;
/// The size a refused upload declares.
const DECLARED: u64 = 1 << 30;
/// What the client may have sent (and the service written) before the refusal reached it:
/// the SOAP part, what was on its way (socket buffers) and the service's linger.
const SENT_AT_MOST: u64 = 32 * MIB;

/// The body of `built` with its payload (`data`, found in it) replaced by `n` zero bytes: the
/// SOAP part first, as the client sends it, then a payload too large to hold. Counts the bytes
/// read from it.
struct Inflated {
    parts: Vec<(Vec<u8>, u64)>, // (bytes, or zeros when empty and n > 0)
    at: usize,
    off: u64,
    read: Arc<AtomicU64>,
}

impl Inflated {
    fn new(built: &Built, data: &[u8], n: u64) -> (Inflated, u64, Arc<AtomicU64>) {
        let pos = built
            .body
            .windows(data.len())
            .position(|w| w == data)
            .expect("the payload is in the body");
        let head = built.body[..pos].to_vec();
        let tail = built.body[pos + data.len()..].to_vec();
        let len = head.len() as u64 + n + tail.len() as u64;
        let read = Arc::new(AtomicU64::new(0));
        let parts = vec![
            (head.clone(), head.len() as u64),
            (Vec::new(), n),
            (tail.clone(), tail.len() as u64),
        ];
        (
            Inflated {
                parts,
                at: 0,
                off: 0,
                read: read.clone(),
            },
            len,
            read,
        )
    }
}

impl Read for Inflated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at < self.parts.len() {
            let (bytes, len) = &self.parts[self.at];
            if self.off == *len {
                self.at += 1;
                self.off = 0;
                continue;
            }
            let k = buf.len().min((len - self.off) as usize);
            if bytes.is_empty() {
                buf[..k].fill(0);
            } else {
                let o = self.off as usize;
                buf[..k].copy_from_slice(&bytes[o..o + k]);
            }
            self.off += k as u64;
            self.read.fetch_add(k as u64, Ordering::Relaxed);
            return Ok(k);
        }
        Ok(0)
    }
}

/// Files of the service's payload folder (bodies kept and bodies being received).
fn stored_files(s: &Server) -> Vec<String> {
    std::fs::read_dir(s.dir.join("data/payloads"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Push `built` with its payload `data` inflated to [`DECLARED`] bytes: refused with
/// EBMS:0101 after at most [`SENT_AT_MOST`] bytes sent, and nothing left in the store.
fn refused_early(s: &Server, sender: &Party, built: &Built, data: &[u8], what: &str) {
    let t = s.transport();
    let service = s.service_cert();
    let ex = sender.exchange(&t, &service);
    let (mut body, len, read) = Inflated::new(built, data, DECLARED);
    let e = ex
        .push_streaming(
            &built.content_type,
            &mut body,
            len,
            &built.message_id,
            &built.references,
        )
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101", "{what}: {e}");
    let sent = read.load(Ordering::Relaxed);
    assert!(
        sent <= SENT_AT_MOST,
        "{what}: {} MiB of a {} MiB upload sent before the refusal",
        sent / MIB,
        len / MIB
    );
    eprintln!("{what}: refused after {} KiB sent", sent / 1024);
    ls_tests::wait_for(
        "the refused body to be removed",
        Duration::from_secs(30),
        || stored_files(s).is_empty(),
    );
}

#[test]
fn a_strangers_streamed_push_is_refused_once_its_soap_part_is_in() {
    let mut s = Server::init("preauth", |t| t);
    s.serve();
    let alice = s.party("alice");
    let _bob = s.party("bob");
    let data = b"the payload that will be replaced by a gigabyte of zeros".repeat(4);

    // Signed by a key alice never registered.
    let mallory = Identity::generate("alice", KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let forged = alice.message_signed_by("bob", &data, &mallory);
    refused_early(&s, &alice, &forged, &data, "an unregistered signer");

    // Signed by alice, the eb:Messaging header altered after signing (same length).
    let mut altered = alice.message("bob", &data);
    let at = altered
        .body
        .windows(b"Deliver".len())
        .position(|w| w == b"Deliver")
        .expect("the Action");
    altered.body[at] = b'd';
    refused_early(&s, &alice, &altered, &data, "an altered eb:Messaging");

    // A lone SOAP envelope (no MIME parts) is whole only at its end: it is refused once past
    // the envelope limit.
    let lone = Built {
        content_type: "application/soap+xml".into(),
        body: b"<x/>".to_vec(),
        message_id: "lone@test".into(),
        ref_to_message_id: None,
        references: Vec::new(),
    };
    refused_early(&s, &alice, &lone, b"<x/>", "a lone envelope");

    // Signed by alice, the payload altered: the pre-check passes (it cannot know the
    // attachment's digest yet), the full check at the end refuses; nothing is kept.
    let big: Vec<u8> = (0..8 * MIB as usize).map(|i| (i % 251) as u8).collect();
    let mut tampered = alice.message("bob", &big);
    let n = tampered.body.len();
    tampered.body[n / 2] ^= 1;
    let t = s.transport();
    let service = s.service_cert();
    let ex = alice.exchange(&t, &service);
    let e = ex
        .push_streaming(
            &tampered.content_type,
            &mut &tampered.body[..],
            n as u64,
            &tampered.message_id,
            &tampered.references,
        )
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101", "a tampered payload: {e}");
    ls_tests::wait_for(
        "the refused body to be removed",
        Duration::from_secs(30),
        || stored_files(&s).is_empty(),
    );
    assert!(s.admin(&["messages"]).as_array().unwrap().is_empty());

    // The legitimate one (streamed: over 4 MiB) goes through.
    let good = alice.message("bob", &big);
    let receipt = ex
        .push_streaming(
            &good.content_type,
            &mut &good.body[..],
            good.body.len() as u64,
            &good.message_id,
            &good.references,
        )
        .unwrap();
    assert!(!receipt.messaging.signals.is_empty());
    assert_eq!(s.admin(&["messages"]).as_array().unwrap().len(), 1);
}
