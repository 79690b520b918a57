//! Reading a mailbox by POP3 (RFC 1939): USER/PASS inside TLS (STLS, RFC 2595, required on
//! `pop3://`), UIDL, LIST, RETR, DELE, QUIT.
//!
//! Written by hand (a small line protocol, over the same OpenSSL connection as IMAP and
//! SMTP). Multi-line answers are dot-unstuffed; a mail is read only up to the `max` the caller
//! accepts (the size LIST states is checked first; a mail that runs past `max` anyway is read
//! to its end and dropped, so the session goes on). Deletions take effect at QUIT
//! ([`Mailbox::close`]); a session that ends otherwise leaves every mail in place.

use super::conn::{sanitize, Conn, MAX_LINE};
use super::tls::TlsConnector;
use super::{Account, MailRef, Mailbox, Scheme};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use zeroize::Zeroizing;

/// The most entries of a UIDL or LIST answer (and lines of a CAPA answer).
const MAX_ENTRIES: usize = 100_000;
/// The longest unique-id (RFC 1939: 1 to 70 characters 0x21 to 0x7E).
const MAX_UIDL: usize = 70;
/// A mail larger than the caller accepts is read and dropped up to this size (the session
/// goes on); past it the session is given up.
const DISCARD_MAX: u64 = 256 * 1024 * 1024;

/// A logged-in POP3 session (in the TRANSACTION state).
#[derive(Debug)]
pub struct Pop3Mailbox {
    conn: Conn,
    broken: Option<String>,
}

/// A POP3 status line: `Ok(text)` for `+OK`, `Err(text)` for `-ERR` (sanitized).
type Status = std::result::Result<String, String>;

/// Whether a `-ERR` names a temporary condition (RFC 2449 `[IN-USE]`, RFC 3206 `[SYS/TEMP]`).
fn temporary(text: &str) -> bool {
    let t = text.to_ascii_uppercase();
    t.starts_with("[IN-USE]") || t.starts_with("[SYS/TEMP]") || t.starts_with("[LOGIN-DELAY]")
}

impl Pop3Mailbox {
    pub fn connect(account: &Account) -> Result<Pop3Mailbox> {
        if !matches!(account.url.scheme, Scheme::Pop3 | Scheme::Pop3s) {
            return Err(Error::InvalidArgument(format!(
                "{} is not a POP3 server",
                account.url
            )));
        }
        let bad_char = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if bad_char(&account.username) || bad_char(&account.password) {
            return Err(Error::InvalidArgument(
                "a POP3 user name or password cannot hold a line break or NUL".into(),
            ));
        }
        let tls = TlsConnector::new(&account.trust)?;
        let conn = Conn::open(account, &tls)?;
        let mut mb = Pop3Mailbox { conn, broken: None };
        let r = mb.login(account, &tls);
        if r.is_err() {
            mb.conn.shutdown();
        }
        r.map(|()| mb)
    }

    fn login(&mut self, account: &Account, tls: &TlsConnector) -> Result<()> {
        let peer = self.conn.peer.clone();
        match self.status()? {
            Ok(_) => {}
            Err(text) => {
                return Err(Error::MailStatus {
                    code: 0,
                    message: format!("{peer} refused the session: {text}"),
                })
            }
        }
        if !self.conn.is_tls() {
            let capa = self.capa()?;
            if capa
                .as_ref()
                .is_some_and(|c| !c.iter().any(|c| c == "STLS"))
            {
                return Err(Error::TlsFailed(format!(
                    "{peer} does not offer STLS: no password is sent in clear"
                )));
            }
            if let Err(text) = self.command("STLS")? {
                return Err(Error::TlsFailed(format!("{peer} refused STLS: {text}")));
            }
            self.conn.start_tls(tls)?;
        }
        let who = sanitize(account.username.as_bytes());
        if let Err(text) = self.command(&format!("USER {}", account.username))? {
            return Err(self.login_refused(&who, text));
        }
        let pass = Zeroizing::new(format!("PASS {}\r\n", account.password.as_str()));
        self.conn.write_all(pass.as_bytes())?;
        drop(pass);
        if let Err(text) = self.status()? {
            return Err(self.login_refused(&who, text));
        }
        Ok(())
    }

    fn login_refused(&self, who: &str, text: String) -> Error {
        let peer = &self.conn.peer;
        if temporary(&text) {
            Error::MailStatus {
                code: 0,
                message: format!("{peer} cannot log {who:?} in now: {text}"),
            }
        } else {
            Error::LoginFailed(format!("{peer} refused the login of {who:?}: {text}"))
        }
    }

