//! SOAP over e-mail: the mail servers an end point or the service talks to, and how an AS4
//! message is laid out as one mail.
//!
//! - [`layout`]: an AS4 message (the body and Content-Type it would be POSTed with) as one MIME
//!   mail and back; delivery-status notifications (RFC 3464) recognised. The contract for other
//!   implementations, documented in docs/EMAIL.md.
//! - [`smtp`]: submission (SMTP with STARTTLS required, or implicit TLS; AUTH).
//! - [`imap`] and [`pop3`]: reading a mailbox ([`Mailbox`]), TLS always.
//!
//! TLS is OpenSSL's, trusted like the HTTPS transport: a CA file or a pinned certificate
//! ([`MailTrust`]); a plain connection is never used for credentials or mail.
//!
//! Errors: `ConnectFailed`/`Timeout` (transient), `TlsFailed` (the server's certificate
//! refused, or the server does not offer TLS), `LoginFailed` (user name or password refused),
//! `MailStatus` (a temporary refusal, transient), `Refused` (a permanent SMTP refusal: the size
//! limit, a refused recipient; the message names the server's reply), `BadResponse` (the server
//! does not speak the protocol), `TooLarge` (a mail larger than the caller accepts).

mod conn;
pub mod imap;
pub mod layout;
pub mod pop3;
#[cfg(test)]
mod real_servers;
pub mod smtp;
#[cfg(test)]
mod testing;
mod tls;

use crate::error::{Error, Result};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use zeroize::Zeroizing;

/// The protocol and TLS mode of a mail server URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `smtp://host:port`: SMTP, STARTTLS required (default port 587).
    Smtp,
    /// `smtps://host:port`: SMTP in TLS from the first byte (default port 465).
    Smtps,
    /// `imap://host:port`: IMAP, STARTTLS required (default port 143).
    Imap,
    /// `imaps://host:port`: IMAP in TLS (default port 993).
    Imaps,
    /// `pop3://host:port`: POP3, STLS required (default port 110).
    Pop3,
    /// `pop3s://host:port`: POP3 in TLS (default port 995).
    Pop3s,
}

impl Scheme {
    /// Whether TLS starts with the connection (else it is started by STARTTLS/STLS, and the
    /// connection is refused if the server does not offer it).
    pub fn implicit_tls(self) -> bool {
        matches!(self, Scheme::Smtps | Scheme::Imaps | Scheme::Pop3s)
    }
}

/// A mail server: `scheme://host[:port][/folder]` (the folder: IMAP only, default `INBOX`).
/// No user info in the URL: the user name and password are configured apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailUrl {
    pub scheme: Scheme,
    /// A DNS name or an IP address (an IPv6 literal without brackets).
    pub host: String,
    pub port: u16,
    /// The IMAP folder to read (`INBOX` when none is given).
    pub folder: Option<String>,
}

impl MailUrl {
    /// `InvalidArgument` for an unknown scheme, user info in the URL, a bad port, or a folder
    /// on a non-IMAP URL.
    pub fn parse(url: &str) -> Result<MailUrl> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{url:?} is not a mail server URL (smtp://, smtps://, imap://, imaps://, \
                 pop3://, pop3s://)"
            ))
        })?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => (Scheme::Smtp, 587),
            "smtps" => (Scheme::Smtps, 465),
            "imap" => (Scheme::Imap, 143),
            "imaps" => (Scheme::Imaps, 993),
            "pop3" => (Scheme::Pop3, 110),
            "pop3s" => (Scheme::Pop3s, 995),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown mail URL scheme {other:?}: use smtp://, smtps://, imap://, \
                     imaps://, pop3:// or pop3s://"
                )))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(Error::InvalidArgument(
                "a mail server URL holds no user name or password: configure them apart".into(),
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| {
                Error::InvalidArgument(format!("{url:?}: unclosed [ in the host"))
            })?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(Error::InvalidArgument(format!("{url:?}: no host")));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Error::InvalidArgument(format!("{url:?}: bad port {p:?}")))?,
        };
        let path = path.trim_end_matches('/');
        let folder =
            if path.is_empty() {
                None
            } else if matches!(scheme, Scheme::Imap | Scheme::Imaps) {
                let raw = crate::bytes::percent_decode_strict(path).ok_or_else(|| {
                    Error::InvalidArgument(format!("{url:?}: bad percent-encoding in the folder"))
                })?;
                Some(String::from_utf8(raw).map_err(|_| {
                    Error::InvalidArgument(format!("{url:?}: the folder is not UTF-8"))
                })?)
            } else {
                return Err(Error::InvalidArgument(format!(
                    "{url:?}: only an IMAP URL names a folder"
                )));
            };
        Ok(MailUrl {
            scheme,
            host,
            port,
            folder,
        })
    }
}

