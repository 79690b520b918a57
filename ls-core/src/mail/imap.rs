//! Reading a mailbox by IMAP4rev1 (RFC 3501): LOGIN inside TLS (STARTTLS required on
//! `imap://`), `UID FETCH (UID RFC822.SIZE FLAGS)`, `UID FETCH BODY.PEEK[]`, `UID STORE +FLAGS (\Deleted)` with
//! `UID EXPUNGE` (RFC 4315) or `EXPUNGE`, `UID MOVE` (RFC 6851) or COPY, IDLE (RFC 2177).
//!
//! Written by hand: no maintained blocking IMAP crate runs over OpenSSL with the trust
//! settings of [`super::MailTrust`]. The subset: greeting, CAPABILITY, STARTTLS, LOGIN (quoted
//! strings, or literals for what a quoted string cannot carry) or AUTHENTICATE PLAIN where
//! LOGIN is disabled, SELECT, `UID FETCH 1:* (UID RFC822.SIZE FLAGS)` to list (mails flagged
//! `\Deleted` left out), `UID FETCH uid (BODY.PEEK[])`, `UID STORE`, `UID EXPUNGE`/`EXPUNGE`,
//! CREATE, `UID MOVE`/`UID COPY`, IDLE, LOGOUT. Untagged responses are taken whenever they
//! come (EXISTS and EXPUNGE keep the count; the rest is skipped). Only a count that grows is
//! new mail: a server that repeats `* n EXISTS` (at the start of each IDLE, say) does not wake
//! [`Mailbox::wait`].
//!
//! Bounds against a hostile server: a line is at most 64 KiB, the literals of one response at
//! most the `max` the caller accepts for a mail together (64 KiB elsewhere), at most 64
//! literals in one response, at most [`MAX_LIST`] mails listed, and each command's answer
//! complete within [`command_budget`] (besides the timeout of each read).
//! Folder names are ASCII (modified UTF-7 is not done; `&` is written `&-`).
//!
//! Errors and the session: a command the server refuses (a tagged NO: `MailStatus`; a tagged
//! BAD: `BadResponse`), one refused before it is sent (`InvalidArgument`) and a mail too large
//! (`TooLarge`, read and dropped) leave the session usable: the caller may go on with other
//! mails ([`leaves_session_usable`]). A lost connection, a timeout, a BYE (`ConnectFailed`,
//! `Timeout`) and a server out of step with the protocol give the session up: every later call
//! is `ConnectFailed`.

use super::conn::{sanitize, Conn};
use super::tls::TlsConnector;
use super::{Account, MailRef, Mailbox, Scheme};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The largest literal accepted outside a mail's body.
const SMALL_LITERAL: u64 = 64 * 1024;
/// The most literals in one response.
const MAX_LITERALS: usize = 64;
/// A literal larger than the caller accepts is read and dropped up to this size (the session
/// goes on); past it the session is given up.
const DISCARD_MAX: u64 = 256 * 1024 * 1024;
/// How often [`Mailbox::wait`] looks at its `stop` flag.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The most mails [`Mailbox::list`] takes from the server (more: `BadResponse`).
pub const MAX_LIST: usize = 100_000;

/// How long the whole answer to a command may take: ten reads' timeouts, and the time to
/// receive `literal_max` bytes at 32 KiB/s.
fn command_budget(timeout: Duration, literal_max: u64) -> Duration {
    timeout.saturating_mul(10) + Duration::from_secs(literal_max / (32 * 1024))
}

/// Whether `e`, returned by a call on an [`ImapMailbox`], left the session usable: the
/// server refused that command (a tagged NO or BAD), the call was refused before anything was
/// sent (a bad UID or folder name), or the mail was larger than accepted (read and dropped).
/// The caller may then go on with other mails; otherwise (the connection lost or timed out,
/// TLS, the server's BYE, the session given up) it must reconnect. A session given up after
/// a protocol error answers every later call with `ConnectFailed`.
pub fn leaves_session_usable(e: &Error) -> bool {
    matches!(
        e,
        Error::MailStatus { .. }
            | Error::BadResponse(_)
            | Error::InvalidArgument(_)
            | Error::TooLarge(_)
            | Error::Refused(_)
    )
}

/// Whether `folder` is a folder name this client can send (printable ASCII, not empty):
/// `InvalidArgument` saying why not.
pub fn check_folder_name(folder: &str) -> Result<()> {
    folder_name(folder).map(|_| ())
}

/// A logged-in IMAP session with its folder selected.
#[derive(Debug)]
pub struct ImapMailbox {
    conn: Conn,
    tag: u32,
    /// Upper-case capability names.
    caps: Vec<String>,
    uidvalidity: Option<u64>,
    /// The folder's message count as the server last said.
    exists: u32,
    /// The count grew since the last [`Mailbox::list`] (a new mail came meanwhile).
    grown: bool,
    /// Why the session cannot go on (the connection is out of step or lost).
    broken: Option<String>,
    /// LOGOUT sent: a BYE is expected.
    logging_out: bool,
}

/// One server response: its line(s), literals taken out (the `{n}` left in the line).
#[derive(Debug, Default)]
struct Resp {
    line: Vec<u8>,
    lits: Vec<Option<Vec<u8>>>,
    next_lit: usize,
    pos: usize,
}

/// A parsed value of a response.
#[derive(Debug, PartialEq)]
enum Val {
    Atom(String),
    Bytes(Vec<u8>),
    List(Vec<Val>),
    Nil,
}

impl Val {
    fn atom(&self) -> Option<&str> {
        match self {
            Val::Atom(a) => Some(a),
            _ => None,
        }
    }
}

