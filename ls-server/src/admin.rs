//! The provider's operations — subscriber accounts, party registration ("installations"),
//! certificate replacement, revocation, suspension, listings and the usage report — shared by
//! the `layersec-server admin` command line and the admin HTTP API.

use crate::http::{Handler, Request, Response};
use crate::store::{
    AccountStatus, NewSubscriber, Party, PartyKey, Store, StoreError, Subscriber, Usage,
};
use ls_core::as4::exchange::party_mpc;
use ls_core::time::{iso8601, now_unix, unix_from_parts};
use ls_core::Certificate;
use serde_json::{json, Value};
use std::sync::Arc;

/// An admin failure: the message is for the operator.
#[derive(Debug)]
pub struct AdminError {
    /// HTTP status for the API (400 bad input, 404 unknown, 409 conflict, 500 store).
    pub status: u16,
    pub message: String,
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

fn check_text(name: &str, v: &str, max: usize) -> AdminResult<()> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{name}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

/// A certificate a party registers: parseable, currently valid, allowed to sign.
pub fn check_party_certificate(pem_or_der: &[u8]) -> AdminResult<Certificate> {
    let c = Certificate::from_bytes(pem_or_der)
        .map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
    c.check_validity(now_unix())
        .map_err(|e| bad(format!("the certificate cannot be registered: {e}")))?;
    c.check_key_usage(
        ls_core::cert::key_usage::DIGITAL_SIGNATURE | ls_core::cert::key_usage::NON_REPUDIATION,
        "signing",
    )
    .map_err(|e| bad(format!("the certificate cannot be registered: {e}")))?;
    Ok(c)
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

    pub fn register_party(
        &self,
        subscriber_id: i64,
        key: &PartyKey,
        cert_pem: &[u8],
    ) -> AdminResult<Value> {
        if key.id.is_empty() {
            return Err(bad("party_id: required"));
        }
        check_text("party_id", &key.id, 255)?;
        check_text("party_type", &key.ptype, 255)?;
        let cert = check_party_certificate(cert_pem)?;
        self.not_registered_elsewhere(&cert, key)?;
        let mpc = party_mpc(&key.id);
        let p = self.store.register_party(
            subscriber_id,
            key,
            &mpc,
            cert.der(),
            &cert.sha256_fingerprint(),
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
    ) -> AdminResult<Value> {
        let cert = check_party_certificate(cert_pem)?;
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
        self.store.revoke_party(key, now_unix())?;
        self.party(key)
    }

    pub fn party(&self, key: &PartyKey) -> AdminResult<Value> {
        let p = self
            .store
            .party(key)?
            .ok_or_else(|| AdminError::from(StoreError::NotFound(format!("party {key}"))))?;
        Ok(party_json(&p, &self.store.certificates(key)?))
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
        })).collect::<Vec<_>>(),
    })
}

pub fn usage_csv(from: i64, to: i64, rows: &[Usage]) -> String {
    let mut s = String::from(
        "subscriber_id,organisation,period_from,period_to,sent_messages,sent_bytes,received_messages,received_bytes\n",
    );
    for u in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            u.subscriber_id,
            csv_field(&u.organisation),
            iso8601(from),
            iso8601(to),
            u.sent_messages,
            u.sent_bytes,
            u.received_messages,
            u.received_bytes
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

/// `YYYY-MM-DD` (start of that day, UTC) or a Unix time.
pub fn parse_day(s: &str) -> AdminResult<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let p: Vec<&str> = s.split('-').collect();
    let n = |x: &str| x.parse::<i64>().ok();
    match p.as_slice() {
        [y, m, d] => match (n(y), n(m), n(d)) {
            (Some(y), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
                Ok(unix_from_parts(y, m, d, 0, 0, 0))
            }
            _ => Err(bad(format!("{s:?}: expected YYYY-MM-DD"))),
        },
        _ => Err(bad(format!("{s:?}: expected YYYY-MM-DD"))),
    }
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

fn error_response(e: AdminError) -> Response {
    json_response(e.status, &json!({ "error": e.message }))
}

fn query_param<'a>(q: &'a str, name: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
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
                    &a.register_party(sub, &key_of(&b), s(&b, "certificate_pem").as_bytes())?,
                ));
            }
            ("POST", "/admin/parties/certificate") => {
                let b = body()?;
                let overlap = b
                    .get("overlap_hours")
                    .and_then(Value::as_u64)
                    .unwrap_or(168);
                a.replace_certificate(&key_of(&b), s(&b, "certificate_pem").as_bytes(), overlap)?
            }
            ("POST", "/admin/parties/revoke") => a.revoke(&key_of(&body()?))?,
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
            let mut r = json_response(401, &json!({"error": "a valid admin token is required"}));
            r.headers.push(("WWW-Authenticate".into(), "Bearer".into()));
            return r;
        }
        match self.route(&req) {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }
}
