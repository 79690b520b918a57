//! The AS4 endpoint: push (a signed UserMessage, answered with the service's signed receipt),
//! pull (a signed PullRequest, answered with the oldest waiting message byte for byte, or
//! EBMS:0006), and the recipient's receipt (marks the message delivered).
//!
//! Every request is authenticated by its WS-Security signature against the certificate(s)
//! registered for the party it concerns — the From party of a UserMessage, the owner of the
//! MPC of a PullRequest, the recipient of the message a Receipt acknowledges — before anything
//! is stored or handed out. Refusals are signed ebMS error signals (HTTP 200); a store failure
//! (or a push that would eat into the free-space reserve) is HTTP 503, so that clients retry.
//!
//! Until a signature verifies, every refusal is the same: [`UNAUTHENTICATED_CODE`] with
//! [`UNAUTHENTICATED`], whatever the reason (unknown, revoked or suspended party, unknown MPC or
//! MessageId, bad signature, malformed message); the reason goes to the log and the metrics
//! only. A request that names no usable party is checked against a decoy certificate nobody
//! holds the key for, so that it costs the service the same work as one that does.
//!
//! Co-ordination messages (`coordination::SERVICE`) are at most
//! `coordination::MAX_COORDINATION_BYTES` (else `LS:0005`) and of the Actions in
//! `coordination::ACTIONS` (else `EBMS:0001`). All but a certificate update must name a
//! message held here (or held: its record is kept) that their sender received from their
//! recipient. A refusal notice (`ACTION_REFUSAL`) marks that message failed, a signed receipt
//! (`ACTION_RECEIPT`) records on it that a receipt went back, an answer to a certificate update
//! (`ACTION_CERTIFICATE_UPDATE_ANSWER`) that an answer went back; all go to the message's
//! sender like any message. A certificate update (`ACTION_CERTIFICATE_UPDATE`, a party's
//! rollover told to a partner) must name a new certificate registered for its sender.

use crate::http::{Handler, Request, Response};
use crate::log::{self, V};
use crate::metrics::Metrics;
use crate::store::shared::Scope;
use crate::store::{
    content_fingerprint, AcceptLimits, Accepted, ClaimedBody, Coordination, Delivery, MessageBody,
    NewMessage, NoticeEffect, Party, PartyKey, RefusalOf, Refused, Spool, Store, StoreError,
};
use ls_core::as4::coordination::{self, errors as ls_errors, MessageFailure};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, Authenticated};
use ls_core::as4::message::Built;
use ls_core::as4::model::{EbmsError, Messaging, Signal, UserMessage, DEFAULT_MPC};
use ls_core::as4::spool::{SpooledPackage, Spooler};
use ls_core::as4::xml::Limits;
use ls_core::time::now_unix;
use ls_core::{Certificate, Error, Identity, KeyType};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// AS4 request bodies larger than this (or chunked) are streamed into a spool file of the
/// store instead of being read whole into memory.
pub const STREAM_ABOVE: u64 = 4 << 20;

/// While a streamed body arrives, the free-space reserve is checked again every this many bytes
/// (and what a declared body still holds of it is brought down to what is left to come).
const RESERVE_CHECK_EVERY: u64 = 8 << 20;

/// A pushed body: read whole, or in a spool file with its package.
enum PushBody {
    Bytes(Vec<u8>),
    Spooled {
        spool: Arc<Spool>,
        package: SpooledPackage,
    },
}

/// What a signature is checked over.
enum Signed<'a> {
    Bytes {
        ct: &'a str,
        body: &'a [u8],
    },
    Spooled {
        package: &'a SpooledPackage,
        path: &'a std::path::Path,
    },
    /// The SOAP part of a streamed push still arriving: its pre-check
    /// ([`exchange::precheck_soap_part`]), which refuses early but accepts nothing.
    SoapPart(&'a [u8]),
}

/// SOAP 1.1 for `text/xml`, else 1.2 (the version of our answers).
fn soap_version_of(ct: &str) -> SoapVersion {
    if ct.to_ascii_lowercase().contains("text/xml") {
        SoapVersion::Soap11
    } else {
        SoapVersion::Soap12
    }
}

/// The MessageId of the (first) UserMessage or signal of a header.
fn request_id_of(messaging: &Messaging) -> Option<String> {
    messaging
        .user_messages
        .first()
        .map(|u| &u.info)
        .or(messaging.signals.first().map(|s| &s.info))
        .map(|i| i.message_id.clone())
}

/// The (not yet trusted) header of a spooled message.
fn header_of(package: &SpooledPackage, limits: &Limits) -> ls_core::Result<Messaging> {
    header_of_soap(&package.soap, limits)
}

/// The (not yet trusted) header of a SOAP part.
fn header_of_soap(soap: &[u8], limits: &Limits) -> ls_core::Result<Messaging> {
    let doc = ls_core::as4::xml::parse_bytes(soap, limits)?;
    let env = ls_core::as4::envelope::read(&doc, ls_core::as4::envelope::UNDERSTOOD)?;
    let node = env
        .messaging
        .ok_or_else(|| Error::InvalidEbms("the message has no eb:Messaging header".into()))?;
    Messaging::parse(node)
}

/// The refusal of a signal of `n` bytes (too large to be one: above [`STREAM_ABOVE`]).
fn signal_too_large(n: u64, request_id: Option<&str>) -> Failure {
    let e = Error::TooLarge(format!("a signal of {n} bytes (signals are small)"));
    Failure::Refused(refusal_of(&e).unauthenticated(request_id))
}

/// What the pre-check of a streamed push found ([`Service::precheck`]).
enum Precheck {
    /// A push whose SOAP part passed: the rest is spooled, then the whole is authenticated.
    Passed,
    /// A signal (with its MessageId): refused once the body is larger than a signal may be.
    Signal(Option<String>),
}

/// The ebMS error of every refusal before a signature verifies.
pub const UNAUTHENTICATED_CODE: &str = "EBMS:0101";
/// Its description: the same whatever the reason.
pub const UNAUTHENTICATED: &str = "the message could not be authenticated";

/// The AS4 path (`POST /` is accepted too).
pub const AS4_PATH: &str = "/as4";
/// The enrolment path: `GET` the service certificate, `POST` an enrolment
/// ([`ls_core::enrol`], `crate::enrol`).
pub const ENROL_PATH: &str = "/enrol";
/// The rollover path: `POST` a party's new certificate, signed by its old and its new key
/// ([`ls_core::rollover`], `crate::rollover`).
pub const ROLLOVER_PATH: &str = "/rollover";

