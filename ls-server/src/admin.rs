//! The provider's operations — subscriber accounts, party registration ("installations"),
//! certificate replacement, revocation, suspension, listings and the usage report — shared by
//! the `layersec-server admin` command line and the admin HTTP API.

use crate::http::{Handler, Request, Response};
use crate::store::{
    AccountStatus, MessageRecord, NewParty, NewSubscriber, Party, PartyKey, Store, StoreError,
    Subscriber, Usage,
};
use ls_core::as4::coordination::{self, DEFAULT_MAX_DOCUMENT_BYTES};
use ls_core::as4::exchange::party_mpc;
use ls_core::asn1::{self, tag};
use ls_core::time::{iso8601, now_unix};
use ls_core::{Certificate, ErrorCode, ErrorReport};
use serde_json::{json, Value};
use std::sync::Arc;

/// An admin failure: the message is for the operator.
#[derive(Debug)]
pub struct AdminError {
    /// HTTP status for the API (400 bad input, 404 unknown, 409 conflict, 500 store).
    pub status: u16,
    pub message: String,
}

impl AdminError {
    /// The error object of the admin API. The HTTP status says more than the code: 400 bad
    /// input, 404 unknown and 409 conflict are all `LS_ERR_INVALID_ARGUMENT` (the request
    /// names what cannot be done), 401 is `LS_ERR_BAD_PASSWORD` (the token), a store failure
    /// (5xx) `LS_ERR_INTERNAL`, transient.
    pub fn report(&self) -> ErrorReport {
        let code = match self.status {
            401 => ErrorCode::BadPassword,
            400..=499 => ErrorCode::InvalidArgument,
            _ => ErrorCode::Internal,
        };
        ErrorReport {
            transient: self.status >= 500,
            ..ErrorReport::new(code, self.message.clone())
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad(m: impl Into<String>) -> AdminError {
    AdminError {
        status: 400,
        message: m.into(),
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound(_) => 404,
            StoreError::Conflict(_) => 409,
            StoreError::Invalid(_) => 400,
            _ => 500,
        };
        AdminError {
            status,
            message: e.to_string(),
        }
    }
}

pub type AdminResult<T> = std::result::Result<T, AdminError>;

pub fn subscriber_json(s: &Subscriber) -> Value {
    json!({
        "id": s.id,
        "organisation": s.organisation,
        "contact": s.contact,
        "contract_ref": s.contract_ref,
        "plan": s.plan,
        "status": s.status.as_str(),
        "created_at": iso8601(s.created_at),
    })
}

pub fn party_json(p: &Party, certs: &[crate::store::PartyCert]) -> Value {
    let now = now_unix();
    json!({
        "party_id": p.key.id,
        "party_type": p.key.ptype,
        "subscriber_id": p.subscriber_id,
        "status": p.status.as_str(),
        "account_status": p.account_status.as_str(),
        "mpc": p.mpc,
        "created_at": iso8601(p.created_at),
        "revoked_at": p.revoked_at.map(iso8601),
        "max_document_bytes": p.max_document_bytes,
        "max_message_bytes": coordination::message_limit_for(p.max_document_bytes),
        "mail_address": p.mail_address,
        "certificates": certs.iter().map(|c| {
            let cert = Certificate::from_der(&c.der).ok();
            json!({
                "sha256": c.fingerprint,
                "subject": cert.as_ref().map(|c| c.subject().to_string()),
                "not_after": cert.as_ref().map(|c| iso8601(c.not_after())),
                "registered_at": iso8601(c.registered_at),
                "retired_at": c.retired_at.map(iso8601),
                "current": c.is_current(now),
            })
        }).collect::<Vec<_>>(),
    })
}

/// A document limit: at least 1 byte, and no more than the store can hold.
fn check_limit(n: u64) -> AdminResult<()> {
    if n == 0 || i64::try_from(n).is_err() {
        return Err(bad(format!(
            "max_document_bytes = {n}: expected a number of bytes from 1 to {} (default {})",
            i64::MAX,
            DEFAULT_MAX_DOCUMENT_BYTES
        )));
    }
    Ok(())
}

fn check_text(name: &str, v: &str, max: usize) -> AdminResult<()> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{name}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

pub fn message_json(m: &MessageRecord) -> Value {
    json!({
        "message_id": m.message_id,
        "from": m.sender.to_string(),
        "to": m.recipient.to_string(),
        "state": m.state,
        "size": m.size,
        "received_at": iso8601(m.received_at),
        "attempts": m.attempts,
        "delivered_at": m.delivered_at.map(iso8601),
        "failure_class": m.refusal.as_ref().map(|r| r.class.clone()),
        "refusal_notice_id": m.refusal.as_ref().map(|r| r.notice_id.clone()),
        "refused_at": m.refusal.as_ref().map(|r| iso8601(r.at)),
        "receipt_message_id": m.receipt_returned.as_ref().map(|r| r.receipt_id.clone()),
        "receipt_returned_at": m.receipt_returned.as_ref().map(|r| iso8601(r.at)),
    })
}

/// How [`check_party_certificate`] judges a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CertificatePolicy {
    /// Register a CA certificate (basicConstraints CA:TRUE or keyUsage keyCertSign) anyway.
    pub allow_ca: bool,
}

/// A certificate a party registers: parseable, currently valid, allowed to sign, and an
/// end-entity certificate unless the operator forces it.
pub fn check_party_certificate(
    pem_or_der: &[u8],
    policy: CertificatePolicy,
) -> AdminResult<Certificate> {
    let c = Certificate::from_bytes(pem_or_der)
        .map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
    c.check_validity(now_unix())
        .map_err(|e| bad(format!("the certificate cannot be registered: {e}")))?;
    c.check_key_usage(
        ls_core::cert::key_usage::DIGITAL_SIGNATURE | ls_core::cert::key_usage::NON_REPUDIATION,
        "signing",
    )
    .map_err(|e| bad(format!("the certificate cannot be registered: {e}")))?;
    let ca = ca_marks(&c).map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
    if !ca.is_empty() && !policy.allow_ca {
        return Err(bad(format!(
            "the certificate is a CA certificate ({}): parties sign messages with end-entity \
             certificates, and some AS4 gateways refuse messages signed with a CA certificate. \
             Register an end-entity certificate (`layersec keygen` makes one; `openssl req \
             -x509` needs `-addext basicConstraints=critical,CA:FALSE`), or register this one \
             anyway with --allow-ca-certificate (admin API: \"allow_ca_certificate\": true)",
            ca.join(", ")
        )));
    }
    Ok(c)
}

/// What makes a certificate a CA certificate: `basicConstraints CA:TRUE`, `keyUsage
/// keyCertSign` (empty for an end-entity certificate). Read from the DER (rust-openssl has no
/// accessor for basicConstraints).
fn ca_marks(c: &Certificate) -> ls_core::Result<Vec<&'static str>> {
    const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13]; // 2.5.29.19
    let mut marks = Vec::new();
    let cert = asn1::parse_single(c.der())?.expect(tag::SEQUENCE, "Certificate")?;
    let tbs = cert.children()?.expect(tag::SEQUENCE, "tbsCertificate")?;
    let mut fields = tbs.children()?;
    while let Some(field) = fields.next()? {
        if field.tag != tag::ctx(3) {
            continue;
        }
        let exts = field.children()?.expect(tag::SEQUENCE, "extensions")?;
        let mut exts = exts.children()?;
        while let Some(ext) = exts.next()? {
            let mut e = ext.children()?;
            let id = e.expect(tag::OID, "extnID")?;
            e.optional(tag::BOOLEAN)?;
            let value = e.expect(tag::OCTET_STRING, "extnValue")?;
            if id.content == BASIC_CONSTRAINTS {
                let bc =
                    asn1::parse_single(value.content)?.expect(tag::SEQUENCE, "basicConstraints")?;
                // cA BOOLEAN DEFAULT FALSE (absent in DER when false).
                if let Some(ca) = bc.children()?.optional(tag::BOOLEAN)? {
                    if ca.content.iter().any(|b| *b != 0) {
                        marks.push("basicConstraints CA:TRUE");
                    }
                }
            }
        }
    }
    if c.key_usage()
        .is_some_and(|ku| ku & ls_core::cert::key_usage::KEY_CERT_SIGN != 0)
    {
        marks.push("keyUsage keyCertSign");
    }
    Ok(marks)
}

