//! Installation with enrolment codes: the provider issues a one-time code for one party id of a
//! subscriber ([`Admin::issue_enrolment`], `admin subscriber enrol`, `POST /admin/enrolments`);
//! the subscriber's installer enrols a new certificate for that party with it at `POST /enrol`
//! on the AS4 port ([`Service::enrol`]; the contract is [`ls_core::enrol`]).
//!
//! Codes are stored as a keyed hash (HMAC-SHA256 with [`Store::enrolment_key`]), never as
//! they are, and shown once. The endpoint checks the request's form and its proof of
//! possession ([`ls_core::enrol::verify_request`]), its nonce (once), the service certificate
//! it names, the certificate (as `admin party add` does, CA certificates refused), then the
//! code and the registration in one store transaction ([`Store::enrol`]). Failed attempts are
//! counted per client address and, for wrong, used, expired or revoked codes, per account (of
//! the party id named); too many lock out for `enrolment.lockout_secs` (counted by the store for every node: [`crate::store::shared`]).
//! A wrong code and a code of another party get the same answer (`invalid_code`). The code
//! never reaches a log or an error message.

use crate::admin::{Admin, AdminError, AdminResult, CertificatePolicy};
use crate::endpoint::Service;
use crate::http::{address_key, Request, Response};
use crate::log::{self, V};
use crate::store::shared::{Lockout, Scope};
use crate::store::{
    EnrolOutcome, EnrolRefusal, Enrolment, EnrolmentRecord, NewEnrolment, PartyKey, StoreError,
};
use ls_core::as4::exchange::party_mpc;
use ls_core::enrol::{self as contract, Enrolled, Refusal, Refused, ServiceInfo};
use ls_core::time::{iso8601, now_unix};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a code is valid unless the operator says otherwise.
pub const DEFAULT_EXPIRES_HOURS: u64 = 72;
/// The longest validity of a code (30 days).
pub const MAX_EXPIRES_HOURS: u64 = 720;

/// The keyed hash of a normalised code, as stored: lower-case hex HMAC-SHA256.
pub fn code_hash(key: &[u8], normalized: &str) -> Result<String, openssl::error::ErrorStack> {
    let key = openssl::pkey::PKey::hmac(key)?;
    let mut mac = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
    mac.update(b"layersec-enrolment-code\0")?;
    mac.update(normalized.as_bytes())?;
    Ok(ls_core::bytes::hex(&mac.sign_to_vec()?))
}

/// A code just issued: shown once, never stored.
pub struct IssuedCode {
    pub code: Zeroizing<String>,
    pub record: EnrolmentRecord,
}

pub fn enrolment_json(r: &EnrolmentRecord, now: i64) -> Value {
    json!({
        "id": r.id,
        "subscriber_id": r.subscriber_id,
        "party_id": r.key.id,
        "party_type": r.key.ptype,
        "state": r.state(now),
        "created_at": iso8601(r.created_at),
        "expires_at": iso8601(r.expires_at),
        "used_at": r.used_at.map(iso8601),
        "certificate_sha256": r.used_fingerprint,
        "revoked_at": r.revoked_at.map(iso8601),
    })
}

/// The answer to issuing: `{"code": …}` and the code's record.
pub fn issued_json(i: &IssuedCode) -> Value {
    let mut v = enrolment_json(&i.record, i.record.created_at);
    if let Value::Object(m) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("code".into(), Value::String(i.code.to_string()));
        out.extend(std::mem::take(m));
        return Value::Object(out);
    }
    v
}

