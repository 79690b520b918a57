//! Enrolment: a new installation registers its own certificate at a Messaging Service, with a
//! one-time code the provider gave its subscriber. This is the contract between `layersec init
//! --enrol` (ls-client) and the service's enrolment endpoint (ls-server), as
//! [`crate::as4::coordination`] is for messages.
//!
//! # The exchange
//!
//! Both requests go to the [`enrolment_url`] of the service (its AS4 URL with the last path
//! segment replaced by `enrol`), over the TLS connection the client trusts.
//!
//! 1. `GET` answers a [`ServiceInfo`]: the service's signing certificate (the one its receipts
//!    are signed with). The client compares it with the certificate it was given, if any, or
//!    shows its fingerprint, *before* it sends the code.
//! 2. `POST` ([`CONTENT_TYPE`], at most [`MAX_REQUEST_BYTES`]) carries the request: a JWS (RFC
//!    7515, flattened JSON serialisation) whose protected header is `{"alg", "typ":
//!    "layersec-enrol-request", "x5c": [the new certificate, …its chain]}` and whose payload is
//!    the [`RequestClaims`]: party id and type, the code, a random nonce, the time (`iat`), the
//!    service certificate's SHA-256 as the client saw it, and the client's document limit. It is
//!    signed with the new key: the proof that the sender holds the key of the certificate it
//!    registers. [`verify_request`] checks all of it but the code.
//! 3. The answer is `200` with a JWS of the same form (`typ` `layersec-enrol-response`, `x5c`
//!    the service's certificate) signed by the service's signing key, whose payload is
//!    [`Enrolled`] (the registered party, the request's nonce): [`verify_response`] checks it
//!    against the service certificate of step 1. Or a refusal: an HTTP status and a
//!    [`RefusalBody`] `{"reason": "invalid_code", "error": {…the one error object…}}`
//!    ([`Refusal`] lists the reasons).
//!
//! JWS rather than CMS: the request is a handful of fields; a JWS is JSON that any JOSE
//! library can make or check (a provider's own tooling, too), its signing input is the bytes
//! as sent (no canonicalisation), and the certificate rides in a signed header. The profile is
//! narrow: `ES256`/`ES384`/`ES512` (EC keys of the matching curve) and `PS256`/`RS256` (RSA of
//! 2048 bits or more), no unprotected header, no other header parameters (so no `crit`).
//!
//! # The code
//!
//! [`new_code`]: 120 random bits as 24 symbols of Crockford's base32 (no I, L, O, U), shown in
//! six groups of four (`7K2Q-M9XD-…`). [`normalize_code`] reads it back as people type it:
//! either case, with or without the dashes or spaces, `O` for `0` and `I`/`L` for `1`.

pub(crate) mod jws;

pub use jws::check_key;

use crate::cert::Certificate;
use crate::cms::crypto;
use crate::error::{Error, ErrorCode, ErrorReport, Result};
use crate::keys::Identity;
use crate::{bytes, time};
use jws::{sign_jws, verify_jws, JwsFailure};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// The last path segment of the enrolment URL.
pub const PATH_SEGMENT: &str = "enrol";
/// The Content-Type of requests and answers.
pub const CONTENT_TYPE: &str = "application/json";
/// What [`ServiceInfo::protocol`] says for this version of the exchange.
pub const PROTOCOL: &str = "layersec-enrol/1";
/// The JWS `typ` of a request.
pub const REQUEST_TYPE: &str = "layersec-enrol-request";
/// The JWS `typ` of an answer.
pub const RESPONSE_TYPE: &str = "layersec-enrol-response";
/// The largest request the service reads (HTTP 413 above it).
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// The largest answer the client reads.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;
/// How far a request's `iat` may be from the service's clock, in seconds.
pub const FRESHNESS_SECS: i64 = 600;
/// Certificates in an `x5c`, at most.
pub const MAX_CHAIN: usize = 4;

/// Crockford's base32 alphabet: digits and letters without I, L, O and U.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols of a code (5 bits each: 120 bits).
pub const CODE_SYMBOLS: usize = 24;
/// The bits of randomness in a code.
pub const CODE_BITS: usize = CODE_SYMBOLS * 5;
/// Characters of a code as typed (with separators) that [`normalize_code`] reads at most.
const MAX_CODE_INPUT: usize = 64;