/// A party to register (the command line's `party add`, the API's `POST /admin/parties`).
#[derive(Clone, Debug)]
pub struct PartyRegistration {
    pub subscriber_id: i64,
    pub key: PartyKey,
    /// PEM or DER.
    pub certificate: Vec<u8>,
    pub max_document_bytes: u64,
    pub certificate_policy: CertificatePolicy,
    /// Where the service's e-mail gateway sends the party's messages (`None`: it pulls over
    /// HTTPS).
    pub mail_address: Option<String>,
}

pub struct Admin {
    pub store: Arc<dyn Store>,
}

impl Admin {
    pub fn create_subscriber(&self, s: &NewSubscriber) -> AdminResult<Value> {
        if s.organisation.trim().is_empty() {
            return Err(bad("organisation: required"));
        }
        check_text("organisation", &s.organisation, 200)?;
        check_text("contact", &s.contact, 200)?;
        check_text("contract_ref", &s.contract_ref, 100)?;
        check_text("plan", &s.plan, 50)?;
        Ok(subscriber_json(
            &self.store.create_subscriber(s, now_unix())?,
        ))
    }

    pub fn subscribers(&self) -> AdminResult<Value> {
        Ok(Value::Array(
            self.store
                .subscribers()?
                .iter()
                .map(subscriber_json)
                .collect(),
        ))
    }

