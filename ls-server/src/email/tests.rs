//! The gateway against a real [`Service`] on a real SQLite store, with a mailbox in memory, a
//! submitter that keeps what it is given, and a plain mail format (the layout has its own
//! tests in ls-core; here a mail is a header naming the Content-Type, and the body as is).

use super::*;
use crate::admin::{Admin, CertificatePolicy, PartyRegistration};
use crate::store::sqlite::SqliteStore;
use crate::store::{AcceptLimits, Store};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Built, Outgoing, Payload, ReadOptions};
use ls_core::as4::wss::VerifyPolicy;
use ls_core::mail::layout::Bounce;
use ls_core::{Certificate, Identity, KeyType};
use std::collections::VecDeque;

const SERVICE_ADDRESS: &str = "as4@svc.test";

// ---- a mail format, a mailbox and a submitter in memory ----

/// `X-Content-Type: <ct>` and the body as is; `X-Test: bounce` is a bounce naming
/// `X-Message-Id`; without `X-Content-Type`, not ours.
struct PlainFormat;

impl MailFormat for PlainFormat {
    fn compose(
        &self,
        content_type: &str,
        body: &[u8],
        from: &str,
        to: &str,
        _limits: &Limits,
    ) -> ls_core::Result<Vec<u8>> {
        let mut m = format!("From: {from}\r\nTo: {to}\r\nX-Content-Type: {content_type}\r\n\r\n")
            .into_bytes();
        m.extend_from_slice(body);
        Ok(m)
    }

    fn read(&self, raw: &[u8], _limits: &Limits) -> Content {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Content::NotOurs("no header".into());
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let field = |name: &str| {
            head.split("\r\n")
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if field("X-Test:").as_deref() == Some("bounce") {
            return Content::Bounce(Bounce {
                message_id: field("X-Message-Id:"),
                recipient: Some("bob@b.test".into()),
                action: Some("failed".into()),
                status: Some("5.1.1".into()),
                diagnostic: Some("550 no such user".into()),
            });
        }
        match field("X-Content-Type:") {
            Some(ct) => Content::As4 {
                content_type: ct,
                body: raw[end + 4..].to_vec(),
                message_id: None,
            },
            None => Content::NotOurs("not an AS4 message".into()),
        }
    }
}

/// What the mailbox in memory holds and did.
#[derive(Default)]
struct BoxState {
    next_uid: u64,
    mails: Vec<(String, Vec<u8>)>,
    set_aside: Vec<(String, String)>,
    deleted: Vec<String>,
    /// Failures to give: (operation `fetch`/`set_aside`/`delete`, UID) → the error (each
    /// time).
    fail: HashMap<(&'static str, String), fn() -> Error>,
    /// Calls of fetch, by UID.
    fetches: Vec<String>,
    lists: usize,
}

#[derive(Clone, Default)]
struct FakeBox(Arc<Mutex<BoxState>>);

impl FakeBox {
    fn deliver(&self, raw: Vec<u8>) -> String {
        let mut s = self.0.lock().unwrap();
        s.next_uid += 1;
        let uid = s.next_uid.to_string();
        s.mails.push((uid.clone(), raw));
        uid
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().mails.len()
    }
    fn set_aside(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().set_aside.clone()
    }
    fn deleted(&self) -> Vec<String> {
        self.0.lock().unwrap().deleted.clone()
    }
    fn fail(&self, op: &'static str, uid: &str, e: fn() -> Error) {
        self.0.lock().unwrap().fail.insert((op, uid.into()), e);
    }
    fn failing(&self, op: &'static str, uid: &str) -> ls_core::Result<()> {
        match self.0.lock().unwrap().fail.get(&(op, uid.to_string())) {
            Some(e) => Err(e()),
            None => Ok(()),
        }
    }
    fn fetches(&self) -> Vec<String> {
        self.0.lock().unwrap().fetches.clone()
    }
}

impl Mailbox for FakeBox {
    fn list(&mut self) -> ls_core::Result<Vec<MailRef>> {
        self.0.lock().unwrap().lists += 1;
        Ok(self
            .0
            .lock()
            .unwrap()
            .mails
            .iter()
            .map(|(uid, raw)| MailRef {
                uid: uid.clone(),
                size: raw.len() as u64,
                seq: 0,
            })
            .collect())
    }
    fn fetch(&mut self, mail: &MailRef, max: u64) -> ls_core::Result<Vec<u8>> {
        self.0.lock().unwrap().fetches.push(mail.uid.clone());
        self.failing("fetch", &mail.uid)?;
        let s = self.0.lock().unwrap();
        let raw = &s.mails.iter().find(|(u, _)| *u == mail.uid).unwrap().1;
        if raw.len() as u64 > max {
            return Err(Error::TooLarge(format!("{} > {max}", raw.len())));
        }
        Ok(raw.clone())
    }
    fn delete(&mut self, mail: &MailRef) -> ls_core::Result<()> {
        self.failing("delete", &mail.uid)?;
        let mut s = self.0.lock().unwrap();
        s.mails.retain(|(u, _)| *u != mail.uid);
        s.deleted.push(mail.uid.clone());
        Ok(())
    }
    fn set_aside(&mut self, mail: &MailRef, folder: &str) -> ls_core::Result<()> {
        self.failing("set_aside", &mail.uid)?;
        let mut s = self.0.lock().unwrap();
        s.mails.retain(|(u, _)| *u != mail.uid);
        s.set_aside.push((mail.uid.clone(), folder.to_string()));
        Ok(())
    }
    fn uidvalidity(&self) -> Option<u64> {
        Some(1)
    }
    fn can_idle(&self) -> bool {
        false
    }
    fn wait(&mut self, _max: Duration, _stop: &AtomicBool) -> ls_core::Result<bool> {
        Ok(false)
    }
    fn close(self: Box<Self>) -> ls_core::Result<()> {
        Ok(())
    }
}

struct Sent {
    from: String,
    to: String,
    mail: Vec<u8>,
}

/// Keeps the mails it is given; fails with the errors queued first, and refuses the
/// addresses in `refuse` (a 4xx to RCPT TO).
#[derive(Default)]
struct FakeSubmitter {
    sent: Mutex<Vec<Sent>>,
    fail: Mutex<VecDeque<SendError>>,
    refuse: Mutex<HashSet<String>>,
    calls: AtomicU64,
}

impl Submitter for FakeSubmitter {
    fn submit(&self, from: &str, to: &str, mail: &[u8]) -> Result<(), SendError> {
        self.calls.fetch_add(1, Relaxed);
        if let Some(e) = self.fail.lock().unwrap().pop_front() {
            return Err(e);
        }
        if self.refuse.lock().unwrap().contains(to) {
            return Err(SendError {
                error: Error::MailStatus {
                    code: 452,
                    message: format!("452 4.2.2 <{to}>: mailbox full"),
                },
                recipient: true,
            });
        }
        self.sent.lock().unwrap().push(Sent {
            from: from.into(),
            to: to.into(),
            mail: mail.to_vec(),
        });
        Ok(())
    }
}

impl FakeSubmitter {
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

// ---- a service, its parties, their messages ----

struct Party {
    id: String,
    identity: Identity,
}

impl Party {
    fn cert(&self) -> &Certificate {
        self.identity.certificate()
    }