impl Resp {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The next word (up to a space), for the tag, the number and the keyword.
    fn word(&mut self) -> String {
        self.skip_sp();
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b' ') {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.line[start..self.pos]).into_owned()
    }

    /// The rest of the line, from here.
    fn rest(&mut self) -> &[u8] {
        self.skip_sp();
        &self.line[self.pos.min(self.line.len())..]
    }

    /// The next value; `None` if there is none or it is malformed.
    fn value(&mut self, depth: usize) -> Option<Val> {
        if depth > 16 {
            return None;
        }
        self.skip_sp();
        match self.peek()? {
            b'(' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_sp();
                    match self.peek()? {
                        b')' => {
                            self.pos += 1;
                            return Some(Val::List(items));
                        }
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    let b = self.peek()?;
                    self.pos += 1;
                    match b {
                        b'\\' => {
                            out.push(self.peek()?);
                            self.pos += 1;
                        }
                        b'"' => return Some(Val::Bytes(out)),
                        _ => out.push(b),
                    }
                }
            }
            b'{' => {
                let close = self.line[self.pos..].iter().position(|b| *b == b'}')?;
                self.pos += close + 1;
                let lit = self.lits.get_mut(self.next_lit)?.take()?;
                self.next_lit += 1;
                Some(Val::Bytes(lit))
            }
            b')' => None,
            _ => {
                // An atom; `BODY[HEADER.FIELDS (A B)]` is one, brackets and all.
                let start = self.pos;
                let mut bracket = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'[' => bracket += 1,
                        b']' => bracket = bracket.saturating_sub(1),
                        b' ' | b'(' | b')' | b'"' | b'{' if bracket == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let a = String::from_utf8_lossy(&self.line[start..self.pos]).into_owned();
                Some(if a.eq_ignore_ascii_case("NIL") {
                    Val::Nil
                } else {
                    Val::Atom(a)
                })
            }
        }
    }

    /// A response code at this point (`[UIDVALIDITY 3]`): its words, upper-cased first.
    fn code(&mut self) -> Option<Vec<String>> {
        self.skip_sp();
        if self.peek() != Some(b'[') {
            return None;
        }
        let close = self.line[self.pos..].iter().position(|b| *b == b']')?;
        let inner = &self.line[self.pos + 1..self.pos + close];
        self.pos += close + 1;
        let mut words: Vec<String> = inner
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if let Some(first) = words.first_mut() {
            *first = first.to_ascii_uppercase();
        }
        Some(words)
    }
}

/// The literal a line announces at its end (`{n}` or `{n+}`).
fn trailing_literal(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Ok,
    No,
    Bad,
}

/// The tagged end of a command.
#[derive(Debug)]
struct Tagged {
    status: Status,
    /// The response code's words (`["ALREADYEXISTS"]`), if any.
    code: Option<Vec<String>>,
    text: String,
}

impl Tagged {
    fn code_is(&self, name: &str) -> bool {
        self.code
            .as_ref()
            .and_then(|c| c.first())
            .is_some_and(|c| c == name)
    }
}

/// An untagged response: `* [n] KEYWORD …` (the number kept by `next`), the response kept to
/// parse the rest.
#[derive(Debug)]
struct Untagged {
    kw: String,
    resp: Resp,
}

enum Next {
    Untagged(Untagged),
    Continuation,
    Tagged(String, Tagged),
}

/// What a response read during IDLE meant.
enum IdleStep {
    /// The server's `+`: IDLE is on.
    Continuation,
    /// Something else untagged (noted).
    More,
    /// The IDLE command ended (by the server, or after our DONE): whether new mail came.
    Ended(bool),
}

/// What a command is made of: text as is, or a string (quoted, or a literal if it must be).
enum Arg<'a> {
    Raw(&'a str),
    Str(&'a [u8]),
    /// A SASL response: sent after the server's `+`, then CRLF.
    Continuation(&'a [u8]),
}

fn quotable(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| (1..0x80).contains(&b) && b != b'\r' && b != b'\n')
}

/// A folder name as sent: printable ASCII only (`InvalidArgument` otherwise), `&` as `&-`.
fn folder_name(folder: &str) -> Result<String> {
    if folder.is_empty() || !folder.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::InvalidArgument(format!(
            "the IMAP folder {folder:?} is not a printable ASCII name (modified UTF-7 is not \
             supported)"
        )));
    }
    Ok(folder.replace('&', "&-"))
}

fn check_uid(mail: &MailRef) -> Result<&str> {
    let uid = mail.uid.as_str();
    if uid.is_empty() || uid.len() > 10 || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidArgument(format!(
            "{:?} is not an IMAP UID",
            sanitize(uid.as_bytes())
        )));
    }
    Ok(uid)
}

impl ImapMailbox {
    pub fn connect(account: &Account) -> Result<ImapMailbox> {
        if !matches!(account.url.scheme, Scheme::Imap | Scheme::Imaps) {
            return Err(Error::InvalidArgument(format!(
                "{} is not an IMAP server",
                account.url
            )));
        }
        let folder = folder_name(account.url.folder.as_deref().unwrap_or("INBOX"))?;
        let tls = TlsConnector::new(&account.trust)?;
        let conn = Conn::open(account, &tls)?;
        let mut mb = ImapMailbox {
            conn,
            tag: 0,
            caps: Vec::new(),
            uidvalidity: None,
            exists: 0,
            grown: false,
            broken: None,
            logging_out: false,
        };
        let r = mb.login_and_select(account, &tls, &folder);
        if r.is_err() {
            mb.conn.shutdown();
        }
        r.map(|()| mb)
    }

