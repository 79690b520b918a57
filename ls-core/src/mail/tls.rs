//! TLS for the mail protocols: OpenSSL, trusted as [`super::MailTrust`] says (as the HTTPS
//! transport: a CA file, or a pinned leaf certificate).