    /// A signed UserMessage to `to`, signed by `signer`.
    fn message_signed_by(&self, to: &str, data: &[u8], signer: &Identity) -> Built {
        let um =
            exchange::user_message(&self.id, to, "urn:layersec:test", "Deliver", "", "t").unwrap();
        message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payloads: vec![Payload {
                content_id: "doc@test".into(),
                mime_type: "application/octet-stream".into(),
                data: data.to_vec(),
                compress: false,
                properties: Vec::new(),
            }],
            signer,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    }

    fn message(&self, to: &str, data: &[u8]) -> Built {
        self.message_signed_by(to, data, &self.identity)
    }

    /// Our receipt of a message we got (verified against its sender).
    fn receipt_of(&self, content_type: &str, body: &[u8], sender: &Certificate) -> Built {
        let inc = message::read(
            content_type,
            body,
            &ReadOptions {
                recipient: Some(&self.identity),
                policy: VerifyPolicy {
                    signer: Some(sender),
                    ..Default::default()
                },
                limits: Limits::default(),
            },
        )
        .unwrap();
        message::build_receipt(&inc, &self.identity, "t").unwrap()
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    service: Arc<Service>,
    mailbox: FakeBox,
    smtp: Arc<FakeSubmitter>,
    gateway: Gateway,
    subscriber: i64,
}

fn service_on(store: Arc<dyn Store>, accept_limits: AcceptLimits) -> Arc<Service> {
    let identity = Identity::generate("svc.test", KeyType::EcP256, 2, None)
        .unwrap()
        .identity;
    service_with(store, accept_limits, identity)
}

fn service_with(
    store: Arc<dyn Store>,
    accept_limits: AcceptLimits,
    identity: Identity,
) -> Arc<Service> {
    Arc::new(Service {
        store,
        identity: crate::service_key::SigningKey::fixed(identity),
        domain: "svc.test".into(),
        limits: Limits {
            max_part: 64 << 20,
            ..Default::default()
        },
        lease_secs: 300,
        metrics: Default::default(),
        http_stats: Default::default(),
        cert_cache: Default::default(),
        accept_limits,
        decoy: Default::default(),
        enrolment: crate::enrol::Enrolments::new(&Default::default()),
        directory: crate::directory::Directory::new(60),
        rollovers: Default::default(),
        uploads_in_flight: Default::default(),
        mail_wake: Default::default(),
    })
}

fn gateway_for(service: Arc<Service>, smtp: Arc<FakeSubmitter>) -> Gateway {
    Gateway {
        service,
        submitter: smtp,
        format: Arc::new(PlainFormat),
        settings: Settings {
            address: SERVICE_ADDRESS.into(),
            set_aside_folder: "layersec-not-as4".into(),
            max_mail_bytes: 1 << 20,
            redeliver_after_secs: 900,
            poll: Duration::from_millis(50),
            login_backoff: Duration::from_secs(300),
        },
        intake_wake: Arc::new(Wake::default()),
        state: GatewayState::default(),
    }
}

impl World {
    fn new() -> World {
        World::with_limits(AcceptLimits::default())
    }

    fn with_limits(limits: AcceptLimits) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), 16 * 1024).unwrap());
        let service = service_on(store.clone(), limits);
        let smtp = Arc::new(FakeSubmitter::default());
        let gateway = gateway_for(service.clone(), smtp.clone());
        let subscriber = store
            .create_subscriber(
                &crate::store::NewSubscriber {
                    organisation: "Org".into(),
                    contact: String::new(),
                    contract_ref: String::new(),
                    plan: String::new(),
                },
                ls_core::time::now_unix(),
            )
            .unwrap()
            .id;
        World {
            _dir: dir,
            store,
            service,
            mailbox: FakeBox::default(),
            smtp,
            gateway,
            subscriber,
        }
    }

    fn party(&self, id: &str, mail: Option<&str>) -> Party {
        let identity = Identity::generate(id, KeyType::EcP256, 2, None)
            .unwrap()
            .identity;
        Admin {
            store: self.store.clone(),
        }
        .register_party(&PartyRegistration {
            subscriber_id: self.subscriber,
            key: PartyKey::new("", id),
            certificate: identity.certificate().to_pem(),
            max_document_bytes: 1 << 20,
            certificate_policy: CertificatePolicy::default(),
            mail_address: mail.map(str::to_string),
        })
        .unwrap();
        Party {
            id: id.into(),
            identity,
        }
    }

    /// `built` as a mail in the intake mailbox; its header's From names `claimed_from`.
    fn mail(&self, built: &Built, claimed_from: &str) -> String {
        let raw = PlainFormat
            .compose(
                &built.content_type,
                &built.body,
                claimed_from,
                SERVICE_ADDRESS,
                &Limits::default(),
            )
            .unwrap();
        self.mailbox.deliver(raw)
    }

    fn round(&self) -> IntakeRound {
        let mut mb = self.mailbox.clone();
        self.gateway.intake_round(&mut mb).unwrap()
    }

