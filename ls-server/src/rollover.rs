//! Key rollover by the party itself: `POST /rollover` on the AS4 port ([`Service::rollover`];
//! the contract is [`ls_core::rollover`]). A request signed by the party's current key and by
//! its new key registers the new certificate and keeps the old one valid for the overlap the
//! request names — what `admin party replace-certificate --overlap-hours` does for the
//! operator, with the same checks of the new certificate ([`crate::admin::check_party_certificate`],
//! CA certificates refused, not another party's) and the same store operation
//! ([`crate::store::Store::replace_certificate`]). The answer is signed by the service's
//! identity.
//!
//! The old certificate must be a *current* certificate of an active party of the id the
//! request names; an unknown, revoked or suspended party and a retired certificate get one
//! answer (`not_registered`). A request whose new certificate is already the party's is a
//! retry: answered `already_registered` with the overlap set then, nothing changed. Nonces are
//! remembered by the store for every node (as the enrolment's), and `iat` must be within 10 minutes.

use crate::endpoint::Service;
use crate::http::{address_key, Request, Response};
use crate::log::{self, V};
use crate::store::shared::Scope;
use crate::store::PartyKey;
use ls_core::rollover::{self as contract, Refusal, Refused, Registered};
use ls_core::time::{iso8601, now_unix};
use std::time::Instant;

/// The endpoint's state: none of its own (the nonces seen are the store's, shared by every
/// node: [`crate::store::shared`]).
#[derive(Default)]
pub struct Rollovers {}

impl Service {
    /// `POST /rollover`: register a party's new certificate, signed by its old and new keys.
    pub(crate) fn rollover(&self, req: &Request) -> Response {
        let started = Instant::now();
        let address = address_key(req.peer.ip());
        let mut party = String::new();
        let outcome = self.rollover_request(req, &mut party);
        self.metrics.observe("rollover", started.elapsed());
        match outcome {
            Ok((body, r)) => {
                self.metrics.rollover(if r.outcome == "registered" {
                    "registered"
                } else {
                    "again"
                });
                log::info(
                    "rolled_over",
                    &[
                        ("party", V::S(&party)),
                        ("old_certificate_sha256", V::S(&r.old_certificate_sha256)),
                        ("new_certificate_sha256", V::S(&r.new_certificate_sha256)),
                        ("old_valid_until", V::S(&iso8601(r.old_valid_until))),
                        ("outcome", V::S(&r.outcome)),
                        ("address", V::S(&address.to_string())),
                    ],
                );
                Response::new(200, contract::CONTENT_TYPE, body)
            }
            Err(f) => {
                self.metrics.rollover(f.reason.as_str());
                log::warn(
                    "rollover_refused",
                    &[
                        ("reason", V::S(f.reason.as_str())),
                        ("party", V::S(&party)),
                        ("address", V::S(&address.to_string())),
                        ("detail", V::S(&f.message)),
                    ],
                );
                let body = serde_json::to_vec_pretty(&f.body()).unwrap_or_default();
                let mut r = Response::new(f.reason.http_status(), contract::CONTENT_TYPE, body);
                if f.reason.is_transient() {
                    r.headers.push(("Retry-After".into(), "5".into()));
                }
                r
            }
        }
    }