/// A new enrolment code, as shown: `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX` ([`CODE_BITS`] random bits).
/// Wiped from memory when dropped.
pub fn new_code() -> Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; CODE_BITS / 8]);
    openssl::rand::rand_bytes(&mut raw[..])?;
    let mut v = Zeroizing::new(0u128);
    for b in raw.iter() {
        *v = *v << 8 | *b as u128;
    }
    let mut symbols = Zeroizing::new(String::with_capacity(CODE_SYMBOLS));
    for i in 0..CODE_SYMBOLS {
        let shift = CODE_BITS - 5 * (i + 1);
        symbols.push(CODE_ALPHABET[(*v >> shift) as usize & 31] as char);
    }
    Ok(format_code(&symbols))
}

/// A normalised code (the [`CODE_SYMBOLS`] symbols) in six groups of four joined by `-`.
pub fn format_code(normalized: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(
        normalized.len() + normalized.len() / 4,
    ));
    for (i, c) in normalized.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// A code as people type it, normalised to its [`CODE_SYMBOLS`] upper-case symbols: dashes and
/// spaces dropped, lower case raised, `O` read as `0`, `I` and `L` as `1`. `None` when it is
/// not a code (another length, another character).
pub fn normalize_code(typed: &str) -> Option<Zeroizing<String>> {
    if typed.len() > MAX_CODE_INPUT {
        return None;
    }
    let mut out = Zeroizing::new(String::with_capacity(CODE_SYMBOLS));
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_SYMBOLS).then_some(out)
}

/// The enrolment URL of a service: its AS4 URL with the last path segment replaced by
/// [`PATH_SEGMENT`], query and fragment dropped (`https://ls.example:8443/as4` →
/// `https://ls.example:8443/enrol`; `https://h/ls/as4` → `https://h/ls/enrol`; `https://h`
/// → `https://h/enrol`).
pub fn enrolment_url(service_url: &str) -> Result<String> {
    beside_as4(service_url, PATH_SEGMENT)
}

/// `service_url` (the AS4 URL) with its last path segment replaced by `segment`, query and
/// fragment dropped: where the service's other endpoints are (`/enrol`, `/rollover`,
/// `/directory`).
pub(crate) fn beside_as4(service_url: &str, segment: &str) -> Result<String> {
    let url = service_url.trim();
    let start = url
        .find("://")
        .map(|i| i + 3)
        .filter(|_| url.is_ascii())
        .ok_or_else(|| Error::InvalidArgument(format!("{url:?} is not an http(s) URL")))?;
    let rest = &url[start..];
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(Error::InvalidArgument(format!("{url:?} names no host")));
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok(format!("{}{authority}{dir}{segment}", &url[..start]))
}

// ---------------------------------------------------------------------------------------------
// What is exchanged

/// The answer to `GET`: which certificate signs the service's receipts (and its enrolment
/// answers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceInfo {
    /// [`PROTOCOL`].
    pub protocol: String,
    pub service_certificate_pem: String,
    /// Its SHA-256, as Layer Security prints fingerprints (lower-case hex).
    pub service_certificate_sha256: String,
    /// The largest request the service reads.
    pub max_request_bytes: u64,
}

impl ServiceInfo {
    pub fn new(service_certificate: &Certificate) -> ServiceInfo {
        ServiceInfo {
            protocol: PROTOCOL.into(),
            service_certificate_pem: String::from_utf8_lossy(&service_certificate.to_pem())
                .into_owned(),
            service_certificate_sha256: service_certificate.sha256_fingerprint(),
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }

    /// Read an answer to `GET`: its certificate, whose fingerprint must be the one it states.
    pub fn read(body: &[u8]) -> Result<(ServiceInfo, Certificate)> {
        let info: ServiceInfo = serde_json::from_slice(body).map_err(|e| {
            Error::BadResponse(format!(
                "the service's enrolment information is not valid: {e}"
            ))
        })?;
        if info.protocol != PROTOCOL {
            return Err(Error::BadResponse(format!(
                "the service speaks {:?}; this client speaks {PROTOCOL}",
                info.protocol
            )));
        }
        let cert = Certificate::from_pem(info.service_certificate_pem.as_bytes())?;
        let stated = bytes::parse_sha256(&info.service_certificate_sha256);
        if stated.map(|d| bytes::hex(&d)) != Some(cert.sha256_fingerprint()) {
            return Err(Error::BadResponse(
                "the service's certificate does not have the fingerprint the service states".into(),
            ));
        }
        Ok((info, cert))
    }
}

/// What the client states in its request, signed with the new key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestClaims {
    /// The PartyId to register, and its type ("" for none).
    pub party_id: String,
    #[serde(default)]
    pub party_type: String,
    /// The enrolment code as typed (the service normalises it). Never printed by `Debug`;
    /// wiped when dropped.
    pub code: String,
    /// Random, hex (16 to 64 bytes): a request is taken once, and the answer names it.
    pub nonce: String,
    /// When the request was made (Unix seconds).
    pub iat: i64,
    /// The service's signing certificate as the client saw it: a request meant for another
    /// service is refused ([`Refusal::WrongService`]).
    pub service_certificate_sha256: String,
    /// The largest document the client accepts (its `[limits] max_document_bytes`), registered
    /// with the party.
    pub max_document_bytes: u64,
}

