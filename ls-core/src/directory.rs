//! The service's partner directory: what a client and the Messaging Service agree on to look up
//! the certificate the service has registered for a party (`layersec partners fetch`).
//!
//! ```text
//! client                                        service
//!   POST /directory/<party id>   (beside the AS4 path; Content-Type: application/cms)
//!   body: a signed statement (cms::signed, signed by the asker's own identity) of
//!     {"type": "layersec-directory-request", "version": 1, "asker": "acme",
//!      "party_id": "globex", "nonce": "<32 hex digits>", "time": "2026-12-07T07:00:00Z"}
//!                                               checks the asker's signature against the
//!                                               asker's registered certificates, the time
//!                                               (± FRESHNESS_SECS) and the nonce (once)
//!   200 application/cms: a signed statement, signed by the service's identity, of
//!     {"type": "layersec-directory-answer", "version": 1, "asker": "acme",
//!      "party_id": "globex", "nonce": "<the request's>", "time": "…",
//!      "certificate_pem": "-----BEGIN CERTIFICATE-----…", "sha256": "…",
//!      "registered_at": "…",
//!      "previous": [{"certificate_pem": "…", "sha256": "…", "until": "…"}]}
//!   403 text/plain  the request could not be authenticated (uniform)
//!   404 text/plain  no such party in the directory (unknown, revoked or suspended alike)
//!   429 text/plain  too many requests (Retry-After)
//! ```
//!
//! The answer binds the party id, the certificate, the asker, the request's nonce and the time
//! under the service's signature; the client checks it against the service certificate it
//! already trusts (`[service] service_certificate`), so an old answer cannot be replayed to it
//! and an answer for another party cannot be passed off.

use crate::bytes;
use crate::cert::Certificate;
use crate::cms::signed::{peek_statement, sign_statement, verify_statement};
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::time;
use serde::{Deserialize, Serialize};

/// The path segment of the directory, beside the AS4 path (`https://h/as4` →
/// `https://h/directory/<party id>`).
pub const PATH_SEGMENT: &str = "directory";
/// The Content-Type of requests and answers (RFC 7193).
pub const CONTENT_TYPE: &str = "application/cms";
/// The largest request the service reads.
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;
/// The largest answer the client reads.
pub const MAX_ANSWER_BYTES: u64 = 256 << 10;
/// How far a request's or an answer's time may be from the reader's clock, in seconds.
pub const FRESHNESS_SECS: i64 = 600;
/// The `type` of a request.
pub const REQUEST_TYPE: &str = "layersec-directory-request";
/// The `type` of an answer.
pub const ANSWER_TYPE: &str = "layersec-directory-answer";
/// The version of both.
pub const VERSION: u32 = 1;

/// The directory URL of `party_id` for a service whose AS4 endpoint is `service_url`: the
/// same scheme and authority, `directory/<party id, percent-encoded>` beside the AS4 path.
pub fn directory_url(service_url: &str, party_id: &str) -> Result<String> {
    Ok(format!(
        "{}/{}",
        crate::enrol::beside_as4(service_url, PATH_SEGMENT)?,
        bytes::percent_encode(party_id, b"-._~")
    ))
}

/// The party id a directory path names (`/directory/<id>` or `/<prefix>/directory/<id>`,
/// percent-decoded), `None` when the path is not the directory's.
pub fn party_of_path(path: &str) -> Option<String> {
    let marker = format!("/{PATH_SEGMENT}/");
    let i = path.rfind(&marker)?;
    let id = &path[i + marker.len()..];
    let id = String::from_utf8(bytes::percent_decode_strict(id)?).ok()?;
    check_party_id(&id).ok()?;
    Some(id)
}

/// A party id as the directory takes it: 1 to 255 characters, no control characters.
pub fn check_party_id(id: &str) -> Result<()> {
    if id.is_empty() || id.chars().count() > 255 || id.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "a party id is 1 to 255 characters without control characters".into(),
        ));
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(content: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(content)
        .map_err(|e| Error::Malformed(format!("{what} is not what the directory exchanges: {e}")))
}