    pub fn set_status(&self, id: i64, suspended: bool) -> AdminResult<Value> {
        let status = if suspended {
            AccountStatus::Suspended
        } else {
            AccountStatus::Active
        };
        self.store.set_account_status(id, status)?;
        let s = self
            .store
            .subscriber(id)?
            .ok_or_else(|| AdminError::from(StoreError::NotFound(format!("subscriber {id}"))))?;
        Ok(subscriber_json(&s))
    }

    pub fn register_party(&self, r: &PartyRegistration) -> AdminResult<Value> {
        let key = &r.key;
        if key.id.is_empty() {
            return Err(bad("party_id: required"));
        }
        check_text("party_id", &key.id, 255)?;
        check_text("party_type", &key.ptype, 255)?;
        if key.id == coordination::SERVICE_PARTY {
            return Err(bad(format!(
                "party_id: {} is the service's own name (its key's certificate updates)",
                coordination::SERVICE_PARTY
            )));
        }
        check_limit(r.max_document_bytes)?;
        if let Some(a) = &r.mail_address {
            crate::store::check_mail_address(a).map_err(bad)?;
        }
        let cert = check_party_certificate(&r.certificate, r.certificate_policy)?;
        self.not_registered_elsewhere(&cert, key)?;
        let mpc = party_mpc(&key.id);
        let p = self.store.register_party(
            &NewParty {
                subscriber_id: r.subscriber_id,
                key,
                mpc: &mpc,
                cert_der: cert.der(),
                fingerprint: &cert.sha256_fingerprint(),
                max_document_bytes: r.max_document_bytes,
                mail_address: r.mail_address.as_deref(),
            },
            now_unix(),
        )?;
        let certs = self.store.certificates(key)?;
        Ok(party_json(&p, &certs))
    }

    pub fn replace_certificate(
        &self,
        key: &PartyKey,
        cert_pem: &[u8],
        overlap_hours: u64,
        policy: CertificatePolicy,
    ) -> AdminResult<Value> {
        self.hinted(key, || {
            self.replace_certificate_of(key, cert_pem, overlap_hours, policy)
        })
    }