impl fmt::Debug for RequestClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestClaims")
            .field("party_id", &self.party_id)
            .field("party_type", &self.party_type)
            .field("code", &"<redacted>")
            .field("nonce", &self.nonce)
            .field("iat", &self.iat)
            .field(
                "service_certificate_sha256",
                &self.service_certificate_sha256,
            )
            .field("max_document_bytes", &self.max_document_bytes)
            .finish()
    }
}

impl Drop for RequestClaims {
    fn drop(&mut self) {
        self.code.zeroize();
    }
}

impl RequestClaims {
    /// Claims for `party_id` (no type) with `code`, a fresh nonce and the time now.
    pub fn new(
        party_id: &str,
        code: &str,
        service_certificate: &Certificate,
        max_document_bytes: u64,
    ) -> Result<RequestClaims> {
        Ok(RequestClaims {
            party_id: party_id.into(),
            party_type: String::new(),
            code: code.into(),
            nonce: bytes::hex(&crypto::random(16)?),
            iat: time::now_unix(),
            service_certificate_sha256: service_certificate.sha256_fingerprint(),
            max_document_bytes,
        })
    }

    /// The shape of every field (not whether the code is right).
    fn check(&self) -> std::result::Result<(), String> {
        let printable = |name: &str, v: &str, min: usize| {
            if v.chars().count() < min || v.len() > 255 || v.chars().any(char::is_control) {
                Err(format!(
                    "{name}: {min} to 255 characters, no control characters"
                ))
            } else {
                Ok(())
            }
        };
        printable("party_id", &self.party_id, 1)?;
        if self.party_id.trim() != self.party_id {
            return Err("party_id: no leading or trailing white space".into());
        }
        printable("party_type", &self.party_type, 0)?;
        if self.code.is_empty() || self.code.len() > MAX_CODE_INPUT {
            return Err(format!("code: 1 to {MAX_CODE_INPUT} characters"));
        }
        let n = self.nonce.len();
        if !(32..=128).contains(&n)
            || n % 2 != 0
            || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("nonce: 16 to 64 random bytes in hex".into());
        }
        if bytes::parse_sha256(&self.service_certificate_sha256).is_none() {
            return Err("service_certificate_sha256: a SHA-256 in hex".into());
        }
        if self.max_document_bytes == 0 || i64::try_from(self.max_document_bytes).is_err() {
            return Err(format!(
                "max_document_bytes: a number of bytes from 1 to {}",
                i64::MAX
            ));
        }
        Ok(())
    }
}

