//! Key rollover: a party replaces its key and certificate without a gap in its traffic. This is
//! the contract between the client that rolls over (`layersec rollover`), the Messaging Service
//! and the party's partners, as [`crate::enrol`] is for installation.
//!
//! # 1. Registration at the service: `POST /rollover`
//!
//! Beside the AS4 path ([`rollover_url`]), `Content-Type: application/json`, at most
//! [`MAX_REQUEST_BYTES`]: a JWS in the general JSON serialisation (RFC 7515 §7.2.1) with **two**
//! signatures over the same [`RequestClaims`] — the first by the party's current (old) key, the
//! second by the new key, each with its own protected header `{"alg", "typ":
//! "layersec-rollover-request", "x5c": [its certificate, …chain]}`. The old key's signature
//! says "this party wants it"; the new key's is the proof that the party holds the key it
//! registers. The claims name the party, both certificates' SHA-256, the overlap (how long the
//! old certificate stays valid, in seconds), a nonce, the time and the service certificate.
//! [`verify_request`] checks both signatures and the claims; the service then checks that the
//! old certificate is a current certificate of the (active) party, registers the new one and
//! retires the old one at the end of the overlap (as `admin party replace-certificate
//! --overlap-hours` does), and answers with a JWS signed by its signing key
//! ([`Registered`], checked by [`verify_response`]), or a refusal ([`Refusal`]).
//!
//! # 2. Telling the partners: the certificate update
//!
//! A co-ordination message (Service `urn:layersec:coordination`, Action `CertificateUpdate`,
//! [`crate::as4::coordination::certificate_update_message`]) from the party to each partner,
//! **signed by the old key** (the AS4 signature: the key the partner already trusts for the
//! party), carrying as its one payload a [`CertificateUpdate`] statement **counter-signed by
//! the new key** (a CMS SignedData, [`crate::cms::signed`]): party, partner, both
//! certificates, from when the new one is used, until when the old one stays valid, a nonce.
//! The partner sees both signatures: [`verify_update`] checks the statement against the AS4
//! signer and the certificate the partner holds. The partner answers with a signed
//! `CertificateUpdateAnswer` (accepted, or rejected with an [`UpdateReason`]).

use crate::as4::coordination::FailureClass;
use crate::bytes;
use crate::cert::{key_usage, Certificate};
use crate::cms::crypto;
use crate::cms::signed::{peek_statement, sign_statement, verify_statement};
use crate::enrol::jws::{sign_jws, sign_jws_general, verify_jws_general, JwsFailure};
use crate::enrol::{beside_as4, check_key, json_error, RefusalBody};
use crate::error::{Error, ErrorCode, ErrorReport, Result};
use crate::keys::Identity;
use crate::time;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The last path segment of the rollover URL.
pub const PATH_SEGMENT: &str = "rollover";
/// The Content-Type of requests and answers.
pub const CONTENT_TYPE: &str = "application/json";
/// The JWS `typ` of a request.
pub const REQUEST_TYPE: &str = "layersec-rollover-request";
/// The JWS `typ` of an answer.
pub const RESPONSE_TYPE: &str = "layersec-rollover-response";
/// The largest request the service reads (HTTP 413 above it).
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// The largest answer the client reads.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;
/// How far a request's `iat` may be from the service's clock, in seconds.
pub const FRESHNESS_SECS: i64 = 600;
/// The longest overlap: 90 days.
pub const MAX_OVERLAP_SECS: u64 = 90 * 86400;
/// The overlap when none is given: a week, as `admin party replace-certificate`.
pub const DEFAULT_OVERLAP_HOURS: u64 = 168;
/// The `type` of a certificate update statement.
pub const UPDATE_TYPE: &str = "layersec-certificate-update";
/// Its version.
pub const UPDATE_VERSION: u32 = 1;
/// The Content-Type of the update's payload (the counter-signed statement).
pub const UPDATE_CONTENT_TYPE: &str = "application/cms";

