//! The `admin_api` target: the service's admin HTTP API (`ls_server::admin::AdminApi`, its
//! `Handler` impl) over a real `SqliteStore`, so that the JSON bodies, the query strings and the
//! validation behind every route meet hostile input.
//!
//! # Input
//!
//! Up to [`MAX_REQUESTS`] requests separated by a line `%%`. Each request is written like an
//! HTTP/1.1 request without the version:
//!
//! ```text
//! POST /admin/parties?x=y
//! Content-Type: application/json
//!
//! {"subscriber_id": 1, "party_id": "p1", "certificate_pem": "@CERT1@"}
//! ```
//!
//! The first line is the method and the target (the path, then `?` and the query); header lines
//! follow up to an empty line; the rest is the body. Without an `Authorization` header the
//! right bearer token is added (with one, the given one is used, so the refusal is exercised
//! too). In a body, `@CERT0@` … `@CERT3@` stand for signing certificates made when the process
//! starts (PEM, escaped for a JSON string), so that committed seeds stay valid after any expiry
//! date: `@CERT0@` is registered for the baseline party, the others are free.
//!
//! # The store
//!
//! A `SqliteStore` in a temporary folder (under `$TMPDIR`, which the fuzz scripts point at a
//! tmpfs when there is one: the store syncs every write), created once per process with a
//! baseline (subscriber 1 with party `fuzz-base`, subscriber 2 suspended). State carries over
//! from one input to the next; every [`RESET_EVERY`] inputs the store is replaced by a fresh
//! one with the same baseline, so listings stay small and the speed stays even. A crash that
//! needs state left by earlier inputs reproduces with the inputs that made it in one file.
//!
//! # What must hold
//!
//! Every request gets an answer (no panic); a JSON answer is valid JSON, and an error answer is
//! the one error object `{"error": {"code": …, "message": "…", …}}`; without the token the answer is 401; an admin request never gets a 5xx
//! (the store is a working SQLite database on a working disk: a 5xx would be input that passed
//! validation and then broke the store).

use ls_core::{Identity, KeyType};
use ls_server::admin::{Admin, AdminApi};
use ls_server::http::{Handler, Request};
use ls_server::store::sqlite::SqliteStore;
use ls_server::store::{NewSubscriber, Store};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Requests per input, at most.
pub const MAX_REQUESTS: usize = 8;
/// Inputs between two fresh stores.
pub const RESET_EVERY: u64 = 512;
const TOKEN: &str = "fuzz-admin-token-0123456789";
const METRICS: &str = "# TYPE layersec_fuzz gauge\nlayersec_fuzz 1\n";

struct Env {
    /// The folder of this process; each store is a subfolder.
    dir: PathBuf,
    /// `@CERT0@` … `@CERT3@`: JSON string contents (without the quotes).
    certs: Vec<String>,
    api: Mutex<Current>,
}

/// The store in use: its number (`store-<n>`), the inputs it has seen, the API over it.
struct Current {
    n: u64,
    inputs: u64,
    api: AdminApi,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "ls-fuzz-admin-{}-{}",
            std::process::id(),
            ls_core::time::now_unix()
        ));
        std::fs::create_dir_all(&dir).expect("admin_api: cannot create the temporary folder");
        let certs = (0..4)
            .map(|i| {
                let g = Identity::generate(&format!("fuzz-admin-{i}"), KeyType::EcP256, 30, None)
                    .expect("admin_api: cannot generate a certificate");
                let pem = String::from_utf8(g.cert_pem).expect("PEM is ASCII");
                let quoted = serde_json::to_string(&pem).expect("a string serialises");
                quoted[1..quoted.len() - 1].to_string()
            })
            .collect::<Vec<_>>();
        let api = new_api(&dir, 0, &certs);
        Env {
            dir,
            certs,
            api: Mutex::new(Current {
                n: 0,
                inputs: 0,
                api,
            }),
        }
    })
}