/// What the service answers for a registered party, signed with its signing key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrolled {
    pub party_id: String,
    pub party_type: String,
    /// The party's MPC (where its messages wait).
    pub mpc: String,
    /// The subscriber (account) the party belongs to.
    pub subscriber_id: i64,
    /// The registered certificate's SHA-256.
    pub certificate_sha256: String,
    /// The document limit registered with the party.
    pub max_document_bytes: u64,
    /// `registered`: a new party; `replaced`: an existing party of the account, whose earlier
    /// certificates were retired at once; `already_enrolled`: this certificate was enrolled with
    /// this code before (a retry).
    pub outcome: String,
    /// When (ISO 8601, UTC).
    pub registered_at: String,
    /// The request's nonce.
    pub nonce: String,
    /// The service's signing certificate (the signer of this answer).
    pub service_certificate_sha256: String,
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// Why the service refused an enrolment: the `reason` of a [`RefusalBody`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a request of this form (JSON, JWS, header, claims).
    Malformed,
    /// The signature does not verify with the key of the certificate it carries, or its
    /// algorithm is not one of the profile's: no proof of possession.
    BadProof,
    /// `iat` more than [`FRESHNESS_SECS`] from the service's clock.
    Stale,
    /// A nonce the service has seen.
    Replayed,
    /// The request names another service certificate than this service's.
    WrongService,
    /// The certificate cannot be registered: expired, not yet valid, may not sign, a CA
    /// certificate, a weak or unsupported key.
    CertificateRefused,
    /// No such code for this party: mistyped, made up, or a code of another party (the same
    /// answer for all three).
    InvalidCode,
    /// The code was used already.
    CodeUsed,
    /// The code expired.
    CodeExpired,
    /// The provider revoked the code.
    CodeRevoked,
    /// The certificate is registered for another party.
    CertificateInUse,
    /// The party or its account cannot enrol now: the party was revoked, the account suspended,
    /// or the party id was taken by another account since the code was issued.
    PartyNotActive,
    /// Too many failed attempts from this address or for this account: try again later
    /// (`Retry-After`).
    LockedOut,
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
        Refusal::InvalidCode,
        Refusal::CodeUsed,
        Refusal::CodeExpired,
        Refusal::CodeRevoked,
        Refusal::CertificateInUse,
        Refusal::PartyNotActive,
        Refusal::LockedOut,
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
            Refusal::InvalidCode => "invalid_code",
            Refusal::CodeUsed => "code_used",
            Refusal::CodeExpired => "code_expired",
            Refusal::CodeRevoked => "code_revoked",
            Refusal::CertificateInUse => "certificate_in_use",
            Refusal::PartyNotActive => "party_not_active",
            Refusal::LockedOut => "locked_out",
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
            Refusal::InvalidCode
            | Refusal::CodeUsed
            | Refusal::CodeExpired
            | Refusal::CodeRevoked
            | Refusal::PartyNotActive => 403,
            Refusal::CertificateInUse => 409,
            Refusal::LockedOut => 429,
            Refusal::Unavailable => 503,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_transient(self) -> bool {
        matches!(self, Refusal::LockedOut | Refusal::Unavailable)
    }

    /// What the enrolling user can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::BadProof => {
                "the client and the service do not agree on the enrolment request: update the client"
            }
            Refusal::Stale => "check this machine's clock, then try again",
            Refusal::Replayed => "try again",
            Refusal::WrongService => {
                "the service certificate changed while enrolling: try again, and check its fingerprint"
            }
            Refusal::CertificateRefused => "enrol with another certificate",
            Refusal::InvalidCode => {
                "check the code and the party id (a code is valid for one party id only), or ask the provider for a new code"
            }
            Refusal::CodeUsed | Refusal::CodeExpired | Refusal::CodeRevoked => {
                "ask the provider for a new code"
            }
            Refusal::CertificateInUse => "enrol with a new key",
            Refusal::PartyNotActive => "ask the provider",
            Refusal::LockedOut => "too many failed attempts: wait, then try again",
            Refusal::Unavailable => "try again later",
        }
    }

    /// The error code of the refusal's error object: `LS_ERR_REFUSED` for good,
    /// `LS_ERR_HTTP_STATUS` (transient) for a lockout or an unavailable store.
    pub fn error_code(self) -> ErrorCode {
        if self.is_transient() {
            ErrorCode::HttpStatus
        } else {
            ErrorCode::Refused
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal as [`verify_request`] (and the service) makes it: the reason and a message for
/// the user (never the code, never key material).
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

    /// The body the service answers with.
    pub fn body(&self) -> RefusalBody {
        RefusalBody {
            reason: self.reason.as_str().into(),
            error: ErrorReport {
                transient: self.reason.is_transient(),
                ..ErrorReport::new(
                    self.reason.error_code(),
                    format!(
                        "enrolment refused ({}): {}; {}",
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

/// The body of a refusal: `{"reason": "invalid_code", "error": {code, name, family, message,
/// transient}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefusalBody {
    /// A [`Refusal`] (`as_str`); a newer service may name reasons this version does not know.
    pub reason: String,
    pub error: ErrorReport,
}

/// The client's error for a refused enrolment (HTTP `status`, `body`): `Refused` for good (exit
/// 10), `HttpStatus` for a lockout or an unavailable service (transient), as the body says;
/// a body that is not a [`RefusalBody`] is judged by its status alone.
pub fn refusal_error(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<RefusalBody>(body) {
        Ok(b) if b.error.transient || matches!(status, 408 | 429 | 500..=599) => {
            Error::HttpStatus {
                status,
                message: b.error.message,
            }
        }
        Ok(b) => Error::Refused(b.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>();
            let message = format!("the enrolment endpoint answered HTTP {status}: {text}");
            if matches!(status, 408 | 429 | 500..=599) {
                Error::HttpStatus { status, message }
            } else {
                Error::Refused(message)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and answers

/// A JSON error about a request without any value it quotes (a claim may be the code, and
/// refusals are logged): what is missing or duplicated is said, a value of the wrong type only
/// where it was.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let m = e.to_string();
    if m.starts_with("missing field") || m.starts_with("duplicate field") {
        m
    } else if e.is_data() {
        format!(
            "a member is not of the expected type (line {}, column {})",
            e.line(),
            e.column()
        )
    } else {
        format!("not JSON (line {}, column {})", e.line(), e.column())
    }
}

/// The request body: `claims` signed with `identity` (the new key), its certificate in `x5c`.
pub fn build_request(identity: &Identity, claims: &RequestClaims) -> Result<Vec<u8>> {
    let payload = Zeroizing::new(
        serde_json::to_vec(claims).map_err(|e| Error::Internal(format!("claims: {e}")))?,
    );
    sign_jws(identity, REQUEST_TYPE, &payload)
}

/// A request whose proof of possession verified.
#[derive(Debug)]
pub struct VerifiedRequest {
    pub claims: RequestClaims,
    /// The certificate to register (`x5c[0]`, the signer).
    pub certificate: Certificate,
    /// The rest of `x5c`.
    pub chain: Vec<Certificate>,
}

/// Read a request and check everything but the code: its size, form and claims, the signature
/// with the key of the certificate it carries (proof of possession), that key's strength, and
/// `iat` within [`FRESHNESS_SECS`] of `now`. (Whether the certificate may be registered —
/// validity, key usage — and whether the nonce is new are the service's to check.)
pub fn verify_request(body: &[u8], now: i64) -> std::result::Result<VerifiedRequest, Refused> {
    if body.len() as u64 > MAX_REQUEST_BYTES {
        return Err(Refused::new(
            Refusal::Malformed,
            format!("the request is larger than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    let v = verify_jws(body, REQUEST_TYPE).map_err(|f| match f {
        JwsFailure::Malformed(m) => Refused::new(Refusal::Malformed, m),
        JwsFailure::Signature(e) => Refused::new(
            Refusal::BadProof,
            format!("no proof of possession of the certificate's key: {e}"),
        ),
    })?;
    let claims: RequestClaims =
        serde_json::from_slice(&Zeroizing::new(v.payload)).map_err(|e| {
            Refused::new(
                Refusal::Malformed,
                format!("the claims: {}", json_error(&e)),
            )
        })?;
    claims
        .check()
        .map_err(|e| Refused::new(Refusal::Malformed, e))?;
    check_key(&v.signer).map_err(|e| Refused::new(Refusal::CertificateRefused, e.to_string()))?;
    // abs_diff: an iat of i64::MIN must neither overflow nor pass.
    if claims.iat.abs_diff(now) > FRESHNESS_SECS.unsigned_abs() {
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
        certificate: v.signer,
        chain: v.chain,
    })
}

/// The answer's body: `enrolled` signed with the service's signing identity.
pub fn build_response(service: &Identity, enrolled: &Enrolled) -> Result<Vec<u8>> {
    let payload =
        serde_json::to_vec(enrolled).map_err(|e| Error::Internal(format!("answer: {e}")))?;
    sign_jws(service, RESPONSE_TYPE, &payload)
}

/// Check the service's answer to `request`, made with `our_certificate`: signed by
/// `service_certificate` (its `x5c[0]` must be that very certificate), naming our party, our
/// certificate and our nonce.
pub fn verify_response(
    body: &[u8],
    service_certificate: &Certificate,
    request: &RequestClaims,
    our_certificate: &Certificate,
) -> Result<Enrolled> {
    let e: Enrolled = crate::enrol::jws::verify_service_answer(
        body,
        RESPONSE_TYPE,
        MAX_RESPONSE_BYTES,
        service_certificate,
        "the enrolment answer",
    )?;
    let mismatch = |what: &str| {
        Err(Error::BadResponse(format!(
            "the enrolment answer names another {what} than our request"
        )))
    };
    if e.nonce != request.nonce {
        return mismatch("request (nonce)");
    }
    if e.party_id != request.party_id || e.party_type != request.party_type {
        return mismatch("party");
    }
    if e.certificate_sha256 != our_certificate.sha256_fingerprint() {
        return mismatch("certificate");
    }
    if e.service_certificate_sha256 != service_certificate.sha256_fingerprint() {
        return mismatch("service certificate");
    }
    Ok(e)
}

#[cfg(test)]
mod tests;