    fn replace_certificate_of(
        &self,
        key: &PartyKey,
        cert_pem: &[u8],
        overlap_hours: u64,
        policy: CertificatePolicy,
    ) -> AdminResult<Value> {
        let cert = check_party_certificate(cert_pem, policy)?;
        self.not_registered_elsewhere(&cert, key)?;
        let now = now_unix();
        self.store.replace_certificate(
            key,
            cert.der(),
            &cert.sha256_fingerprint(),
            now.saturating_add((overlap_hours.min(i64::MAX as u64 / 3600) as i64) * 3600),
            now,
        )?;
        self.party(key)
    }

    /// Change the largest document a party accepts (pushes to it above
    /// `coordination::message_limit_for` that are refused).
    pub fn set_limit(&self, key: &PartyKey, max_document_bytes: u64) -> AdminResult<Value> {
        check_limit(max_document_bytes)?;
        self.hinted(key, || {
            self.store.set_party_limit(key, max_document_bytes)?;
            self.party(key)
        })
    }

    /// Set or clear (`None`) the mail address the service's e-mail gateway sends the party's
    /// messages to.
    pub fn set_mail_address(&self, key: &PartyKey, address: Option<&str>) -> AdminResult<Value> {
        if let Some(a) = address {
            crate::store::check_mail_address(a).map_err(bad)?;
        }
        self.hinted(key, || {
            self.store.set_party_mail_address(key, address)?;
            self.party(key)
        })
    }

    /// Make a revoked party active again, with its certificates as they were or with a new
    /// one that replaces them at once.
    pub fn reinstate(
        &self,
        key: &PartyKey,
        cert_pem: Option<&[u8]>,
        policy: CertificatePolicy,
    ) -> AdminResult<Value> {
        self.hinted(key, || self.reinstate_party(key, cert_pem, policy))
    }

    fn reinstate_party(
        &self,
        key: &PartyKey,
        cert_pem: Option<&[u8]>,
        policy: CertificatePolicy,
    ) -> AdminResult<Value> {
        let cert = match cert_pem {
            Some(pem) => {
                let c = check_party_certificate(pem, policy)?;
                self.not_registered_elsewhere(&c, key)?;
                Some(c)
            }
            None => None,
        };
        if cert.is_none() {
            // Refused before anything changes: a party without a usable certificate could
            // neither send nor pull.
            let now = now_unix();
            let usable = self.store.certificates(key)?.iter().any(|c| {
                c.is_current(now)
                    && Certificate::from_der(&c.der).is_ok_and(|x| x.check_validity(now).is_ok())
            });
            if self.store.party(key)?.is_some() && !usable {
                return Err(AdminError {
                    status: 409,
                    message: format!(
                        "party {key} has no current, valid certificate: reinstate it with a new \
                         one (--certificate F; admin API: \"certificate_pem\")"
                    ),
                });
            }
        }
        let fp = cert.as_ref().map(Certificate::sha256_fingerprint);
        let new_cert = cert
            .as_ref()
            .zip(fp.as_deref())
            .map(|(c, fp)| (c.der(), fp));
        self.store.reinstate_party(key, new_cert, now_unix())?;
        self.party(key)
    }

    pub fn messages(&self, party: Option<&PartyKey>, limit: u32) -> AdminResult<Value> {
        Ok(Value::Array(
            self.store
                .messages(party, limit)?
                .iter()
                .map(message_json)
                .collect(),
        ))
    }

    /// One certificate identifies one party: the service finds the party a receipt or a pull
    /// comes from by its signer.
    fn not_registered_elsewhere(&self, cert: &Certificate, key: &PartyKey) -> AdminResult<()> {
        let owners = self
            .store
            .parties_by_fingerprint(&cert.sha256_fingerprint())?;
        match owners.iter().find(|p| p.key != *key) {
            Some(other) => Err(AdminError {
                status: 409,
                message: format!(
                    "this certificate is registered for party {} already; each party needs its own",
                    other.key
                ),
            }),
            None => Ok(()),
        }
    }