pub struct Service {
    pub store: Arc<dyn Store>,
    /// What receipts, signals and answers are signed with (a rollover changes it).
    pub identity: crate::service_key::SigningKey,
    pub domain: String,
    pub limits: Limits,
    pub lease_secs: i64,
    pub metrics: Arc<Metrics>,
    pub http_stats: Arc<crate::http::HttpStats>,
    /// Parsed registered certificates by fingerprint.
    pub cert_cache: Mutex<HashMap<String, Certificate>>,
    /// The free-space reserve and the account quota pushes are held to.
    pub accept_limits: AcceptLimits,
    /// Whom a request that names no usable party is checked against.
    pub decoy: Decoy,
    /// The enrolment endpoint's failure counts and nonces.
    pub enrolment: crate::enrol::Enrolments,
    /// The partner directory's replay memory and rate limits.
    pub directory: crate::directory::Directory,
    /// The rollover endpoint's nonces.
    pub rollovers: crate::rollover::Rollovers,
    /// Bytes that streamed uploads in progress have declared and not yet written: held against
    /// the free-space reserve, so that many uploads at once cannot each find it free.
    pub uploads_in_flight: std::sync::atomic::AtomicU64,
    /// Woken when a message is accepted for a party registered with a mail address: the e-mail
    /// gateway's delivery submits it at once ([`crate::email`]).
    pub mail_wake: Arc<crate::email::Wake>,
}

/// The part of [`Service::uploads_in_flight`] one upload holds; given back when it ends.
struct InFlight<'a> {
    total: &'a std::sync::atomic::AtomicU64,
    mine: u64,
}

impl InFlight<'_> {
    /// Hold `n` bytes (instead of what was held before).
    fn set(&mut self, n: u64) {
        use std::sync::atomic::Ordering;
        if n >= self.mine {
            self.total.fetch_add(n - self.mine, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.mine - n, Ordering::Relaxed);
        }
        self.mine = n;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// A certificate whose private key was thrown away when it was made (on first use): requests
/// that name no usable party are verified against it, so they fail at the same step, after
/// the same work, as a request signed by the wrong key for a registered party.
#[derive(Default)]
pub struct Decoy(OnceLock<Vec<Certificate>>);

impl Decoy {
    pub(crate) fn certificates(&self) -> Vec<Certificate> {
        self.0
            .get_or_init(|| {
                Identity::generate("layersec-decoy", KeyType::EcP256, 1, None)
                    .map(|g| vec![g.identity.certificate().clone()])
                    .unwrap_or_default()
            })
            .clone()
    }
}

const CERT_CACHE_MAX: usize = 10_000;

/// How far a pull request's Timestamp may be from now (clock skew allowed), in seconds.
pub const FRESHNESS_SECS: i64 = 600;

/// Why a request is refused: the ebMS error to answer with and a short reason for the
/// metrics and the log.
pub(crate) struct Refusal {
    code: &'static str,
    reason: &'static str,
    pub(crate) detail: String,
    ref_to: Option<String>,
    /// Refused before a signature verified: answered with [`UNAUTHENTICATED`], the detail
    /// only logged.
    unauthenticated: bool,
}

impl Refusal {
    fn new(code: &'static str, reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason,
            detail: detail.into(),
            ref_to: None,
            unauthenticated: false,
        }
    }

    /// This refusal, made before a signature verified: the answer is the uniform one, with
    /// the request's own MessageId (if it could be read) as RefToMessageId.
    fn unauthenticated(self, request_id: Option<&str>) -> Refusal {
        Refusal {
            code: UNAUTHENTICATED_CODE,
            ref_to: request_id.map(str::to_string),
            unauthenticated: true,
            ..self
        }
    }
}

/// What went wrong while handling a request.
pub(crate) enum Failure {
    Refused(Refusal),
    /// The store (or signing) failed: tell the client to retry.
    Unavailable(String),
    /// Storing the push would leave less free space than the reserve: retry later.
    LowSpace(String),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LowSpace { .. } => Failure::LowSpace(e.to_string()),
            _ => Failure::Unavailable(e.to_string()),
        }
    }
}

/// A failure while a message was received into, or read back from, the store's spool: the
/// service's own I/O (a full disk is [`Failure::LowSpace`], anything else
/// [`Failure::Unavailable`]: HTTP 503, the client retries), else a refusal of the message
/// (the uniform unauthenticated one: no signature verified yet).
fn spool_failure(e: &Error, request_id: Option<&str>) -> Failure {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            Failure::LowSpace(e.to_string())
        }
        Error::Io { .. } => Failure::Unavailable(e.to_string()),
        _ => Failure::Refused(refusal_of(e).unauthenticated(request_id)),
    }
}

/// The ebMS error for a failure to read or authenticate a message (the one mapping both ends
/// use, [`MessageFailure`]); before a signature verifies the answer is the uniform one anyway
/// ([`Refusal::unauthenticated`]) and this reason goes to the log and the metrics only.
fn refusal_of(e: &Error) -> Refusal {
    let f = MessageFailure::of(e);
    // The detail names the failure class only: no echo of attacker-chosen input beyond the
    // core's own messages, which never quote content.
    Refusal::new(
        f.ebms_code(),
        f.reason(),
        format!("{}: {e}", e.code().name()),
    )
}

impl Service {
    /// The party, if it may send and receive now. A store failure is `Unavailable` (HTTP 503,
    /// the client retries), never a refusal.
    fn usable_party(&self, key: &PartyKey) -> std::result::Result<Party, Failure> {
        match self.store.party(key)? {
            Some(p) if p.is_usable() => Ok(p),
            Some(_) => Err(Failure::Refused(Refusal::new(
                "EBMS:0101",
                "party_not_active",
                format!("party {key} is revoked or its account is suspended"),
            ))),
            None => Err(Failure::Refused(Refusal::new(
                "EBMS:0101",
                "unknown_party",
                format!("party {key} is not registered"),
            ))),
        }
    }

    /// The party's certificates that are current now. Parsed certificates are cached by
    /// fingerprint (a registered certificate never changes; which ones are current is read
    /// from the store every time, so the admin CLI's changes apply at once).
    pub(crate) fn current_certs(
        &self,
        key: &PartyKey,
    ) -> std::result::Result<Vec<Certificate>, Failure> {
        let now = now_unix();
        let registered = self.store.certificates(key)?;
        let mut cache = self.cert_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > CERT_CACHE_MAX {
            cache.clear();
        }
        Ok(registered
            .into_iter()
            .filter(|c| c.is_current(now))
            .filter_map(|c| match cache.get(&c.fingerprint) {
                Some(parsed) => Some(parsed.clone()),
                None => {
                    let parsed = Certificate::from_der(&c.der).ok()?;
                    cache.insert(c.fingerprint, parsed.clone());
                    Some(parsed)
                }
            })
            .collect())
    }