    /// The state of the message `id` in the store.
    fn state(&self, id: &str) -> Option<String> {
        self.store
            .messages(None, 1000)
            .unwrap()
            .into_iter()
            .find(|m| m.message_id == id)
            .map(|m| m.state)
    }

    /// POST `built` to the service as over HTTPS.
    fn push(&self, built: &Built) -> Response {
        self.service.handle(Request {
            method: "POST".into(),
            path: AS4_PATH.into(),
            query: String::new(),
            headers: vec![("content-type".into(), built.content_type.clone())],
            body: built.body.clone(),
            body_stream: None,
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            client_cert: None,
        })
    }
}

/// The ebMS header of a mail the submitter got (the plain format's body), verified against
/// the service's certificate.
fn signed_answer(w: &World, sent: &Sent) -> Messaging {
    match PlainFormat.read(&sent.mail, &Limits::default()) {
        Content::As4 {
            content_type, body, ..
        } => {
            let service = w.service.identity.get().certificate().clone();
            message::read(
                &content_type,
                &body,
                &ReadOptions {
                    recipient: None,
                    policy: VerifyPolicy {
                        signer: Some(&service),
                        ..Default::default()
                    },
                    limits: Limits::default(),
                },
            )
            .unwrap()
            .messaging
        }
        other => panic!("not an AS4 mail: {other:?}"),
    }
}

// ---- intake ----

/// A signed push by mail is stored for its recipient (who pulls over HTTPS) and the service's
/// signed receipt is mailed to the sender's *registered* address, not to the mail's From.
#[test]
fn a_push_by_mail_is_stored_and_its_receipt_mailed_to_the_registered_address() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", None);
    let m = alice.message("bob", b"hello by mail");
    w.mail(&m, "someone-else@evil.test");

    let r = w.round();
    assert_eq!((r.mails, r.deleted, r.set_aside, r.left), (1, 1, 0, 0));
    assert_eq!(w.mailbox.len(), 0);
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "alice@a.test");
    assert_eq!(sent[0].from, SERVICE_ADDRESS);
    let answer = signed_answer(&w, &sent[0]);
    let s = &answer.signals[0];
    assert!(matches!(s.signal, Signal::Receipt { .. }), "{:?}", s.signal);
    assert_eq!(
        s.info.ref_to_message_id.as_deref(),
        Some(m.message_id.as_str())
    );
    let metrics = &w.service.metrics.mail;
    assert_eq!(metrics.received.load(Relaxed), 1);
    assert_eq!(metrics.answered.load(Relaxed), 1);

    // The same mail again (a crash before it was removed, or the sender's retry): the first
    // receipt again, stored once.
    w.mail(&m, "alice@a.test");
    w.round();
    let again = w.smtp.take();
    assert_eq!(again.len(), 1);
    assert_eq!(
        signed_answer(&w, &again[0]).signals[0].info.message_id,
        s.info.message_id
    );
    assert_eq!(w.service.metrics.duplicates.load(Relaxed), 1);
}

/// What cannot be authenticated (another key, an unknown party) gets no answer and is set
/// aside; nothing is stored.
#[test]
fn a_forged_mail_is_not_answered() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", Some("bob@b.test"));
    let mallory = Identity::generate("mallory", KeyType::EcP256, 2, None)
        .unwrap()
        .identity;
    let forged = alice.message_signed_by("bob", b"forged", &mallory);
    w.mail(&forged, "alice@a.test");
    let stranger = Party {
        id: "stranger".into(),
        identity: mallory,
    };
    let unknown = stranger.message("bob", b"who am I");
    w.mail(&unknown, "stranger@x.test");

    let r = w.round();
    assert_eq!((r.mails, r.set_aside, r.deleted), (2, 2, 0));
    assert!(w.smtp.take().is_empty(), "no backscatter");
    assert_eq!(w.state(&forged.message_id), None);
    assert_eq!(w.state(&unknown.message_id), None);
    assert_eq!(
        w.mailbox.set_aside(),
        vec![
            ("1".to_string(), "layersec-not-as4".to_string()),
            ("2".to_string(), "layersec-not-as4".to_string())
        ]
    );
    let text = w.service.metrics_text();
    assert!(
        text.contains("layersec_mail_set_aside_total{reason=\"unauthenticated\"} 2"),
        "{text}"
    );
}

