//! The partner directory on the AS4 port: `POST /directory/<party id>` with a request signed by
//! a registered party ([`ls_core::directory`]) is answered with the party's registered
//! certificate, signed by the service's identity (the certificate clients already hold as
//! `[service] service_certificate`), bound to the asker, the party, the request's nonce and the
//! time.
//!
//! Who may ask: a registered, active party of an active account, authenticated by its signature
//! over the request (checked against its registered certificates, as a push is); everyone else
//! gets one uniform 403, after the same work (a request naming no usable party is checked
//! against the decoy certificate). A request is used once (its nonce is remembered for twice
//! the freshness window, by every node of the store) and must be fresh. Each asking party may ask
//! `limits.directory_requests_per_minute` times a minute (429 beyond, with Retry-After; 0 closes
//! the directory). A party that is not registered, revoked, of a suspended account, or
//! registered with a PartyId type (Layer Security clients name parties without one) is "not in
//! the directory": one 404 for all, the reason in the log only.

use crate::endpoint::{Failure, Service};
use crate::http::{Request, Response};
use crate::log::{self, V};
use crate::store::shared::Scope;
use crate::store::PartyKey;
use ls_core::directory::{self as contract, Answer, Request as DirectoryRequest};
use ls_core::time::now_unix;
use ls_core::Certificate;
use std::time::Instant;

/// The path prefix the service routes here.
pub const PATH_PREFIX: &str = "/directory/";

/// The uniform refusal before the asker is authenticated.
pub const UNAUTHENTICATED: &str = "the directory request could not be authenticated";

/// The directory's settings; what it remembers (requests seen, requests per asker this
/// minute) is the store's, shared by every node ([`crate::store::shared`]).
pub struct Directory {
    per_minute: u32,
}

impl Directory {
    /// `per_minute` requests per asking party and minute; 0 closes the directory.
    pub fn new(per_minute: u32) -> Directory {
        Directory { per_minute }
    }
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(60)
    }
}

/// A refusal: the HTTP status, the reason for the metrics and the log, the text for the
/// caller, and the detail for the log.
struct Refused {
    status: u16,
    reason: &'static str,
    text: String,
    detail: String,
    retry_after: Option<i64>,
}

impl Refused {
    fn new(status: u16, reason: &'static str, text: impl Into<String>) -> Refused {
        let text = text.into();
        Refused {
            status,
            reason,
            detail: text.clone(),
            text,
            retry_after: None,
        }
    }