fn check_form(t: &str, version: u32, want: &str, what: &str) -> Result<()> {
    if t != want || version != VERSION {
        return Err(Error::Malformed(format!(
            "{what} is a {t:?} of version {version}, not a {want:?} of version {VERSION}"
        )));
    }
    Ok(())
}

/// A directory request: who asks, for which party, when, and a nonce the answer must echo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// [`REQUEST_TYPE`].
    pub r#type: String,
    /// [`VERSION`].
    pub version: u32,
    /// The asking party: its identity signs the request.
    pub asker: String,
    /// The party whose certificate is asked for.
    pub party_id: String,
    /// 16 random bytes, hex.
    pub nonce: String,
    /// When the request was made (ISO 8601, UTC).
    pub time: String,
}

impl Request {
    /// A new request of `asker` for `party_id`, with a fresh nonce and the time now.
    pub fn new(asker: &str, party_id: &str) -> Result<Request> {
        check_party_id(asker)?;
        check_party_id(party_id)?;
        let mut nonce = [0u8; 16];
        openssl::rand::rand_bytes(&mut nonce)
            .map_err(|e| Error::Internal(format!("no random bytes: {e}")))?;
        Ok(Request {
            r#type: REQUEST_TYPE.into(),
            version: VERSION,
            asker: asker.into(),
            party_id: party_id.into(),
            nonce: bytes::hex(&nonce),
            time: time::iso8601(time::now_unix()),
        })
    }

    /// The request signed by the asker's identity: the body to POST.
    pub fn sign(&self, asker: &Identity) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        sign_statement(&json, asker)
    }

    /// What a request body says, NOT verified: whom to verify it against.
    pub fn peek(body: &[u8]) -> Result<Request> {
        Self::checked(&peek_statement(body)?)
    }

    /// The request, verified against the asker's certificates.
    pub fn verify(body: &[u8], asker_certificates: &[Certificate]) -> Result<Request> {
        Self::checked(&verify_statement(body, asker_certificates)?.content)
    }

    fn checked(content: &[u8]) -> Result<Request> {
        let r: Request = read_json(content, "the directory request")?;
        check_form(&r.r#type, r.version, REQUEST_TYPE, "the directory request")?;
        check_party_id(&r.asker)?;
        check_party_id(&r.party_id)?;
        if r.nonce.len() != 32 || !r.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Malformed(
                "the directory request's nonce is not 32 hex digits".into(),
            ));
        }
        Ok(r)
    }

    /// `Err` unless the request's time is within [`FRESHNESS_SECS`] of `now`.
    pub fn check_fresh(&self, now: i64) -> Result<()> {
        fresh(&self.time, now, "the directory request")
    }
}

fn fresh(t: &str, now: i64, what: &str) -> Result<()> {
    let t = time::parse_date_time(t)
        .ok_or_else(|| Error::Malformed(format!("{what}'s time is not an ISO 8601 time")))?;
    if (now - t).abs() > FRESHNESS_SECS {
        return Err(Error::BadSignature(format!(
            "{what} was made at {}, more than {FRESHNESS_SECS} s from this clock ({})",
            time::iso8601(t),
            time::iso8601(now)
        )));
    }
    Ok(())
}

/// A certificate the service still accepts from the party until a time (a replacement's
/// overlap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousCertificate {
    pub certificate_pem: String,
    pub sha256: String,
    pub until: String,
}

/// The service's answer: the party's registered certificate, bound to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// [`ANSWER_TYPE`].
    pub r#type: String,
    /// [`VERSION`].
    pub version: u32,
    /// The request's.
    pub asker: String,
    /// The request's.
    pub party_id: String,
    /// The request's.
    pub nonce: String,
    /// When the service answered.
    pub time: String,
    /// The party's current certificate (the one registered last).
    pub certificate_pem: String,
    /// Its SHA-256 (lower-case hex).
    pub sha256: String,
    /// When it was registered.
    pub registered_at: String,
    /// Earlier certificates the service still accepts from the party, until when.
    #[serde(default)]
    pub previous: Vec<PreviousCertificate>,
}