/// A mail that is not an AS4 message, a bounce, a pull request and a mail too large are set
/// aside, unanswered.
#[test]
fn what_is_not_an_as4_push_is_set_aside() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    w.mailbox
        .deliver(b"From: someone@x.test\r\nSubject: hello\r\n\r\nDear service,\r\n".to_vec());
    w.mailbox.deliver(
        b"From: MAILER-DAEMON@x.test\r\nX-Test: bounce\r\nX-Message-Id: m-1@t\r\n\r\n".to_vec(),
    );
    let pull = exchange::pull_request(
        SoapVersion::Soap12,
        &exchange::party_mpc("alice"),
        &alice.identity,
        "t",
    )
    .unwrap();
    w.mail(&pull, "alice@a.test");
    w.mailbox.deliver({
        let mut m = b"X-Content-Type: application/soap+xml\r\n\r\n".to_vec();
        m.resize(2 << 20, b'x');
        m
    });

    let r = w.round();
    assert_eq!((r.mails, r.set_aside, r.deleted, r.left), (4, 4, 0, 0));
    assert!(w.smtp.take().is_empty());
    let text = w.service.metrics_text();
    for reason in ["not_as4", "bounce", "pull_request", "too_large"] {
        assert!(
            text.contains(&format!(
                "layersec_mail_set_aside_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {text}"
        );
    }
    assert!(text.contains("layersec_mail_bounces_total 1"), "{text}");
    assert!(text.contains("layersec_mail_received_total 3"), "{text}");
}

/// A store that cannot take the message (HTTP 503: here its free-space reserve) leaves the
/// mail in the mailbox, unanswered; a later round (the store has room again) takes it.
#[test]
fn a_store_failure_leaves_the_mail_for_the_next_round() {
    let w = World::with_limits(AcceptLimits {
        min_free_bytes: u64::MAX,
        max_queued_bytes_per_subscriber: 0,
    });
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", None);
    let m = alice.message("bob", b"later");
    w.mail(&m, "alice@a.test");

    let r = w.round();
    assert_eq!((r.mails, r.left, r.deleted, r.set_aside), (1, 1, 0, 0));
    assert_eq!(w.mailbox.len(), 1);
    assert!(w.smtp.take().is_empty());
    assert_eq!(w.state(&m.message_id), None);
    assert_eq!(w.service.metrics.mail.deferred.load(Relaxed), 1);

    // The same store with room again.
    let service = service_on(w.store.clone(), AcceptLimits::default());
    let smtp = Arc::new(FakeSubmitter::default());
    let g = gateway_for(service, smtp.clone());
    let mut mb = w.mailbox.clone();
    let r = g.intake_round(&mut mb).unwrap();
    assert_eq!(r.deleted, 1);
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    assert_eq!(smtp.take()[0].to, "alice@a.test");
}

/// A sender without a registered mail address: its message is taken, nobody is answered.
#[test]
fn a_sender_without_a_mail_address_is_not_answered() {
    let w = World::new();
    let alice = w.party("alice", None);
    let _bob = w.party("bob", None);
    let m = alice.message("bob", b"no address");
    w.mail(&m, "alice@a.test");
    let r = w.round();
    assert_eq!(r.deleted, 1);
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    assert!(w.smtp.take().is_empty());
}

/// The back-offs of the intake are over (as if their time had passed).
fn pauses_over(g: &Gateway) {
    let mut m = g.state.intake.lock().unwrap();
    let now = Instant::now();
    for s in m.skipped.values_mut() {
        s.until = now;
    }
    m.smtp_until = None;
}

/// The (Content-Type, body) of a mail the submitter got.
fn as4_sent(sent: &Sent) -> (String, Vec<u8>) {
    match PlainFormat.read(&sent.mail, &Limits::default()) {
        Content::As4 {
            content_type, body, ..
        } => (content_type, body),
        other => panic!("not an AS4 mail: {other:?}"),
    }
}

/// The SMTP server fails: the mail whose answer could not be submitted stays, the round goes
/// on without asking the server again for each mail (a later message is taken, a receipt
/// needing no answer is handled); the mails left are not handled again at every round but
/// after a back-off, then as duplicates answered with the same receipt.
#[test]
fn an_answer_that_cannot_be_submitted_leaves_the_mail() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    let bob = w.party("bob", Some("bob@b.test"));
    // A message mailed to bob earlier, whose receipt bob mails back.
    let d = alice.message("bob", b"earlier");
    assert_eq!(w.push(&d).status, 200);
    let now = ls_core::time::now_unix();
    assert_eq!(w.gateway.delivery_round(now).unwrap().submitted, 1);
    let (ct, body) = as4_sent(&w.smtp.take()[0]);
    let receipt = bob.receipt_of(&ct, &body, alice.cert());
    let calls = w.smtp.calls.load(Relaxed);

    let m1 = alice.message("bob", b"one");
    let m2 = alice.message("bob", b"two");
    w.mail(&m1, "alice@a.test");
    w.mail(&receipt, "bob@b.test");
    w.mail(&m2, "alice@a.test");
    w.smtp.fail.lock().unwrap().push_back(
        Error::MailStatus {
            code: 451,
            message: "try later".into(),
        }
        .into(),
    );
    let r = w.round();
    assert_eq!((r.mails, r.left, r.deleted, r.skipped), (3, 2, 1, 0));
    assert_eq!(
        w.smtp.calls.load(Relaxed),
        calls + 1,
        "the failed server is not asked again in the round"
    );
    assert_eq!(w.mailbox.len(), 2);
    assert_eq!(w.state(&m1.message_id).as_deref(), Some("waiting"));
    assert_eq!(w.state(&m2.message_id).as_deref(), Some("waiting"));
    assert_eq!(w.state(&d.message_id).as_deref(), Some("delivered"));

    // At once again: not handled again (no submission at every poll).
    let r = w.round();
    assert_eq!((r.mails, r.skipped, r.deleted), (2, 2, 0));
    assert_eq!(w.smtp.calls.load(Relaxed), calls + 1);

    // After the back-off: handled again (duplicates), the same receipts mailed.
    pauses_over(&w.gateway);
    let r = w.round();
    assert_eq!((r.mails, r.deleted), (2, 2));
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(w.service.metrics.duplicates.load(Relaxed), 2);
    let text = w.service.metrics_text();
    assert!(
        text.contains("layersec_mail_submission_failures_total{reason=\"transient\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("layersec_mail_skipped_total{reason=\"answer_later\"} 2"),
        "{text}"
    );
}

/// A sender whose address the SMTP server refuses for now (a 4xx to RCPT TO): its mail stays
/// for later, and the server is still used for the other senders' answers in the round.
#[test]
fn a_refused_answer_address_does_not_hold_up_the_others() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    let carol = w.party("carol", Some("carol@c.test"));
    let _bob = w.party("bob", None);
    w.smtp.refuse.lock().unwrap().insert("alice@a.test".into());
    let a = alice.message("bob", b"from alice");
    let c = carol.message("bob", b"from carol");
    w.mail(&a, "alice@a.test");
    w.mail(&c, "carol@c.test");
    let r = w.round();
    assert_eq!((r.mails, r.left, r.deleted), (2, 1, 1));
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "carol@c.test");
    assert_eq!(w.round().skipped, 1);
    w.smtp.refuse.lock().unwrap().clear();
    pauses_over(&w.gateway);
    assert_eq!(w.round().deleted, 1);
    assert_eq!(w.smtp.take()[0].to, "alice@a.test");
    assert!(w
        .service
        .metrics_text()
        .contains("layersec_mail_submission_failures_total{reason=\"recipient\"} 1"));
}

