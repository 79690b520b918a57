//! Reading a mailbox by IMAP4rev1 (RFC 3501): LOGIN inside TLS (STARTTLS required on
//! `imap://`), `UID SEARCH`, `UID FETCH BODY.PEEK[]`, `UID STORE +FLAGS (\Deleted)` with
//! `UID EXPUNGE` (RFC 4315) or `EXPUNGE`, `UID MOVE` (RFC 6851) or COPY, IDLE (RFC 2177).

use super::{Account, MailRef, Mailbox};
use crate::error::Result;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A logged-in IMAP session with its folder selected.
#[derive(Debug)]
pub struct ImapMailbox {}

impl ImapMailbox {
    pub fn connect(account: &Account) -> Result<ImapMailbox> {
        let _ = account;
        todo!("mail helper")
    }
}

impl Mailbox for ImapMailbox {
    fn list(&mut self) -> Result<Vec<MailRef>> {
        todo!("mail helper")
    }
    fn fetch(&mut self, mail: &MailRef, max: u64) -> Result<Vec<u8>> {
        let _ = (mail, max);
        todo!("mail helper")
    }
    fn delete(&mut self, mail: &MailRef) -> Result<()> {
        let _ = mail;
        todo!("mail helper")
    }
    fn set_aside(&mut self, mail: &MailRef, folder: &str) -> Result<()> {
        let _ = (mail, folder);
        todo!("mail helper")
    }
    fn uidvalidity(&self) -> Option<u64> {
        todo!("mail helper")
    }
    fn can_idle(&self) -> bool {
        todo!("mail helper")
    }
    fn wait(&mut self, max: Duration, stop: &AtomicBool) -> Result<bool> {
        let _ = (max, stop);
        todo!("mail helper")
    }
    fn close(self: Box<Self>) -> Result<()> {
        todo!("mail helper")
    }
}