    fn login_and_select(
        &mut self,
        account: &Account,
        tls: &TlsConnector,
        folder: &str,
    ) -> Result<()> {
        let peer = self.conn.peer.clone();
        let preauth = match self.next(SMALL_LITERAL)? {
            Next::Untagged(u) if u.kw == "OK" => false,
            Next::Untagged(u) if u.kw == "PREAUTH" => true,
            _ => return Err(Error::BadResponse(format!("{peer} did not greet in IMAP"))),
        };
        if !self.conn.is_tls() {
            if preauth {
                return Err(Error::TlsFailed(format!(
                    "{peer} opened the session without TLS (PREAUTH): nothing is read in clear"
                )));
            }
            if self.caps.is_empty() {
                self.simple("CAPABILITY")?;
            }
            if !self.has("STARTTLS") {
                return Err(Error::TlsFailed(format!(
                    "{peer} does not offer STARTTLS: no password is sent in clear"
                )));
            }
            let t = self.run(&[Arg::Raw("STARTTLS")], SMALL_LITERAL, &mut |_| Ok(()))?;
            if t.status != Status::Ok {
                return Err(Error::TlsFailed(format!(
                    "{peer} refused STARTTLS: {}",
                    t.text
                )));
            }
            self.conn.start_tls(tls)?;
            // What was said in clear is forgotten.
            self.caps.clear();
        }
        if self.caps.is_empty() {
            self.simple("CAPABILITY")?;
        }
        if !preauth {
            self.login(account)?;
        }
        // Capabilities grow after login (IDLE, MOVE, UIDPLUS).
        self.simple("CAPABILITY")?;
        let mut uidvalidity = None;
        let t = self.run(
            &[Arg::Raw("SELECT "), Arg::Str(folder.as_bytes())],
            SMALL_LITERAL,
            &mut |u| {
                if u.kw == "OK" {
                    if let Some(code) = u.resp.code() {
                        if code.first().map(String::as_str) == Some("UIDVALIDITY") {
                            uidvalidity = code.get(1).and_then(|v| v.parse::<u64>().ok());
                        }
                    }
                }
                Ok(())
            },
        )?;
        match t.status {
            Status::Ok => {}
            Status::No if t.code_is("NONEXISTENT") || !t.code_is("UNAVAILABLE") => {
                return Err(Error::InvalidArgument(format!(
                    "{peer} cannot open the folder {folder:?}: {}",
                    t.text
                )))
            }
            _ => return Err(self.refused("SELECT", t)),
        }
        self.uidvalidity = uidvalidity;
        // What SELECT counted is listed next, not new.
        self.grown = false;
        Ok(())
    }
}