/// An answer that verified and answers our request.
#[derive(Clone, Debug)]
pub struct Entry {
    pub party_id: String,
    pub certificate: Certificate,
    /// Unix seconds.
    pub registered_at: i64,
    /// Certificates the service still accepts from the party, with until when (Unix seconds).
    pub previous: Vec<(Certificate, i64)>,
    /// When the service answered (Unix seconds).
    pub answered_at: i64,
}

impl Answer {
    /// The answer to `request`: `current` registered at `registered_at`, and the earlier
    /// certificates still accepted until their times.
    pub fn new(
        request: &Request,
        current: &Certificate,
        registered_at: i64,
        previous: &[(Certificate, i64)],
    ) -> Answer {
        let pem = |c: &Certificate| String::from_utf8_lossy(&c.to_pem()).into_owned();
        Answer {
            r#type: ANSWER_TYPE.into(),
            version: VERSION,
            asker: request.asker.clone(),
            party_id: request.party_id.clone(),
            nonce: request.nonce.clone(),
            time: time::iso8601(time::now_unix()),
            certificate_pem: pem(current),
            sha256: current.sha256_fingerprint(),
            registered_at: time::iso8601(registered_at),
            previous: previous
                .iter()
                .map(|(c, until)| PreviousCertificate {
                    certificate_pem: pem(c),
                    sha256: c.sha256_fingerprint(),
                    until: time::iso8601(*until),
                })
                .collect(),
        }
    }

