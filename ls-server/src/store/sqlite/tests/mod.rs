//! Tests of the SQLite store, by the part of it they exercise.

use super::payloads::BODY_EXT;
use super::retention::PRUNE_BATCH;
use super::schema::{SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4};
use super::*;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ls-store-{name}-{}-{nanos:x}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl SqliteStore {
    /// `register_party` with the default document limit.
    fn register(
        &self,
        subscriber_id: i64,
        key: &PartyKey,
        mpc: &str,
        cert_der: &[u8],
        fingerprint: &str,
        now: Unix,
    ) -> StoreResult<Party> {
        self.register_party(
            &NewParty {
                subscriber_id,
                key,
                mpc,
                cert_der,
                fingerprint,
                max_document_bytes: coordination::DEFAULT_MAX_DOCUMENT_BYTES,
                mail_address: None,
            },
            now,
        )
    }
}

fn fp(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn subscriber(store: &SqliteStore, org: &str) -> Subscriber {
    store
        .create_subscriber(
            &NewSubscriber {
                organisation: org.into(),
                contact: format!("ops@{org}.example"),
                contract_ref: "C-1".into(),
                plan: "standard".into(),
            },
            1000,
        )
        .unwrap()
}

/// Subscribers "alpha" (party A, MPC "mpc-a") and "beta" (party B, MPC "mpc-b").
fn setup(store: &SqliteStore) -> (PartyKey, PartyKey) {
    let a = PartyKey::new("urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088", "A");
    let b = PartyKey::new("", "B");
    let sa = subscriber(store, "alpha");
    let sb = subscriber(store, "beta");
    store
        .register(sa.id, &a, "mpc-a", b"cert-a", &fp(1), 1000)
        .unwrap();
    store
        .register(sb.id, &b, "mpc-b", b"cert-b", &fp(2), 1000)
        .unwrap();
    (a, b)
}

fn msg(from: &PartyKey, to: &PartyKey, mpc: &str, id: &str, body: &[u8], at: Unix) -> NewMessage {
    NewMessage {
        sender: from.clone(),
        recipient: to.clone(),
        mpc: mpc.into(),
        message_id: id.into(),
        conversation_id: "conv".into(),
        service: "svc".into(),
        action: "act".into(),
        content_type: "multipart/related; boundary=x".into(),
        body: body.to_vec().into(),
        receipt_content_type: "application/soap+xml".into(),
        receipt: format!("receipt for {id}").into_bytes(),
        received_at: at,
        content_sha256: format!("{:064x}", body.len()),
        coordination: None,
    }
}

fn payload_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join(PAYLOAD_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn state_of(store: &SqliteStore, id: &str) -> String {
    store
        .messages(None, 10_000)
        .unwrap()
        .into_iter()
        .find(|r| r.message_id == id)
        .unwrap()
        .state
}

#[test]
fn send_sync_and_object_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();
    let dir = TempDir::new("dyn");
    let _store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.0, 16).unwrap());
}

const NONE: AcceptLimits = AcceptLimits {
    min_free_bytes: 0,
    max_queued_bytes_per_subscriber: 0,
};

fn refused(r: StoreResult<Accepted>) -> Refused {
    match r {
        Err(StoreError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn record(store: &SqliteStore, sender: &PartyKey, id: &str) -> MessageRecord {
    store
        .messages(None, 10_000)
        .unwrap()
        .into_iter()
        .find(|r| r.message_id == id && r.sender == *sender)
        .unwrap()
}

fn notice(from: &PartyKey, to: &PartyKey, mpc: &str, id: &str, refused: &str) -> NewMessage {
    NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_REFUSAL.into(),
        coordination: Some(Coordination::Refusal(RefusalOf {
            message_id: refused.into(),
            class: "cannot_open".into(),
        })),
        ..msg(from, to, mpc, id, b"notice", 500)
    }
}

/// A signed receipt from `from` (the recipient of `receipted`) to `to`, of `body`, at `at`.
fn receipt(
    from: &PartyKey,
    to: &PartyKey,
    mpc: &str,
    id: &str,
    receipted: &str,
    body: &[u8],
    at: Unix,
) -> NewMessage {
    NewMessage {
        service: coordination::SERVICE.into(),
        action: coordination::ACTION_RECEIPT.into(),
        coordination: Some(Coordination::Receipt {
            message_id: receipted.into(),
        }),
        ..msg(from, to, mpc, id, body, at)
    }
}

mod accounts;
mod admission;
mod enrolments;
mod messages;
mod retention;
mod schema;
mod usage;
