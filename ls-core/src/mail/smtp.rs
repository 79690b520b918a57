//! Submission by SMTP (RFC 6409): STARTTLS required on `smtp://`, TLS from the start on
//! `smtps://`, AUTH (PLAIN or LOGIN) only inside TLS, the SIZE extension honoured.
//!
//! Written by hand over `mail::tls`, not with lettre (0.11), the maintained SMTP crate:
//! - its only OpenSSL backend goes through native-tls, whose trust knobs are "add a root",
//!   "no built-in roots", "accept invalid certificates" and "accept invalid host names". A pin
//!   would need certificate checking switched off and the pin compared after the handshake by
//!   hand, and a refused certificate comes back as a flattened string; the HTTPS transport
//!   checks the pin in OpenSSL's verify callback and says why a certificate is refused
//!   (untrusted, host name, pin mismatch with the SHA-256 seen). Here the same code
//!   (`mail::tls`) serves SMTP, IMAP and POP3, so the three cannot drift apart;
//! - its `ServerInfo` keeps only the EHLO keywords it knows (8BITMIME, SMTPUTF8, STARTTLS,
//!   AUTH): the SIZE limit is dropped, so a mail over it cannot be refused before DATA with the
//!   limit named;
//! - it would add native-tls and its dependencies for what is ~300 lines of a well-known
//!   exchange (EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, QUIT) on top of the connection
//!   the IMAP and POP3 clients need anyway.
//!
//! Reply codes decide the error: 4xx `MailStatus` (temporary), 535 and other refusals of AUTH
//! `LoginFailed`, 552 `Refused` naming the size limit, other 5xx `Refused` with the server's
//! text (sanitized, bounded). The EHLO name is the fixed `localhost` (nothing of this machine
//! is told). The password is sent only inside TLS and appears in no message.

use super::conn::{sanitize, Conn};
use super::tls::TlsConnector;
use super::{Account, Scheme};
use crate::error::{Error, Result};
use std::fmt;

/// The name given in EHLO.
const EHLO_NAME: &str = "localhost";
/// The most lines of one multi-line reply.
const MAX_REPLY_LINES: usize = 1000;

/// Submits mails through one account on a submission server. Cheap to keep; each
/// [`SmtpClient::send`] uses its own connection.
pub struct SmtpClient {
    account: Account,
    tls: TlsConnector,
}

impl fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpClient")
            .field("account", &self.account)
            .finish()
    }
}

/// One SMTP reply: its code and its lines' text (after the code).
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        let t = self.lines.join(" ");
        let t = sanitize(t.as_bytes());
        format!("{} {t}", self.code)
    }
}

/// What the server offers after EHLO.
#[derive(Debug, Default)]
struct Ehlo {
    starttls: bool,
    /// `Some(0)`: SIZE without a limit.
    size: Option<u64>,
    auth_plain: bool,
    auth_login: bool,
    eight_bit: bool,
}

