//! Test helpers: a scripted fake mail server on 127.0.0.1 (plain, STARTTLS or implicit TLS)
//! and throwaway certificates.

use super::{Account, MailTrust, MailUrl};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod, SslStream};
use openssl::x509::X509;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// A throwaway EC P-256 self-signed server certificate for `cn` with the given SANs.
pub(crate) fn self_signed(cn: &str, names: &[&str]) -> (PKey<Private>, X509) {
    use crate::keys::builder::{CertPurpose, CertificateBuilder};
    let g = CertificateBuilder::new(cn, CertPurpose::TlsServer)
        .key_type(crate::KeyType::EcP256)
        .valid_days(2)
        .subject_alt_names(names)
        .build(None)
        .unwrap();
    (
        g.identity.tls_key().unwrap().clone(),
        g.identity.certificate().x509().clone(),
    )
}

pub(crate) fn localhost_cert() -> (PKey<Private>, X509) {
    self_signed("localhost", &["localhost", "127.0.0.1"])
}

/// An account on 127.0.0.1:`port` (user `user`, password `s3cret pw`, 5 s timeout), trusting
/// `ca` if given.
pub(crate) fn account(scheme: &str, port: u16, ca: Option<&X509>) -> Account {
    Account {
        url: MailUrl::parse(&format!("{scheme}://127.0.0.1:{port}")).unwrap(),
        username: "user".into(),
        password: Zeroizing::new("s3cret pw".into()),
        trust: MailTrust {
            ca_pem: ca.map(|c| c.to_pem().unwrap()),
            pinned_sha256: None,
        },
        timeout: Duration::from_secs(5),
    }
}

enum S {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    Gone,
}

/// The server's side of one connection, as a script sees it. Every line the client sent is
/// recorded (DATA lines read by [`FakeConn::read_until_dot`] are not).
pub(crate) struct FakeConn {
    s: S,
    buf: Vec<u8>,
    seen: Vec<String>,
    identity: Option<(PKey<Private>, X509)>,
}

impl FakeConn {
    fn read_some(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = match &mut self.s {
            S::Plain(t) => t.read(&mut chunk).unwrap_or(0),
            S::Tls(t) => t.read(&mut chunk).unwrap_or(0),
            S::Gone => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next line from the client (without CRLF); `None` at the end of the stream.
    pub(crate) fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                let l = String::from_utf8_lossy(&l).into_owned();
                self.seen.push(l.clone());
                return Some(l);
            }
            if self.read_some() == 0 {
                return None;
            }
        }
    }

    /// Exactly `n` bytes from the client (a literal).
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.read_some() > 0, "the client closed inside a literal");
        }
        self.buf.drain(..n).collect()
    }

    pub(crate) fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(
            got.as_deref(),
            Some(want),
            "the fake server expected {want:?}"
        );
    }

    /// Checks the next line starts with `prefix`; returns it.
    pub(crate) fn expect_prefix(&mut self, prefix: &str) -> String {
        let got = self.line();
        match got {
            Some(l) if l.starts_with(prefix) => l,
            other => panic!("the fake server expected {prefix:?}…, got {other:?}"),
        }
    }

    /// Sends `text` and CRLF.
    pub(crate) fn send(&mut self, text: &str) {
        self.send_raw(format!("{text}\r\n").as_bytes());
    }

    pub(crate) fn send_raw(&mut self, data: &[u8]) {
        let _ = match &mut self.s {
            S::Plain(t) => t.write_all(data).and_then(|_| t.flush()),
            S::Tls(t) => t.write_all(data).and_then(|_| t.flush()),
            S::Gone => Ok(()),
        };
    }

    /// The server's side of the TLS handshake.
    pub(crate) fn accept_tls(&mut self) {
        assert!(self.try_accept_tls(), "the TLS handshake failed");
    }

    fn try_accept_tls(&mut self) -> bool {
        let Some((key, cert)) = self.identity.clone() else {
            panic!("no certificate for the fake server");
        };
        let S::Plain(tcp) = std::mem::replace(&mut self.s, S::Gone) else {
            panic!("TLS twice");
        };
        let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        a.set_private_key(&key).unwrap();
        a.set_certificate(&cert).unwrap();
        match a.build().accept(tcp) {
            Ok(s) => {
                self.s = S::Tls(Box::new(s));
                true
            }
            Err(_) => false,
        }
    }

    /// The DATA of an SMTP mail, up to its `.` line (not included; CRLFs kept).
    pub(crate) fn read_until_dot(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let n = self.seen.len();
            let Some(l) = self.line() else {
                panic!("the client closed inside DATA");
            };
            self.seen.truncate(n);
            if l == "." {
                return out;
            }
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Reads (and records) whatever the client still sends, until it closes.
    pub(crate) fn read_rest(&mut self) {
        while self.line().is_some() {}
    }
}

/// A fake server for one connection, running a script.
pub(crate) struct Fake {
    pub(crate) port: u16,
    handle: JoinHandle<Vec<String>>,
}

impl Fake {
    /// Listens on 127.0.0.1; the first connection is handed to `script` (after the TLS
    /// handshake when `implicit`: a failed handshake ends it with nothing recorded).
    pub(crate) fn spawn(
        identity: Option<(PKey<Private>, X509)>,
        implicit: bool,
        script: impl FnOnce(&mut FakeConn) + Send + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut c = FakeConn {
                s: S::Plain(tcp),
                buf: Vec::new(),
                seen: Vec::new(),
                identity,
            };
            if implicit && !c.try_accept_tls() {
                return c.seen;
            }
            script(&mut c);
            c.seen
        });
        Fake { port, handle }
    }

    /// The lines the client sent (a panic of the script fails the test here).
    pub(crate) fn finish(self) -> Vec<String> {
        match self.handle.join() {
            Ok(seen) => seen,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}