impl fmt::Display for MailUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Smtp => "smtp",
            Scheme::Smtps => "smtps",
            Scheme::Imap => "imap",
            Scheme::Imaps => "imaps",
            Scheme::Pop3 => "pop3",
            Scheme::Pop3s => "pop3s",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Which server certificates are accepted: a CA's (PEM, one or more) or exactly one pinned
/// certificate (hex SHA-256 of its DER), as for the HTTPS transport. With neither, the
/// system's trust store.
#[derive(Clone, Default)]
pub struct MailTrust {
    pub ca_pem: Option<Vec<u8>>,
    pub pinned_sha256: Option<String>,
}

impl fmt::Debug for MailTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailTrust")
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("pinned_sha256", &self.pinned_sha256)
            .finish()
    }
}

/// A mail account on one server.
#[derive(Clone)]
pub struct Account {
    pub url: MailUrl,
    pub username: String,
    pub password: Zeroizing<String>,
    pub trust: MailTrust,
    /// The connect limit and the longest wait for any answer of the server.
    pub timeout: Duration,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("url", &self.url.to_string())
            .field("username", &self.username)
            .field("password", &"***")
            .field("trust", &self.trust)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One mail in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailRef {
    /// Stable across sessions: the IMAP UID (decimal, valid with the folder's UIDVALIDITY) or
    /// the POP3 UIDL.
    pub uid: String,
    /// The size the server states (RFC822.SIZE, the POP3 LIST size), in bytes.
    pub size: u64,
    /// The POP3 message number of this session (unused for IMAP).
    pub seq: u32,
}

/// A logged-in mailbox (IMAP folder or POP3 maildrop). One session; not shared between
/// threads.
pub trait Mailbox: Send {
    /// The mails in the mailbox now (not marked deleted), oldest first.
    fn list(&mut self) -> Result<Vec<MailRef>>;
    /// The whole mail as stored (CRLF line ends), without marking it read (IMAP
    /// `BODY.PEEK[]`). `TooLarge` if it is longer than `max` bytes (not read then).
    fn fetch(&mut self, mail: &MailRef, max: u64) -> Result<Vec<u8>>;
    /// Remove the mail. IMAP: flag `\Deleted` and expunge it (`UID EXPUNGE` where offered);
    /// POP3: `DELE`, which takes effect when [`Mailbox::close`] ends the session (a session
    /// that ends otherwise leaves the mail).
    fn delete(&mut self, mail: &MailRef) -> Result<()>;
    /// Take a mail that is not ours out of the way: IMAP moves it to the folder `folder`
    /// (created if missing; `UID MOVE`, or COPY + delete); POP3 cannot, and does nothing (the
    /// caller remembers its UIDL).
    fn set_aside(&mut self, mail: &MailRef, folder: &str) -> Result<()>;
    /// The folder's UIDVALIDITY (IMAP); `None` for POP3.
    fn uidvalidity(&self) -> Option<u64>;
    /// Whether [`Mailbox::wait`] can be woken by the server (IMAP IDLE offered).
    fn can_idle(&self) -> bool;
    /// Wait for new mail: IMAP IDLE until the server announces a new mail, `max` passes or
    /// `stop` is set (looked at least every 250 ms); returns whether new mail was announced.
    /// Without IDLE it returns `Ok(false)` at once (the caller sleeps and lists again).
    fn wait(&mut self, max: Duration, stop: &AtomicBool) -> Result<bool>;
    /// End the session cleanly (POP3 `QUIT`: the deletions take effect; IMAP `LOGOUT`).
    fn close(self: Box<Self>) -> Result<()>;
}

/// Log in to the mailbox `account` names (IMAP or POP3, by its URL's scheme).
pub fn open_mailbox(account: &Account) -> Result<Box<dyn Mailbox>> {
    match account.url.scheme {
        Scheme::Imap | Scheme::Imaps => Ok(Box::new(imap::ImapMailbox::connect(account)?)),
        Scheme::Pop3 | Scheme::Pop3s => Ok(Box::new(pop3::Pop3Mailbox::connect(account)?)),
        Scheme::Smtp | Scheme::Smtps => Err(Error::InvalidArgument(format!(
            "{} is an SMTP server, not a mailbox: use imap://, imaps:// or pop3s://",
            account.url
        ))),
    }
}