/// A mail the mailbox server refuses to hand over or to move (a NO; a folder it cannot be
/// given) is skipped — logged, left, not asked for again at each round — and the mails after
/// it are handled. A failure of the session itself ends the round.
#[test]
fn a_mail_the_server_refuses_does_not_block_the_others() {
    let w = World::new();
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", None);
    let poison = w
        .mailbox
        .deliver(b"X-Content-Type: text/plain\r\n\r\nx".to_vec());
    let junk = w
        .mailbox
        .deliver(b"From: a@x.test\r\nSubject: hi\r\n\r\nhello\r\n".to_vec());
    let m = alice.message("bob", b"after the poison");
    w.mail(&m, "alice@a.test");
    w.mailbox.fail("fetch", &poison, || Error::MailStatus {
        code: 0,
        message: "imaps://mail.test:993 refused UID FETCH: NO [SERVERBUG] cannot".into(),
    });
    w.mailbox.fail("set_aside", &junk, || {
        Error::InvalidArgument("the IMAP folder is not a printable ASCII name".into())
    });
    let r = w.round();
    assert_eq!((r.mails, r.skipped, r.deleted, r.set_aside), (3, 2, 1, 0));
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    assert_eq!(w.smtp.take().len(), 1);
    assert_eq!(w.mailbox.len(), 2);

    // Not asked for again at the next round.
    let r = w.round();
    assert_eq!((r.mails, r.skipped), (2, 2));
    assert_eq!(
        w.mailbox.fetches().iter().filter(|u| **u == poison).count(),
        1
    );
    let text = w.service.metrics_text();
    assert!(
        text.contains("layersec_mail_skipped_total{reason=\"mailbox_refused\"} 2"),
        "{text}"
    );

    // Later (the server fixed): taken.
    w.mailbox.0.lock().unwrap().fail.clear();
    pauses_over(&w.gateway);
    let r = w.round();
    assert_eq!((r.mails, r.set_aside), (2, 2));

    // The connection lost: the round ends there (the caller reconnects).
    let m2 = alice.message("bob", b"two");
    let m3 = alice.message("bob", b"three");
    let uid2 = w.mail(&m2, "alice@a.test");
    w.mail(&m3, "alice@a.test");
    w.mailbox.fail("fetch", &uid2, || {
        Error::ConnectFailed("imaps://mail.test:993 closed the connection".into())
    });
    let mut mb = w.mailbox.clone();
    let e = w.gateway.intake_round(&mut mb).unwrap_err();
    assert_eq!(e.code(), ls_core::ErrorCode::ConnectFailed);
    assert_eq!(w.state(&m3.message_id), None, "not reached");
    w.mailbox.0.lock().unwrap().fail.clear();
    assert_eq!(w.round().deleted, 2, "not skipped: it was the session");
}

// ---- delivery ----

/// A message for a party with a mail address is submitted to it by mail, byte for byte; it
/// stays leased until the party's receipt comes back by mail, which marks it delivered (and
/// is not answered).
#[test]
fn delivery_by_mail_and_the_receipt_by_mail() {
    let w = World::new();
    let alice = w.party("alice", None);
    let bob = w.party("bob", Some("bob@b.test"));
    let generation = w.service.mail_wake.generation();
    let m = alice.message("bob", b"for bob by mail");
    assert_eq!(w.push(&m).status, 200);
    assert_ne!(
        w.service.mail_wake.generation(),
        generation,
        "the push wakes the delivery"
    );

    let now = ls_core::time::now_unix();
    let r = w.gateway.delivery_round(now).unwrap();
    assert_eq!((r.submitted, r.more, r.paused), (1, false, false));
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].from.as_str(), sent[0].to.as_str()),
        (SERVICE_ADDRESS, "bob@b.test")
    );
    let Content::As4 {
        content_type, body, ..
    } = PlainFormat.read(&sent[0].mail, &Limits::default())
    else {
        panic!("not an AS4 mail")
    };
    assert_eq!(body, m.body, "the sender's bytes, unchanged");
    assert_eq!(w.state(&m.message_id).as_deref(), Some("leased"));
    assert_eq!(w.gateway.delivery_round(now + 1).unwrap().submitted, 0);

    // Bob's receipt by mail.
    let receipt = bob.receipt_of(&content_type, &body, alice.cert());
    w.mail(&receipt, "bob@b.test");
    let r = w.round();
    assert_eq!(r.deleted, 1);
    assert_eq!(w.state(&m.message_id).as_deref(), Some("delivered"));
    assert!(w.smtp.take().is_empty(), "a receipt is not answered");
    assert_eq!(w.gateway.delivery_round(now + 10_000).unwrap().submitted, 0);
    let text = w.service.metrics_text();
    assert!(text.contains("layersec_mail_delivered_total 1"), "{text}");
    assert!(
        text.contains("layersec_messages_delivered_total 1"),
        "{text}"
    );

    // A message for a party without a mail address does not wake the delivery.
    let g = w.service.mail_wake.generation();
    assert_eq!(w.push(&bob.message("alice", b"back")).status, 200);
    assert_eq!(w.service.mail_wake.generation(), g);
}

/// Without the receipt, the message is submitted again when its lease ends.
#[test]
fn a_message_without_a_receipt_is_mailed_again_after_the_lease() {
    let w = World::new();
    let alice = w.party("alice", None);
    let _bob = w.party("bob", Some("bob@b.test"));
    let m = alice.message("bob", b"again");
    w.push(&m);
    let now = ls_core::time::now_unix();
    assert_eq!(w.gateway.delivery_round(now).unwrap().submitted, 1);
    assert_eq!(w.gateway.delivery_round(now + 899).unwrap().submitted, 0);
    assert_eq!(w.gateway.delivery_round(now + 900).unwrap().submitted, 1);
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].mail, sent[1].mail);
    let rec = w.store.messages(None, 10).unwrap();
    assert_eq!(rec[0].attempts, 2);
}