    pub fn revoke(&self, key: &PartyKey) -> AdminResult<Value> {
        self.hinted(key, || {
            self.store.revoke_party(key, now_unix())?;
            self.party(key)
        })
    }

    pub fn party(&self, key: &PartyKey) -> AdminResult<Value> {
        self.hinted(key, || {
            let p = self
                .store
                .party(key)?
                .ok_or_else(|| AdminError::from(StoreError::NotFound(format!("party {key}"))))?;
            Ok(party_json(&p, &self.store.certificates(key)?))
        })
    }

    /// `op` on a party; when it is not found under a key without a type while parties of that
    /// id are registered with a type (a PartyId type is part of the key: such a party is found
    /// only with it), the message names the types to give.
    fn hinted(
        &self,
        key: &PartyKey,
        op: impl FnOnce() -> AdminResult<Value>,
    ) -> AdminResult<Value> {
        op().map_err(|mut e| {
            if e.status != 404 || !key.ptype.is_empty() || e.message.contains("--party-type") {
                return e;
            }
            let typed: Vec<String> = self
                .store
                .parties(None)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.key.id == key.id && !p.key.ptype.is_empty())
                .map(|p| format!("--party-type {}", p.key.ptype))
                .collect();
            if !typed.is_empty() {
                e.message.push_str(&format!(
                    "; {} is registered with a party type: name it with {} (admin API: \
                     \"party_type\")",
                    key.id,
                    typed.join(" or ")
                ));
            }
            e
        })
    }

    pub fn parties(&self, subscriber: Option<i64>) -> AdminResult<Value> {
        let mut out = Vec::new();
        for p in self.store.parties(subscriber)? {
            let certs = self.store.certificates(&p.key)?;
            out.push(party_json(&p, &certs));
        }
        Ok(Value::Array(out))
    }

    pub fn usage(&self, from: i64, to: i64) -> AdminResult<Vec<Usage>> {
        if to <= from {
            return Err(bad("the period is empty: `to` must be after `from`"));
        }
        Ok(self.store.usage(from, to)?)
    }
}

pub fn usage_json(from: i64, to: i64, rows: &[Usage]) -> Value {
    json!({
        "from": iso8601(from),
        "to": iso8601(to),
        "accounts": rows.iter().map(|u| json!({
            "subscriber_id": u.subscriber_id,
            "organisation": u.organisation,
            "sent_messages": u.sent_messages,
            "sent_bytes": u.sent_bytes,
            "received_messages": u.received_messages,
            "received_bytes": u.received_bytes,
            "coordination_sent_messages": u.coordination_sent_messages,
            "coordination_sent_bytes": u.coordination_sent_bytes,
            "coordination_received_messages": u.coordination_received_messages,
            "coordination_received_bytes": u.coordination_received_bytes,
        })).collect::<Vec<_>>(),
    })
}

/// The usage report as CSV: the document columns as before, then the co-ordination ones.
pub fn usage_csv(from: i64, to: i64, rows: &[Usage]) -> String {
    let mut s = String::from(
        "subscriber_id,organisation,period_from,period_to,sent_messages,sent_bytes,\
         received_messages,received_bytes,coordination_sent_messages,coordination_sent_bytes,\
         coordination_received_messages,coordination_received_bytes\n",
    );
    for u in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            u.subscriber_id,
            csv_field(&u.organisation),
            iso8601(from),
            iso8601(to),
            u.sent_messages,
            u.sent_bytes,
            u.received_messages,
            u.received_bytes,
            u.coordination_sent_messages,
            u.coordination_sent_bytes,
            u.coordination_received_messages,
            u.coordination_received_bytes
        ));
    }
    s
}

fn csv_field(s: &str) -> String {
    // Quote always; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `YYYY-MM-DD` (start of that day, UTC; [`ls_core::time::parse_date`]) or a Unix time.
pub fn parse_day(s: &str) -> AdminResult<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| ls_core::time::parse_date(s))
        .ok_or_else(|| bad(format!("{s:?}: expected YYYY-MM-DD")))
}