/// The rollover URL of a service: its AS4 URL with the last path segment replaced by
/// [`PATH_SEGMENT`] (`https://ls.example:8443/as4` → `https://ls.example:8443/rollover`).
pub fn rollover_url(service_url: &str) -> Result<String> {
    beside_as4(service_url, PATH_SEGMENT)
}

fn random_nonce() -> Result<String> {
    Ok(bytes::hex(&crypto::random(16)?))
}

fn is_hex_nonce(n: &str) -> bool {
    (32..=128).contains(&n.len()) && n.len() % 2 == 0 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

fn printable(name: &str, v: &str, min: usize) -> std::result::Result<(), String> {
    if v.chars().count() < min || v.len() > 255 || v.chars().any(char::is_control) {
        Err(format!(
            "{name}: {min} to 255 characters, no control characters"
        ))
    } else {
        Ok(())
    }
}

fn sha256_field(name: &str, v: &str) -> std::result::Result<(), String> {
    match bytes::parse_sha256(v) {
        Some(d) if bytes::hex(&d) == v => Ok(()),
        _ => Err(format!("{name}: a SHA-256 in lower-case hex")),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Registration at the service

/// What the party states in its rollover request, signed by its old and its new key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestClaims {
    /// The PartyId, and its type ("" for none).
    pub party_id: String,
    #[serde(default)]
    pub party_type: String,
    /// The certificate registered now (the first signer).
    pub old_certificate_sha256: String,
    /// The certificate to register (the second signer).
    pub new_certificate_sha256: String,
    /// How long the old certificate stays valid at the service, from when the request is
    /// taken (at most [`MAX_OVERLAP_SECS`]; 0: it ends at once).
    pub overlap_secs: u64,
    /// Random, hex (16 to 64 bytes): a request is taken once, and the answer names it.
    pub nonce: String,
    /// When the request was made (Unix seconds).
    pub iat: i64,
    /// The service's signing certificate as the client holds it.
    pub service_certificate_sha256: String,
}

impl RequestClaims {
    /// Claims for `party_id` (no type), a fresh nonce and the time now.
    pub fn new(
        party_id: &str,
        old: &Certificate,
        new: &Certificate,
        overlap_secs: u64,
        service_certificate: &Certificate,
    ) -> Result<RequestClaims> {
        Ok(RequestClaims {
            party_id: party_id.into(),
            party_type: String::new(),
            old_certificate_sha256: old.sha256_fingerprint(),
            new_certificate_sha256: new.sha256_fingerprint(),
            overlap_secs,
            nonce: random_nonce()?,
            iat: time::now_unix(),
            service_certificate_sha256: service_certificate.sha256_fingerprint(),
        })
    }

    fn check(&self) -> std::result::Result<(), String> {
        printable("party_id", &self.party_id, 1)?;
        printable("party_type", &self.party_type, 0)?;
        sha256_field("old_certificate_sha256", &self.old_certificate_sha256)?;
        sha256_field("new_certificate_sha256", &self.new_certificate_sha256)?;
        sha256_field(
            "service_certificate_sha256",
            &self.service_certificate_sha256,
        )?;
        if !is_hex_nonce(&self.nonce) {
            return Err("nonce: 16 to 64 random bytes in hex".into());
        }
        if self.overlap_secs > MAX_OVERLAP_SECS {
            return Err(format!(
                "overlap_secs: at most {MAX_OVERLAP_SECS} ({} days)",
                MAX_OVERLAP_SECS / 86400
            ));
        }
        Ok(())
    }
}

/// The request body: `claims` signed by `old` (first) and by `new` (second).
pub fn build_request(old: &Identity, new: &Identity, claims: &RequestClaims) -> Result<Vec<u8>> {
    let payload =
        serde_json::to_vec(claims).map_err(|e| Error::Internal(format!("claims: {e}")))?;
    sign_jws_general(&[old, new], REQUEST_TYPE, &payload)
}

/// A request whose two signatures verified.
#[derive(Debug)]
pub struct VerifiedRequest {
    pub claims: RequestClaims,
    /// The first signer: the certificate the party holds now.
    pub old_certificate: Certificate,
    /// The second signer: the certificate to register.
    pub new_certificate: Certificate,
    /// The rest of the second signature's `x5c`.
    pub new_chain: Vec<Certificate>,
}

/// Read a request and check what can be checked without the store: size and form, both
/// signatures (the first by the certificate the claims name as old, the second by the one
/// they name as new: proof of possession of both keys), the new key's strength, the overlap,
/// and `iat` within [`FRESHNESS_SECS`] of `now`. Whether the old certificate is the party's,
/// the new one may be registered, the nonce is new and the service certificate is this
/// service's are the service's to check.
pub fn verify_request(body: &[u8], now: i64) -> std::result::Result<VerifiedRequest, Refused> {
    if body.len() as u64 > MAX_REQUEST_BYTES {
        return Err(Refused::new(
            Refusal::Malformed,
            format!("the request is larger than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    let v = verify_jws_general(body, REQUEST_TYPE, 2).map_err(|f| match f {
        JwsFailure::Malformed(m) => Refused::new(Refusal::Malformed, m),
        JwsFailure::Signature(e) => Refused::new(
            Refusal::BadProof,
            format!("a signature does not verify: {e}"),
        ),
    })?;
    let claims: RequestClaims = serde_json::from_slice(&v.payload).map_err(|e| {
        Refused::new(
            Refusal::Malformed,
            format!("the claims: {}", json_error(&e)),
        )
    })?;
    claims
        .check()
        .map_err(|e| Refused::new(Refusal::Malformed, e))?;
    let mut signers = v.signers.into_iter();
    let (old, _) = signers.next().expect("two signatures");
    let (new, new_chain) = signers.next().expect("two signatures");
    if old.sha256_fingerprint() != claims.old_certificate_sha256 {
        return Err(Refused::new(
            Refusal::BadProof,
            "the first signature is not by the old certificate the claims name",
        ));
    }
    if new.sha256_fingerprint() != claims.new_certificate_sha256 {
        return Err(Refused::new(
            Refusal::BadProof,
            "the second signature is not by the new certificate the claims name (no proof of \
             possession of the new key)",
        ));
    }
    if old == new
        || old
            .public_key()
            .ok()
            .zip(new.public_key().ok())
            .is_some_and(|(a, b)| a.public_eq(&b))
    {
        return Err(Refused::new(
            Refusal::CertificateRefused,
            "the new certificate has the old key: a rollover needs a new key",
        ));
    }
    check_key(&new).map_err(|e| Refused::new(Refusal::CertificateRefused, e.to_string()))?;
    if (claims.iat - now).abs() > FRESHNESS_SECS {
        return Err(Refused::new(
            Refusal::Stale,
            format!(
                "the request was made at {}, more than {FRESHNESS_SECS} s from the service's \
                 clock ({})",
                time::iso8601(claims.iat),
                time::iso8601(now)
            ),
        ));
    }
    Ok(VerifiedRequest {
        claims,
        old_certificate: old,
        new_certificate: new,
        new_chain,
    })
}

/// What the service answers for a registered rollover, signed with its signing key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub party_id: String,
    pub party_type: String,
    pub old_certificate_sha256: String,
    pub new_certificate_sha256: String,
    /// Until when the service accepts the old certificate (Unix seconds; the end of the
    /// overlap).
    pub old_valid_until: i64,
    /// `registered`, or `already_registered` (a retry: the new certificate was registered by
    /// an earlier request; `old_valid_until` is the overlap that one set).
    pub outcome: String,
    /// When (Unix seconds).
    pub registered_at: i64,
    /// The request's nonce.
    pub nonce: String,
    /// The service's signing certificate (the signer of this answer).
    pub service_certificate_sha256: String,
}

/// The answer's body: `r` signed with the service's signing identity.
pub fn build_response(service: &Identity, r: &Registered) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(r).map_err(|e| Error::Internal(format!("answer: {e}")))?;
    sign_jws(service, RESPONSE_TYPE, &payload)
}

/// Check the service's answer to `request`: signed by `service_certificate` itself, naming
/// our party, both certificates and our nonce.
pub fn verify_response(
    body: &[u8],
    service_certificate: &Certificate,
    request: &RequestClaims,
) -> Result<Registered> {
    let r: Registered = crate::enrol::jws::verify_service_answer(
        body,
        RESPONSE_TYPE,
        MAX_RESPONSE_BYTES,
        service_certificate,
        "the rollover answer",
    )?;
    let mismatch = |what: &str| {
        Err(Error::BadResponse(format!(
            "the rollover answer names another {what} than our request"
        )))
    };
    if r.nonce != request.nonce {
        return mismatch("request (nonce)");
    }
    if r.party_id != request.party_id || r.party_type != request.party_type {
        return mismatch("party");
    }
    if r.old_certificate_sha256 != request.old_certificate_sha256
        || r.new_certificate_sha256 != request.new_certificate_sha256
    {
        return mismatch("certificate");
    }
    if r.service_certificate_sha256 != service_certificate.sha256_fingerprint() {
        return mismatch("service certificate");
    }
    Ok(r)
}

/// Why the service refused a rollover: the `reason` of a [`RefusalBody`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a request of this form.
    Malformed,
    /// A signature does not verify, or is not by the certificate the claims name.
    BadProof,
    /// `iat` more than [`FRESHNESS_SECS`] from the service's clock.
    Stale,
    /// A nonce the service has seen.
    Replayed,
    /// The request names another service certificate.
    WrongService,
    /// The new certificate cannot be registered (expired, may not sign, a CA certificate, a
    /// weak key, the old key).
    CertificateRefused,
    /// The new certificate is registered for another party.
    CertificateInUse,
    /// The old certificate is not a current certificate of an active party of that id (an
    /// unknown, revoked or suspended party, or a certificate retired already: one answer).
    NotRegistered,
    /// The service cannot reach its store: try again later.
    Unavailable,
}

impl Refusal {
    pub const ALL: &'static [Refusal] = &[
        Refusal::Malformed,
        Refusal::BadProof,
        Refusal::Stale,
        Refusal::Replayed,
        Refusal::WrongService,
        Refusal::CertificateRefused,
        Refusal::CertificateInUse,
        Refusal::NotRegistered,
        Refusal::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::BadProof => "bad_proof",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
            Refusal::WrongService => "wrong_service",
            Refusal::CertificateRefused => "certificate_refused",
            Refusal::CertificateInUse => "certificate_in_use",
            Refusal::NotRegistered => "not_registered",
            Refusal::Unavailable => "unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Refusal> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// The HTTP status the service answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Malformed
            | Refusal::BadProof
            | Refusal::Stale
            | Refusal::Replayed
            | Refusal::WrongService
            | Refusal::CertificateRefused => 400,
            Refusal::NotRegistered => 403,
            Refusal::CertificateInUse => 409,
            Refusal::Unavailable => 503,
        }
    }

    pub fn is_transient(self) -> bool {
        matches!(self, Refusal::Unavailable)
    }

    pub fn hint(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::BadProof => {
                "the client and the service do not agree on the rollover request: update the client"
            }
            Refusal::Stale => "check this machine's clock, then try again",
            Refusal::Replayed => "try again",
            Refusal::WrongService => {
                "the service's certificate is not the one in [service] service_certificate"
            }
            Refusal::CertificateRefused => "roll over to another certificate",
            Refusal::CertificateInUse => "roll over to a new key",
            Refusal::NotRegistered => {
                "our current certificate is not registered for this party at the service (or \
                 the party is revoked or suspended): ask the provider"
            }
            Refusal::Unavailable => "try again later",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused rollover: the reason and a message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: Refusal,
    pub message: String,
}