/// SMTP unavailable: the claim is given back and the round pauses; the next round submits
/// it. Refused for good: it stays leased (offered again after the lease).
#[test]
fn submission_failures() {
    let w = World::new();
    let alice = w.party("alice", None);
    let _bob = w.party("bob", Some("bob@b.test"));
    let m = alice.message("bob", b"x");
    w.push(&m);
    let now = ls_core::time::now_unix();
    w.smtp
        .fail
        .lock()
        .unwrap()
        .push_back(Error::ConnectFailed("down".into()).into());
    let r = w.gateway.delivery_round(now).unwrap();
    assert_eq!((r.submitted, r.paused), (0, true));
    assert_eq!(w.gateway.delivery_round(now).unwrap().submitted, 1);
    assert_eq!(w.smtp.take().len(), 1);

    let m2 = alice.message("bob", b"y");
    w.push(&m2);
    w.smtp
        .fail
        .lock()
        .unwrap()
        .push_back(Error::Refused("552 too large".into()).into());
    let r = w.gateway.delivery_round(now).unwrap();
    assert_eq!((r.submitted, r.paused), (0, false));
    assert_eq!(w.state(&m2.message_id).as_deref(), Some("leased"));
    assert_eq!(w.gateway.delivery_round(now + 1).unwrap().submitted, 0);
    assert_eq!(w.gateway.delivery_round(now + 2000).unwrap().submitted, 2);
    let text = w.service.metrics_text();
    assert!(
        text.contains("layersec_mail_submission_failures_total{reason=\"refused\"} 1"),
        "{text}"
    );
}

/// A message too large for a mail is not submitted (and not read whole).
#[test]
fn a_message_too_large_for_a_mail_is_not_submitted() {
    let mut w = World::new();
    w.gateway.settings.max_mail_bytes = 100 * 1024;
    let alice = w.party("alice", None);
    let _bob = w.party("bob", Some("bob@b.test"));
    let big = vec![7u8; 200 * 1024];
    w.push(&alice.message("bob", &big));
    let r = w.gateway.delivery_round(ls_core::time::now_unix()).unwrap();
    assert_eq!(r.submitted, 0);
    assert_eq!(w.smtp.calls.load(Relaxed), 0);
    assert!(w
        .service
        .metrics_text()
        .contains("layersec_mail_submission_failures_total{reason=\"too_large\"} 1"));
}

/// A party whose address the SMTP server refuses (a 4xx to RCPT TO) does not hold up the
/// others: its message stays leased, its other messages wait until that lease ends, and the
/// other parties' messages are mailed in the same round (no pause of the deliveries).
#[test]
fn a_refused_address_does_not_hold_up_the_other_parties() {
    let w = World::new();
    let alice = w.party("alice", None);
    let _bob = w.party("bob", Some("bob@b.test"));
    let _carol = w.party("carol", Some("carol@c.test"));
    let b1 = alice.message("bob", b"1");
    let b2 = alice.message("bob", b"2");
    let c1 = alice.message("carol", b"3");
    for m in [&b1, &b2, &c1] {
        assert_eq!(w.push(m).status, 200);
    }
    w.smtp.refuse.lock().unwrap().insert("bob@b.test".into());
    let now = ls_core::time::now_unix();
    let r = w.gateway.delivery_round(now).unwrap();
    assert_eq!(
        (r.submitted, r.paused, r.more, r.refused_parties),
        (1, false, false, 1)
    );
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "carol@c.test");
    let mut states = [w.state(&b1.message_id), w.state(&b2.message_id)];
    states.sort();
    assert_eq!(
        states,
        [Some("leased".to_string()), Some("waiting".to_string())]
    );
    assert_eq!(w.smtp.calls.load(Relaxed), 2);

    // Bob is passed over until the refused message's lease ends.
    let r = w.gateway.delivery_round(now + 1).unwrap();
    assert_eq!((r.submitted, r.paused), (0, false));
    assert_eq!(w.smtp.calls.load(Relaxed), 2);
    w.smtp.refuse.lock().unwrap().clear();
    // Bob's two, and carol's again (no receipt from her within the lease).
    assert_eq!(w.gateway.delivery_round(now + 900).unwrap().submitted, 3);
    let to_bob = w
        .smtp
        .take()
        .iter()
        .filter(|s| s.to == "bob@b.test")
        .count();
    assert_eq!(to_bob, 2);
    assert!(w
        .service
        .metrics_text()
        .contains("layersec_mail_submission_failures_total{reason=\"recipient\"} 1"));
}

/// A server that announces new mail all the time (a count it repeats at each IDLE) cannot
/// make the intake list the mailbox in a loop: a round per MIN_ROUND_GAP at most.
#[test]
fn rounds_are_min_round_gap_apart_at_least() {
    #[derive(Clone)]
    struct Chatty(FakeBox);
    impl Mailbox for Chatty {
        fn list(&mut self) -> ls_core::Result<Vec<MailRef>> {
            self.0.list()
        }
        fn fetch(&mut self, mail: &MailRef, max: u64) -> ls_core::Result<Vec<u8>> {
            self.0.fetch(mail, max)
        }
        fn delete(&mut self, mail: &MailRef) -> ls_core::Result<()> {
            self.0.delete(mail)
        }
        fn set_aside(&mut self, mail: &MailRef, folder: &str) -> ls_core::Result<()> {
            Mailbox::set_aside(&mut self.0, mail, folder)
        }
        fn uidvalidity(&self) -> Option<u64> {
            Some(1)
        }
        fn can_idle(&self) -> bool {
            true
        }
        fn wait(&mut self, _max: Duration, _stop: &AtomicBool) -> ls_core::Result<bool> {
            Ok(true)
        }
        fn close(self: Box<Self>) -> ls_core::Result<()> {
            Ok(())
        }
    }
    struct Opener(Chatty);
    impl MailboxOpener for Opener {
        fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
            Ok(Box::new(self.0.clone()))
        }
        fn server(&self) -> String {
            "memory".into()
        }
    }
    let w = World::new();
    let gateway = Arc::new(gateway_for(w.service.clone(), w.smtp.clone()));
    let running = start(gateway, Arc::new(Opener(Chatty(w.mailbox.clone())))).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(running.stop(Duration::from_secs(5)));
    let lists = w.mailbox.0.lock().unwrap().lists;
    // 1.5 s / 200 ms: at most 8 rounds (a busy loop would make thousands).
    assert!((1..=8).contains(&lists), "{lists} rounds in 1.5 s");
}

// ---- the pieces ----