/// A fresh store in `<dir>/store-<n>` with the baseline, behind an `AdminApi`.
fn new_api(dir: &std::path::Path, n: u64, certs: &[String]) -> AdminApi {
    let store_dir = dir.join(format!("store-{n}"));
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&store_dir, 4096).expect("admin_api: cannot open the SQLite store"),
    );
    let admin = Admin { store };
    let sub = |org: &str| NewSubscriber {
        organisation: org.into(),
        contact: "ops@fuzz.example".into(),
        contract_ref: "C-1".into(),
        plan: "basic".into(),
    };
    admin
        .create_subscriber(&sub("Fuzz Base Ltd"))
        .expect("baseline subscriber 1");
    admin
        .create_subscriber(&sub("Fuzz Suspended Ltd"))
        .expect("baseline subscriber 2");
    admin.set_status(2, true).expect("baseline: suspend 2");
    let api = AdminApi {
        admin,
        token: TOKEN.into(),
        metrics: Some(Arc::new(|| METRICS.to_string())),
    };
    // The baseline party through the API itself (the route's own argument handling).
    let body = format!(
        "{{\"subscriber_id\": 1, \"party_id\": \"fuzz-base\", \"certificate_pem\": \"{}\"}}",
        certs[0]
    );
    let req = request(format!("POST /admin/parties\n\n{body}").as_bytes(), certs)
        .expect("the baseline request");
    let resp = api.handle(req);
    assert_eq!(
        resp.status,
        201,
        "baseline party: {}",
        String::from_utf8_lossy(&resp.body)
    );
    api
}

/// One request of the input: `None` when the head is not text.
fn request(text: &[u8], certs: &[String]) -> Option<Request> {
    // The head ends at the first empty line (LF or CRLF).
    let (head, body) = match find(text, b"\n\n")
        .map(|i| (i, 2))
        .into_iter()
        .chain(find(text, b"\r\n\r\n").map(|i| (i, 4)))
        .min()
    {
        Some((i, n)) => (&text[..i], &text[i + n..]),
        None => match text.iter().position(|&b| b == b'\n') {
            // A request line alone, then the body straight away: allowed for short seeds.
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &[][..]),
        },
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let first = lines.next()?;
    let (method, target) = first.trim_end().split_once(' ').unwrap_or((first, "/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if !headers.iter().any(|(n, _)| n == "authorization") {
        headers.push(("authorization".into(), format!("Bearer {TOKEN}")));
    }
    let mut body = body.to_vec();
    for (i, cert) in certs.iter().enumerate() {
        let mark = format!("@CERT{i}@");
        while let Some(at) = find(&body, mark.as_bytes()) {
            body.splice(at..at + mark.len(), cert.bytes());
        }
    }
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
        body_stream: None,
        peer: "127.0.0.1:40000".parse().expect("a socket address"),
        client_cert: None,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The requests of an input, split at lines `%%`.
fn split_requests(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_REQUESTS {
        match find(rest, b"\n%%\n") {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 4..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

pub fn admin_api(data: &[u8]) {
    let e = env();
    let mut cur = e.api.lock().unwrap_or_else(|p| p.into_inner());
    if cur.inputs == RESET_EVERY {
        let old = e.dir.join(format!("store-{}", cur.n));
        let n = cur.n + 1;
        *cur = Current {
            n,
            inputs: 0,
            api: new_api(&e.dir, n, &e.certs),
        };
        let _ = std::fs::remove_dir_all(old);
    }
    cur.inputs += 1;
    let api = &cur.api;
    for part in split_requests(data) {
        let Some(req) = request(part, &e.certs) else {
            continue;
        };
        let auth = req.header("authorization").unwrap_or("");
        let authorised = auth == format!("Bearer {TOKEN}");
        let no_token = !auth.contains(TOKEN);
        let shown = format!("{} {}?{}", req.method, req.path, req.query);
        let resp = api.handle(req);
        assert!(
            (200..600).contains(&resp.status),
            "{shown}: HTTP status {}",
            resp.status
        );
        assert!(
            resp.status < 500,
            "{shown}: HTTP {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        if authorised {
            assert_ne!(resp.status, 401, "{shown}: the right token was refused");
        }
        if no_token {
            assert_eq!(resp.status, 401, "{shown}: answered without the token");
        }
        if resp.content_type.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&resp.body)
                .unwrap_or_else(|err| panic!("{shown}: the answer is not JSON: {err}"));
            if resp.status >= 400 {
                // The one error object: {"error": {"code": …, "message": …, …}}.
                let message = v
                    .get("error")
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str);
                assert!(
                    message.is_some_and(|m| !m.is_empty()),
                    "{shown}: an error answer without an error message: {v}"
                );
            }
        }
    }
}