    /// The capabilities (upper-case first words), `None` if CAPA is not known.
    fn capa(&mut self) -> Result<Option<Vec<String>>> {
        if self.command("CAPA")?.is_err() {
            return Ok(None);
        }
        let mut caps = Vec::new();
        self.multi(|line| {
            let w = String::from_utf8_lossy(line);
            if let Some(first) = w.split_ascii_whitespace().next() {
                caps.push(first.to_ascii_uppercase());
            }
            Ok(())
        })?;
        Ok(Some(caps))
    }

    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::ConnectFailed(format!(
                "the session with {} was given up: {why}",
                self.conn.peer
            ))),
            None => Ok(()),
        }
    }

    /// Marks the session broken when `r` is a failure of the connection or the protocol.
    fn track<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if matches!(
                e,
                Error::ConnectFailed(_) | Error::Timeout(_) | Error::BadResponse(_)
            ) && self.broken.is_none()
            {
                self.broken = Some(e.to_string());
            }
        }
        r
    }

    fn status(&mut self) -> Result<Status> {
        let line = self.conn.read_line()?;
        if let Some(rest) = line.strip_prefix(b"+OK") {
            Ok(Ok(sanitize(rest)))
        } else if let Some(rest) = line.strip_prefix(b"-ERR") {
            Ok(Err(sanitize(rest)))
        } else {
            Err(Error::BadResponse(format!(
                "{} did not answer in POP3: {:?}",
                self.conn.peer,
                sanitize(&line)
            )))
        }
    }

    fn command(&mut self, cmd: &str) -> Result<Status> {
        // The whole answer (a multi-line one too) within ten reads' timeouts.
        let budget = self.conn.timeout().saturating_mul(10);
        self.conn.set_deadline(Some(budget));
        self.conn.write_all(format!("{cmd}\r\n").as_bytes())?;
        self.status()
    }

    /// The lines of a multi-line answer (after its `+OK`), dot-unstuffed, to `each`.
    fn multi(&mut self, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut n = 0usize;
        loop {
            let line = self.conn.read_line()?;
            if line == b"." {
                return Ok(());
            }
            n += 1;
            if n > MAX_ENTRIES {
                return Err(Error::BadResponse(format!(
                    "{} sent more than {MAX_ENTRIES} lines",
                    self.conn.peer
                )));
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            each(line)?;
        }
    }

    /// `n value` lines of UIDL or LIST.
    fn numbered(&mut self, cmd: &str) -> Result<Option<Vec<(u32, String)>>> {
        if self.command(cmd)?.is_err() {
            return Ok(None);
        }
        let peer = self.conn.peer.clone();
        let mut out = Vec::new();
        self.multi(|line| {
            let text = String::from_utf8_lossy(line);
            let mut w = text.split_ascii_whitespace();
            let uidl = cmd == "UIDL";
            match (w.next().and_then(|n| n.parse::<u32>().ok()), w.next()) {
                (Some(n), Some(v))
                    if n > 0
                        && (!uidl
                            || (v.len() <= MAX_UIDL
                                && v.bytes().all(|b| (0x21..0x7f).contains(&b)))) =>
                {
                    out.push((n, v.to_string()));
                    Ok(())
                }
                _ => Err(Error::BadResponse(format!(
                    "{peer} sent a bad {cmd} line: {:?}",
                    sanitize(line)
                ))),
            }
        })?;
        Ok(Some(out))
    }

    /// Checks `mail` is message `seq` of this session (its UIDL); `InvalidArgument` if not.
    fn check_seq(&mut self, mail: &MailRef) -> Result<u32> {
        let peer = self.conn.peer.clone();
        if mail.seq == 0 {
            return Err(Error::InvalidArgument(format!(
                "mail {:?} has no POP3 message number",
                sanitize(mail.uid.as_bytes())
            )));
        }
        let seq = mail.seq;
        match self.command(&format!("UIDL {seq}"))? {
            Ok(text) => {
                let mut w = text.split_ascii_whitespace();
                let (n, uid) = (w.next(), w.next());
                if n != Some(seq.to_string().as_str()) || uid != Some(mail.uid.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "mail {:?} is not message {seq} of this session on {peer}",
                        sanitize(mail.uid.as_bytes())
                    )));
                }
                Ok(seq)
            }
            Err(text) => Err(Error::InvalidArgument(format!(
                "{peer} has no message {seq} now: {text}"
            ))),
        }
    }

    fn retr(&mut self, mail: &MailRef, max: u64) -> Result<Vec<u8>> {
        let peer = self.conn.peer.clone();
        let seq = self.check_seq(mail)?;
        if let Err(text) = self.command(&format!("RETR {seq}"))? {
            return Err(Error::MailStatus {
                code: 0,
                message: format!("{peer} refused RETR {seq}: {text}"),
            });
        }
        // A mail of up to `max` bytes: time to receive it at 32 KiB/s besides.
        let budget = self.conn.timeout().saturating_mul(10)
            + Duration::from_secs(max.min(DISCARD_MAX) / (32 * 1024));
        self.conn.set_deadline(Some(budget));
        let mut body = Vec::new();
        loop {
            let room = max.saturating_sub(body.len() as u64);
            let limit = usize::try_from(room.saturating_add(1))
                .unwrap_or(usize::MAX)
                .max(MAX_LINE);
            let line = self.conn.read_line_max(limit)?;
            if line == b"." {
                return Ok(body);
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if (body.len() + line.len() + 2) as u64 > max {
                break;
            }
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
        // Past max: the rest is read and dropped.
        let mut seen = body.len() as u64;
        drop(body);
        loop {
            let line = self.conn.read_line_max(1024 * 1024)?;
            if line == b"." {
                break;
            }
            seen += line.len() as u64 + 2;
            if seen > DISCARD_MAX {
                self.broken = Some(format!("mail {seq} ran past {DISCARD_MAX} bytes"));
                break;
            }
        }
        Err(Error::TooLarge(format!(
            "mail {} on {peer} is more than the {max} bytes accepted",
            sanitize(mail.uid.as_bytes())
        )))
    }
}

impl Mailbox for Pop3Mailbox {
    fn list(&mut self) -> Result<Vec<MailRef>> {
        self.check_usable()?;
        let r = (|| {
            let peer = self.conn.peer.clone();
            let uidl = self.numbered("UIDL")?.ok_or_else(|| {
                Error::BadResponse(format!(
                    "{peer} does not support UIDL (needed to know a mail again)"
                ))
            })?;
            let sizes: HashMap<u32, u64> = self
                .numbered("LIST")?
                .ok_or_else(|| Error::BadResponse(format!("{peer} refused LIST")))?
                .into_iter()
                .filter_map(|(n, s)| Some((n, s.parse::<u64>().ok()?)))
                .collect();
            let mut out: Vec<MailRef> = uidl
                .into_iter()
                .map(|(seq, uid)| MailRef {
                    uid,
                    size: sizes.get(&seq).copied().unwrap_or(0),
                    seq,
                })
                .collect();
            out.sort_by_key(|m| m.seq);
            Ok(out)
        })();
        self.track(r)
    }

    fn fetch(&mut self, mail: &MailRef, max: u64) -> Result<Vec<u8>> {
        self.check_usable()?;
        if mail.size > max {
            return Err(Error::TooLarge(format!(
                "mail {} on {} is {} bytes, more than the {max} accepted",
                sanitize(mail.uid.as_bytes()),
                self.conn.peer,
                mail.size
            )));
        }
        let r = self.retr(mail, max);
        self.track(r)
    }

    fn delete(&mut self, mail: &MailRef) -> Result<()> {
        self.check_usable()?;
        let r = (|| {
            let seq = self.check_seq(mail)?;
            match self.command(&format!("DELE {seq}"))? {
                Ok(_) => Ok(()),
                Err(text) => Err(Error::MailStatus {
                    code: 0,
                    message: format!("{} refused DELE {seq}: {text}", self.conn.peer),
                }),
            }
        })();
        self.track(r)
    }

    fn set_aside(&mut self, _mail: &MailRef, _folder: &str) -> Result<()> {
        Ok(())
    }

    fn uidvalidity(&self) -> Option<u64> {
        None
    }

    fn can_idle(&self) -> bool {
        false
    }

    fn wait(&mut self, _max: Duration, _stop: &AtomicBool) -> Result<bool> {
        Ok(false)
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.check_usable()?;
        let r = self.command("QUIT");
        self.conn.shutdown();
        match r? {
            Ok(_) => Ok(()),
            Err(text) => Err(Error::MailStatus {
                code: 0,
                message: format!(
                    "{} refused QUIT (the deletions may not have taken effect): {text}",
                    self.conn.peer
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::mail::testing::{account, localhost_cert, Fake, FakeConn};

    fn login(f: &mut FakeConn) {
        f.send("+OK POP3 ready");
        f.expect("CAPA");
        f.send("+OK\r\nUSER\r\nSTLS\r\nUIDL\r\n.");
        f.expect("STLS");
        f.send("+OK Begin TLS");
        f.accept_tls();
        f.expect("USER user");
        f.send("+OK");
        f.expect("PASS s3cret pw");
        f.send("+OK Logged in.");
    }

    #[test]
    fn a_whole_session_with_stls() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            login(f);
            f.expect("UIDL");
            f.send("+OK\r\n1 abc\r\n2 def\r\n.");
            f.expect("LIST");
            f.send("+OK 2 messages\r\n1 27\r\n2 5000\r\n.");
            f.expect("UIDL 1");
            f.send("+OK 1 abc");
            f.expect("RETR 1");
            f.send("+OK 27 octets\r\nSubject: x\r\n\r\n..dot line\r\n..\r\n.");
            f.expect("UIDL 1");
            f.send("+OK 1 abc");
            f.expect("DELE 1");
            f.send("+OK marked");
            f.expect("UIDL 2");
            f.send("+OK 2 zzz");
            f.expect("QUIT");
            f.send("+OK bye");
        });
        let mut mb: Box<dyn Mailbox> =
            Box::new(Pop3Mailbox::connect(&account("pop3", fake.port, Some(&cert))).unwrap());
        let list = mb.list().unwrap();
        assert_eq!(
            list,
            [
                MailRef {
                    uid: "abc".into(),
                    size: 27,
                    seq: 1
                },
                MailRef {
                    uid: "def".into(),
                    size: 5000,
                    seq: 2
                }
            ]
        );
        assert_eq!(
            mb.fetch(&list[0], 100).unwrap(),
            b"Subject: x\r\n\r\n.dot line\r\n.\r\n"
        );
        mb.delete(&list[0]).unwrap();
        assert_eq!(
            mb.fetch(&list[1], 100).unwrap_err().code(),
            ErrorCode::TooLarge
        );
        // Message 2 is another mail now: not touched.
        assert_eq!(
            mb.delete(&list[1]).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        assert_eq!(mb.uidvalidity(), None);
        assert!(!mb.can_idle());
        mb.set_aside(&list[1], "Junk").unwrap();
        assert!(!mb
            .wait(Duration::from_secs(60), &AtomicBool::new(false))
            .unwrap());
        mb.close().unwrap();
        fake.finish();
    }

    #[test]
    fn a_mail_past_max_is_dropped_and_the_session_goes_on() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            f.send("+OK POP3 ready");
            f.expect("USER user");
            f.send("+OK");
            f.expect("PASS s3cret pw");
            f.send("+OK");
            f.expect("UIDL 1");
            f.send("+OK 1 abc");
            f.expect("RETR 1");
            f.send("+OK\r\n0123456789\r\n0123456789\r\n.");
            f.expect("QUIT");
            f.send("+OK bye");
        });
        let mut mb = Pop3Mailbox::connect(&account("pop3s", fake.port, Some(&cert))).unwrap();
        let m = MailRef {
            uid: "abc".into(),
            size: 10,
            seq: 1,
        };
        let e = mb.fetch(&m, 15).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
        Box::new(mb).close().unwrap();
        fake.finish();
    }

    #[test]
    fn a_refused_password_is_login_failed() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            f.send("+OK POP3 ready");
            f.expect("CAPA");
            f.send("-ERR unknown command");
            f.expect("STLS");
            f.send("+OK");
            f.accept_tls();
            f.expect("USER user");
            f.send("+OK");
            f.expect("PASS s3cret pw");
            f.send("-ERR [AUTH] Authentication failed.");
            f.read_rest();
        });
        let e = Pop3Mailbox::connect(&account("pop3", fake.port, Some(&cert))).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");
        assert!(!e.to_string().contains("s3cret"));
        fake.finish();
    }

    #[test]
    fn no_stls_offered_no_login() {
        let fake = Fake::spawn(None, false, |f| {
            f.send("+OK POP3 ready");
            f.expect("CAPA");
            f.send("+OK\r\nUSER\r\nUIDL\r\n.");
            f.read_rest();
        });
        let e = Pop3Mailbox::connect(&account("pop3", fake.port, None)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert_eq!(fake.finish(), ["CAPA"]);
    }
}