#[test]
fn a_refused_login_is_not_tried_again_at_once() {
    let inner = Arc::new(FakeSubmitter::default());
    inner
        .fail
        .lock()
        .unwrap()
        .push_back(Error::LoginFailed("535".into()).into());
    let g = GuardedSubmitter::new(inner.clone(), Duration::from_secs(300));
    assert!(matches!(
        g.submit("a@b.c", "d@e.f", b"m"),
        Err(SendError {
            error: Error::LoginFailed(_),
            ..
        })
    ));
    for _ in 0..5 {
        assert!(matches!(
            g.submit("a@b.c", "d@e.f", b"m"),
            Err(SendError {
                error: Error::LoginFailed(_),
                ..
            })
        ));
    }
    assert_eq!(
        inner.calls.load(Relaxed),
        1,
        "the server is not asked again"
    );
    let g = GuardedSubmitter::new(inner.clone(), Duration::ZERO);
    inner
        .fail
        .lock()
        .unwrap()
        .push_back(Error::LoginFailed("535".into()).into());
    assert!(g.submit("a@b.c", "d@e.f", b"m").is_err());
    assert!(g.submit("a@b.c", "d@e.f", b"m").is_ok());
}

/// The mailbox and SMTP share the account's guard: a password the mailbox refused is not
/// tried by SMTP either; after the back-off exactly one login is tried at a time (the others
/// wait for its outcome), however many threads want one.
#[test]
fn one_login_guard_for_the_mailbox_and_smtp() {
    struct Refusing(AtomicU64);
    impl MailboxOpener for Refusing {
        fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
            self.0.fetch_add(1, Relaxed);
            Err(Error::LoginFailed("NO [AUTHENTICATIONFAILED]".into()))
        }
        fn server(&self) -> String {
            "imaps://127.0.0.1:1".into()
        }
    }
    /// Refuses the login, slowly.
    struct SlowRefusing(AtomicU64);
    impl Submitter for SlowRefusing {
        fn submit(&self, _: &str, _: &str, _: &[u8]) -> Result<(), SendError> {
            self.0.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_millis(300));
            Err(Error::LoginFailed("535".into()).into())
        }
    }
    let guard = Arc::new(LoginGuard::new(Duration::from_millis(400)));
    let mailbox = Arc::new(Refusing(AtomicU64::new(0)));
    let opener = GuardedOpener::new(mailbox.clone(), guard.clone());
    let inner = Arc::new(SlowRefusing(AtomicU64::new(0)));
    let smtp = Arc::new(GuardedSubmitter::with_guard(inner.clone(), guard.clone()));
    assert_eq!(
        opener.open().err().map(|e| e.code()),
        Some(ls_core::ErrorCode::LoginFailed)
    );
    let e = smtp.submit("a@b.c", "d@e.f", b"m").unwrap_err();
    assert!(matches!(e.error, Error::LoginFailed(_)), "{e:?}");
    assert_eq!(
        inner.0.load(Relaxed),
        0,
        "SMTP does not try the refused password"
    );
    assert!(opener.open().is_err());
    assert_eq!(mailbox.0.load(Relaxed), 1);

    std::thread::sleep(Duration::from_millis(450));
    // The back-off is over: three threads want to log in; one probes, the others wait for
    // its outcome (refused again) and do not try.
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let smtp = smtp.clone();
            std::thread::spawn(move || smtp.submit("a@b.c", "d@e.f", b"m").unwrap_err())
        })
        .collect();
    for t in threads {
        assert!(matches!(t.join().unwrap().error, Error::LoginFailed(_)));
    }
    assert!(opener.open().is_err());
    assert_eq!(inner.0.load(Relaxed), 1, "one probe");
    assert_eq!(mailbox.0.load(Relaxed), 1);
}

#[test]
fn wake_and_stop() {
    let w = Arc::new(Wake::default());
    let g = w.generation();
    let t = Instant::now();
    assert_eq!(w.wait(g, Duration::from_millis(30)), g);
    assert!(t.elapsed() >= Duration::from_millis(30));
    let w2 = w.clone();
    let waiter = std::thread::spawn(move || w2.wait(g, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(20));
    w.wake();
    assert_ne!(waiter.join().unwrap(), g);
    w.stop();
    let t = Instant::now();
    w.wait(w.generation(), Duration::from_secs(30));
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// The threads: a mail in the intake is taken, and a message for a mail party is mailed at
/// once (woken by the push, not after poll); both stop when asked.
#[test]
fn the_threads_run_and_stop() {
    struct Opener(FakeBox);
    impl MailboxOpener for Opener {
        fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
            Ok(Box::new(self.0.clone()))
        }
        fn server(&self) -> String {
            "memory".into()
        }
    }
    let mut w = World::new();
    w.gateway.settings.poll = Duration::from_secs(3600);
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", Some("bob@b.test"));
    let mailbox = w.mailbox.clone();
    let smtp = w.smtp.clone();
    let service = w.service.clone();
    let gateway = Arc::new(std::mem::replace(
        &mut w.gateway,
        gateway_for(service.clone(), smtp.clone()),
    ));
    // Intake: the poll is long, but the first round runs at once.
    let m = alice.message("bob", b"by mail, then by mail");
    w.mail(&m, "alice@a.test");
    let running = start(gateway, Arc::new(Opener(mailbox.clone()))).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    // The receipt to alice, and the message to bob (woken by the push).
    while smtp.sent.lock().unwrap().len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = smtp.take();
    let mut to: Vec<&str> = sent.iter().map(|s| s.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["alice@a.test", "bob@b.test"]);
    assert!(mailbox.deleted().len() == 1);
    assert!(running.stop(Duration::from_secs(5)), "the threads stop");
}

/// The same push, laid out by the real layout (docs/EMAIL.md) both ways: the answer is a mail
/// the layout reads back as the service's receipt, replying to the message's Message-ID.
#[test]
fn with_the_mail_layout() {
    let mut w = World::new();
    w.gateway.format = Arc::new(CoreLayout);
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", None);
    let m = alice.message("bob", b"laid out as a mail");
    let raw = layout::compose(
        &m.content_type,
        &m.body,
        "alice@a.test",
        SERVICE_ADDRESS,
        &Limits::default(),
    )
    .unwrap();
    w.mailbox.deliver(raw);
    w.mailbox
        .deliver(b"From: a@x.test\r\nSubject: hi\r\n\r\nhello\r\n".to_vec());
    let r = w.round();
    assert_eq!((r.deleted, r.set_aside), (1, 1));
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    let sent = w.smtp.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "alice@a.test");
    let text = String::from_utf8_lossy(&sent[0].mail).into_owned();
    assert!(
        text.contains(&m.message_id),
        "In-Reply-To names the message"
    );
    match layout::read(&sent[0].mail, &Limits::default()) {
        Content::As4 {
            content_type, body, ..
        } => {
            let a = exchange::peek(&content_type, &body, &Limits::default()).unwrap();
            assert!(matches!(a.signals[0].signal, Signal::Receipt { .. }));
        }
        other => panic!("{other:?}"),
    }
}