fn bad(message: String) -> AdminError {
    AdminError {
        status: 400,
        message,
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> AdminError {
    AdminError {
        status: 500,
        message: format!("{what}: {e}"),
    }
}

impl Admin {
    /// Issue a code that enrols one certificate for `key`, a new party id of the subscriber or
    /// one of its parties (re-installation), valid `expires_hours`. The party's earlier
    /// outstanding code is revoked.
    pub fn issue_enrolment(
        &self,
        subscriber_id: i64,
        key: &PartyKey,
        expires_hours: u64,
    ) -> AdminResult<IssuedCode> {
        for (name, v, min) in [("party_id", &key.id, 1), ("party_type", &key.ptype, 0)] {
            if v.chars().count() < min || v.len() > 255 || v.chars().any(char::is_control) {
                return Err(bad(format!(
                    "{name}: {min} to 255 characters, no control characters"
                )));
            }
        }
        if key.id.trim() != key.id {
            return Err(bad("party_id: no leading or trailing white space".into()));
        }
        if key.id == ls_core::as4::coordination::SERVICE_PARTY {
            return Err(bad(format!(
                "party_id: {} is the service's own name",
                ls_core::as4::coordination::SERVICE_PARTY
            )));
        }
        if !(1..=MAX_EXPIRES_HOURS).contains(&expires_hours) {
            return Err(bad(format!(
                "expires_hours = {expires_hours}: 1 to {MAX_EXPIRES_HOURS} (default \
                 {DEFAULT_EXPIRES_HOURS})"
            )));
        }
        let secret = self.store.enrolment_key()?;
        let now = now_unix();
        // A hash already stored (a chance of 2^-120) is a conflict: draw again.
        let mut last = None;
        for _ in 0..3 {
            let code = contract::new_code().map_err(|e| internal("cannot make a code", e))?;
            let normalized = contract::normalize_code(&code)
                .ok_or_else(|| internal("a new code", "does not read back"))?;
            let hash =
                code_hash(&secret, &normalized).map_err(|e| internal("cannot hash a code", e))?;
            match self.store.issue_enrolment(
                &NewEnrolment {
                    subscriber_id,
                    key,
                    code_hash: &hash,
                    expires_at: now.saturating_add((expires_hours * 3600) as i64),
                },
                now,
            ) {
                Ok(record) => return Ok(IssuedCode { code, record }),
                Err(StoreError::Conflict(m)) if m.to_ascii_lowercase().contains("unique") => {
                    last = Some(m)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(internal(
            "cannot store a new code",
            last.unwrap_or_default(),
        ))
    }

    /// A subscriber's codes (no codes, no hashes), newest first.
    pub fn enrolments(&self, subscriber_id: i64) -> AdminResult<Value> {
        if self.store.subscriber(subscriber_id)?.is_none() {
            return Err(StoreError::NotFound(format!("subscriber {subscriber_id}")).into());
        }
        let now = now_unix();
        Ok(Value::Array(
            self.store
                .enrolments(subscriber_id)?
                .iter()
                .map(|r| enrolment_json(r, now))
                .collect(),
        ))
    }

    /// Revoke a subscriber's outstanding code.
    pub fn revoke_enrolment(&self, subscriber_id: i64, id: i64) -> AdminResult<Value> {
        let now = now_unix();
        let r = self.store.revoke_enrolment(subscriber_id, id, now)?;
        Ok(enrolment_json(&r, now))
    }
}

/// The endpoint's lockouts; the failures counted and the nonces seen are the store's,
/// shared by every node ([`crate::store::shared`]).
pub struct Enrolments {
    per_address: Lockout,
    per_account: Lockout,
}

impl Enrolments {
    pub fn new(c: &crate::config::EnrolmentSection) -> Enrolments {
        Enrolments {
            per_address: Lockout {
                max: c.max_failures_per_address,
                window_secs: c.lockout_secs,
            },
            per_account: Lockout {
                max: c.max_failures_per_account,
                window_secs: c.lockout_secs,
            },
        }
    }
}

impl Service {
    /// Take back an attempt counted in advance (a store failure is logged: the attempt then
    /// stays counted, which errs on the side of the lockout).
    fn release_failure(&self, scope: Scope, key: &str) {
        if let Err(e) = self.store.shared().release_failure(scope, key) {
            log::error(
                "store_unavailable",
                &[("kind", "enrol".into()), ("error", V::S(&e.to_string()))],
            );
        }
    }
}

impl Default for Enrolments {
    fn default() -> Self {
        Enrolments::new(&crate::config::EnrolmentSection::default())
    }
}

/// Whom a refusal counts against.
#[derive(Clone, Copy)]
enum Count {
    Nobody,
    Address,
    /// The address and, when the party id belongs to one, the account.
    AddressAndAccount,
}

/// A refused enrolment, as the endpoint answers and logs it.
struct Failure {
    refused: Refused,
    count: Count,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(reason: Refusal, message: impl Into<String>, count: Count) -> Failure {
        Failure {
            refused: Refused::new(reason, message),
            count,
            retry_after: None,
        }
    }

    fn unavailable(e: impl std::fmt::Display) -> Failure {
        log::error(
            "store_unavailable",
            &[("kind", "enrol".into()), ("error", V::S(&e.to_string()))],
        );
        Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..Failure::new(
                Refusal::Unavailable,
                "the service cannot register certificates right now",
                Count::Nobody,
            )
        }
    }

    fn locked(wait: Duration, whom: &str) -> Failure {
        Failure {
            retry_after: Some(wait),
            ..Failure::new(
                Refusal::LockedOut,
                format!(
                    "too many failed enrolments {whom}; try again in {} s",
                    wait.as_secs().max(1)
                ),
                Count::Nobody,
            )
        }
    }
}

/// What the endpoint learnt of a request before it was refused (for counting and the log).
#[derive(Default)]
struct Seen {
    party: Option<PartyKey>,
    account: Option<i64>,
    /// The attempt was counted in advance against the address (see
    /// [`crate::store::shared::SharedState::reserve_failure`]); the lockout it makes if it fails.
    address_counted: Option<Option<std::time::Duration>>,
    /// …and against this account.
    account_counted: Option<(i64, Option<std::time::Duration>)>,
}

impl Service {
    /// `GET /enrol`: the service's signing certificate.
    pub(crate) fn enrol_info(&self) -> Response {
        let info = ServiceInfo::new(self.identity.get().certificate());
        Response::new(
            200,
            contract::CONTENT_TYPE,
            serde_json::to_vec_pretty(&info).unwrap_or_default(),
        )
    }

    /// `POST /enrol`: register the certificate of a request authorised by an enrolment code.
    pub(crate) fn enrol(&self, req: &Request) -> Response {
        let started = Instant::now();
        let address = address_key(req.peer.ip());
        let mut seen = Seen::default();
        let outcome = self.enrol_request(req, address, &mut seen);
        self.metrics.observe("enrol", started.elapsed());
        let party = seen
            .party
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match outcome {
            Ok((body, enrolled)) => {
                // Not a failure after all: the attempts counted in advance are taken back.
                if seen.address_counted.is_some() {
                    self.release_failure(Scope::EnrolAddress, &address.to_string());
                }
                if let Some((account, _)) = seen.account_counted {
                    self.release_failure(Scope::EnrolAccount, &account.to_string());
                }
                self.metrics.enrolment(match enrolled.outcome.as_str() {
                    "replaced" => "replaced",
                    "already_enrolled" => "again",
                    _ => "registered",
                });
                log::info(
                    "enrolled",
                    &[
                        ("party", V::S(&party)),
                        ("subscriber", V::N(enrolled.subscriber_id.max(0) as u64)),
                        ("certificate_sha256", V::S(&enrolled.certificate_sha256)),
                        ("outcome", V::S(&enrolled.outcome)),
                        ("address", V::S(&address.to_string())),
                    ],
                );
                Response::new(200, contract::CONTENT_TYPE, body)
            }
            Err(f) => {
                // The attempt was counted in advance; a failure that does not count is taken
                // back.
                let mut locked = f.retry_after;
                if let Some(lock) = seen.address_counted {
                    if matches!(f.count, Count::Address | Count::AddressAndAccount) {
                        locked = lock.or(locked);
                    } else {
                        self.release_failure(Scope::EnrolAddress, &address.to_string());
                    }
                }
                if let Some((account, lock)) = seen.account_counted {
                    if matches!(f.count, Count::AddressAndAccount) {
                        if let Some(w) = lock {
                            log::warn(
                                "enrol_account_locked",
                                &[
                                    ("subscriber", V::N(account.max(0) as u64)),
                                    ("lockout_secs", V::N(w.as_secs())),
                                ],
                            );
                        }
                    } else {
                        self.release_failure(Scope::EnrolAccount, &account.to_string());
                    }
                }
                self.metrics.enrolment(f.refused.reason.as_str());
                log::warn(
                    "enrol_refused",
                    &[
                        ("reason", V::S(f.refused.reason.as_str())),
                        ("party", V::S(&party)),
                        ("address", V::S(&address.to_string())),
                        ("detail", V::S(&f.refused.message)),
                    ],
                );
                let body = serde_json::to_vec_pretty(&f.refused.body()).unwrap_or_default();
                let mut r =
                    Response::new(f.refused.reason.http_status(), contract::CONTENT_TYPE, body);
                if f.refused.reason.is_transient() {
                    let secs = locked.or(f.retry_after).map_or(5, |d| d.as_secs().max(1));
                    r.headers.push(("Retry-After".into(), secs.to_string()));
                }
                r
            }
        }
    }

    fn enrol_request(
        &self,
        req: &Request,
        address: IpAddr,
        seen: &mut Seen,
    ) -> Result<(Vec<u8>, Enrolled), Failure> {
        let e = &self.enrolment;
        // Counted as a failure before anything is checked (taken back if it is not one), so
        // that attempts in flight at the same time cannot overshoot the limit.
        let now = now_unix();
        match self
            .store
            .shared()
            .reserve_failure(
                Scope::EnrolAddress,
                &address.to_string(),
                now,
                e.per_address,
            )
            .map_err(Failure::unavailable)?
        {
            Err(wait) => return Err(Failure::locked(wait, "from this address")),
            Ok(lock) => seen.address_counted = Some(lock),
        }
        let v = contract::verify_request(&req.body, now).map_err(|r| Failure {
            refused: r,
            count: Count::Address,
            retry_after: None,
        })?;
        let claims = &v.claims;
        let key = PartyKey::new(&claims.party_type, &claims.party_id);
        seen.party = Some(key.clone());
        // A request is fresh for FRESHNESS_SECS either side of its iat: its nonce is kept
        // twice that.
        if !self
            .store
            .shared()
            .first_use(
                Scope::Enrol,
                &claims.nonce,
                now,
                2 * contract::FRESHNESS_SECS,
            )
            .map_err(Failure::unavailable)?
        {
            return Err(Failure::new(
                Refusal::Replayed,
                "this request was taken already (its nonce was seen)",
                Count::Address,
            ));
        }
        let signer = self.identity.get();
        let ours = signer.certificate().sha256_fingerprint();
        let named = ls_core::bytes::parse_sha256(&claims.service_certificate_sha256)
            .map(|d| ls_core::bytes::hex(&d));
        // During a rollover of the service's key, the next certificate is the service's too.
        let known = self
            .identity
            .certificates()
            .iter()
            .any(|c| Some(c.sha256_fingerprint()) == named);
        if !known {
            return Err(Failure::new(
                Refusal::WrongService,
                format!(
                    "the request is meant for the service certificate {}; this service signs \
                     with {ours}",
                    claims.service_certificate_sha256
                ),
                Count::Address,
            ));
        }
        let cert = crate::admin::check_party_certificate(
            v.certificate.der(),
            CertificatePolicy::default(),
        )
        .map_err(|a| Failure::new(Refusal::CertificateRefused, a.message, Count::Address))?;

        let account = self
            .store
            .enrolment_account(&key)
            .map_err(Failure::unavailable)?;
        seen.account = account;
        if let Some(a) = account {
            match self
                .store
                .shared()
                .reserve_failure(Scope::EnrolAccount, &a.to_string(), now, e.per_account)
                .map_err(Failure::unavailable)?
            {
                Err(wait) => return Err(Failure::locked(wait, "for this account")),
                Ok(lock) => seen.account_counted = Some((a, lock)),
            }
        }
        let invalid = || {
            Failure::new(
                Refusal::InvalidCode,
                format!("no such enrolment code for party {key}"),
                Count::AddressAndAccount,
            )
        };
        let Some(normalized) = contract::normalize_code(&claims.code) else {
            return Err(invalid());
        };
        let secret = self.store.enrolment_key().map_err(Failure::unavailable)?;
        let hash = code_hash(&secret, &normalized).map_err(Failure::unavailable)?;
        let mpc = party_mpc(&key.id);
        let fingerprint = cert.sha256_fingerprint();
        let outcome = self
            .store
            .enrol(
                &Enrolment {
                    code_hash: &hash,
                    key: &key,
                    mpc: &mpc,
                    cert_der: cert.der(),
                    fingerprint: &fingerprint,
                    max_document_bytes: claims.max_document_bytes,
                },
                now,
            )
            .map_err(Failure::unavailable)?;
        let code_failure = |reason, what: &str| {
            Failure::new(
                reason,
                format!("the enrolment code for party {key} {what}"),
                Count::AddressAndAccount,
            )
        };
        let (party, outcome) = match outcome {
            EnrolOutcome::Registered(p) => (p, "registered"),
            EnrolOutcome::Replaced(p) => (p, "replaced"),
            EnrolOutcome::Again(p) => (p, "already_enrolled"),
            EnrolOutcome::Refused(r) => {
                return Err(match r {
                    EnrolRefusal::InvalidCode => invalid(),
                    EnrolRefusal::CodeUsed => code_failure(Refusal::CodeUsed, "was used already"),
                    EnrolRefusal::CodeExpired => code_failure(Refusal::CodeExpired, "expired"),
                    EnrolRefusal::CodeRevoked => {
                        code_failure(Refusal::CodeRevoked, "was revoked by the provider")
                    }
                    EnrolRefusal::CertificateInUse { .. } => Failure::new(
                        Refusal::CertificateInUse,
                        "this certificate is registered for another party; each party needs \
                         its own",
                        Count::Address,
                    ),
                    EnrolRefusal::PartyNotActive(why) => Failure::new(
                        Refusal::PartyNotActive,
                        format!("party {key} cannot enrol now: {why}"),
                        Count::Address,
                    ),
                })
            }
        };
        let enrolled = Enrolled {
            party_id: party.key.id.clone(),
            party_type: party.key.ptype.clone(),
            mpc: party.mpc.clone(),
            subscriber_id: party.subscriber_id,
            certificate_sha256: fingerprint,
            max_document_bytes: party.max_document_bytes,
            outcome: outcome.into(),
            registered_at: iso8601(now),
            nonce: claims.nonce.clone(),
            service_certificate_sha256: ours,
        };
        let body = contract::build_response(&signer, &enrolled)
            .map_err(|e| Failure::unavailable(format!("cannot sign the answer: {e}")))?;
        Ok((body, enrolled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_hashes_are_keyed() {
        let a = code_hash(&[1; 32], "7K2QM9XD0A1BCDEFGHJKMNPZ").unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, code_hash(&[1; 32], "7K2QM9XD0A1BCDEFGHJKMNPZ").unwrap());
        assert_ne!(a, code_hash(&[2; 32], "7K2QM9XD0A1BCDEFGHJKMNPZ").unwrap());
        assert_ne!(a, code_hash(&[1; 32], "7K2QM9XD0A1BCDEFGHJKMNP0").unwrap());
        assert_ne!(a, ls_core::bytes::sha256_hex(b"7K2QM9XD0A1BCDEFGHJKMNPZ"));
    }
}