/// The admin HTTP API. Every request needs `Authorization: Bearer <token>`.
pub struct AdminApi {
    pub admin: Admin,
    pub token: String,
    /// The service's Prometheus text, served as `GET /metrics` behind the token.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::new(
        status,
        "application/json",
        format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()).into_bytes(),
    )
}

/// `{"error": {code, name, family, message, transient}}`: the one error object of Layer
/// Security (`ls_core::ErrorReport`), with the HTTP status as before.
fn error_response(e: AdminError) -> Response {
    let report = e.report();
    json_response(e.status, &json!({ "error": report }))
}

fn query_param<'a>(q: &'a str, name: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// An optional non-negative integer field: absent or null is `None`, anything else but a
/// number is refused (a limit is never silently replaced by its default).
fn opt_u64(v: &Value, key: &str) -> AdminResult<Option<u64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key}: a whole number of bytes"))),
    }
}

/// An optional whole number: absent or null is `None`, anything else but a number is refused.
fn opt_number(v: &Value, key: &str) -> AdminResult<Option<u64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key}: a whole number"))),
    }
}

/// `mail_address`: a string, or null / absent (none).
fn opt_mail_address(v: &Value) -> AdminResult<Option<String>> {
    match v.get("mail_address") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(a)) => Ok(Some(a.clone())),
        Some(_) => Err(bad("mail_address: a mail address (local@domain) or null")),
    }
}

/// `allow_ca_certificate` (optional, default false).
fn cert_policy(v: &Value) -> AdminResult<CertificatePolicy> {
    let allow_ca = match v.get("allow_ca_certificate") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("allow_ca_certificate: true or false")),
    };
    Ok(CertificatePolicy { allow_ca })
}

