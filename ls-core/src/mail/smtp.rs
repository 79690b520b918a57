//! Submission by SMTP (RFC 6409): STARTTLS required on `smtp://`, TLS from the start on
//! `smtps://`, AUTH (PLAIN or LOGIN) only inside TLS, the SIZE extension honoured.

use super::Account;
use crate::error::Result;

/// Submits mails through one account on a submission server. Cheap to keep; each
/// [`SmtpClient::send`] uses its own connection.
#[derive(Debug)]
pub struct SmtpClient {
    account: Account,
}

impl SmtpClient {
    /// Checks the account (an `smtp://` or `smtps://` URL, the trust settings); no connection
    /// is made yet. `InvalidArgument` otherwise.
    pub fn new(account: Account) -> Result<SmtpClient> {
        let _ = &account;
        todo!("mail helper")
    }

    /// Submit `message` (a whole RFC 5322 mail, CRLF line ends) from envelope sender `from`
    /// to the recipients `to`. Ok once the server answered 250 to the end of DATA.
    /// A permanent refusal (5xx: `552` the size limit — also found before DATA from the SIZE
    /// the server announces —, `550`/`553` a recipient) is `Refused` with the server's reply
    /// in the message; a temporary one (4xx) `MailStatus`; AUTH refused `LoginFailed`.
    pub fn send(&self, from: &str, to: &[&str], message: &[u8]) -> Result<()> {
        let _ = (from, to, message, &self.account);
        todo!("mail helper")
    }
}
