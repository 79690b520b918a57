//! Installing a client with an enrolment code (`layersec init --enrol`): fetch the service's
//! signing certificate over TLS, then register our new certificate for our party id, with the
//! code and a request signed by our new key ([`ls_core::enrol`]).
//!
//! ```no_run
//! # fn main() -> ls_core::Result<()> {
//! use ls_client::enrol::{Enroller, EnrolTarget};
//! let g = ls_core::Identity::generate("acme", ls_core::KeyType::EcP256, 825, None)?;
//! let e = Enroller::new(&EnrolTarget::new("https://ls.example:8443/as4"))?;
//! let service_cert = e.service_certificate()?; // compare, or show its fingerprint
//! let enrolled = e.enrol(&g.identity, "acme", "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ", &service_cert,
//!                        ls_core::as4::coordination::DEFAULT_MAX_DOCUMENT_BYTES)?;
//! println!("{} registered ({})", enrolled.party_id, enrolled.outcome);
//! # Ok(()) }
//! ```

use ls_core::enrol::{self as contract, Enrolled, RequestClaims};
use ls_core::error::{Error, Result};
use ls_core::keys::Identity;
use ls_core::transport::{Failover, HttpResponse, HttpsConfig, HttpsTransport, Transport};
use ls_core::Certificate;
use std::time::Duration;

/// Where the service is and how its TLS certificate is trusted (as `[service]` of the
/// configuration says it).
#[derive(Clone, Debug)]
pub struct EnrolTarget {
    /// The AS4 URL (`https://host[:port]/path`); the enrolment URL is derived from it
    /// ([`contract::enrolment_url`]).
    pub service_url: String,
    /// Further nodes of the same service (`[service] urls`): tried in turn when one is down.
    pub urls: Vec<String>,
    /// Trust these certificates (PEM) instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Or: exactly the TLS certificate with this SHA-256.
    pub pinned_sha256: Option<String>,
    pub connect_timeout: Duration,
    /// For each request.
    pub timeout: Duration,
    /// Attempts of the enrolment when the service cannot be reached or is unavailable (each
    /// a new request: new nonce and time, the same key; the service recognises a retry of an
    /// enrolment that went through).
    pub attempts: u32,
    /// Between attempts (doubling).
    pub retry_delay: Duration,
}

impl EnrolTarget {
    pub fn new(service_url: &str) -> EnrolTarget {
        EnrolTarget {
            service_url: service_url.into(),
            urls: Vec::new(),
            ca_pem: None,
            pinned_sha256: None,
            connect_timeout: HttpsConfig::DEFAULT_CONNECT_TIMEOUT,
            timeout: Duration::from_secs(60),
            attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Talks to one service's enrolment endpoint.
#[derive(Debug)]
pub struct Enroller {
    transport: Failover<HttpsTransport>,
    url: String,
    attempts: u32,
    retry_delay: Duration,
}

impl Enroller {
    pub fn new(target: &EnrolTarget) -> Result<Enroller> {
        let url = contract::enrolment_url(&target.service_url)?;
        let mut configs = Vec::new();
        for node in std::iter::once(&target.service_url).chain(&target.urls) {
            let mut c = HttpsConfig::new(contract::enrolment_url(node)?);
            c.ca_pem = target.ca_pem.clone();
            c.pinned_sha256 = target.pinned_sha256.clone();
            c.connect_timeout = target.connect_timeout;
            c.idle_timeout = target.timeout;
            c.max_response_bytes = contract::MAX_RESPONSE_BYTES;
            configs.push(c);
        }
        Ok(Enroller {
            transport: Failover::https(configs)?,
            url,
            attempts: target.attempts.max(1),
            retry_delay: target.retry_delay,
        })
    }

    /// The enrolment URL (of the first node).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The service's signing certificate, as the service states it over the TLS connection.
    pub fn service_certificate(&self) -> Result<Certificate> {
        let r = self.transport.get()?.whole()?;
        if !r.is_success() {
            return Err(not_enrolment(&r));
        }
        Ok(contract::ServiceInfo::read(&r.body)?.1)
    }

    /// Register `identity`'s certificate for `party_id` with `code`; the answer must be signed
    /// by `service_certificate`. Refusals are `Error::Refused` (for good: a wrong, used or
    /// expired code, …) or a transient `Error::HttpStatus` (locked out, unavailable), with the
    /// service's reason and what to do in the message.
    pub fn enrol(
        &self,
        identity: &Identity,
        party_id: &str,
        code: &str,
        service_certificate: &Certificate,
        max_document_bytes: u64,
    ) -> Result<Enrolled> {
        let mut delay = self.retry_delay;
        let mut attempt = 1;
        loop {
            let claims =
                RequestClaims::new(party_id, code, service_certificate, max_document_bytes)?;
            match self.post(identity, &claims, service_certificate) {
                Err(e) if attempt < self.attempts && retry(&e) => {
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn post(
        &self,
        identity: &Identity,
        claims: &RequestClaims,
        service_certificate: &Certificate,
    ) -> Result<Enrolled> {
        let body = contract::build_request(identity, claims)?;
        let r = self
            .transport
            .post(contract::CONTENT_TYPE, &body)?
            .whole()?;
        if r.status != 200 {
            return Err(contract::refusal_error(r.status, &r.body));
        }
        contract::verify_response(&r.body, service_certificate, claims, identity.certificate())
    }
}

/// Worth another attempt: the service not reached, or unavailable for now — not a lockout
/// (429), which lasts minutes.
fn retry(e: &Error) -> bool {
    match e {
        Error::HttpStatus { status, .. } => *status >= 500,
        e => e.is_transient(),
    }
}

/// A `GET` that did not answer enrolment information: an older service, or not a service.
fn not_enrolment(r: &HttpResponse) -> Error {
    if r.status == 404 || r.status == 405 {
        return Error::Refused(format!(
            "the service does not offer enrolment (HTTP {} from its enrolment URL): ask the \
             provider to register the certificate, or for the service's URL",
            r.status
        ));
    }
    contract::refusal_error(r.status, &r.body)
}