/// A mailbox that refuses the password is not asked again at once (no tight loop), nor is a
/// server that cannot be reached reconnected faster than the back-off.
#[test]
fn a_refused_mailbox_login_backs_off() {
    struct Refusing(AtomicU64, fn() -> Error);
    impl MailboxOpener for Refusing {
        fn open(&self) -> ls_core::Result<Box<dyn Mailbox>> {
            self.0.fetch_add(1, Relaxed);
            Err((self.1)())
        }
        fn server(&self) -> String {
            "imaps://127.0.0.1:1".into()
        }
    }
    for (make, max_opens) in [
        (
            (|| Error::LoginFailed("NO [AUTHENTICATIONFAILED]".into())) as fn() -> Error,
            1,
        ),
        (|| Error::ConnectFailed("refused".into()), 2),
    ] {
        let w = World::new();
        let opener = Arc::new(Refusing(AtomicU64::new(0), make));
        let gateway = Arc::new(gateway_for(w.service.clone(), w.smtp.clone()));
        let running = start(gateway, opener.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let opens = opener.0.load(Relaxed);
        assert!((1..=max_opens).contains(&opens), "{opens} attempts");
        assert!(
            running.stop(Duration::from_secs(5)),
            "stops during the pause"
        );
        assert_eq!(w.service.metrics.mail.mailbox_errors.load(Relaxed), opens);
    }
}

// ---- the service's signing key unavailable (a PKCS#11 token gone) ----

/// A signing key that fails as a token that went away does (`LS_ERR_TOKEN_UNAVAILABLE`) while
/// `gone` is set, and signs in memory otherwise.
struct VanishingKey {
    inner: ls_core::keys::private::SoftKey,
    gone: std::sync::atomic::AtomicBool,
}

impl ls_core::keys::private::PrivateKey for VanishingKey {
    fn public_key(&self) -> &openssl::pkey::PKeyRef<openssl::pkey::Public> {
        self.inner.public_key()
    }
    fn location(&self) -> String {
        "pkcs11:token=gone;object=svc".into()
    }
    fn sign(
        &self,
        alg: ls_core::keys::private::SigAlg,
        digest: ls_core::keys::private::Digest,
        data: &[u8],
    ) -> ls_core::Result<Vec<u8>> {
        if self.gone.load(Relaxed) {
            return Err(ls_core::Error::TokenUnavailable(
                "the token is not present".into(),
            ));
        }
        self.inner.sign(alg, digest, data)
    }
    fn decrypt(
        &self,
        padding: &ls_core::keys::private::RsaDecryption,
        enc: &[u8],
    ) -> ls_core::Result<ls_core::keys::private::Secret> {
        self.inner.decrypt(padding, enc)
    }
    fn ecdh(
        &self,
        peer: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
    ) -> ls_core::Result<ls_core::keys::private::Secret> {
        self.inner.ecdh(peer)
    }
}

/// While the service's signing key is unavailable (its token gone), a push is answered 503
/// with Retry-After (which the client takes as transient, HttpStatus 5xx) and nothing is
/// stored: the receipt is signed before the message is accepted, so no message is taken
/// without its receipt. A mail is left in the mailbox. Once the key is back, the same push
/// is taken and receipted.
#[test]
fn a_push_whose_receipt_cannot_be_signed_is_503_and_not_stored() {
    let g = Identity::generate("svc.test", KeyType::EcP256, 2, None).unwrap();
    let pem = openssl::pkey::PKey::private_key_from_pem(&g.key_pem).unwrap();
    let key = Arc::new(VanishingKey {
        inner: ls_core::keys::private::SoftKey::new(pem).unwrap(),
        gone: std::sync::atomic::AtomicBool::new(true),
    });
    let identity =
        Identity::with_key(key.clone(), g.identity.certificate().clone(), Vec::new()).unwrap();
    let mut w = World::new();
    w.service = service_with(w.store.clone(), AcceptLimits::default(), identity);
    w.gateway = gateway_for(w.service.clone(), w.smtp.clone());
    let alice = w.party("alice", Some("alice@a.test"));
    let _bob = w.party("bob", None);

    let m = alice.message("bob", b"while the token is gone");
    let r = w.push(&m);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.headers.iter().any(|(k, _)| k == "Retry-After"),
        "{:?}",
        r.headers
    );
    assert!(String::from_utf8_lossy(&r.body).contains("cannot sign"));
    assert_eq!(
        w.state(&m.message_id),
        None,
        "nothing accepted without a receipt"
    );
    // The client takes a 503 as transient: it keeps the message and tries again.
    assert!(ls_core::Error::HttpStatus {
        status: r.status,
        message: String::new()
    }
    .is_transient());
    // By mail: left in the mailbox for a later round, unanswered.
    let m2 = alice.message("bob", b"by mail while the token is gone");
    w.mail(&m2, "alice@a.test");
    let round = w.round();
    assert_eq!((round.mails, round.left, round.deleted), (1, 1, 0));
    assert!(w.smtp.take().is_empty());
    assert_eq!(w.state(&m2.message_id), None);

    // The token is back: the same push is taken and answered with a receipt.
    key.gone.store(false, Relaxed);
    let r = w.push(&m);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(w.state(&m.message_id).as_deref(), Some("waiting"));
    let round = w.round();
    assert_eq!(round.deleted, 1);
    assert_eq!(w.state(&m2.message_id).as_deref(), Some("waiting"));
}