    /// The answer signed by the service's identity: the body of the 200 response.
    pub fn sign(&self, service: &Identity) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        sign_statement(&json, service)
    }

    /// Verify an answer body against the service certificate and check that it answers
    /// `request`: signed by `service_certificate` (`SignerMismatch`, `BadSignature`,
    /// `DigestMismatch`), for our asker, party and nonce, made within [`FRESHNESS_SECS`] of
    /// now (`BadSignature`: an answer to another request, or replayed), with a certificate
    /// whose SHA-256 it states (`Malformed`).
    pub fn verify(
        body: &[u8],
        service_certificate: &Certificate,
        request: &Request,
    ) -> Result<Entry> {
        let v = verify_statement(body, std::slice::from_ref(service_certificate))?;
        let a: Answer = read_json(&v.content, "the directory answer")?;
        check_form(&a.r#type, a.version, ANSWER_TYPE, "the directory answer")?;
        for (what, got, want) in [
            ("nonce", &a.nonce, &request.nonce),
            ("party", &a.party_id, &request.party_id),
            ("asker", &a.asker, &request.asker),
        ] {
            if got != want {
                return Err(Error::BadSignature(format!(
                    "the service's signed answer is not the answer to this request (its {what} \
                     differs): replayed or misdirected"
                )));
            }
        }
        let now = time::now_unix();
        fresh(&a.time, now, "the directory answer")?;
        let cert = |pem: &str, sha: &str| -> Result<Certificate> {
            let c = Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                Error::Malformed(format!("the directory answer's certificate: {e}"))
            })?;
            if c.sha256_fingerprint() != sha.to_ascii_lowercase() {
                return Err(Error::Malformed(
                    "the directory answer's certificate is not the one whose SHA-256 it states"
                        .into(),
                ));
            }
            Ok(c)
        };
        let time_of = |t: &str, what: &str| {
            time::parse_date_time(t).ok_or_else(|| {
                Error::Malformed(format!(
                    "the directory answer's {what} is not an ISO 8601 time"
                ))
            })
        };
        let mut previous = Vec::new();
        for p in &a.previous {
            previous.push((
                cert(&p.certificate_pem, &p.sha256)?,
                time_of(&p.until, "until")?,
            ));
        }
        Ok(Entry {
            party_id: a.party_id.clone(),
            certificate: cert(&a.certificate_pem, &a.sha256)?,
            registered_at: time_of(&a.registered_at, "registered_at")?,
            previous,
            answered_at: time_of(&a.time, "time")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::keys::KeyType;

    fn id(name: &str) -> Identity {
        Identity::generate(name, KeyType::EcP256, 2, None)
            .unwrap()
            .identity
    }

    #[test]
    fn the_directory_is_beside_the_as4_path() {
        for (svc, want) in [
            (
                "https://ls.example:8443/as4",
                "https://ls.example:8443/directory/globex",
            ),
            (
                "https://ls.example/x/as4?a=b",
                "https://ls.example/x/directory/globex",
            ),
            ("https://ls.example", "https://ls.example/directory/globex"),
        ] {
            assert_eq!(directory_url(svc, "globex").unwrap(), want);
        }
        let u = directory_url("https://h/as4", "a b/c").unwrap();
        assert_eq!(u, "https://h/directory/a%20b%2Fc");
        assert_eq!(
            party_of_path("/directory/a%20b%2Fc").as_deref(),
            Some("a b/c")
        );
        assert_eq!(party_of_path("/directory/").as_deref(), None);
        assert_eq!(party_of_path("/directory/%0a").as_deref(), None);
        assert_eq!(party_of_path("/as4").as_deref(), None);
        assert!(directory_url("ls.example", "x").is_err());
    }

    #[test]
    fn a_signed_answer_verifies_and_binds_the_request() {
        let acme = id("acme");
        let svc = id("service");
        let globex = id("globex");
        let old = id("globex");
        let req = Request::new("acme", "globex").unwrap();
        let body = req.sign(&acme).unwrap();
        assert_eq!(Request::peek(&body).unwrap(), req);
        assert_eq!(
            Request::verify(&body, &[acme.certificate().clone()]).unwrap(),
            req
        );
        assert_eq!(
            Request::verify(&body, &[svc.certificate().clone()])
                .unwrap_err()
                .code(),
            ErrorCode::SignerMismatch
        );
        req.check_fresh(time::now_unix()).unwrap();
        assert!(req.check_fresh(time::now_unix() + 3600).is_err());

        let until = time::now_unix() + 3600;
        let a = Answer::new(
            &req,
            globex.certificate(),
            1_800_000_000,
            &[(old.certificate().clone(), until)],
        );
        let signed = a.sign(&svc).unwrap();
        let e = Answer::verify(&signed, svc.certificate(), &req).unwrap();
        assert_eq!(e.party_id, "globex");
        assert_eq!(e.certificate, *globex.certificate());
        assert_eq!(e.registered_at, 1_800_000_000);
        assert_eq!(e.previous, vec![(old.certificate().clone(), until)]);
        // Signed by anyone else: refused.
        let forged = a.sign(&globex).unwrap();
        assert_eq!(
            Answer::verify(&forged, svc.certificate(), &req)
                .unwrap_err()
                .code(),
            ErrorCode::SignerMismatch
        );
        // An answer to another request (a replay): refused.
        let other = Request::new("acme", "globex").unwrap();
        let e = Answer::verify(&signed, svc.certificate(), &other).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadSignature);
        assert!(e.to_string().contains("nonce"), "{e}");
        // For another party, under our nonce.
        let mut wrong = a.clone();
        wrong.party_id = "initech".into();
        let e = Answer::verify(&wrong.sign(&svc).unwrap(), svc.certificate(), &req).unwrap_err();
        assert!(e.to_string().contains("party"), "{e}");
        // A certificate that is not the one whose fingerprint it states.
        let mut lying = a.clone();
        lying.sha256 = old.certificate().sha256_fingerprint();
        let e = Answer::verify(&lying.sign(&svc).unwrap(), svc.certificate(), &req).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Malformed);
        // An old answer.
        let mut stale = a.clone();
        stale.time = time::iso8601(time::now_unix() - 2 * FRESHNESS_SECS);
        let e = Answer::verify(&stale.sign(&svc).unwrap(), svc.certificate(), &req).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadSignature);
        // A request is not an answer.
        let e = Answer::verify(&body, acme.certificate(), &req).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Malformed);
    }
}