impl Ehlo {
    fn parse(reply: &Reply) -> Ehlo {
        let mut e = Ehlo::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "STARTTLS" => e.starttls = true,
                "SIZE" => e.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => e.eight_bit = true,
                "AUTH" => {
                    for m in words {
                        match m.to_ascii_uppercase().as_str() {
                            "PLAIN" => e.auth_plain = true,
                            "LOGIN" => e.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        e
    }
}

/// An envelope address: no line breaks, no angle brackets, printable ASCII or UTF-8.
fn check_address(what: &str, a: &str) -> Result<()> {
    if a.chars()
        .any(|c| c.is_control() || c == '<' || c == '>' || c == ' ')
    {
        return Err(Error::InvalidArgument(format!(
            "bad {what} address {:?}",
            sanitize(a.as_bytes())
        )));
    }
    Ok(())
}

/// The pieces DATA is written in.
const DATA_CHUNK: usize = 64 * 1024;

/// The mail as DATA carries it, given to `out` in pieces of about [`DATA_CHUNK`] bytes (no
/// whole copy of the mail is made): every line end CRLF, lines starting with `.` doubled, a
/// final CRLF, then `.` CRLF. Returns the mail's size as SIZE counts it (RFC 1870: CRLF line
/// ends, without the doubled dots and the final `.`).
fn write_data(message: &[u8], out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
    let mut size = 0u64;
    let mut piece = Vec::with_capacity(DATA_CHUNK + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if at_line_start && b == b'.' {
            piece.push(b'.');
        }
        match b {
            b'\r' => {
                piece.extend_from_slice(b"\r\n");
                size += 2;
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                piece.extend_from_slice(b"\r\n");
                size += 2;
                at_line_start = true;
            }
            _ => {
                piece.push(b);
                size += 1;
                at_line_start = false;
            }
        }
        i += 1;
        if piece.len() >= DATA_CHUNK {
            out(&piece)?;
            piece.clear();
        }
    }
    if !at_line_start {
        piece.extend_from_slice(b"\r\n");
        size += 2;
    }
    piece.extend_from_slice(b".\r\n");
    out(&piece)?;
    Ok(size)
}

/// The size SIZE counts (see [`write_data`]), nothing written.
fn data_size(message: &[u8]) -> u64 {
    write_data(message, &mut |_| Ok(())).unwrap_or(0)
}

/// A submission that failed: the error, and whether it was the refusal of a recipient.
#[derive(Debug)]
pub struct SendError {
    pub error: Error,
    /// The server refused a recipient (its reply to `RCPT TO`, other than the size limit:
    /// `MailStatus` for a 4xx, `Refused` for a 5xx): the server works, that address does not
    /// take mail now. Otherwise the session, the login, the sender or the mail failed.
    pub recipient: bool,
}

impl From<Error> for SendError {
    fn from(error: Error) -> SendError {
        SendError {
            error,
            recipient: false,
        }
    }
}

struct Session<'a> {
    conn: Conn,
    account: &'a Account,
}

impl Session<'_> {
    fn reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.conn.read_line()?;
            let bad = || {
                Error::BadResponse(format!(
                    "{} did not answer in SMTP: {:?}",
                    self.conn.peer,
                    sanitize(&line)
                ))
            };
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let c = line[..3]
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
            if code.is_some_and(|k| k != c) || !(200..600).contains(&c) {
                return Err(bad());
            }
            code = Some(c);
            let more = match line.get(3) {
                None | Some(b' ') => false,
                Some(b'-') => true,
                Some(_) => return Err(bad()),
            };
            lines.push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
            if !more {
                return Ok(Reply { code: c, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(Error::BadResponse(format!(
                    "{} sent a reply of more than {MAX_REPLY_LINES} lines",
                    self.conn.peer
                )));
            }
        }
    }

    fn command(&mut self, line: &str) -> Result<Reply> {
        self.conn.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// The failure a reply other than the expected one means, `step` saying to what.
    fn failure(&self, step: &str, r: &Reply) -> Error {
        let peer = &self.conn.peer;
        match r.code {
            400..=499 => Error::MailStatus {
                code: r.code,
                message: format!("{peer} refused {step} for now: {}", r.text()),
            },
            500..=599 => Error::Refused(format!("{peer} refused {step}: {}", r.text())),
            _ => Error::BadResponse(format!("{peer} answered {step} unexpectedly: {}", r.text())),
        }
    }

    fn expect(&mut self, step: &str, r: Reply, ok: u16) -> Result<Reply> {
        if r.code == ok || (ok == 250 && r.code == 251) {
            Ok(r)
        } else {
            Err(self.failure(step, &r))
        }
    }

    fn ehlo(&mut self) -> Result<Ehlo> {
        let r = self.command(&format!("EHLO {EHLO_NAME}"))?;
        let r = self.expect("EHLO", r, 250)?;
        Ok(Ehlo::parse(&r))
    }

    fn auth(&mut self, ehlo: &Ehlo) -> Result<()> {
        let peer = self.conn.peer.clone();
        if !self.conn.is_tls() {
            return Err(Error::Internal("AUTH outside TLS".into()));
        }
        let user = self.account.username.as_bytes();
        let pass = self.account.password.as_bytes();
        let r = if ehlo.auth_plain {
            let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(user.len() + pass.len() + 2));
            raw.push(0);
            raw.extend_from_slice(user);
            raw.push(0);
            raw.extend_from_slice(pass);
            let line = zeroize::Zeroizing::new(format!(
                "AUTH PLAIN {}",
                crate::bytes::base64_encode(&raw)
            ));
            self.command(&line)?
        } else if ehlo.auth_login {
            let r = self.command("AUTH LOGIN")?;
            if r.code != 334 {
                return Err(self.auth_failure(&r));
            }
            let r = self.command(&crate::bytes::base64_encode(user))?;
            if r.code != 334 {
                return Err(self.auth_failure(&r));
            }
            let line = zeroize::Zeroizing::new(crate::bytes::base64_encode(pass));
            self.command(&line)?
        } else {
            return Err(Error::LoginFailed(format!(
                "{peer} offers neither AUTH PLAIN nor AUTH LOGIN"
            )));
        };
        if r.code == 235 {
            Ok(())
        } else {
            Err(self.auth_failure(&r))
        }
    }

    fn auth_failure(&self, r: &Reply) -> Error {
        let peer = &self.conn.peer;
        let user = sanitize(self.account.username.as_bytes());
        match r.code {
            400..=499 => Error::MailStatus {
                code: r.code,
                message: format!("{peer} refused the login of {user:?} for now: {}", r.text()),
            },
            500..=599 => Error::LoginFailed(format!(
                "{peer} refused the login of {user:?}: {}",
                r.text()
            )),
            _ => Error::BadResponse(format!("{peer} answered AUTH unexpectedly: {}", r.text())),
        }
    }

    fn quit(mut self) {
        let _ = self.command("QUIT");
        self.conn.shutdown();
    }

    fn submit(
        &mut self,
        tls: &TlsConnector,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> std::result::Result<(), SendError> {
        let len = data_size(message);
        let peer = self.conn.peer.clone();
        let greeting = self.reply()?;
        self.expect("the connection", greeting, 220)?;
        let mut ehlo = self.ehlo()?;
        if !self.conn.is_tls() {
            if !ehlo.starttls {
                return Err(Error::TlsFailed(format!(
                    "{peer} does not offer STARTTLS: no login or mail is sent in clear"
                ))
                .into());
            }
            let r = self.command("STARTTLS")?;
            if r.code != 220 {
                return Err(
                    Error::TlsFailed(format!("{peer} refused STARTTLS: {}", r.text())).into(),
                );
            }
            self.conn.start_tls(tls)?;
            ehlo = self.ehlo()?;
        }
        if let Some(limit) = ehlo.size.filter(|l| *l > 0) {
            if len > limit {
                return Err(Error::Refused(format!(
                    "the mail ({len} bytes) is larger than the size limit of {peer} \
                     ({limit} bytes, announced in EHLO SIZE)"
                ))
                .into());
            }
        }
        self.auth(&ehlo)?;
        let mut mail_from = format!("MAIL FROM:<{from}>");
        if ehlo.size.is_some() {
            mail_from.push_str(&format!(" SIZE={len}"));
        }
        if ehlo.eight_bit && message.iter().any(|b| *b >= 0x80) {
            mail_from.push_str(" BODY=8BITMIME");
        }
        let r = self.command(&mail_from)?;
        if r.code == 552 {
            return Err(self.size_refused(len, ehlo.size, &r).into());
        }
        self.expect("the sender", r, 250)?;
        for rcpt in to {
            let r = self.command(&format!("RCPT TO:<{rcpt}>"))?;
            if r.code == 552 {
                return Err(self.size_refused(len, ehlo.size, &r).into());
            }
            self.expect(
                &format!("the recipient <{}>", sanitize(rcpt.as_bytes())),
                r,
                250,
            )
            .map_err(|error| SendError {
                recipient: matches!(error, Error::MailStatus { .. } | Error::Refused(_)),
                error,
            })?;
        }
        let r = self.command("DATA")?;
        self.expect("DATA", r, 354)?;
        let conn = &mut self.conn;
        write_data(message, &mut |piece| conn.write_all(piece))?;
        let r = self.reply()?;
        if r.code == 552 {
            return Err(self.size_refused(len, ehlo.size, &r).into());
        }
        self.expect("the mail", r, 250)?;
        Ok(())
    }

    fn size_refused(&self, len: u64, limit: Option<u64>, r: &Reply) -> Error {
        let limit = match limit.filter(|l| *l > 0) {
            Some(l) => format!("its size limit ({l} bytes)"),
            None => "its size limit (not announced)".to_string(),
        };
        Error::Refused(format!(
            "{} refused the mail ({len} bytes) as larger than {limit}: {}",
            self.conn.peer,
            r.text()
        ))
    }
}

impl SmtpClient {
    /// Checks the account (an `smtp://` or `smtps://` URL, the trust settings); no connection
    /// is made yet. `InvalidArgument` otherwise.
    pub fn new(account: Account) -> Result<SmtpClient> {
        if !matches!(account.url.scheme, Scheme::Smtp | Scheme::Smtps) {
            return Err(Error::InvalidArgument(format!(
                "{} is not an SMTP server: use smtp:// (STARTTLS) or smtps://",
                account.url
            )));
        }
        let tls = TlsConnector::new(&account.trust)?;
        Ok(SmtpClient { account, tls })
    }

    /// Submit `message` (a whole RFC 5322 mail, CRLF line ends) from envelope sender `from`
    /// to the recipients `to`. Ok once the server answered 250 to the end of DATA.
    /// A permanent refusal (5xx: `552` the size limit — also found before DATA from the SIZE
    /// the server announces —, `550`/`553` a recipient) is `Refused` with the server's reply
    /// in the message; a temporary one (4xx) `MailStatus`; AUTH refused `LoginFailed`.
    pub fn send(&self, from: &str, to: &[&str], message: &[u8]) -> Result<()> {
        self.send_detailed(from, to, message).map_err(|e| e.error)
    }

    /// [`SmtpClient::send`], telling a refused recipient apart from the other failures
    /// ([`SendError::recipient`]).
    pub fn send_detailed(
        &self,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> std::result::Result<(), SendError> {
        check_address("sender", from)?;
        if to.is_empty() {
            return Err(Error::InvalidArgument("a mail needs a recipient".into()).into());
        }
        for t in to {
            if t.is_empty() {
                return Err(Error::InvalidArgument("an empty recipient address".into()).into());
            }
            check_address("recipient", t)?;
        }
        let mut conn = Conn::open(&self.account, &self.tls)?;
        // The whole session within ten reads' timeouts, and the time to send the mail at
        // 32 KiB/s.
        conn.set_deadline(Some(
            conn.timeout().saturating_mul(10)
                + std::time::Duration::from_secs(message.len() as u64 / (32 * 1024)),
        ));
        let mut session = Session {
            conn,
            account: &self.account,
        };
        let r = session.submit(&self.tls, from, to, message);
        // QUIT either way (after a refusal too: the server then forgets the transaction).
        if !matches!(
            r,
            Err(SendError {
                error: Error::ConnectFailed(_) | Error::Timeout(_) | Error::TlsFailed(_),
                ..
            })
        ) {
            session.quit();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::mail::testing::{account, localhost_cert, Fake, FakeConn};

    /// The DATA `write_data` gives, in one vector.
    fn data_payload(message: &[u8]) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let n = write_data(message, &mut |p| {
            out.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        (out, n)
    }

    #[test]
    fn data_is_dot_stuffed_with_crlf() {
        let (d, n) = data_payload(b"a\nb\r\n.c\r.\n..d");
        assert_eq!(d, b"a\r\nb\r\n..c\r\n..\r\n...d\r\n.\r\n");
        assert_eq!(n, 18);
        assert_eq!(data_payload(b""), (b".\r\n".to_vec(), 0));
        assert_eq!(data_payload(b"x\r\n"), (b"x\r\n.\r\n".to_vec(), 3));
        // A large mail: written in pieces (never a whole stuffed copy), lines and dots across
        // the pieces' edges as in one.
        let big = b".ab\n".repeat(50_000);
        let mut pieces = 0;
        let mut out = Vec::new();
        let n = write_data(&big, &mut |p| {
            assert!(p.len() <= DATA_CHUNK + 8, "{}", p.len());
            pieces += 1;
            out.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert!(pieces > 3, "{pieces}");
        let mut want = b"..ab\r\n".repeat(50_000);
        want.extend_from_slice(b".\r\n");
        assert_eq!(out, want);
        assert_eq!(n, 5 * 50_000);
        assert_eq!(data_size(&big), n);
    }

    fn ok_server(f: &mut FakeConn, size: &str, after_auth: &[&str]) {
        f.send("220 fake ESMTP");
        f.expect("EHLO localhost");
        f.send("250-fake\r\n250-STARTTLS\r\n250 8BITMIME");
        f.expect("STARTTLS");
        f.send("220 go ahead");
        f.accept_tls();
        f.expect("EHLO localhost");
        f.send(&format!(
            "250-fake\r\n250-AUTH LOGIN PLAIN\r\n250 SIZE {size}"
        ));
        f.expect_prefix("AUTH PLAIN ");
        for line in after_auth {
            if let Some(reply) = line.strip_prefix('>') {
                f.send(reply);
            } else {
                f.expect_prefix(line);
            }
        }
    }

    fn client(port: u16, scheme: &str, cert: &openssl::x509::X509) -> SmtpClient {
        SmtpClient::new(account(scheme, port, Some(cert))).unwrap()
    }

    #[test]
    fn submits_with_starttls_and_auth_plain() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            ok_server(
                f,
                "1000",
                &[
                    ">235 ok",
                    "MAIL FROM:<a@x> SIZE=10",
                    ">250 ok",
                    "RCPT TO:<b@y>",
                    ">250 ok",
                    "DATA",
                    ">354 go",
                ],
            );
            assert_eq!(f.read_until_dot(), b"Hi\r\n..dot\r\n");
            f.send("250 queued");
            f.expect("QUIT");
            f.send("221 bye");
        });
        client(fake.port, "smtp", &cert)
            .send("a@x", &["b@y"], b"Hi\r\n.dot\r\n")
            .unwrap();
        let seen = fake.finish();
        // AUTH PLAIN carries the password (inside TLS): base64 of \0user\0secret.
        let auth = seen.iter().find(|l| l.starts_with("AUTH PLAIN")).unwrap();
        assert_eq!(
            auth,
            &format!(
                "AUTH PLAIN {}",
                crate::bytes::base64_encode(b"\0user\0s3cret pw")
            )
        );
    }

    #[test]
    fn the_size_limit_is_named() {
        // Announced in EHLO: refused before MAIL FROM.
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key.clone(), cert.clone())), false, |f| {
            f.send("220 fake ESMTP");
            f.expect("EHLO localhost");
            f.send("250-fake\r\n250 STARTTLS");
            f.expect("STARTTLS");
            f.send("220 go ahead");
            f.accept_tls();
            f.expect("EHLO localhost");
            f.send("250-fake\r\n250-AUTH PLAIN\r\n250 SIZE 10");
            f.expect("QUIT");
            f.send("221 bye");
        });
        let e = client(fake.port, "smtp", &cert)
            .send("a@x", &["b@y"], &[b'x'; 100])
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Refused, "{e}");
        assert!(e.to_string().contains("size limit"), "{e}");
        assert!(e.to_string().contains("10 bytes"), "{e}");
        let seen = fake.finish();
        assert!(!seen.iter().any(|l| l.starts_with("AUTH")), "{seen:?}");

        // Refused at the end of DATA with 552.
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            ok_server(
                f,
                "0",
                &[
                    ">235 ok",
                    "MAIL FROM:",
                    ">250 ok",
                    "RCPT TO:",
                    ">250 ok",
                    "DATA",
                    ">354 go",
                ],
            );
            f.read_until_dot();
            f.send("552 5.3.4 Message size exceeds fixed limit\u{7}");
            f.expect("QUIT");
            f.send("221 bye");
        });
        let e = client(fake.port, "smtp", &cert)
            .send("a@x", &["b@y"], b"hello")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Refused, "{e}");
        let m = e.to_string();
        assert!(
            m.contains("552 5.3.4 Message size exceeds fixed limit?"),
            "{m}"
        );
        assert!(m.contains("size limit"), "{m}");
    }

    #[test]
    fn temporary_and_permanent_refusals() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key.clone(), cert.clone())), false, |f| {
            ok_server(
                f,
                "0",
                &[
                    ">235 ok",
                    "MAIL FROM:",
                    ">451 4.3.0 try later",
                    "QUIT",
                    ">221",
                ],
            );
        });
        let e = client(fake.port, "smtp", &cert)
            .send_detailed("a@x", &["b@y"], b"m")
            .unwrap_err();
        assert!(!e.recipient, "a refusal of the sender is the server's");
        let e = e.error;
        assert!(matches!(e, Error::MailStatus { code: 451, .. }), "{e}");
        assert!(e.is_transient());
        fake.finish();

        // A 4xx to RCPT TO: that recipient, for now.
        let fake = Fake::spawn(Some((key.clone(), cert.clone())), false, |f| {
            ok_server(
                f,
                "0",
                &[
                    ">235 ok",
                    "MAIL FROM:",
                    ">250 ok",
                    "RCPT TO:<full@y>",
                    ">452 4.2.2 Mailbox full",
                    "QUIT",
                    ">221",
                ],
            );
        });
        let e = client(fake.port, "smtp", &cert)
            .send_detailed("a@x", &["full@y"], b"m")
            .unwrap_err();
        assert!(e.recipient, "{e:?}");
        assert!(
            matches!(e.error, Error::MailStatus { code: 452, .. }),
            "{e:?}"
        );
        fake.finish();

        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            ok_server(
                f,
                "0",
                &[
                    ">235 ok",
                    "MAIL FROM:",
                    ">250 ok",
                    "RCPT TO:<nobody@y>",
                    ">550 5.1.1 <nobody@y>: Recipient address rejected",
                    "QUIT",
                    ">221",
                ],
            );
        });
        let e = client(fake.port, "smtp", &cert)
            .send_detailed("a@x", &["nobody@y"], b"m")
            .unwrap_err();
        assert!(e.recipient, "{e:?}");
        let e = e.error;
        assert_eq!(e.code(), ErrorCode::Refused, "{e}");
        assert!(e
            .to_string()
            .contains("550 5.1.1 <nobody@y>: Recipient address rejected"));
        assert!(!e.is_transient());
        fake.finish();
    }

    #[test]
    fn a_refused_login_is_login_failed_and_never_shows_the_password() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            ok_server(
                f,
                "0",
                &[">535 5.7.8 authentication failed", "QUIT", ">221"],
            );
        });
        let e = client(fake.port, "smtp", &cert)
            .send("a@x", &["b@y"], b"m")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");
        assert!(!e.to_string().contains("s3cret"));
        fake.finish();
    }

    #[test]
    fn no_starttls_no_login() {
        let (_, cert) = localhost_cert();
        let fake = Fake::spawn(None, false, |f| {
            f.send("220 fake ESMTP");
            f.expect("EHLO localhost");
            f.send("250-fake\r\n250 AUTH PLAIN LOGIN");
            f.read_rest();
        });
        let e = client(fake.port, "smtp", &cert)
            .send("a@x", &["b@y"], b"m")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        let seen = fake.finish();
        assert_eq!(seen, vec!["EHLO localhost".to_string()]);
    }

    #[test]
    fn implicit_tls_with_a_pin() {
        let (key, cert) = localhost_cert();
        let pin = crate::bytes::hex(&openssl::sha::sha256(&cert.to_der().unwrap()));
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            f.send("220 fake ESMTP");
            f.expect("EHLO localhost");
            f.send("250-fake\r\n250 AUTH LOGIN");
            f.expect("AUTH LOGIN");
            f.send("334 VXNlcm5hbWU6");
            f.expect(&crate::bytes::base64_encode(b"user"));
            f.send("334 UGFzc3dvcmQ6");
            f.expect(&crate::bytes::base64_encode(b"s3cret pw"));
            f.send("235 ok");
            f.expect("MAIL FROM:<>");
            f.send("250 ok");
            f.expect("RCPT TO:<b@y>");
            f.send("250 ok");
            f.expect("DATA");
            f.send("354 go");
            f.read_until_dot();
            f.send("250 ok");
            f.expect("QUIT");
            f.send("221 bye");
        });
        let mut acc = account("smtps", fake.port, None);
        acc.trust.pinned_sha256 = Some(pin);
        SmtpClient::new(acc)
            .unwrap()
            .send("", &["b@y"], b"m")
            .unwrap();
        fake.finish();

        // Another certificate pinned: refused before anything is said.
        let (key, cert) = localhost_cert();
        let (_, other) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert)), true, |f| f.read_rest());
        let mut acc = account("smtps", fake.port, None);
        acc.trust.pinned_sha256 = Some(crate::bytes::hex(&openssl::sha::sha256(
            &other.to_der().unwrap(),
        )));
        let e = SmtpClient::new(acc)
            .unwrap()
            .send("", &["b@y"], b"m")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("pin mismatch"), "{e}");
        assert!(fake.finish().is_empty());
    }

    #[test]
    fn an_untrusted_certificate_is_refused() {
        let (key, cert) = localhost_cert();
        let (_, other_ca) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert)), true, |f| f.read_rest());
        let e = client(fake.port, "smtps", &other_ca)
            .send("", &["b@y"], b"m")
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("certificate verification"), "{e}");
        fake.finish();
    }

    #[test]
    fn bad_arguments() {
        let (_, cert) = localhost_cert();
        let c = client(1, "smtp", &cert);
        for (from, to) in [("a\r\nRSET", "b@y"), ("a@x", "b@y>\r\nDATA"), ("a@x", "")] {
            let e = c.send(from, &[to], b"m").unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        }
        assert_eq!(
            SmtpClient::new(account("imaps", 1, None))
                .unwrap_err()
                .code(),
            ErrorCode::InvalidArgument
        );
    }
}