    fn rollover_request(
        &self,
        req: &Request,
        party: &mut String,
    ) -> Result<(Vec<u8>, Registered), Refused> {
        let unavailable = |e: &dyn std::fmt::Display| {
            log::error(
                "store_unavailable",
                &[("kind", "rollover".into()), ("error", V::S(&e.to_string()))],
            );
            Refused::new(
                Refusal::Unavailable,
                "the service cannot register certificates right now",
            )
        };
        let now = now_unix();
        let v = contract::verify_request(&req.body, now)?;
        let claims = &v.claims;
        let key = PartyKey::new(&claims.party_type, &claims.party_id);
        *party = key.to_string();
        if !self
            .store
            .shared()
            .first_use(
                Scope::Rollover,
                &claims.nonce,
                now,
                2 * contract::FRESHNESS_SECS,
            )
            .map_err(|e| unavailable(&e))?
        {
            return Err(Refused::new(
                Refusal::Replayed,
                "this request was taken already (its nonce was seen)",
            ));
        }
        let signer = self.identity.get();
        let ours = signer.certificate().sha256_fingerprint();
        // During a rollover of the service's key, the next certificate is the service's too.
        let known = self
            .identity
            .certificates()
            .iter()
            .any(|c| c.sha256_fingerprint() == claims.service_certificate_sha256);
        if !known {
            return Err(Refused::new(
                Refusal::WrongService,
                format!(
                    "the request is meant for the service certificate {}; this service signs \
                     with {ours}",
                    claims.service_certificate_sha256
                ),
            ));
        }
        // The old key's signature authorises the request only if it is a current certificate
        // of an active party of that id: one answer for every way it is not.
        let not_registered = || {
            Refused::new(
                Refusal::NotRegistered,
                format!(
                    "the certificate {} is not a current certificate of an active party {key}",
                    claims.old_certificate_sha256
                ),
            )
        };
        let p = self
            .store
            .party(&key)
            .map_err(|e| unavailable(&e))?
            .filter(|p| p.is_usable())
            .ok_or_else(not_registered)?;
        let certs = self
            .store
            .certificates(&p.key)
            .map_err(|e| unavailable(&e))?;
        let old = certs
            .iter()
            .find(|c| c.fingerprint == claims.old_certificate_sha256 && c.is_current(now))
            .ok_or_else(not_registered)?;
        let answer = |outcome: &str, old_valid_until: i64| {
            let r = Registered {
                party_id: p.key.id.clone(),
                party_type: p.key.ptype.clone(),
                old_certificate_sha256: claims.old_certificate_sha256.clone(),
                new_certificate_sha256: claims.new_certificate_sha256.clone(),
                old_valid_until,
                outcome: outcome.into(),
                registered_at: now,
                nonce: claims.nonce.clone(),
                service_certificate_sha256: ours.clone(),
            };
            contract::build_response(&signer, &r)
                .map(|body| (body, r))
                .map_err(|e| unavailable(&format!("cannot sign the answer: {e}")))
        };
        if let Some(new) = certs
            .iter()
            .find(|c| c.fingerprint == claims.new_certificate_sha256)
        {
            // A retry of a rollover that went through (its answer was lost): the overlap that
            // one set stands. A new certificate retired since is not taken back.
            if !new.is_current(now) {
                return Err(Refused::new(
                    Refusal::CertificateRefused,
                    "this certificate was the party's before and is retired: roll over to a new key",
                ));
            }
            return answer("already_registered", old.retired_at.unwrap_or(now));
        }
        // A new rollover is signed by the party's newest certificate only: one being retired
        // (in the overlap of an earlier rollover) could otherwise be used — by whoever stole
        // the old key — to roll the party over again and retire its rightful new key.
        if old.retired_at.is_some() {
            return Err(not_registered());
        }
        let cert = crate::admin::check_party_certificate(
            v.new_certificate.der(),
            crate::admin::CertificatePolicy::default(),
        )
        .map_err(|a| Refused::new(Refusal::CertificateRefused, a.message))?;
        let fingerprint = cert.sha256_fingerprint();
        let owners = self
            .store
            .parties_by_fingerprint(&fingerprint)
            .map_err(|e| unavailable(&e))?;
        if owners.iter().any(|o| o.key != p.key) {
            return Err(Refused::new(
                Refusal::CertificateInUse,
                "this certificate is registered for another party; each party needs its own",
            ));
        }
        let until = now.saturating_add(claims.overlap_secs.min(contract::MAX_OVERLAP_SECS) as i64);
        self.store
            .replace_certificate(&p.key, cert.der(), &fingerprint, until, now)
            .map_err(|e| match e {
                crate::store::StoreError::NotFound(_) | crate::store::StoreError::Conflict(_) => {
                    not_registered()
                }
                other => unavailable(&other),
            })?;
        answer("registered", until)
    }
}