/// A query string value: `+` is a space, `%XX` a byte (a malformed escape is kept as is).
fn url_decode(v: &str) -> String {
    String::from_utf8_lossy(&ls_core::bytes::percent_decode(&v.replace('+', " "))).into_owned()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

impl AdminApi {
    fn route(&self, req: &Request) -> AdminResult<Response> {
        let body = || -> AdminResult<Value> {
            serde_json::from_slice(&req.body).map_err(|e| bad(format!("the body is not JSON: {e}")))
        };
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let key_of = |v: &Value| PartyKey::new(&s(v, "party_type"), &s(v, "party_id"));
        let a = &self.admin;
        let v = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/metrics") => {
                let text = self.metrics.as_ref().map(|m| m()).unwrap_or_default();
                return Ok(Response::new(
                    200,
                    "text/plain; version=0.0.4",
                    text.into_bytes(),
                ));
            }
            ("GET", "/admin/subscribers") => a.subscribers()?,
            ("POST", "/admin/subscribers") => {
                let b = body()?;
                return Ok(json_response(
                    201,
                    &a.create_subscriber(&NewSubscriber {
                        organisation: s(&b, "organisation"),
                        contact: s(&b, "contact"),
                        contract_ref: s(&b, "contract_ref"),
                        plan: s(&b, "plan"),
                    })?,
                ));
            }
            ("POST", "/admin/subscribers/suspend") | ("POST", "/admin/subscribers/resume") => {
                let b = body()?;
                let id = b
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| bad("id: a subscriber id is required"))?;
                a.set_status(id, req.path.ends_with("suspend"))?
            }
            ("GET", "/admin/parties") => {
                let sub = query_param(&req.query, "subscriber")
                    .map(|v| v.parse::<i64>().map_err(|_| bad("subscriber: a number")))
                    .transpose()?;
                a.parties(sub)?
            }
            ("POST", "/admin/parties") => {
                let b = body()?;
                let sub = b
                    .get("subscriber_id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| bad("subscriber_id: required"))?;
                return Ok(json_response(
                    201,
                    &a.register_party(&PartyRegistration {
                        subscriber_id: sub,
                        key: key_of(&b),
                        certificate: s(&b, "certificate_pem").into_bytes(),
                        max_document_bytes: opt_u64(&b, "max_document_bytes")?
                            .unwrap_or(DEFAULT_MAX_DOCUMENT_BYTES),
                        certificate_policy: cert_policy(&b)?,
                        mail_address: opt_mail_address(&b)?,
                    })?,
                ));
            }
            ("POST", "/admin/parties/mail-address") => {
                let b = body()?;
                // Present, so that a forgotten field never clears an address: null clears it.
                if b.get("mail_address").is_none() {
                    return Err(bad(
                        "mail_address: required (a mail address, or null to remove it)",
                    ));
                }
                let address = opt_mail_address(&b)?;
                a.set_mail_address(&key_of(&b), address.as_deref())?
            }
            ("POST", "/admin/parties/certificate") => {
                let b = body()?;
                let overlap = b
                    .get("overlap_hours")
                    .and_then(Value::as_u64)
                    .unwrap_or(168);
                a.replace_certificate(
                    &key_of(&b),
                    s(&b, "certificate_pem").as_bytes(),
                    overlap,
                    cert_policy(&b)?,
                )?
            }
            ("POST", "/admin/parties/limit") => {
                let b = body()?;
                let n = opt_u64(&b, "max_document_bytes")?
                    .ok_or_else(|| bad("max_document_bytes: required"))?;
                a.set_limit(&key_of(&b), n)?
            }
            ("POST", "/admin/parties/revoke") => a.revoke(&key_of(&body()?))?,
            ("POST", "/admin/parties/reinstate") => {
                let b = body()?;
                let pem = match b.get("certificate_pem") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(pem)) => Some(pem.as_bytes()),
                    Some(_) => return Err(bad("certificate_pem: a PEM string")),
                };
                a.reinstate(&key_of(&b), pem, cert_policy(&b)?)?
            }
            ("POST", "/admin/enrolments") => {
                let b = body()?;
                let sub = b
                    .get("subscriber_id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| bad("subscriber_id: required"))?;
                let hours =
                    opt_number(&b, "expires_hours")?.unwrap_or(crate::enrol::DEFAULT_EXPIRES_HOURS);
                let issued = a.issue_enrolment(sub, &key_of(&b), hours)?;
                return Ok(json_response(201, &crate::enrol::issued_json(&issued)));
            }
            ("GET", "/admin/enrolments") => {
                let sub = query_param(&req.query, "subscriber")
                    .ok_or_else(|| bad("subscriber: required"))?
                    .parse::<i64>()
                    .map_err(|_| bad("subscriber: a number"))?;
                a.enrolments(sub)?
            }
            ("POST", "/admin/enrolments/revoke") => {
                let b = body()?;
                let field = |k: &str| {
                    b.get(k)
                        .and_then(Value::as_i64)
                        .ok_or_else(|| bad(format!("{k}: required")))
                };
                a.revoke_enrolment(field("subscriber_id")?, field("id")?)?
            }
            ("GET", "/admin/messages") => {
                let party = query_param(&req.query, "party").map(|p| {
                    let ptype = query_param(&req.query, "party_type").unwrap_or("");
                    PartyKey::new(&url_decode(ptype), &url_decode(p))
                });
                let limit = query_param(&req.query, "limit")
                    .map(|v| v.parse::<u32>().map_err(|_| bad("limit: a number")))
                    .transpose()?
                    .unwrap_or(50);
                a.messages(party.as_ref(), limit)?
            }
            ("GET", "/admin/usage") => {
                let from = parse_day(
                    query_param(&req.query, "from").ok_or_else(|| bad("from: required"))?,
                )?;
                let to =
                    parse_day(query_param(&req.query, "to").ok_or_else(|| bad("to: required"))?)?;
                let rows = a.usage(from, to)?;
                if query_param(&req.query, "format") == Some("csv") {
                    return Ok(Response::new(
                        200,
                        "text/csv; charset=utf-8",
                        usage_csv(from, to, &rows).into_bytes(),
                    ));
                }
                usage_json(from, to, &rows)
            }
            _ => {
                return Err(AdminError {
                    status: 404,
                    message: format!("no admin operation {} {}", req.method, req.path),
                })
            }
        };
        Ok(json_response(200, &v))
    }
}