    fn unauthenticated(reason: &'static str, detail: impl Into<String>) -> Refused {
        Refused {
            status: 403,
            reason,
            text: UNAUTHENTICATED.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl Service {
    /// `POST /directory/<party id>`.
    pub(crate) fn directory(&self, req: &Request) -> Response {
        let started = Instant::now();
        let outcome = self.directory_answer(req);
        self.metrics.observe("directory", started.elapsed());
        match outcome {
            Ok(r) => r,
            Err(f) => {
                let why = match f {
                    Failure::Refused(r) => r.detail,
                    Failure::Unavailable(w) | Failure::LowSpace(w) => w,
                };
                self.metrics.directory("unavailable");
                log::error(
                    "store_unavailable",
                    &[("kind", "directory".into()), ("error", V::S(&why))],
                );
                let mut r =
                    Response::text(503, "the directory cannot be read right now; retry later\n");
                r.headers.push(("Retry-After".into(), "5".into()));
                r
            }
        }
    }

    fn directory_answer(&self, req: &Request) -> Result<Response, Failure> {
        match self.directory_lookup(req)? {
            Ok(r) => {
                self.metrics.directory("answered");
                Ok(r)
            }
            Err(refused) => {
                self.metrics.directory(refused.reason);
                log::warn(
                    "directory_refused",
                    &[
                        ("status", u64::from(refused.status).into()),
                        ("reason", refused.reason.into()),
                        ("detail", V::S(&refused.detail)),
                    ],
                );
                let mut r = Response::text(refused.status, &format!("{}\n", refused.text));
                if let Some(s) = refused.retry_after {
                    r.headers.push(("Retry-After".into(), s.to_string()));
                }
                Ok(r)
            }
        }
    }

    /// The answer, a refusal, or a store failure (outer `Err`).
    fn directory_lookup(&self, req: &Request) -> Result<Result<Response, Refused>, Failure> {
        if self.directory.per_minute == 0 {
            return Ok(Err(Refused::new(
                404,
                "closed",
                "this service has no partner directory",
            )));
        }
        let Some(party) = contract::party_of_path(&req.path) else {
            return Ok(Err(Refused::new(
                404,
                "not_found",
                "not found: the directory's paths are /directory/<party id>",
            )));
        };
        if req.body.len() as u64 > contract::MAX_REQUEST_BYTES {
            return Ok(Err(Refused::new(
                413,
                "too_large",
                format!(
                    "a directory request is at most {} bytes",
                    contract::MAX_REQUEST_BYTES
                ),
            )));
        }
        // Whom to check the signature against: the asker the (not yet trusted) request names.
        let mut refusal = None;
        let certs = match DirectoryRequest::peek(&req.body) {
            Ok(r) => {
                let key = PartyKey::new("", &r.asker);
                match self.store.party(&key)? {
                    Some(p) if p.is_usable() => {
                        let c = self.current_certs(&key)?;
                        if c.is_empty() {
                            refusal = Some(("authentication", "no current certificate".into()));
                        }
                        c
                    }
                    Some(_) => {
                        refusal = Some((
                            "party_not_active",
                            format!("party {key} is revoked or its account is suspended"),
                        ));
                        Vec::new()
                    }
                    None => {
                        refusal = Some(("unknown_party", format!("party {key} is not registered")));
                        Vec::new()
                    }
                }
            }
            Err(e) => {
                refusal = Some(("malformed", format!("{}: {e}", e.code().name())));
                Vec::new()
            }
        };
        let certs: Vec<Certificate> = if certs.is_empty() {
            self.decoy.certificates()
        } else {
            certs
        };
        let verified = DirectoryRequest::verify(&req.body, &certs);
        let request = match (verified, refusal) {
            (_, Some((reason, detail))) => {
                return Ok(Err(Refused::unauthenticated(reason, detail)))
            }
            (Err(e), None) => {
                return Ok(Err(Refused::unauthenticated(
                    "authentication",
                    format!("{}: {e}", e.code().name()),
                )))
            }
            (Ok(r), None) => r,
        };
        // Authenticated: from here on, refusals say what is wrong.
        let asker = PartyKey::new("", &request.asker);
        let now = now_unix();
        if let Some(wait) = self.store.shared().over_limit(
            Scope::DirectoryRate,
            &asker.to_string(),
            now,
            60,
            self.directory.per_minute,
        )? {
            return Ok(Err(Refused {
                retry_after: Some(wait),
                ..Refused::new(
                    429,
                    "rate_limited",
                    format!(
                        "party {asker} asked the directory more than {} times this minute; \
                         retry in {wait} s",
                        self.directory.per_minute
                    ),
                )
            }));
        }
        if request.party_id != party {
            return Ok(Err(Refused::new(
                400,
                "invalid",
                "the signed request names another party than its path",
            )));
        }
        if let Err(e) = request.check_fresh(now) {
            return Ok(Err(Refused::new(400, "stale", e.to_string())));
        }
        // A request is acceptable for FRESHNESS_SECS either side of its time: a nonce is
        // remembered that long after it is first seen, twice over.
        if !self.store.shared().first_use(
            Scope::Directory,
            &request.nonce,
            now,
            2 * contract::FRESHNESS_SECS,
        )? {
            return Ok(Err(Refused::new(
                400,
                "replay",
                "this directory request was already answered (its nonce was seen)",
            )));
        }
        let key = PartyKey::new("", &party);
        let not_found = |detail: String| {
            Ok(Err(Refused {
                detail,
                ..Refused::new(
                    404,
                    "not_found",
                    format!("party {party} is not in this service's directory"),
                )
            }))
        };
        match self.store.party(&key)? {
            None => return not_found(format!("party {key} is not registered")),
            Some(p) if !p.is_usable() => {
                return not_found(format!(
                    "party {key} is revoked or its account is suspended"
                ))
            }
            Some(_) => {}
        }
        // Newest first: the first current one is the party's certificate; the others still
        // current are in their overlap.
        let mut current = None;
        let mut previous = Vec::new();
        for c in self.store.certificates(&key)? {
            if !c.is_current(now) {
                continue;
            }
            let Ok(parsed) = Certificate::from_der(&c.der) else {
                continue;
            };
            match (&current, c.retired_at) {
                (None, _) => current = Some((parsed, c.registered_at)),
                (Some(_), Some(until)) => previous.push((parsed, until)),
                (Some(_), None) => {}
            }
        }
        let Some((cert, registered_at)) = current else {
            return not_found(format!("party {key} has no current certificate"));
        };
        let answer = Answer::new(&request, &cert, registered_at, &previous);
        let body = answer
            .sign(&self.identity.get())
            .map_err(|e| Failure::Unavailable(format!("cannot sign the directory answer: {e}")))?;
        log::info(
            "directory_answered",
            &[
                ("asker", V::S(&asker.to_string())),
                ("party", V::S(&key.to_string())),
                ("sha256", V::S(&answer.sha256)),
            ],
        );
        Ok(Ok(Response::new(200, contract::CONTENT_TYPE, body)))
    }
}
