//! Real `layersec-server` processes over TLS on loopback, and clients made of ls-core's AS4
//! exchange and HTTPS transport.
#![allow(dead_code)]

pub mod attack;

use ls_core::as4::coordination::{self, FailureClass, RefusalNotice};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, party_mpc, Exchange, Pulled};
use ls_core::as4::message::{self, Built, Incoming, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::Messaging;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::as4::xml::Limits;
use ls_core::transport::{Carrier, HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity, KeyType};
use ls_tests::service::RunningService;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_layersec-server");

/// Run `layersec-server` with `args`; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    outcome(&Command::new(BIN).args(args).output().unwrap())
}

/// (exit code, stdout, stderr) of a finished command.
pub fn outcome(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A service directory made by `init`, and the running process (if any): the shared harness,
/// plus clients made of ls-core.
pub struct Server(RunningService);

impl Deref for Server {
    type Target = RunningService;
    fn deref(&self) -> &RunningService {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut RunningService {
        &mut self.0
    }
}

impl Server {
    /// `init` a new service; `tweak` edits the configuration text.
    pub fn init(name: &str, tweak: impl FnOnce(String) -> String) -> Server {
        Server(RunningService::init(Path::new(BIN), name, tweak))
    }

    pub fn tls_ca(&self) -> Vec<u8> {
        std::fs::read(self.tls_cert_path()).unwrap()
    }

    pub fn service_cert(&self) -> Certificate {
        Certificate::load(self.service_cert_path()).unwrap()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn transport(&self) -> HttpsTransport {
        let mut c = HttpsConfig::new(&self.url);
        c.ca_pem = Some(self.tls_ca());
        c.idle_timeout = Duration::from_secs(60);
        HttpsTransport::new(c).unwrap()
    }

    /// A subscriber with one party registered under `id` for a new EC identity.
    pub fn party(&self, id: &str) -> Party {
        self.party_with(id, &[])
    }

    /// As [`Server::party`], with more arguments for `admin party add`.
    pub fn party_with(&self, id: &str, extra: &[&str]) -> Party {
        let sub = self.admin(&[
            "subscriber",
            "add",
            "--organisation",
            &format!("{id} Ltd"),
            "--contact",
            "ops@example.com",
            "--contract",
            &format!("C-{id}"),
        ]);
        let sub_id = sub["id"].as_i64().unwrap();
        let p = Party::new(id);
        let cert = self.dir.join(format!("{id}.crt"));
        std::fs::write(&cert, p.identity.certificate().to_pem()).unwrap();
        self.admin(
            &[
                "party",
                "add",
                "--subscriber",
                &sub_id.to_string(),
                "--party",
                id,
                "--certificate",
                cert.to_str().unwrap(),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        Party {
            subscriber: sub_id,
            ..p
        }
    }
}

pub struct Party {
    pub id: String,
    pub identity: Identity,
    pub subscriber: i64,
}

impl Party {
    pub fn new(id: &str) -> Party {
        Party {
            id: id.to_string(),
            identity: Identity::generate(id, KeyType::EcP256, 30, None)
                .unwrap()
                .identity,
            subscriber: 0,
        }
    }

    pub fn mpc(&self) -> String {
        party_mpc(&self.id)
    }

    /// A signed UserMessage from `self` to `to` carrying `data` (not encrypted: the document
    /// layer encrypts end to end).
    pub fn message(&self, to: &str, data: &[u8]) -> Built {
        self.message_signed_by(to, data, &self.identity)
    }

    pub fn message_signed_by(&self, to: &str, data: &[u8], signer: &Identity) -> Built {
        self.build(to, None, data, "doc@test", signer)
    }

    /// A message with a chosen MessageId and payload Content-ID, signed by `self` (each call
    /// signs anew: another timestamp, signature and MIME boundary).
    pub fn message_with_id(&self, to: &str, id: &str, data: &[u8], content_id: &str) -> Built {
        self.build(to, Some(id), data, content_id, &self.identity)
    }

    fn build(
        &self,
        to: &str,
        id: Option<&str>,
        data: &[u8],
        content_id: &str,
        signer: &Identity,
    ) -> Built {
        let mut um = exchange::user_message(
            &self.id,
            to,
            "urn:layersec:test",
            "Deliver",
            "",
            "test.example",
        )
        .unwrap();
        if let Some(id) = id {
            um.info.message_id = id.to_string();
        }
        message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payloads: vec![Payload {
                content_id: content_id.into(),
                mime_type: "application/octet-stream".into(),
                data: data.to_vec(),
                compress: false,
                properties: Vec::new(),
            }],
            signer,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    }

    /// A signed refusal notice from `self` (the recipient of `refused`) to `to`, its sender.
    pub fn refusal_notice(&self, to: &str, refused: &str, class: FailureClass) -> Built {
        self.refusal_notice_with(to, refused, class, |_| {})
    }

    /// As [`Party::refusal_notice`], with the header changed by `tweak` before it is signed.
    pub fn refusal_notice_with(
        &self,
        to: &str,
        refused: &str,
        class: FailureClass,
        tweak: impl FnOnce(&mut ls_core::as4::model::UserMessage),
    ) -> Built {
        let notice = RefusalNotice {
            message_id: refused.to_string(),
            payload_sha256: "ab".repeat(32),
            class,
        };
        let mut um = coordination::refusal_notice(&self.id, to, &notice, "test.example").unwrap();
        tweak(&mut um);
        message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payloads: Vec::new(),
            signer: &self.identity,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    }

    /// A signed receipt (a co-ordination message) from `self`, the recipient of `original`, to
    /// `to`, its sender, carrying `ess` as the ESS signed receipt (the service does not read
    /// it): the header as the contract says, `processed`, received now.
    pub fn signed_receipt(&self, to: &str, original: &str, ess: &[u8]) -> Built {
        self.signed_receipt_with(to, original, ess, |_, _| {})
    }

    /// As [`Party::signed_receipt`], with the header and payloads changed by `tweak` before it
    /// is signed.
    pub fn signed_receipt_with(
        &self,
        to: &str,
        original: &str,
        ess: &[u8],
        tweak: impl FnOnce(&mut ls_core::as4::model::UserMessage, &mut Vec<Payload>),
    ) -> Built {
        let header = coordination::ReceiptHeader {
            message_id: original.to_string(),
            payload_sha256: "cd".repeat(32),
            disposition: coordination::DISPOSITION_PROCESSED.into(),
            received_at: ls_core::time::iso8601(ls_core::time::now_unix()),
        };
        let mut um = coordination::receipt_message(&self.id, to, &header, "test.example").unwrap();
        let mut payloads = vec![Payload {
            content_id: "receipt@test".into(),
            mime_type: coordination::RECEIPT_CONTENT_TYPE.into(),
            data: ess.to_vec(),
            compress: false,
            properties: Vec::new(),
        }];
        tweak(&mut um, &mut payloads);
        message::build(Outgoing {
            messaging: Messaging {
                user_messages: vec![um],
                signals: Vec::new(),
            },
            payloads,
            signer: &self.identity,
            encrypt_for: None,
            soap: SoapVersion::Soap12,
        })
        .unwrap()
    }

    pub fn exchange<'a>(&'a self, t: &'a dyn Carrier, service: &'a Certificate) -> Exchange<'a> {
        Exchange {
            transport: t,
            me: &self.identity,
            service,
            service_previous: &[],
            soap: SoapVersion::Soap12,
            domain: "test.example".into(),
            limits: Limits {
                max_part: 64 * 1024 * 1024,
                ..Default::default()
            },
        }
    }

    /// Read a pulled message, verifying the sender's signature, and build our receipt.
    pub fn read_pulled(&self, p: &Pulled, sender: &Certificate) -> (Incoming, Built) {
        let inc = message::read(
            &p.content_type,
            &p.body,
            &ReadOptions {
                recipient: Some(&self.identity),
                policy: VerifyPolicy {
                    signer: Some(sender),
                    ..Default::default()
                },
                limits: Limits {
                    max_part: 64 * 1024 * 1024,
                    ..Default::default()
                },
            },
        )
        .unwrap();
        let receipt = message::build_receipt(&inc, &self.identity, "test.example").unwrap();
        (inc, receipt)
    }
}

/// POST `built` as is and read the service's signed answer (verified against `service`): the
/// ebMS error it carries. Panics when the answer is not a signed error signal.
pub fn refusal(
    t: &dyn Transport,
    service: &Certificate,
    content_type: &str,
    body: &[u8],
) -> ls_core::as4::model::EbmsError {
    let r = t.post(content_type, body).unwrap();
    let inc = message::read(
        &r.content_type,
        &r.body,
        &ReadOptions {
            recipient: None,
            policy: VerifyPolicy {
                signer: Some(service),
                ..Default::default()
            },
            limits: Limits::default(),
        },
    )
    .unwrap_or_else(|e| panic!("not a signed ebMS answer (HTTP {}): {e}", r.status));
    match &inc.messaging.signals[0].signal {
        ls_core::as4::model::Signal::Error(e) => e[0].clone(),
        other => panic!("not an error signal: {other:?}"),
    }
}

/// The ebMS error message (short description and description) of a refused exchange.
pub fn ebms_message(e: &ls_core::Error) -> String {
    match e {
        ls_core::Error::EbmsError { message, .. } => message.clone(),
        other => format!("not an ebMS error: {other}"),
    }
}

/// A request to the admin API (plain HTTP on loopback) with the service's token.
pub fn admin_call(server: &Server, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(&server.admin_addr).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.admin_token(),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// The ebMS code of an error, for asserts.
pub fn ebms_code(e: &ls_core::Error) -> String {
    match e {
        ls_core::Error::EbmsError { ebms_code, .. } => ebms_code.clone(),
        other => format!("not an ebMS error: {other}"),
    }
}

/// GET over TLS with the server's certificate as CA, for /health and /metrics.
pub fn https_get(server: &Server, path: &str) -> (u16, String) {
    use openssl::ssl::{SslConnector, SslMethod};
    use std::io::{Read, Write};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let ca = openssl::x509::X509::from_pem(&server.tls_ca()).unwrap();
    b.cert_store_mut().add_cert(ca).unwrap();
    let conn = b.build();
    let tcp = std::net::TcpStream::connect(server.hostport()).unwrap();
    let mut s = conn.connect("localhost", tcp).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `GET path` on the admin listener (plain HTTP on loopback), with or without the token.
pub fn admin_get(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(&server.admin_addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// The service's Prometheus text (on the admin listener, behind the token).
pub fn metrics(server: &Server) -> String {
    let (status, text) = admin_get(server, "/metrics", Some(&server.admin_token()));
    assert_eq!(status, 200, "{text}");
    text
}

/// A metric's value from the Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