    fn signed(&self, soap: SoapVersion, refusal: &Refusal) -> Response {
        let description = if refusal.unauthenticated {
            UNAUTHENTICATED
        } else {
            &refusal.detail
        };
        let mut err = EbmsError::new(refusal.code).with_description(description);
        if let Some(short) = ls_short_description(refusal.code) {
            err.short_description = Some(short.into());
            err.category = Some("Content".into());
            err.origin = Some("ebMS".into());
        }
        let err = match &refusal.ref_to {
            Some(r) => err.with_ref(r),
            None => err,
        };
        match exchange::error_signal(
            soap,
            vec![err],
            refusal.ref_to.as_deref(),
            &self.identity.get(),
            &self.domain,
        ) {
            Ok(b) => built(b),
            Err(e) => {
                // Our signing key is unavailable (a token gone): transient, as for a receipt.
                log::error("signing_unavailable", &[("error", V::S(&e.to_string()))]);
                let mut r = Response::text(
                    503,
                    "the service cannot sign its answer right now; retry later",
                );
                r.headers.push(("Retry-After".into(), "5".into()));
                r
            }
        }
    }

    fn as4(&self, req: Request) -> Response {
        let started = Instant::now();
        let ct = req.header("content-type").unwrap_or("").to_string();
        let soap = soap_version_of(&ct);
        // Classify by the (unverified) header, then authenticate against the right party.
        let messaging = match exchange::peek(&ct, &req.body, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                return self.refuse(soap, "as4", refusal_of(&e).unauthenticated(None), started)
            }
        };
        let request_id = request_id_of(&messaging);
        let request_id = request_id.as_deref();
        let (kind, result) = if !messaging.user_messages.is_empty() {
            (
                "push",
                self.push(&ct, PushBody::Bytes(req.body), request_id),
            )
        } else {
            match messaging.signals.first().map(|s| &s.signal) {
                Some(Signal::PullRequest { mpc }) => {
                    ("pull", self.pull(&ct, &req.body, mpc, request_id))
                }
                Some(Signal::Receipt { .. }) => (
                    "receipt",
                    self.receipt(&ct, &req.body, &messaging, request_id),
                ),
                Some(Signal::Error(_)) => (
                    "error",
                    self.error_from_client(&ct, &req.body, &messaging, request_id),
                ),
                None => (
                    "as4",
                    Err(Failure::Refused(
                        Refusal::new(
                            "EBMS:0009",
                            "invalid_header",
                            "eb:Messaging holds neither a UserMessage nor a signal",
                        )
                        .unauthenticated(request_id),
                    )),
                ),
            }
        };
        self.answer(soap, kind, result, started)
    }

    /// A request whose body arrives as a stream (a push too large to hold, see
    /// [`STREAM_ABOVE`]): spooled into a file of the store while its attachment digests are
    /// computed and its SOAP part kept, then authenticated and stored as [`Service::push`]
    /// does, the body moved into place, never held whole in memory. A body that turns out
    /// small goes the usual way. As soon as the SOAP part is whole it is pre-checked
    /// ([`Service::precheck`]): a stranger's upload is refused then, not spooled to its end.
    fn as4_stream(&self, mut req: Request) -> Response {
        let started = Instant::now();
        let ct = req.header("content-type").unwrap_or("").to_string();
        let soap = soap_version_of(&ct);
        let mut stream = req.body_stream.take().expect("a streamed request");
        let refuse = |e: &Error| match spool_failure(e, None) {
            Failure::Refused(r) => self.refuse(soap, "as4", r, started),
            f => self.answer(soap, "push", Err(f), started),
        };
        // A declared body that would eat into the free-space reserve (beside what the uploads
        // in progress still bring) is refused unread; the rest of it is held until it is in.
        let declared = stream.declared_len();
        let mut in_flight = InFlight {
            total: &self.uploads_in_flight,
            mine: 0,
        };
        if let Some(n) = declared {
            if let Err(f) = self.reserve_allows(n) {
                return self.answer(soap, "push", Err(f), started);
            }
            in_flight.set(n);
        }
        let (mut spool, file) = match self.store.new_spool() {
            Ok(x) => x,
            Err(e) => return self.answer(soap, "push", Err(e.into()), started),
        };
        let mut spooler = match Spooler::new(&ct, file, &self.limits) {
            Ok(s) => s,
            Err(e) => return refuse(&e),
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut checked = 0u64;
        // The pre-check's outcome once the SOAP part is whole (`Service::precheck`).
        let mut precheck = None;
        // A lone envelope (no MIME parts) is whole only at its end: past the envelope limit it
        // is refused at once, as the spooler refuses it at the end.
        let lone = matches!(
            ls_core::as4::package::media_type(&ct).as_str(),
            "application/soap+xml" | "text/xml"
        );
        loop {
            let n = match std::io::Read::read(&mut stream, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The body failed: the connection layer answers (408, 413, 400).
                Err(_) => return Response::text(400, "the request body failed\n"),
            };
            if let Err(e) = spooler.feed(&buf[..n]) {
                return refuse(&e);
            }
            if lone && spooler.received() > self.limits.max_envelope as u64 {
                return refuse(&Error::TooLarge(format!(
                    "SOAP envelope of more than {} bytes exceeds the limit of {}",
                    spooler.received(),
                    self.limits.max_envelope
                )));
            }
            // A stranger's upload is refused as soon as its SOAP part is in, not spooled whole
            // first: dropping `spool` removes what was written.
            match &precheck {
                None => {
                    if let Some(soap_part) = spooler.soap_part() {
                        let outcome = match soap_part {
                            Ok(soap_part) => self.precheck(&soap_part, spooler.received()),
                            Err(e) => Err((spool_failure(&e, None), "as4")),
                        };
                        match outcome {
                            Ok(p) => precheck = Some(p),
                            Err((f, kind)) => return self.answer(soap, kind, Err(f), started),
                        }
                    }
                }
                Some(Precheck::Signal(id)) if spooler.received() > STREAM_ABOVE => {
                    let f = signal_too_large(spooler.received(), id.as_deref());
                    return self.answer(soap, "as4", Err(f), started);
                }
                Some(_) => {}
            }
            // A body is held to the reserve as it grows (what it wrote is no longer free; what
            // a declared one still brings stays held).
            if spooler.received() - checked >= RESERVE_CHECK_EVERY {
                checked = spooler.received();
                in_flight.set(declared.map_or(0, |n| n.saturating_sub(checked)));
                if let Err(f) = self.reserve_allows(0) {
                    return self.answer(soap, "push", Err(f), started);
                }
            }
        }
        let package = match spooler.finish() {
            Ok((p, _)) => p,
            Err(e) => return refuse(&e),
        };
        spool.len = package.length;
        if package.length <= STREAM_ABOVE {
            req.body = match std::fs::read(&spool.path) {
                Ok(b) => b,
                Err(e) => {
                    let f = Failure::Unavailable(format!("read {}: {e}", spool.path.display()));
                    return self.answer(soap, "push", Err(f), started);
                }
            };
            drop(spool);
            return self.as4(req);
        }
        let messaging = match header_of(&package, &self.limits) {
            Ok(m) => m,
            Err(e) => return refuse(&e),
        };
        let request_id = request_id_of(&messaging);
        if messaging.user_messages.is_empty() {
            let f = signal_too_large(package.length, request_id.as_deref());
            return self.answer(soap, "as4", Err(f), started);
        }
        let body = PushBody::Spooled {
            spool: Arc::new(spool),
            package,
        };
        let result = self.push(&ct, body, request_id.as_deref());
        self.answer(soap, "push", result, started)
    }

    /// Whether a push of `n` more bytes leaves the store's free-space reserve.
    fn reserve_allows(&self, n: u64) -> std::result::Result<(), Failure> {
        let reserve = self.accept_limits.min_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let coming = self
            .uploads_in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        match self.store.free_bytes()? {
            Some(free) if free < n.saturating_add(reserve).saturating_add(coming) => {
                Err(Failure::LowSpace(format!(
                    "storing {n} bytes would leave less than the free-space reserve of \
                     {reserve} bytes ({free} bytes free, {coming} more on their way)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The response for what handling a request of `kind` came to.
    fn answer(
        &self,
        soap: SoapVersion,
        kind: &'static str,
        result: std::result::Result<Response, Failure>,
        started: Instant,
    ) -> Response {
        match result {
            Ok(r) => {
                self.metrics.observe(kind, started.elapsed());
                r
            }
            Err(Failure::Refused(r)) => self.refuse(soap, kind, r, started),
            Err(Failure::Unavailable(why)) => {
                self.metrics.reject("unavailable");
                // The signing key (on a PKCS#11 token: token gone, LS_ERR_TOKEN_UNAVAILABLE)
                // fails before anything is stored: the same transient answer, its own event.
                let signing = why.starts_with("cannot sign");
                log::error(
                    if signing {
                        "signing_unavailable"
                    } else {
                        "store_unavailable"
                    },
                    &[("kind", kind.into()), ("error", V::S(&why))],
                );
                let mut r = Response::text(
                    503,
                    if signing {
                        "the service cannot sign its answer right now; retry later"
                    } else {
                        "the service cannot store or read messages right now; retry later"
                    },
                );
                r.headers.push(("Retry-After".into(), "5".into()));
                r
            }
            Err(Failure::LowSpace(why)) => {
                self.metrics.reject("low_disk_space");
                self.metrics.observe(kind, started.elapsed());
                log::warn(
                    "low_disk_space",
                    &[("kind", kind.into()), ("detail", V::S(&why))],
                );
                let mut r = Response::text(
                    503,
                    "the service cannot take new messages right now (its store is nearly full); \
                     retry later",
                );
                r.headers.push(("Retry-After".into(), "60".into()));
                r
            }
        }
    }

    fn refuse(
        &self,
        soap: SoapVersion,
        kind: &'static str,
        r: Refusal,
        started: Instant,
    ) -> Response {
        self.metrics.reject(r.reason);
        self.metrics.observe(kind, started.elapsed());
        log::warn(
            "refused",
            &[
                ("kind", kind.into()),
                ("ebms_code", r.code.into()),
                ("reason", r.reason.into()),
                ("detail", V::S(&r.detail)),
                ("ref_to", V::S(r.ref_to.as_deref().unwrap_or(""))),
            ],
        );
        self.signed(soap, &r)
    }

    /// Check the request's signature against the certificates `trust` names for its header.
    /// Every refusal until the signature verifies (by `trust`, or by the check itself) is the
    /// uniform one; when `trust` refuses, the signature is checked against the decoy, so that
    /// the answer costs the same. A store failure is `Unavailable`.
    fn authenticate<F>(
        &self,
        ct: &str,
        body: &[u8],
        request_id: Option<&str>,
        trust: F,
    ) -> std::result::Result<Authenticated, Failure>
    where
        F: FnOnce(&Messaging) -> std::result::Result<Vec<Certificate>, Failure>,
    {
        self.authenticate_body(Signed::Bytes { ct, body }, request_id, trust)
    }

    /// [`Service::authenticate`] of a body in memory or in a spool.
    fn authenticate_body<F>(
        &self,
        signed: Signed<'_>,
        request_id: Option<&str>,
        trust: F,
    ) -> std::result::Result<Authenticated, Failure>
    where
        F: FnOnce(&Messaging) -> std::result::Result<Vec<Certificate>, Failure>,
    {
        let mut refused = None;
        let mut unavailable = None;
        let trust = |m: &Messaging| match trust(m) {
            Ok(c) => Ok(c),
            Err(Failure::Refused(r)) => {
                refused = Some(r);
                Ok(self.decoy.certificates())
            }
            Err(other) => {
                unavailable = Some(other);
                Err(Error::UnknownSigner("the store is unavailable".into()))
            }
        };
        let r = match signed {
            Signed::Bytes { ct, body } => exchange::authenticate(ct, body, &self.limits, trust),
            Signed::Spooled { package, path } => {
                exchange::authenticate_spooled(package, path, &self.limits, trust)
            }
            Signed::SoapPart(soap) => exchange::precheck_soap_part(soap, &self.limits, trust),
        };
        if let Some(f) = unavailable {
            return Err(f);
        }
        match (r, refused) {
            (_, Some(r)) => Err(Failure::Refused(r.unauthenticated(request_id))),
            (Ok(a), None) => Ok(a),
            // Reading the spool failed (our disk): not the sender's fault.
            (Err(e), None) => Err(spool_failure(&e, request_id)),
        }
    }

    /// Whom a push's signature is checked against: the registered certificates, current now,
    /// of the usable party its (first) UserMessage names as From.
    fn push_signers(&self, m: &Messaging) -> std::result::Result<Vec<Certificate>, Failure> {
        let from = party_key(&m.user_messages[0].from.ids).ok_or_else(|| {
            Refusal::new(
                "EBMS:0009",
                "invalid_header",
                "the From party has no PartyId",
            )
        })?;
        self.usable_party(&from)?;
        self.current_certs(&from)
    }

    /// The pre-check of a streamed push whose SOAP part is whole while the rest of the body
    /// is still arriving: refused here (the answer it would have at the end) is what cannot
    /// pass the full check — a header that does not parse, a signal that is already larger
    /// than a signal may be ([`Precheck::Signal`]: refused once the body passes
    /// [`STREAM_ABOVE`]), a From party not registered or not usable, a signature that is not
    /// its current certificate's or does not verify over SignedInfo, an `eb:Messaging` or Body
    /// whose digest does not match. The attachment digests are left to the full check at the
    /// end, which is made as if there had been no pre-check.
    fn precheck(
        &self,
        soap: &[u8],
        received: u64,
    ) -> std::result::Result<Precheck, (Failure, &'static str)> {
        let messaging = match header_of_soap(soap, &self.limits) {
            Ok(m) => m,
            Err(e) => return Err((spool_failure(&e, None), "as4")),
        };
        let request_id = request_id_of(&messaging);
        if messaging.user_messages.is_empty() {
            // A small body goes the usual way (`Service::as4`); a large one is refused.
            if received > STREAM_ABOVE {
                return Err((signal_too_large(received, request_id.as_deref()), "as4"));
            }
            return Ok(Precheck::Signal(request_id));
        }
        self.authenticate_body(Signed::SoapPart(soap), request_id.as_deref(), |m| {
            self.push_signers(m)
        })
        .map_err(|f| (f, "push"))?;
        Ok(Precheck::Passed)
    }

    fn push(
        &self,
        ct: &str,
        body: PushBody,
        request_id: Option<&str>,
    ) -> std::result::Result<Response, Failure> {
        let signed = match &body {
            PushBody::Bytes(b) => Signed::Bytes { ct, body: b },
            PushBody::Spooled { spool, package } => Signed::Spooled {
                package,
                path: &spool.path,
            },
        };
        let auth = self.authenticate_body(signed, request_id, |m| self.push_signers(m))?;
        // Authenticated: from here on refusals say precisely what is wrong.
        let um = &auth.messaging.user_messages[0];
        let ref_to = um.info.message_id.clone();
        let refuse = |code, reason, detail: String| {
            Failure::Refused(Refusal {
                ref_to: Some(ref_to.clone()),
                ..Refusal::new(code, reason, detail)
            })
        };
        if auth.messaging.user_messages.len() != 1 || !auth.messaging.signals.is_empty() {
            return Err(refuse(
                "EBMS:0003",
                "policy",
                "one UserMessage per push, without signals".into(),
            ));
        }
        let from = party_key(&um.from.ids).expect("checked in trust");
        let to = party_key(&um.to.ids).ok_or_else(|| {
            refuse(
                "EBMS:0009",
                "invalid_header",
                "the To party has no PartyId".into(),
            )
        })?;
        let size = match &body {
            PushBody::Bytes(b) => b.len() as u64,
            PushBody::Spooled { package, .. } => package.length,
        };
        let coordination = if coordination::is_coordination(um) {
            Some(
                coordination_of(um, size)
                    .map_err(|(code, reason, detail)| refuse(code, reason, detail))?,
            )
        } else {
            None
        };
        if let Some(Coordination::CertificateUpdate) = &coordination {
            // The new certificate a party tells its partners about is the one it registered
            // here (`POST /rollover`): the service vouches for no more than that, but a party
            // cannot announce a certificate it did not register.
            let named = coordination::read_certificate_update(um)
                .and_then(Result::ok)
                .map(|h| h.new_certificate_sha256)
                .unwrap_or_default();
            let registered = self
                .current_certs(&from)?
                .iter()
                .any(|c| c.sha256_fingerprint() == named);
            if !registered {
                return Err(refuse(
                    "EBMS:0004",
                    "certificate_update_unregistered",
                    format!(
                        "the certificate update names the certificate {named}, which is not a \
                         current certificate of {from} at this service (register it first: \
                         POST /rollover)"
                    ),
                ));
            }
        }
        let recipient = match self.store.party(&to)? {
            Some(p) if p.is_usable() => p,
            // A co-ordination message goes back to the sender of the message it names (the
            // store checks that it is that sender), even when that party has been revoked or
            // suspended since: it waits there like any message.
            Some(p)
                if coordination.is_some()
                    && coordination != Some(Coordination::CertificateUpdate) =>
            {
                p
            }
            _ => {
                return Err(refuse(
                    "EBMS:0003",
                    "unknown_recipient",
                    format!("the To party {to} is not a registered, active party of this service"),
                ))
            }
        };
        if let Some(mpc) = &um.mpc {
            if mpc != DEFAULT_MPC && *mpc != recipient.mpc {
                return Err(refuse(
                    "EBMS:0003",
                    "policy",
                    format!("the message names the MPC {mpc}, which is not the recipient's"),
                ));
            }
        }
        let receipt = exchange::receipt_for(
            auth.soap,
            &auth.messaging,
            &auth.verified,
            &self.identity.get(),
            &self.domain,
        )
        .map_err(|e| Failure::Unavailable(format!("cannot sign the receipt: {e}")))?;
        let msg = NewMessage {
            sender: from.clone(),
            recipient: to.clone(),
            mpc: recipient.mpc.clone(),
            message_id: um.info.message_id.clone(),
            conversation_id: um.conversation_id.clone(),
            service: um.service.value.clone(),
            action: um.action.clone(),
            content_type: ct.to_string(),
            body: match body {
                PushBody::Bytes(b) => MessageBody::Bytes(b),
                PushBody::Spooled { spool, .. } => MessageBody::Spooled(spool),
            },
            receipt_content_type: receipt.content_type.clone(),
            receipt: receipt.body.clone(),
            received_at: now_unix(),
            content_sha256: content_fingerprint(&to, um, &auth.verified.references),
            coordination,
        };
        let accepted = match self.store.accept(&msg, &self.accept_limits) {
            Err(StoreError::Conflict(detail)) => {
                return Err(refuse("EBMS:0003", "message_id_conflict", detail))
            }
            Err(StoreError::Refused(r)) => {
                let (code, reason) = match &r {
                    Refused::MessageIdReused { .. } => {
                        (ls_errors::MESSAGE_ID_REUSED, "message_id_reused")
                    }
                    Refused::RecipientLimit { .. } => {
                        (ls_errors::RECIPIENT_LIMIT, "recipient_limit")
                    }
                    Refused::QuotaExceeded { subscriber_id, .. } => {
                        self.metrics.quota_refused(*subscriber_id);
                        (ls_errors::QUOTA_EXCEEDED, "quota_exceeded")
                    }
                    Refused::RefusedMessageUnknown { .. }
                    | Refused::RefusedMessageOtherSender { .. }
                    | Refused::AlreadyRefused { .. } => ("EBMS:0004", "invalid_refusal_notice"),
                    Refused::ReceiptedMessageUnknown { .. }
                    | Refused::ReceiptedMessageOtherSender { .. }
                    | Refused::ReceiptForCoordination { .. }
                    | Refused::ReceiptForRefused { .. }
                    | Refused::AlreadyReceipted { .. } => ("EBMS:0004", "invalid_receipt"),
                    Refused::AnsweredUpdateUnknown { .. } | Refused::AlreadyAnswered { .. } => {
                        ("EBMS:0004", "invalid_update_answer")
                    }
                };
                return Err(refuse(code, reason, r.to_string()));
            }
            Err(e @ StoreError::LowSpace { .. }) => return Err(Failure::LowSpace(e.to_string())),
            other => other?,
        };
        match accepted {
            Accepted::Stored | Accepted::NoticeStored(_) | Accepted::ReceiptStored => {
                if recipient.mail_address.is_some() {
                    self.mail_wake.wake();
                }
                self.metrics.accepted.fetch_add(1, Relaxed);
                self.metrics.bytes_in.fetch_add(size, Relaxed);
                log::info(
                    "accepted",
                    &[
                        ("message_id", V::S(&msg.message_id)),
                        ("from", V::S(&from.to_string())),
                        ("to", V::S(&to.to_string())),
                        ("size", size.into()),
                        (
                            "encrypted_payloads",
                            V::S(if auth.encrypted { "yes" } else { "no" }),
                        ),
                    ],
                );
                if msg.coordination.is_some() {
                    self.metrics.coordination(&msg.action);
                }
                if let (Accepted::NoticeStored(effect), Some(Coordination::Refusal(n))) =
                    (&accepted, &msg.coordination)
                {
                    self.metrics.refusal_notice(&n.class);
                    log::info(
                        "refused_by_recipient",
                        &[
                            ("message_id", V::S(&n.message_id)),
                            ("notice_id", V::S(&msg.message_id)),
                            ("recipient", V::S(&from.to_string())),
                            ("sender", V::S(&to.to_string())),
                            ("class", V::S(&n.class)),
                            (
                                "state",
                                match effect {
                                    NoticeEffect::Failed => "failed",
                                    NoticeEffect::AfterDelivery => "delivered",
                                }
                                .into(),
                            ),
                        ],
                    );
                }
                if let (Accepted::ReceiptStored, Some(Coordination::Receipt { message_id })) =
                    (&accepted, &msg.coordination)
                {
                    log::info(
                        "receipt_returned",
                        &[
                            ("message_id", V::S(message_id)),
                            ("receipt_id", V::S(&msg.message_id)),
                            ("recipient", V::S(&from.to_string())),
                            ("sender", V::S(&to.to_string())),
                        ],
                    );
                }
                Ok(built(receipt))
            }
            Accepted::Duplicate {
                receipt_content_type,
                receipt,
            } => {
                self.metrics.duplicates.fetch_add(1, Relaxed);
                log::info(
                    "duplicate",
                    &[
                        ("message_id", V::S(&msg.message_id)),
                        ("from", V::S(&from.to_string())),
                    ],
                );
                Ok(Response::new(200, &receipt_content_type, receipt))
            }
        }
    }

    fn pull(
        &self,
        ct: &str,
        body: &[u8],
        mpc: &str,
        request_id: Option<&str>,
    ) -> std::result::Result<Response, Failure> {
        // The MPC's owner must have signed the request; anyone else learns nothing about it.
        let owner = if mpc == DEFAULT_MPC {
            None
        } else {
            self.store.party_by_mpc(mpc)?
        };
        let auth = self.authenticate(ct, body, request_id, |_| {
            let Some(p) = owner.as_ref() else {
                return Err(Refusal::new(
                    "EBMS:0101",
                    "pull_unknown_mpc",
                    "pull requests must name the MPC of a registered party",
                )
                .into());
            };
            if !p.is_usable() {
                return Err(Refusal::new(
                    "EBMS:0101",
                    "party_not_active",
                    "the MPC's party is revoked or its account is suspended",
                )
                .into());
            }
            let certs = self.current_certs(&p.key)?;
            if certs.is_empty() {
                return Err(
                    Refusal::new("EBMS:0101", "authentication", "no current certificate").into(),
                );
            }
            Ok(certs)
        })?;
        let owner = owner.expect("authenticated");
        let info = &auth.messaging.signals[0].info;
        self.fresh(&info.message_id, &info.timestamp)?;
        let request_id = info.message_id.clone();
        match self.store.claim_next(mpc, now_unix(), self.lease_secs)? {
            Some(m) => {
                self.metrics.pulled.fetch_add(1, Relaxed);
                self.metrics.bytes_out.fetch_add(m.body.len(), Relaxed);
                log::info(
                    "pulled",
                    &[
                        ("message_id", V::S(&m.message_id)),
                        ("from", V::S(&m.sender.to_string())),
                        ("to", V::S(&owner.key.to_string())),
                        ("attempt", (m.attempt as u64).into()),
                        ("size", m.body.len().into()),
                    ],
                );
                Ok(match m.body {
                    ClaimedBody::Bytes(b) => Response::new(200, &m.content_type, b),
                    ClaimedBody::File { file, len } => {
                        Response::file(200, &m.content_type, file, len)
                    }
                })
            }
            None => {
                self.metrics.empty_pulls.fetch_add(1, Relaxed);
                let err = EbmsError::new("EBMS:0006").with_ref(&request_id);
                match exchange::error_signal(
                    auth.soap,
                    vec![err],
                    Some(&request_id),
                    &self.identity.get(),
                    &self.domain,
                ) {
                    Ok(b) => Ok(built(b)),
                    Err(e) => Err(Failure::Unavailable(format!("cannot sign the signal: {e}"))),
                }
            }
        }
    }

    /// The active recipients of the messages with this id, with their current certificates,
    /// and all those certificates together.
    #[allow(clippy::type_complexity)]
    fn recipients(
        &self,
        message_id: &str,
    ) -> std::result::Result<(Vec<(PartyKey, Vec<Certificate>)>, Vec<Certificate>), Failure> {
        let mut candidates = Vec::new();
        for key in self.store.recipients_of(message_id)? {
            let p = match self.usable_party(&key) {
                Ok(p) => p,
                Err(Failure::Refused(_)) => continue,
                Err(unavailable) => return Err(unavailable),
            };
            let certs = self.current_certs(&p.key)?;
            candidates.push((p.key, certs));
        }
        let all = candidates
            .iter()
            .flat_map(|(_, c): &(PartyKey, Vec<Certificate>)| c.iter().cloned())
            .collect();
        Ok((candidates, all))
    }

    fn receipt(
        &self,
        ct: &str,
        body: &[u8],
        peeked: &Messaging,
        request_id: Option<&str>,
    ) -> std::result::Result<Response, Failure> {
        let ref_to = ref_to_of(peeked).ok_or_else(|| {
            Failure::Refused(
                Refusal::new(
                    "EBMS:0009",
                    "invalid_header",
                    "the receipt has no RefToMessageId",
                )
                .unauthenticated(request_id),
            )
        })?;
        // Only a recipient of that message may receipt it.
        let (candidates, all) = self.recipients(&ref_to)?;
        let auth = self.authenticate(ct, body, request_id, |_| {
            if all.is_empty() {
                return Err(Refusal::new(
                    "EBMS:0101",
                    "receipt_unknown_message",
                    format!("no message {ref_to} waits for a party the signer could be"),
                )
                .into());
            }
            Ok(all.clone())
        })?;
        let signer = &auth.verified.signer;
        let Some((recipient, _)) = candidates
            .iter()
            .find(|(_, certs)| certs.iter().any(|c| c == signer))
        else {
            return Err(Failure::Refused(Refusal::new(
                "EBMS:0101",
                "authentication",
                "signer is not the recipient",
            )));
        };
        match self
            .store
            .mark_delivered(recipient, &ref_to, body, now_unix())?
        {
            Delivery::Delivered => {
                self.metrics.delivered.fetch_add(1, Relaxed);
                log::info(
                    "delivered",
                    &[
                        ("message_id", V::S(&ref_to)),
                        ("to", V::S(&recipient.to_string())),
                    ],
                );
            }
            Delivery::AlreadyDelivered => {}
            Delivery::Unknown => {
                return Err(Failure::Refused(Refusal {
                    ref_to: Some(ref_to.clone()),
                    ..Refusal::new(
                        "EBMS:0004",
                        "receipt_unknown_message",
                        "no such message waits for you",
                    )
                }))
            }
        }
        Ok(Response::new(200, "text/plain", Vec::new()))
    }

    fn error_from_client(
        &self,
        ct: &str,
        body: &[u8],
        peeked: &Messaging,
        request_id: Option<&str>,
    ) -> std::result::Result<Response, Failure> {
        // A recipient reporting that it could not process a pulled message: logged, not stored.
        let ref_to = ref_to_of(peeked).unwrap_or_default();
        let (_, certs) = self.recipients(&ref_to)?;
        let auth = self.authenticate(ct, body, request_id, |_| {
            if certs.is_empty() {
                Err(Refusal::new("EBMS:0101", "authentication", "unknown message").into())
            } else {
                Ok(certs.clone())
            }
        })?;
        if let Some(Signal::Error(errs)) = auth.messaging.signals.first().map(|s| &s.signal) {
            for e in errs {
                log::warn(
                    "recipient_error",
                    &[("message_id", V::S(&ref_to)), ("ebms_code", V::S(&e.code))],
                );
            }
        }
        Ok(Response::new(200, "text/plain", Vec::new()))
    }

    /// A signed pull request cannot be replayed: its Timestamp (covered by the signature) must
    /// be within [`FRESHNESS_SECS`] of now, and its MessageId not seen in that window. (A replayed
    /// pull would lease the owner's next message away from it.)
    fn fresh(&self, message_id: &str, timestamp: &str) -> std::result::Result<(), Failure> {
        let now = now_unix();
        let t = ls_core::time::parse_date_time(timestamp).ok_or_else(|| {
            Failure::Refused(Refusal::new(
                "EBMS:0009",
                "invalid_header",
                "the Timestamp is not an xsd:dateTime",
            ))
        })?;
        if (now - t).abs() > FRESHNESS_SECS {
            return Err(Failure::Refused(Refusal::new(
                "EBMS:0101",
                "replay",
                format!("the request's Timestamp is more than {FRESHNESS_SECS} s from the service's clock"),
            )));
        }
        // A Timestamp may be up to FRESHNESS_SECS ahead: a request stays acceptable for twice
        // that after it is first seen, so its id is kept that long (by every node).
        if !self
            .store
            .shared()
            .first_use(Scope::Pull, message_id, now, 2 * FRESHNESS_SECS)?
        {
            return Err(Failure::Refused(Refusal::new(
                "EBMS:0101",
                "replay",
                "this request was already processed (replayed MessageId)",
            )));
        }
        Ok(())
    }

    /// The Prometheus text (served on the admin listener, behind its token: it names every
    /// registered party).
    pub fn metrics_text(&self) -> String {
        let queues: Vec<(String, u64)> = self
            .store
            .queue_depths()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        let queued = self.store.queued_bytes().unwrap_or_default();
        let free = self.store.free_bytes().ok().flatten();
        self.metrics.render(
            &crate::metrics::StoreGauges {
                queues: &queues,
                queued_bytes: &queued,
                free_bytes: free,
                min_free_bytes: self.accept_limits.min_free_bytes,
            },
            &self.http_stats,
        )
    }
}

/// The short description of a Layer Security ebMS error code (ebMS3 knows only its own).
fn ls_short_description(code: &str) -> Option<&'static str> {
    Some(match code {
        ls_errors::RECIPIENT_LIMIT => "RecipientLimit",
        ls_errors::QUOTA_EXCEEDED => "QuotaExceeded",
        ls_errors::MESSAGE_ID_REUSED => "MessageIdReused",
        ls_errors::REFUSED_BY_RECIPIENT => "RefusedByRecipient",
        ls_errors::COORDINATION_TOO_LARGE => "CoordinationTooLarge",
        _ => return None,
    })
}

/// A refusal of a push: the ebMS error, the reason for the metrics, the detail.
type PushRefusal = (&'static str, &'static str, String);

/// What a co-ordination message of `size` bytes says, from its verified header: refused when
/// it is larger than [`coordination::MAX_COORDINATION_BYTES`] (`LS:0005`), of an Action this
/// service does not know (`EBMS:0001`: it would route and meter what it cannot check), or
/// malformed (`EBMS:0009`). Whether the message it names exists is the store's to say.
fn coordination_of(um: &UserMessage, size: u64) -> std::result::Result<Coordination, PushRefusal> {
    if size > coordination::MAX_COORDINATION_BYTES {
        return Err((
            ls_errors::COORDINATION_TOO_LARGE,
            "coordination_too_large",
            format!(
                "the co-ordination message is {size} bytes; co-ordination messages are at most \
                 {} bytes (they must not carry documents)",
                coordination::MAX_COORDINATION_BYTES
            ),
        ));
    }
    match um.action.as_str() {
        coordination::ACTION_REFUSAL => match coordination::read_refusal(um) {
            Some(Ok(n)) => Ok(Coordination::Refusal(RefusalOf {
                message_id: n.message_id,
                class: n.class.as_str().to_string(),
            })),
            Some(Err(e)) => Err((
                "EBMS:0009",
                "invalid_refusal_notice",
                format!("{}: {e}", e.code().name()),
            )),
            None => Err((
                "EBMS:0009",
                "invalid_refusal_notice",
                "not a refusal notice".into(),
            )),
        },
        coordination::ACTION_RECEIPT => match coordination::read_receipt(um) {
            // The contract's ReceivedAt is an xsd:dateTime (the reader leaves it to the caller).
            Some(Ok(h)) if ls_core::time::parse_date_time(&h.received_at).is_none() => Err((
                "EBMS:0009",
                "invalid_receipt",
                "receipt: no xsd:dateTime in ReceivedAt".into(),
            )),
            Some(Ok(h)) => Ok(Coordination::Receipt {
                message_id: h.message_id,
            }),
            Some(Err(e)) => Err((
                "EBMS:0009",
                "invalid_receipt",
                format!("{}: {e}", e.code().name()),
            )),
            None => Err(("EBMS:0009", "invalid_receipt", "not a receipt".into())),
        },
        coordination::ACTION_CERTIFICATE_UPDATE => {
            match coordination::read_certificate_update(um) {
                Some(Ok(_)) => Ok(Coordination::CertificateUpdate),
                Some(Err(e)) => Err((
                    "EBMS:0009",
                    "invalid_certificate_update",
                    format!("{}: {e}", e.code().name()),
                )),
                None => Err((
                    "EBMS:0009",
                    "invalid_certificate_update",
                    "not a certificate update".into(),
                )),
            }
        }
        coordination::ACTION_CERTIFICATE_UPDATE_ANSWER => {
            match coordination::read_update_answer(um) {
                Some(Ok(a)) => Ok(Coordination::UpdateAnswer {
                    message_id: a.message_id,
                }),
                Some(Err(e)) => Err((
                    "EBMS:0009",
                    "invalid_update_answer",
                    format!("{}: {e}", e.code().name()),
                )),
                None => Err((
                    "EBMS:0009",
                    "invalid_update_answer",
                    "not a certificate update answer".into(),
                )),
            }
        }
        _ => Err((
            "EBMS:0001",
            "unknown_coordination_action",
            format!(
                "this service routes the co-ordination Actions {} only",
                coordination::ACTIONS.join(", ")
            ),
        )),
    }
}

/// The RefToMessageId of the (first) signal.
fn ref_to_of(m: &Messaging) -> Option<String> {
    m.signals
        .first()
        .and_then(|s| s.info.ref_to_message_id.clone())
}

fn built(b: Built) -> Response {
    Response::new(200, &b.content_type, b.body)
}

/// The first PartyId of a From/To party.
fn party_key(ids: &[ls_core::as4::model::PartyId]) -> Option<PartyKey> {
    ids.first()
        .map(|p| PartyKey::new(p.r#type.as_deref().unwrap_or(""), &p.value))
}

impl Handler for Service {
    fn handle(&self, req: Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", AS4_PATH) | ("POST", "/") if req.body_stream.is_some() => self.as4_stream(req),
            ("POST", AS4_PATH) | ("POST", "/") => self.as4(req),
            ("POST", ENROL_PATH) => self.enrol(&req),
            ("GET", ENROL_PATH) => self.enrol_info(),
            (_, ENROL_PATH) => {
                let mut r = Response::text(
                    405,
                    "GET the service certificate or POST an enrolment here\n",
                );
                r.headers.push(("Allow".into(), "GET, POST".into()));
                r
            }
            ("POST", ROLLOVER_PATH) => self.rollover(&req),
            (_, ROLLOVER_PATH) => {
                let mut r = Response::text(405, "POST signed rollover requests here\n");
                r.headers.push(("Allow".into(), "POST".into()));
                r
            }
            ("POST", p) if p.starts_with(crate::directory::PATH_PREFIX) => self.directory(&req),
            (_, p) if p.starts_with(crate::directory::PATH_PREFIX) => {
                let mut r = Response::text(405, "POST signed directory requests here\n");
                r.headers.push(("Allow".into(), "POST".into()));
                r
            }
            // A cheap store read; the failure's detail goes to the log, not to the caller.
            ("GET", "/health") => match self.store.subscriber(0) {
                Ok(_) => Response::text(200, "ok\n"),
                Err(e) => {
                    log::error("health", &[("error", V::S(&e.to_string()))]);
                    Response::text(503, "store unavailable\n")
                }
            },
            (_, AS4_PATH) => {
                let mut r = Response::text(405, "POST AS4 messages here\n");
                r.headers.push(("Allow".into(), "POST".into()));
                r
            }
            _ => Response::text(404, "not found\n"),
        }
    }

    /// The small endpoints refuse a larger body before reading it (413).
    fn max_body_bytes(&self, path: &str) -> Option<u64> {
        match path {
            ENROL_PATH => Some(ls_core::enrol::MAX_REQUEST_BYTES),
            ROLLOVER_PATH => Some(ls_core::rollover::MAX_REQUEST_BYTES),
            p if p.starts_with(crate::directory::PATH_PREFIX) => {
                Some(ls_core::directory::MAX_REQUEST_BYTES)
            }
            _ => None,
        }
    }

    /// AS4 pushes larger than [`STREAM_ABOVE`] (or of unknown length) are streamed to the
    /// store ([`Service::as4_stream`]).
    fn stream_body(&self, method: &str, path: &str, declared: Option<u64>) -> bool {
        method == "POST"
            && (path == AS4_PATH || path == "/")
            && declared.is_none_or(|n| n > STREAM_ABOVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's own I/O failures while it spools or reads back a push are transient (503:
    /// the client retries), never the uniform refusal EBMS:0101, which the client takes as a
    /// final "the service did not accept our signature".
    #[test]
    fn spool_io_failures_are_transient_not_refusals() {
        let io = |kind: std::io::ErrorKind| Error::io("cannot write the spool", kind.into());
        assert!(matches!(
            spool_failure(&io(std::io::ErrorKind::StorageFull), None),
            Failure::LowSpace(_)
        ));
        for kind in [
            std::io::ErrorKind::Other,
            std::io::ErrorKind::PermissionDenied,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            assert!(matches!(
                spool_failure(&io(kind), Some("id")),
                Failure::Unavailable(_)
            ));
        }
        match spool_failure(&Error::MalformedMime("x".into()), Some("id")) {
            Failure::Refused(r) => {
                assert_eq!(r.code, UNAUTHENTICATED_CODE);
                assert!(r.unauthenticated);
                assert_eq!(r.ref_to.as_deref(), Some("id"));
            }
            _ => panic!("a malformed body is refused"),
        }
    }
}