impl Handler for AdminApi {
    fn handle(&self, req: Request) -> Response {
        let ok = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), self.token.as_bytes()));
        if !ok || self.token.is_empty() {
            let mut r = error_response(AdminError {
                status: 401,
                message: "a valid admin token is required".into(),
            });
            r.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
            return r;
        }
        match self.route(&req) {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(url_decode("a%3A%3Ab+c"), "a::b c");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("plain"), "plain");
    }

    /// The usage report's `--from`/`--to` (and `from`/`to` of the API): a date or a Unix time.
    #[test]
    fn days_are_dates_or_unix_times() {
        assert_eq!(parse_day("2026-11-27").unwrap(), 1_795_737_600);
        assert_eq!(parse_day("1970-01-01").unwrap(), 0);
        assert_eq!(parse_day("1795737600").unwrap(), 1_795_737_600);
        assert_eq!(parse_day("-5").unwrap(), -5);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-27T00:00:00Z",
            "27.11.2026",
        ] {
            let e = parse_day(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
            assert!(e.message.contains("YYYY-MM-DD"), "{}", e.message);
        }
    }

    #[test]
    fn limits_are_numbers_or_absent() {
        let v: Value = serde_json::from_str(r#"{"a": 5, "b": null, "c": "5", "d": -1}"#).unwrap();
        assert_eq!(opt_u64(&v, "a").unwrap(), Some(5));
        assert_eq!(opt_u64(&v, "b").unwrap(), None);
        assert_eq!(opt_u64(&v, "missing").unwrap(), None);
        assert!(opt_u64(&v, "c").is_err());
        assert!(opt_u64(&v, "d").is_err());
        assert!(check_limit(0).is_err());
        assert!(check_limit(u64::MAX).is_err());
        assert!(check_limit(1).is_ok());
    }

    #[test]
    fn ca_certificates_are_told_from_end_entity_ones() {
        use openssl::x509::extension::{BasicConstraints, KeyUsage};
        let ee = ls_core::Identity::generate("ee", ls_core::KeyType::EcP256, 2, None).unwrap();
        assert!(ca_marks(ee.identity.certificate()).unwrap().is_empty());
        // A self-signed certificate with the given extensions.
        let make = |ca: bool, cert_sign: bool| {
            let group =
                openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
            let key =
                openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap())
                    .unwrap();
            let mut name = openssl::x509::X509NameBuilder::new().unwrap();
            name.append_entry_by_text("CN", "x").unwrap();
            let name = name.build();
            let mut b = openssl::x509::X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            b.set_subject_name(&name).unwrap();
            b.set_issuer_name(&name).unwrap();
            b.set_pubkey(&key).unwrap();
            b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(2).unwrap())
                .unwrap();
            let mut bc = BasicConstraints::new();
            if ca {
                bc.critical().ca();
            }
            b.append_extension(bc.build().unwrap()).unwrap();
            let mut ku = KeyUsage::new();
            ku.digital_signature();
            if cert_sign {
                ku.key_cert_sign();
            }
            b.append_extension(ku.build().unwrap()).unwrap();
            b.sign(&key, openssl::hash::MessageDigest::sha256())
                .unwrap();
            Certificate::from_der(&b.build().to_der().unwrap()).unwrap()
        };
        assert!(ca_marks(&make(false, false)).unwrap().is_empty());
        assert_eq!(
            ca_marks(&make(true, true)).unwrap(),
            ["basicConstraints CA:TRUE", "keyUsage keyCertSign"]
        );
        assert_eq!(
            ca_marks(&make(false, true)).unwrap(),
            ["keyUsage keyCertSign"]
        );
        let e = check_party_certificate(&make(true, false).to_pem(), CertificatePolicy::default())
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("--allow-ca-certificate"),
            "{}",
            e.message
        );
        check_party_certificate(
            &make(true, false).to_pem(),
            CertificatePolicy { allow_ca: true },
        )
        .unwrap();
    }
}