impl Refused {
    pub fn new(reason: Refusal, message: impl Into<String>) -> Refused {
        Refused {
            reason,
            message: message.into(),
        }
    }

    /// The body the service answers with (the enrolment's form: reason and error object).
    pub fn body(&self) -> RefusalBody {
        let code = if self.reason.is_transient() {
            ErrorCode::HttpStatus
        } else {
            ErrorCode::Refused
        };
        RefusalBody {
            reason: self.reason.as_str().into(),
            error: ErrorReport {
                transient: self.reason.is_transient(),
                ..ErrorReport::new(
                    code,
                    format!(
                        "rollover refused ({}): {}; {}",
                        self.reason,
                        self.message,
                        self.reason.hint()
                    ),
                )
            },
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The client's error for a refused rollover (HTTP `status`, `body`): `Refused` for good,
/// `HttpStatus` (transient) for 408, 429 and 5xx.
pub fn refusal_error(status: u16, body: &[u8]) -> Error {
    let transient = matches!(status, 408 | 429 | 500..=599);
    match serde_json::from_slice::<RefusalBody>(body) {
        Ok(b) if b.error.transient || transient => Error::HttpStatus {
            status,
            message: b.error.message,
        },
        Ok(b) => Error::Refused(b.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>();
            let message = format!("the rollover endpoint answered HTTP {status}: {text}");
            if transient {
                Error::HttpStatus { status, message }
            } else {
                Error::Refused(message)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The certificate update to partners

/// The statement a certificate update carries, counter-signed by the new key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpdate {
    /// [`UPDATE_TYPE`].
    pub r#type: String,
    /// [`UPDATE_VERSION`].
    pub version: u32,
    /// The party whose certificate changes (the message's From).
    pub party_id: String,
    /// The partner told (the message's To).
    pub partner_id: String,
    /// The certificate the partner holds for the party now (the AS4 signer).
    pub old_certificate_sha256: String,
    /// The new certificate (PEM) and its SHA-256.
    pub new_certificate_pem: String,
    pub new_certificate_sha256: String,
    /// From when the party may sign with the new certificate (ISO 8601, UTC).
    pub valid_from: String,
    /// Until when the old certificate stays valid (ISO 8601, UTC): the end of the overlap.
    pub old_valid_until: String,
    /// 16 random bytes, hex: an update is applied once.
    pub nonce: String,
    /// When the statement was made (ISO 8601, UTC).
    pub time: String,
}

impl CertificateUpdate {
    /// The update of `party_id` to `partner_id` from `old` to `new`.
    pub fn new(
        party_id: &str,
        partner_id: &str,
        old: &Certificate,
        new: &Certificate,
        valid_from: i64,
        old_valid_until: i64,
    ) -> Result<CertificateUpdate> {
        Ok(CertificateUpdate {
            r#type: UPDATE_TYPE.into(),
            version: UPDATE_VERSION,
            party_id: party_id.into(),
            partner_id: partner_id.into(),
            old_certificate_sha256: old.sha256_fingerprint(),
            new_certificate_pem: String::from_utf8_lossy(&new.to_pem()).into_owned(),
            new_certificate_sha256: new.sha256_fingerprint(),
            valid_from: time::iso8601(valid_from),
            old_valid_until: time::iso8601(old_valid_until),
            nonce: random_nonce()?,
            time: time::iso8601(time::now_unix()),
        })
    }

    /// The statement counter-signed by the new key: the update's payload.
    pub fn sign(&self, new: &Identity) -> Result<Vec<u8>> {
        if new.certificate().sha256_fingerprint() != self.new_certificate_sha256 {
            return Err(Error::InvalidArgument(
                "a certificate update is counter-signed by the key of its new certificate".into(),
            ));
        }
        let content =
            serde_json::to_vec(self).map_err(|e| Error::Internal(format!("update: {e}")))?;
        sign_statement(&content, new)
    }

    /// The statement a payload claims to carry, NOT verified (for records and answers).
    pub fn peek(payload: &[u8]) -> std::result::Result<CertificateUpdate, UpdateRefused> {
        let content = peek_statement(payload)
            .map_err(|e| UpdateRefused::new(UpdateReason::Malformed, e.to_string()))?;
        let u: CertificateUpdate = serde_json::from_slice(&content).map_err(|e| {
            UpdateRefused::new(
                UpdateReason::Malformed,
                format!("the statement: {}", json_error(&e)),
            )
        })?;
        if u.r#type != UPDATE_TYPE || u.version != UPDATE_VERSION {
            return Err(UpdateRefused::new(
                UpdateReason::Malformed,
                format!(
                    "the statement is a {:?} of version {}, not a {UPDATE_TYPE:?} of version \
                     {UPDATE_VERSION}",
                    u.r#type, u.version
                ),
            ));
        }
        Ok(u)
    }
}

/// Why a partner rejects a certificate update: the `Reason` of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpdateReason {
    /// Not an update of this form.
    Malformed,
    /// The message is not signed by a key we hold for the party (signed only by the new key,
    /// or by someone else).
    UnknownSigner,
    /// Signed by, or naming as old, a certificate that is not the one we hold as the party's
    /// current one (an earlier certificate, an update older than the one applied).
    NotCurrent,
    /// The statement names another party or another partner than the message.
    WrongParty,
    /// The statement is not signed by the key of the new certificate it names (no proof of
    /// possession).
    NoProof,
    /// The new certificate is not valid: expired, not yet valid, may not sign, a weak key, the
    /// old one again.
    CertificateInvalid,
    /// This update was applied (or refused) before.
    Replayed,
}

impl UpdateReason {
    pub const ALL: [UpdateReason; 7] = [
        UpdateReason::Malformed,
        UpdateReason::UnknownSigner,
        UpdateReason::NotCurrent,
        UpdateReason::WrongParty,
        UpdateReason::NoProof,
        UpdateReason::CertificateInvalid,
        UpdateReason::Replayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateReason::Malformed => "malformed",
            UpdateReason::UnknownSigner => "unknown_signer",
            UpdateReason::NotCurrent => "not_current",
            UpdateReason::WrongParty => "wrong_party",
            UpdateReason::NoProof => "no_proof",
            UpdateReason::CertificateInvalid => "certificate_invalid",
            UpdateReason::Replayed => "replayed",
        }
    }

    pub fn parse(s: &str) -> Option<UpdateReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The class of a refusal notice telling the same (for records shared with them).
    pub fn class(self) -> FailureClass {
        match self {
            UpdateReason::Malformed => FailureClass::Malformed,
            UpdateReason::CertificateInvalid => FailureClass::Policy,
            _ => FailureClass::NotTrusted,
        }
    }
}

impl fmt::Display for UpdateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected update: the reason (told to the party) and a message (kept locally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRefused {
    pub reason: UpdateReason,
    pub message: String,
}

impl UpdateRefused {
    pub fn new(reason: UpdateReason, message: impl Into<String>) -> UpdateRefused {
        UpdateRefused {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for UpdateRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// An update that verified.
#[derive(Clone, Debug)]
pub struct VerifiedUpdate {
    pub update: CertificateUpdate,
    pub new_certificate: Certificate,
    /// Unix seconds.
    pub valid_from: i64,
    pub old_valid_until: i64,
}

/// Check a certificate update from `sender` to `us`, whose AS4 signature verified against
/// `as4_signer`, given the certificate(s) we hold as `sender`'s current ones: the message must
/// be signed by one of those, which the statement must name as old; the statement must name
/// the sender and us, be signed by the key of the new certificate it carries (proof of
/// possession), and that certificate must be valid now, allowed to sign, of an accepted key,
/// and another key than the old one; the times must be in order and the overlap at most
/// [`MAX_OVERLAP_SECS`]. Whether it was applied before (a replay) is the caller's to check.
pub fn verify_update(
    payload: &[u8],
    sender: &str,
    us: &str,
    as4_signer: &Certificate,
    current: &[Certificate],
    now: i64,
) -> std::result::Result<VerifiedUpdate, UpdateRefused> {
    let refuse = |r, m: String| Err(UpdateRefused::new(r, m));
    if !current.contains(as4_signer) {
        return refuse(
            UpdateReason::NotCurrent,
            format!(
                "the update is signed with {} ({}), not with the certificate we hold as {sender}'s \
                 current one",
                as4_signer.subject(),
                as4_signer.sha256_fingerprint()
            ),
        );
    }
    let u = CertificateUpdate::peek(payload)?;
    if u.party_id != sender || u.partner_id != us {
        return refuse(
            UpdateReason::WrongParty,
            format!(
                "the statement is an update of {:?} for {:?}; the message is from {sender:?} to {us:?}",
                u.party_id, u.partner_id
            ),
        );
    }
    if u.old_certificate_sha256 != as4_signer.sha256_fingerprint() {
        return refuse(
            UpdateReason::NotCurrent,
            format!(
                "the statement replaces {}, not the certificate the message is signed with ({})",
                u.old_certificate_sha256,
                as4_signer.sha256_fingerprint()
            ),
        );
    }
    if !is_hex_nonce(&u.nonce) {
        return refuse(
            UpdateReason::Malformed,
            "nonce: 16 to 64 bytes in hex".into(),
        );
    }
    let new = Certificate::from_pem(u.new_certificate_pem.as_bytes()).map_err(|e| {
        UpdateRefused::new(UpdateReason::Malformed, format!("new_certificate_pem: {e}"))
    })?;
    if new.sha256_fingerprint() != u.new_certificate_sha256 {
        return refuse(
            UpdateReason::Malformed,
            "new_certificate_sha256 is not the SHA-256 of new_certificate_pem".into(),
        );
    }
    let invalid = |m: String| UpdateRefused::new(UpdateReason::CertificateInvalid, m);
    let same_key = new
        .public_key()
        .ok()
        .zip(as4_signer.public_key().ok())
        .is_some_and(|(a, b)| a.public_eq(&b));
    if new == *as4_signer || same_key {
        return Err(invalid(
            "the new certificate has the old key: a rollover needs a new key".into(),
        ));
    }
    new.check_validity(now)
        .map_err(|e| invalid(format!("the new certificate: {e}")))?;
    new.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )
    .map_err(|e| invalid(format!("the new certificate: {e}")))?;
    check_key(&new).map_err(|e| invalid(format!("the new certificate: {e}")))?;
    verify_statement(payload, std::slice::from_ref(&new)).map_err(|e| {
        UpdateRefused::new(
            UpdateReason::NoProof,
            format!("the statement is not signed by the new certificate's key: {e}"),
        )
    })?;
    let parse = |name: &str, v: &str| {
        time::parse_date_time(v).ok_or_else(|| {
            UpdateRefused::new(
                UpdateReason::Malformed,
                format!("{name}: {v:?} is not an ISO 8601 time"),
            )
        })
    };
    let valid_from = parse("valid_from", &u.valid_from)?;
    let old_valid_until = parse("old_valid_until", &u.old_valid_until)?;
    // The overlap ends within MAX_OVERLAP_SECS of now (not of a valid_from far in the future,
    // which would keep the old certificate accepted for as long as the sender likes).
    if old_valid_until < valid_from
        || old_valid_until.saturating_sub(valid_from) > MAX_OVERLAP_SECS as i64
        || old_valid_until > now.saturating_add(MAX_OVERLAP_SECS as i64)
    {
        return refuse(
            UpdateReason::Malformed,
            format!(
                "the overlap from {} to {} is not one of 0 to {} days",
                u.valid_from,
                u.old_valid_until,
                MAX_OVERLAP_SECS / 86400
            ),
        );
    }
    Ok(VerifiedUpdate {
        update: u,
        new_certificate: new,
        valid_from,
        old_valid_until,
    })
}

#[cfg(test)]
mod tests;