impl ImapMailbox {
    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    fn set_caps<'a>(&mut self, words: impl Iterator<Item = &'a str>) {
        self.caps = words
            .filter(|w| !w.is_empty())
            .map(|w| w.to_ascii_uppercase())
            .collect();
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

    fn bad(&self, what: &str, line: &[u8]) -> Error {
        Error::BadResponse(format!("{} {what}: {:?}", self.conn.peer, sanitize(line)))
    }

    /// One response, its literals read (each at most `literal_max`: a larger one is read
    /// and dropped, and `TooLarge` returned once the response is over).
    fn read_response(&mut self, literal_max: u64) -> Result<Resp> {
        let mut resp = Resp::default();
        let mut oversize = None;
        // The literals kept, together at most `literal_max`.
        let mut kept = 0u64;
        let mut line = self.conn.read_line()?;
        loop {
            let lit = trailing_literal(&line);
            resp.line.extend_from_slice(&line);
            let Some(n) = lit else { break };
            if resp.lits.len() >= MAX_LITERALS {
                return Err(self.bad("sent too many literals in one response", &resp.line));
            }
            if kept.saturating_add(n) > literal_max {
                if n > DISCARD_MAX {
                    self.broken = Some(format!("a literal of {n} bytes"));
                    return Err(Error::TooLarge(format!(
                        "{} sent {n} bytes, more than the {literal_max} accepted",
                        self.conn.peer
                    )));
                }
                self.conn.discard(n)?;
                oversize = Some(n);
                resp.lits.push(None);
            } else {
                kept += n;
                let n = usize::try_from(n).map_err(|_| self.bad("literal", &line))?;
                resp.lits.push(Some(self.conn.read_exact(n)?));
            }
            if resp.line.len() > super::conn::MAX_LINE {
                return Err(self.bad("sent too long a response", &resp.line[..80]));
            }
            line = self.conn.read_line()?;
        }
        if let Some(n) = oversize {
            return Err(Error::TooLarge(format!(
                "{} sent {n} bytes, more than the {literal_max} accepted",
                self.conn.peer
            )));
        }
        Ok(resp)
    }

    /// The next response; the folder's count, its UIDVALIDITY and the capabilities kept as
    /// they come. A BYE (other than to LOGOUT) ends the session: `MailStatus`.
    fn next(&mut self, literal_max: u64) -> Result<Next> {
        let mut resp = self.read_response(literal_max)?;
        let tag = resp.word();
        if tag == "+" {
            return Ok(Next::Continuation);
        }
        if tag != "*" {
            let status = match resp.word().to_ascii_uppercase().as_str() {
                "OK" => Status::Ok,
                "NO" => Status::No,
                "BAD" => Status::Bad,
                _ => return Err(self.bad("sent a malformed response", &resp.line)),
            };
            resp.skip_sp();
            let text_start = resp.pos;
            let code = resp.code();
            if let Some(c) = &code {
                if c.first().map(String::as_str) == Some("CAPABILITY") {
                    let words: Vec<String> = c[1..].to_vec();
                    self.set_caps(words.iter().map(String::as_str));
                }
            }
            // The text with its code: `[AUTHENTICATIONFAILED] Authentication failed.`
            let text = sanitize(resp.line.get(text_start..).unwrap_or_default());
            return Ok(Next::Tagged(tag, Tagged { status, code, text }));
        }
        let first = resp.word();
        let (num, kw) = match first.parse::<u32>() {
            Ok(n) => (Some(n), resp.word().to_ascii_uppercase()),
            Err(_) => (None, first.to_ascii_uppercase()),
        };
        let start = resp.pos;
        match (num, kw.as_str()) {
            (Some(n), "EXISTS") => {
                self.grown |= n > self.exists;
                self.exists = n;
            }
            (Some(_), "EXPUNGE") => self.exists = self.exists.saturating_sub(1),
            (None, "CAPABILITY") => {
                let rest = String::from_utf8_lossy(resp.rest()).into_owned();
                self.set_caps(rest.split(' '));
            }
            (None, "OK") | (None, "PREAUTH") => {
                if let Some(c) = resp.code() {
                    if c.first().map(String::as_str) == Some("CAPABILITY") {
                        let words: Vec<String> = c[1..].to_vec();
                        self.set_caps(words.iter().map(String::as_str));
                    }
                }
            }
            (None, "BYE") if !self.logging_out => {
                // The server ends the session: the connection is lost, not a command refused.
                let text = sanitize(resp.rest());
                self.broken = Some("the server said BYE".into());
                return Err(Error::ConnectFailed(format!(
                    "{} closed the session: {text}",
                    self.conn.peer
                )));
            }
            _ => {}
        }
        resp.pos = start;
        Ok(Next::Untagged(Untagged { kw, resp }))
    }

    /// Runs one command; each untagged response goes to `on`. Failures of the connection
    /// (and of the protocol) give the session up.
    fn run(
        &mut self,
        args: &[Arg<'_>],
        literal_max: u64,
        on: &mut dyn FnMut(&mut Untagged) -> Result<()>,
    ) -> Result<Tagged> {
        self.check_usable()?;
        let budget = command_budget(self.conn.timeout(), literal_max);
        self.conn.set_deadline(Some(budget));
        let r = self.run_inner(args, literal_max, on);
        self.conn.set_deadline(None);
        if let Err(e) = &r {
            if !matches!(e, Error::TooLarge(_) | Error::InvalidArgument(_)) && self.broken.is_none()
            {
                self.broken = Some(e.to_string());
            }
        }
        r
    }

    fn run_inner(
        &mut self,
        args: &[Arg<'_>],
        literal_max: u64,
        on: &mut dyn FnMut(&mut Untagged) -> Result<()>,
    ) -> Result<Tagged> {
        self.tag += 1;
        let tag = format!("A{:04}", self.tag);
        // The command may hold the password: wiped when dropped.
        let mut out = Zeroizing::new(format!("{tag} ").into_bytes());
        let mut pending: Option<Error> = None;
        for arg in args {
            let sync: Option<&[u8]> = match arg {
                Arg::Raw(s) => {
                    out.extend_from_slice(s.as_bytes());
                    None
                }
                Arg::Str(s) if quotable(s) => {
                    out.push(b'"');
                    for &b in s.iter() {
                        if b == b'"' || b == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                    None
                }
                Arg::Str(s) => {
                    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
                    Some(s)
                }
                Arg::Continuation(s) => {
                    out.extend_from_slice(b"\r\n");
                    Some(s)
                }
            };
            if let Some(data) = sync {
                self.conn.write_all(&out)?;
                out.clear();
                // The server's go-ahead (or the end of the command).
                loop {
                    match self.next(literal_max)? {
                        Next::Continuation => break,
                        Next::Untagged(mut u) => on(&mut u)?,
                        Next::Tagged(t, end) if t == tag => {
                            if end.status == Status::Ok {
                                return Err(Error::BadResponse(format!(
                                    "{} ended a command before its continuation",
                                    self.conn.peer
                                )));
                            }
                            return Ok(end);
                        }
                        Next::Tagged(..) => {
                            return Err(Error::BadResponse(format!(
                                "{} answered with an unknown tag",
                                self.conn.peer
                            )))
                        }
                    }
                }
                out.extend_from_slice(data);
            }
        }
        out.extend_from_slice(b"\r\n");
        self.conn.write_all(&out)?;
        drop(out);
        loop {
            let n = match self.next(literal_max) {
                Ok(n) => n,
                // Read and dropped: the session is still in step; the end is read first.
                Err(e @ Error::TooLarge(_)) if self.broken.is_none() => {
                    pending.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match n {
                Next::Untagged(mut u) => {
                    if pending.is_none() {
                        on(&mut u)?;
                    }
                }
                Next::Continuation => {
                    return Err(Error::BadResponse(format!(
                        "{} asked for more of a complete command",
                        self.conn.peer
                    )))
                }
                Next::Tagged(t, end) if t == tag => {
                    return match pending {
                        Some(e) => Err(e),
                        None => Ok(end),
                    }
                }
                Next::Tagged(..) => {
                    return Err(Error::BadResponse(format!(
                        "{} answered with an unknown tag",
                        self.conn.peer
                    )))
                }
            }
        }
    }

    /// A command without arguments that must succeed.
    fn simple(&mut self, cmd: &str) -> Result<()> {
        let t = self.run(&[Arg::Raw(cmd)], SMALL_LITERAL, &mut |_| Ok(()))?;
        self.expect_ok(cmd, t)
    }

    fn expect_ok(&self, what: &str, t: Tagged) -> Result<()> {
        if t.status == Status::Ok {
            Ok(())
        } else {
            Err(self.refused(what, t))
        }
    }

    /// A NO is the server's refusal for now (`MailStatus`), a BAD a protocol error.
    fn refused(&self, what: &str, t: Tagged) -> Error {
        let peer = &self.conn.peer;
        match t.status {
            Status::Bad => Error::BadResponse(format!("{peer} rejected {what}: {}", t.text)),
            _ => Error::MailStatus {
                code: 0,
                message: format!("{peer} refused {what}: {}", t.text),
            },
        }
    }

    fn login(&mut self, account: &Account) -> Result<()> {
        let peer = self.conn.peer.clone();
        if !self.conn.is_tls() {
            return Err(Error::Internal("LOGIN outside TLS".into()));
        }
        let user = account.username.as_bytes();
        let pass = account.password.as_bytes();
        let t = if !self.has("LOGINDISABLED") {
            self.run(
                &[
                    Arg::Raw("LOGIN "),
                    Arg::Str(user),
                    Arg::Raw(" "),
                    Arg::Str(pass),
                ],
                SMALL_LITERAL,
                &mut |_| Ok(()),
            )?
        } else if self.has("AUTH=PLAIN") {
            let mut raw = Zeroizing::new(Vec::with_capacity(user.len() + pass.len() + 2));
            raw.push(0);
            raw.extend_from_slice(user);
            raw.push(0);
            raw.extend_from_slice(pass);
            let b64 = Zeroizing::new(crate::bytes::base64_encode(&raw));
            self.run(
                &[
                    Arg::Raw("AUTHENTICATE PLAIN"),
                    Arg::Continuation(b64.as_bytes()),
                ],
                SMALL_LITERAL,
                &mut |_| Ok(()),
            )?
        } else {
            return Err(Error::LoginFailed(format!(
                "{peer} allows neither LOGIN nor AUTHENTICATE PLAIN"
            )));
        };
        let who = sanitize(user);
        match t.status {
            Status::Ok => Ok(()),
            Status::No if t.code_is("UNAVAILABLE") || t.code_is("INUSE") => {
                Err(Error::MailStatus {
                    code: 0,
                    message: format!("{peer} cannot log {who:?} in now: {}", t.text),
                })
            }
            Status::No => Err(Error::LoginFailed(format!(
                "{peer} refused the login of {who:?}: {}",
                t.text
            ))),
            Status::Bad => Err(Error::BadResponse(format!(
                "{peer} rejected the login command: {}",
                t.text
            ))),
        }
    }

    fn store_deleted(&mut self, uid: &str) -> Result<()> {
        let cmd = format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)");
        self.simple(&cmd)?;
        if self.has("UIDPLUS") {
            self.simple(&format!("UID EXPUNGE {uid}"))
        } else {
            self.simple("EXPUNGE")
        }
    }
}

/// The `(key value …)` of a FETCH response as pairs.
fn fetch_items(u: &mut Untagged) -> Vec<(String, Val)> {
    let mut out = Vec::new();
    if let Some(Val::List(items)) = u.resp.value(0) {
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(k) = k.atom() {
                out.push((k.to_ascii_uppercase(), v));
            }
        }
    }
    out
}

impl Mailbox for ImapMailbox {
    fn list(&mut self) -> Result<Vec<MailRef>> {
        self.check_usable()?;
        if self.exists == 0 {
            // A NOOP lets the server tell of new mail first.
            self.simple("NOOP")?;
            if self.exists == 0 {
                return Ok(Vec::new());
            }
        }
        // What grows from now on is announced again at the next wait.
        self.grown = false;
        let mut mails: Vec<(u64, u64)> = Vec::new();
        let peer = self.conn.peer.clone();
        let t = self.run(
            &[Arg::Raw("UID FETCH 1:* (UID RFC822.SIZE FLAGS)")],
            SMALL_LITERAL,
            &mut |u| {
                if u.kw != "FETCH" {
                    return Ok(());
                }
                let (mut uid, mut size, mut deleted) = (None, None, false);
                for (k, v) in fetch_items(u) {
                    match (k.as_str(), v) {
                        ("UID", Val::Atom(a)) => uid = a.parse::<u64>().ok(),
                        ("RFC822.SIZE", Val::Atom(a)) => size = a.parse::<u64>().ok(),
                        ("FLAGS", Val::List(f)) => {
                            deleted = f.iter().any(|f| {
                                f.atom()
                                    .is_some_and(|a| a.eq_ignore_ascii_case("\\Deleted"))
                            })
                        }
                        _ => {}
                    }
                }
                // A FETCH without both is a flag update the server sent on its own.
                if let (Some(uid), Some(size), false) = (uid, size, deleted) {
                    if mails.len() >= MAX_LIST {
                        return Err(Error::BadResponse(format!(
                            "{peer} listed more than {MAX_LIST} mails"
                        )));
                    }
                    mails.push((uid, size));
                }
                Ok(())
            },
        )?;
        self.expect_ok("UID FETCH", t)?;
        mails.sort_unstable();
        mails.dedup_by_key(|m| m.0);
        Ok(mails
            .into_iter()
            .map(|(uid, size)| MailRef {
                uid: uid.to_string(),
                size,
                seq: 0,
            })
            .collect())
    }

    fn fetch(&mut self, mail: &MailRef, max: u64) -> Result<Vec<u8>> {
        let uid = check_uid(mail)?.to_string();
        self.check_usable()?;
        let peer = self.conn.peer.clone();
        if mail.size > max {
            return Err(Error::TooLarge(format!(
                "mail {uid} on {peer} is {} bytes, more than the {max} accepted",
                mail.size
            )));
        }
        let mut body = None;
        let t = self.run(
            &[Arg::Raw(&format!("UID FETCH {uid} (BODY.PEEK[])"))],
            max,
            &mut |u| {
                if u.kw != "FETCH" {
                    return Ok(());
                }
                let items = fetch_items(u);
                let this = items
                    .iter()
                    .any(|(k, v)| k == "UID" && v.atom() == Some(uid.as_str()));
                if this {
                    for (k, v) in items {
                        if k == "BODY[]" {
                            if let Val::Bytes(b) = v {
                                body = Some(b);
                            }
                        }
                    }
                }
                Ok(())
            },
        );
        let t = match t {
            Err(Error::TooLarge(m)) => {
                return Err(Error::TooLarge(format!(
                    "mail {uid}: {m} (at most {max} bytes)"
                )))
            }
            other => other?,
        };
        self.expect_ok("UID FETCH", t)?;
        let body = body.ok_or_else(|| {
            Error::BadResponse(format!(
                "{peer} sent no mail {uid} (deleted by another session?)"
            ))
        })?;
        if body.len() as u64 > max {
            return Err(Error::TooLarge(format!(
                "mail {uid} on {peer} is {} bytes, more than the {max} accepted",
                body.len()
            )));
        }
        Ok(body)
    }

    fn delete(&mut self, mail: &MailRef) -> Result<()> {
        let uid = check_uid(mail)?.to_string();
        self.store_deleted(&uid)
    }

    fn set_aside(&mut self, mail: &MailRef, folder: &str) -> Result<()> {
        let uid = check_uid(mail)?.to_string();
        let name = folder_name(folder)?;
        // Created if missing; a NO ([ALREADYEXISTS]) is fine.
        let t = self.run(
            &[Arg::Raw("CREATE "), Arg::Str(name.as_bytes())],
            SMALL_LITERAL,
            &mut |_| Ok(()),
        )?;
        if t.status == Status::Bad {
            return Err(self.refused("CREATE", t));
        }
        if self.has("MOVE") {
            let t = self.run(
                &[
                    Arg::Raw(&format!("UID MOVE {uid} ")),
                    Arg::Str(name.as_bytes()),
                ],
                SMALL_LITERAL,
                &mut |_| Ok(()),
            )?;
            self.expect_ok("UID MOVE", t)
        } else {
            let t = self.run(
                &[
                    Arg::Raw(&format!("UID COPY {uid} ")),
                    Arg::Str(name.as_bytes()),
                ],
                SMALL_LITERAL,
                &mut |_| Ok(()),
            )?;
            self.expect_ok("UID COPY", t)?;
            self.store_deleted(&uid)
        }
    }

    fn uidvalidity(&self) -> Option<u64> {
        self.uidvalidity
    }

    fn can_idle(&self) -> bool {
        self.has("IDLE")
    }

    fn wait(&mut self, max: Duration, stop: &AtomicBool) -> Result<bool> {
        if !self.can_idle() {
            return Ok(false);
        }
        self.check_usable()?;
        let r = self.idle(max, stop);
        if r.is_err() && self.broken.is_none() {
            self.broken = Some("IDLE failed".into());
        }
        r
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if self.broken.is_some() {
            self.conn.shutdown();
            return Ok(());
        }
        self.logging_out = true;
        let r = self.run(&[Arg::Raw("LOGOUT")], SMALL_LITERAL, &mut |_| Ok(()));
        self.conn.shutdown();
        match r {
            Ok(_) => Ok(()),
            // The server may close as soon as it said BYE.
            Err(Error::ConnectFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl ImapMailbox {
    /// One response read while IDLE is under way: `new` notes a count that grew.
    fn idle_step(&mut self, tag: &str, new: &mut bool) -> Result<IdleStep> {
        match self.next(SMALL_LITERAL)? {
            Next::Continuation => Ok(IdleStep::Continuation),
            Next::Untagged(_) => {
                *new |= self.grown;
                Ok(IdleStep::More)
            }
            Next::Tagged(t, end) if t == tag => {
                if end.status == Status::Ok {
                    Ok(IdleStep::Ended(*new))
                } else {
                    Err(self.refused("IDLE", end))
                }
            }
            Next::Tagged(..) => Err(Error::BadResponse(format!(
                "{} answered with an unknown tag",
                self.conn.peer
            ))),
        }
    }

    fn idle(&mut self, max: Duration, stop: &AtomicBool) -> Result<bool> {
        if self.grown {
            // A mail came after the last list (announced during another command).
            return Ok(true);
        }
        self.tag += 1;
        let tag = format!("A{:04}", self.tag);
        self.conn.write_all(format!("{tag} IDLE\r\n").as_bytes())?;
        // New mail: the count grew (`next` keeps it). A server repeating `* n EXISTS` with
        // the count it already said, or `* n RECENT` alone, has nothing new.
        let mut new = false;
        loop {
            match self.idle_step(&tag, &mut new)? {
                IdleStep::Continuation => break,
                IdleStep::More => {}
                IdleStep::Ended(got) => return Ok(got),
            }
        }
        let deadline = Instant::now() + max;
        while !new && !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if !self.conn.wait_readable(IDLE_POLL.min(deadline - now))? {
                continue;
            }
            // The server may end IDLE by itself.
            if let IdleStep::Ended(got) = self.idle_step(&tag, &mut new)? {
                return Ok(got);
            }
        }
        self.conn.write_all(b"DONE\r\n")?;
        loop {
            if let IdleStep::Ended(got) = self.idle_step(&tag, &mut new)? {
                return Ok(got);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::mail::testing::{account, localhost_cert, self_signed, Fake, FakeConn};
    use std::thread::sleep;

    /// Reads the next command, checks it is `want` after its tag; returns the tag.
    fn cmd(f: &mut FakeConn, want: &str) -> String {
        let line = f.line().unwrap_or_default();
        let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
        assert_eq!(rest, want, "the fake IMAP server expected {want:?}");
        tag.to_string()
    }

    fn ok(f: &mut FakeConn, tag: &str) {
        f.send(&format!("{tag} OK done"));
    }

    /// Greeting, STARTTLS (or not), LOGIN, CAPABILITY after it, SELECT.
    fn open(f: &mut FakeConn, starttls: bool, caps: &str) {
        f.send("* OK IMAP4rev1 fake ready");
        if starttls {
            let t = cmd(f, "CAPABILITY");
            f.send("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED");
            ok(f, &t);
            let t = cmd(f, "STARTTLS");
            ok(f, &t);
            f.accept_tls();
        }
        let t = cmd(f, "CAPABILITY");
        f.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN");
        ok(f, &t);
        let t = cmd(f, "LOGIN \"user\" \"s3cret pw\"");
        ok(f, &t);
        let t = cmd(f, "CAPABILITY");
        f.send(&format!("* CAPABILITY IMAP4rev1 {caps}"));
        ok(f, &t);
        let t = cmd(f, "SELECT \"INBOX\"");
        f.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
        f.send("* 2 EXISTS");
        f.send("* 0 RECENT");
        f.send("* OK [UIDVALIDITY 1700000042] UIDs valid");
        f.send("* OK [UIDNEXT 9] Predicted next UID");
        f.send(&format!("{t} OK [READ-WRITE] Select completed"));
    }

    #[test]
    fn parses_values_and_literals() {
        assert_eq!(trailing_literal(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(trailing_literal(b"A1 LOGIN {5+}"), Some(5));
        assert_eq!(trailing_literal(b"* OK {x}"), None);
        assert_eq!(trailing_literal(b"* OK }"), None);
        let mut r = Resp {
            line:
                br#"(UID 7 FLAGS (\Seen $X) BODY[HEADER.FIELDS (A B)] "a\"b\\" X NIL BODY[] {3})"#
                    .to_vec(),
            lits: vec![Some(b"abc".to_vec())],
            ..Resp::default()
        };
        let Some(Val::List(v)) = r.value(0) else {
            panic!("not a list")
        };
        assert_eq!(v[1], Val::Atom("7".into()));
        assert_eq!(
            v[3],
            Val::List(vec![Val::Atom("\\Seen".into()), Val::Atom("$X".into())])
        );
        assert_eq!(v[4], Val::Atom("BODY[HEADER.FIELDS (A B)]".into()));
        assert_eq!(v[5], Val::Bytes(b"a\"b\\".to_vec()));
        assert_eq!(v[7], Val::Nil);
        assert_eq!(v[9], Val::Bytes(b"abc".to_vec()));
        // Malformed: no panic, no value.
        for bad in [&b"(UID 7"[..], b"\"open", b"{3}", b")"] {
            let mut r = Resp {
                line: bad.to_vec(),
                ..Resp::default()
            };
            assert_eq!(r.value(0), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(folder_name("Junk & Co").unwrap() == "Junk &- Co");
        assert_eq!(
            folder_name("Müll").unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn a_whole_session_with_starttls() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), false, |f| {
            open(f, true, "IDLE UIDPLUS MOVE");
            // list: untagged responses of all kinds interleaved.
            let t = cmd(f, "UID FETCH 1:* (UID RFC822.SIZE FLAGS)");
            f.send("* 1 FETCH (UID 7 RFC822.SIZE 12 FLAGS (\\Seen))");
            f.send("* 3 EXISTS");
            f.send("* 2 FETCH (FLAGS (\\Deleted) UID 8 RFC822.SIZE 5)");
            f.send("* 3 FETCH (RFC822.SIZE 30 UID 9 FLAGS ())");
            f.send("* 1 RECENT");
            ok(f, &t);
            // fetch: the literal arrives in pieces, untagged responses around it.
            let t = cmd(f, "UID FETCH 7 (BODY.PEEK[])");
            f.send("* 2 FETCH (FLAGS (\\Seen))");
            f.send_raw(b"* 1 FETCH (UID 7 BODY[] {13}\r\nHello");
            sleep(Duration::from_millis(50));
            f.send_raw(b"\r\n.wor");
            sleep(Duration::from_millis(50));
            f.send_raw(b"ld FLAGS (\\Seen))\r\n* 4 EXISTS\r\n");
            ok(f, &t);
            // delete
            let t = cmd(f, "UID STORE 7 +FLAGS.SILENT (\\Deleted)");
            ok(f, &t);
            let t = cmd(f, "UID EXPUNGE 7");
            f.send("* 1 EXPUNGE");
            ok(f, &t);
            // set aside
            let t = cmd(f, "CREATE \"Junk\"");
            f.send(&format!("{t} NO [ALREADYEXISTS] Mailbox already exists"));
            let t = cmd(f, "UID MOVE 9 \"Junk\"");
            f.send("* OK [COPYUID 5 9 1] Moved");
            f.send("* 2 EXPUNGE");
            ok(f, &t);
            // A mail came during the fetch (4 EXISTS): no IDLE, listed again at once.
            let t = cmd(f, "UID FETCH 1:* (UID RFC822.SIZE FLAGS)");
            f.send("* 2 FETCH (UID 10 RFC822.SIZE 3 FLAGS ())");
            ok(f, &t);
            // IDLE: the count said again is nothing new; a new mail after a while is.
            let t = cmd(f, "IDLE");
            f.send("+ idling");
            f.send("* 2 EXISTS");
            f.send("* 1 RECENT");
            sleep(Duration::from_millis(600));
            f.send("* OK Still here");
            f.send("* 3 EXISTS");
            f.expect("DONE");
            ok(f, &t);
            let t = cmd(f, "LOGOUT");
            f.send("* BYE Logging out");
            ok(f, &t);
        });
        let mut mb: Box<dyn Mailbox> =
            Box::new(ImapMailbox::connect(&account("imap", fake.port, Some(&cert))).unwrap());
        assert_eq!(mb.uidvalidity(), Some(1_700_000_042));
        assert!(mb.can_idle());
        let list = mb.list().unwrap();
        let uids: Vec<(&str, u64)> = list.iter().map(|m| (m.uid.as_str(), m.size)).collect();
        assert_eq!(uids, [("7", 12), ("9", 30)]);
        assert_eq!(mb.fetch(&list[0], 100).unwrap(), b"Hello\r\n.world");
        mb.delete(&list[0]).unwrap();
        mb.set_aside(&list[1], "Junk").unwrap();
        let stop = AtomicBool::new(false);
        let t0 = Instant::now();
        assert!(mb.wait(Duration::from_secs(20), &stop).unwrap());
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(mb.list().unwrap()[0].uid, "10");
        let t0 = Instant::now();
        assert!(mb.wait(Duration::from_secs(20), &stop).unwrap());
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        mb.close().unwrap();
        let seen = fake.finish();
        assert!(seen.iter().any(|l| l.contains("LOGIN")));
    }

    #[test]
    fn no_starttls_offered_no_login() {
        let fake = Fake::spawn(None, false, |f| {
            f.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready");
            f.read_rest();
        });
        let e = ImapMailbox::connect(&account("imap", fake.port, None)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        let seen = fake.finish();
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn a_refused_login_is_login_failed() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            f.send("* OK fake ready");
            let t = cmd(f, "CAPABILITY");
            f.send("* CAPABILITY IMAP4rev1");
            ok(f, &t);
            // A password a quoted string cannot carry goes as a literal.
            let t = cmd(f, "LOGIN \"user\" {7}");
            f.send("+ go on");
            assert_eq!(f.bytes(7), "pä\"ss\n".as_bytes());
            f.expect("");
            f.send("* OK noise");
            f.send(&format!(
                "{t} NO [AUTHENTICATIONFAILED] Authentication failed."
            ));
            f.read_rest();
        });
        let mut acc = account("imaps", fake.port, Some(&cert));
        acc.password = Zeroizing::new("pä\"ss\n".into());
        let e = ImapMailbox::connect(&acc).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LoginFailed, "{e}");
        assert!(e.to_string().contains("AUTHENTICATIONFAILED"), "{e}");
        assert!(!e.to_string().contains("ss"), "{e}");
        fake.finish();
    }

    #[test]
    fn too_large_is_refused_and_the_session_goes_on() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            open(f, false, "");
            // The size it stated was a lie: the literal is read and dropped.
            let t = cmd(f, "UID FETCH 5 (BODY.PEEK[])");
            f.send_raw(b"* 1 FETCH (UID 5 BODY[] {100}\r\n");
            f.send_raw(&[b'x'; 100]);
            f.send(")");
            ok(f, &t);
            // No IDLE: wait says so at once; COPY + delete without MOVE, EXPUNGE without
            // UIDPLUS.
            let t = cmd(f, "CREATE \"Junk\"");
            ok(f, &t);
            let t = cmd(f, "UID COPY 5 \"Junk\"");
            ok(f, &t);
            let t = cmd(f, "UID STORE 5 +FLAGS.SILENT (\\Deleted)");
            ok(f, &t);
            let t = cmd(f, "EXPUNGE");
            ok(f, &t);
            let t = cmd(f, "LOGOUT");
            f.send("* BYE");
            ok(f, &t);
        });
        let mut mb = ImapMailbox::connect(&account("imaps", fake.port, Some(&cert))).unwrap();
        let big = MailRef {
            uid: "5".into(),
            size: 1000,
            seq: 0,
        };
        // Stated larger than max: nothing asked.
        assert_eq!(mb.fetch(&big, 10).unwrap_err().code(), ErrorCode::TooLarge);
        let lying = MailRef { size: 8, ..big };
        let e = mb.fetch(&lying, 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
        assert!(!mb.can_idle());
        assert!(!mb
            .wait(Duration::from_secs(10), &AtomicBool::new(false))
            .unwrap());
        mb.set_aside(&lying, "Junk").unwrap();
        let bad = MailRef {
            uid: "5 (BODY[])".into(),
            size: 1,
            seq: 0,
        };
        assert_eq!(
            mb.fetch(&bad, 10).unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
        Box::new(mb).close().unwrap();
        fake.finish();
    }

    /// A command the server refuses (NO) leaves the session usable: the caller goes on with
    /// other mails. The literals of one response count together against `max`. A BYE gives the
    /// session up (`ConnectFailed`, and so every later call).
    #[test]
    fn a_refused_command_leaves_the_session_a_bye_ends_it() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            open(f, false, "MOVE");
            let t = cmd(f, "UID FETCH 5 (BODY.PEEK[])");
            f.send(&format!("{t} NO [SERVERBUG] cannot read mail 5"));
            let t = cmd(f, "CREATE \"Junk\"");
            ok(f, &t);
            let t = cmd(f, "UID MOVE 5 \"Junk\"");
            f.send(&format!("{t} NO [CANNOT] no"));
            // Two literals of 6 bytes each: each under max (10), together over it.
            let t = cmd(f, "UID FETCH 6 (BODY.PEEK[])");
            f.send_raw(b"* 2 FETCH (UID 6 BODY[HEADER] {6}\r\nabcdef BODY[] {6}\r\nghijkl)\r\n");
            ok(f, &t);
            let t = cmd(f, "UID FETCH 7 (BODY.PEEK[])");
            f.send_raw(b"* 3 FETCH (UID 7 BODY[] {5}\r\nHello)\r\n");
            ok(f, &t);
            let _ = cmd(f, "UID FETCH 8 (BODY.PEEK[])");
            f.send("* BYE going down");
            f.read_rest();
        });
        let mut mb = ImapMailbox::connect(&account("imaps", fake.port, Some(&cert))).unwrap();
        let mail = |uid: &str| MailRef {
            uid: uid.into(),
            size: 5,
            seq: 0,
        };
        let e = mb.fetch(&mail("5"), 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MailStatus, "{e}");
        assert!(leaves_session_usable(&e));
        let e = mb.set_aside(&mail("5"), "Junk").unwrap_err();
        assert!(leaves_session_usable(&e), "{e}");
        let e = mb.set_aside(&mail("5"), "Müll").unwrap_err();
        assert!(leaves_session_usable(&e), "{e}");
        let e = mb.fetch(&mail("6"), 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
        assert_eq!(mb.fetch(&mail("7"), 10).unwrap(), b"Hello");
        let e = mb.fetch(&mail("8"), 10).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConnectFailed, "{e}");
        assert!(!leaves_session_usable(&e));
        let e = mb.list().unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConnectFailed, "{e}");
        drop(mb);
        fake.finish();
    }

    #[test]
    fn idle_ends_on_stop_and_on_max() {
        let (key, cert) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| {
            open(f, false, "IDLE");
            for _ in 0..2 {
                let t = cmd(f, "IDLE");
                f.send("+ idling");
                // The count SELECT said, again: not new mail (no busy loop).
                f.send("* 2 EXISTS");
                f.send("* 1 RECENT");
                f.expect("DONE");
                ok(f, &t);
            }
            f.read_rest();
        });
        let mut mb = ImapMailbox::connect(&account("imaps", fake.port, Some(&cert))).unwrap();
        let t0 = Instant::now();
        assert!(!mb
            .wait(Duration::from_millis(400), &AtomicBool::new(false))
            .unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(400));
        let stop = AtomicBool::new(true);
        let t0 = Instant::now();
        assert!(!mb.wait(Duration::from_secs(60), &stop).unwrap());
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(mb);
        fake.finish();
    }

    #[test]
    fn certificates_refused_say_why() {
        // A pin of another certificate.
        let (key, cert) = localhost_cert();
        let (_, other) = localhost_cert();
        let fake = Fake::spawn(Some((key, cert)), true, |f| f.read_rest());
        let mut acc = account("imaps", fake.port, None);
        acc.trust.pinned_sha256 = Some(crate::bytes::hex(&openssl::sha::sha256(
            &other.to_der().unwrap(),
        )));
        let e = ImapMailbox::connect(&acc).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("pin mismatch"), "{e}");
        fake.finish();
        // A trusted certificate for another host.
        let (key, cert) = self_signed("other.example", &["other.example"]);
        let fake = Fake::spawn(Some((key, cert.clone())), true, |f| f.read_rest());
        let e = ImapMailbox::connect(&account("imaps", fake.port, Some(&cert))).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TlsFailed, "{e}");
        assert!(e.to_string().contains("mismatch"), "{e}");
        fake.finish();
    }
}
