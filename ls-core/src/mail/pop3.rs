//! Reading a mailbox by POP3 (RFC 1939): USER/PASS inside TLS (STLS, RFC 2595, required on
//! `pop3://`), UIDL, LIST, RETR, DELE, QUIT.

use super::{Account, MailRef, Mailbox};
use crate::error::Result;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A logged-in POP3 session (in the TRANSACTION state).
#[derive(Debug)]
pub struct Pop3Mailbox {}

impl Pop3Mailbox {
    pub fn connect(account: &Account) -> Result<Pop3Mailbox> {
        let _ = account;
        todo!("mail helper")
    }
}

impl Mailbox for Pop3Mailbox {
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
