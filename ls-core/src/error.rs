//! One error type for the whole core, with a stable numeric code per failure.
//!
//! The numeric codes are the `ls_result` values of the C ABI: they are append-only and grouped by
//! family (hundreds digit), so a caller can branch on the family without knowing every code.

use std::fmt;

/// Stable numeric code of a failure. Values never change once released; new ones are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(i32)]
pub enum ErrorCode {
    // 1xx: the caller's arguments, files and passwords
    NullArgument = 100,
    InvalidArgument = 101,
    Io = 102,
    BadPassword = 103,
    UnsupportedKey = 104,
    PinIncorrect = 105,
    TokenUnavailable = 106,
    KeyNotFound = 107,
    // 2xx: cryptographic failures
    DecryptFailed = 200,
    NotARecipient = 201,
    KeyUnwrapFailed = 202,
    BadSignature = 203,
    SignerMismatch = 204,
    Unsigned = 205,
    DigestMismatch = 206,
    UnsupportedAlgorithm = 207,
    WeakAlgorithm = 208,
    ReceiptMismatch = 209,
    MechanismUnsupported = 210,
    // 3xx: certificates and trust
    CertExpired = 300,
    CertNotYetValid = 301,
    CertKeyUsage = 302,
    UnknownSigner = 303,
    CertUntrusted = 304,
    CertInvalid = 305,
    KeyCertMismatch = 306,
    CertNotFound = 307,
    // 4xx: malformed or hostile input
    Malformed = 400,
    Truncated = 401,
    MalformedMime = 402,
    TooDeep = 403,
    TooLarge = 404,
    DecompressFailed = 405,
    ExpansionTooLarge = 406,
    // 5xx: the message layer (ebMS3/AS4, SOAP, WS-Security)
    MustUnderstand = 500,
    SignatureRequired = 501,
    SignatureWrapping = 502,
    UnsignedPart = 503,
    InvalidEbms = 504,
    EbmsError = 505,
    // 6xx: carrying messages (HTTPS)
    ConnectFailed = 600,
    Timeout = 601,
    TlsFailed = 602,
    HttpStatus = 603,
    BadResponse = 604,
    Refused = 605,
    MailStatus = 606,
    LoginFailed = 607,
    ReceiptPending = 608,
    // 7xx store: the client's configuration and local state (journal, folders)
    StateCorrupt = 700,
    ConfigInvalid = 701,
    StateLocked = 702,
    // 9xx: bugs
    Internal = 900,
    Panic = 901,
}

impl ErrorCode {
    /// Every code, in numeric order (for tables, bindings and tests).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::NullArgument,
        ErrorCode::InvalidArgument,
        ErrorCode::Io,
        ErrorCode::BadPassword,
        ErrorCode::UnsupportedKey,
        ErrorCode::PinIncorrect,
        ErrorCode::TokenUnavailable,
        ErrorCode::KeyNotFound,
        ErrorCode::DecryptFailed,
        ErrorCode::NotARecipient,
        ErrorCode::KeyUnwrapFailed,
        ErrorCode::BadSignature,
        ErrorCode::SignerMismatch,
        ErrorCode::Unsigned,
        ErrorCode::DigestMismatch,
        ErrorCode::UnsupportedAlgorithm,
        ErrorCode::WeakAlgorithm,
        ErrorCode::ReceiptMismatch,
        ErrorCode::MechanismUnsupported,
        ErrorCode::CertExpired,
        ErrorCode::CertNotYetValid,
        ErrorCode::CertKeyUsage,
        ErrorCode::UnknownSigner,
        ErrorCode::CertUntrusted,
        ErrorCode::CertInvalid,
        ErrorCode::KeyCertMismatch,
        ErrorCode::CertNotFound,
        ErrorCode::Malformed,
        ErrorCode::Truncated,
        ErrorCode::MalformedMime,
        ErrorCode::TooDeep,
        ErrorCode::TooLarge,
        ErrorCode::DecompressFailed,
        ErrorCode::ExpansionTooLarge,
        ErrorCode::MustUnderstand,
        ErrorCode::SignatureRequired,
        ErrorCode::SignatureWrapping,
        ErrorCode::UnsignedPart,
        ErrorCode::InvalidEbms,
        ErrorCode::EbmsError,
        ErrorCode::ConnectFailed,
        ErrorCode::Timeout,
        ErrorCode::TlsFailed,
        ErrorCode::HttpStatus,
        ErrorCode::BadResponse,
        ErrorCode::Refused,
        ErrorCode::MailStatus,
        ErrorCode::LoginFailed,
        ErrorCode::ReceiptPending,
        ErrorCode::StateCorrupt,
        ErrorCode::ConfigInvalid,
        ErrorCode::StateLocked,
        ErrorCode::Internal,
        ErrorCode::Panic,
    ];

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub fn from_i32(v: i32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_i32() == v)
    }

    /// The code of a name as [`ErrorCode::name`] or `Display` give it: `ERR_IO` or `LS_ERR_IO`.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        let bare = name.strip_prefix("LS_").unwrap_or(name);
        Self::ALL.iter().copied().find(|c| c.name() == bare)
    }

    /// The C macro name without the `LS_` prefix, e.g. `ERR_BAD_SIGNATURE`.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            NullArgument => "ERR_NULL_ARGUMENT",
            InvalidArgument => "ERR_INVALID_ARGUMENT",
            Io => "ERR_IO",
            BadPassword => "ERR_BAD_PASSWORD",
            UnsupportedKey => "ERR_UNSUPPORTED_KEY",
            PinIncorrect => "ERR_PIN_INCORRECT",
            TokenUnavailable => "ERR_TOKEN_UNAVAILABLE",
            KeyNotFound => "ERR_KEY_NOT_FOUND",
            DecryptFailed => "ERR_DECRYPT_FAILED",
            NotARecipient => "ERR_NOT_A_RECIPIENT",
            KeyUnwrapFailed => "ERR_KEY_UNWRAP_FAILED",
            BadSignature => "ERR_BAD_SIGNATURE",
            SignerMismatch => "ERR_SIGNER_MISMATCH",
            Unsigned => "ERR_UNSIGNED",
            DigestMismatch => "ERR_DIGEST_MISMATCH",
            UnsupportedAlgorithm => "ERR_UNSUPPORTED_ALGORITHM",
            WeakAlgorithm => "ERR_WEAK_ALGORITHM",
            ReceiptMismatch => "ERR_RECEIPT_MISMATCH",
            MechanismUnsupported => "ERR_MECHANISM_UNSUPPORTED",
            CertExpired => "ERR_CERT_EXPIRED",
            CertNotYetValid => "ERR_CERT_NOT_YET_VALID",
            CertKeyUsage => "ERR_CERT_KEY_USAGE",
            UnknownSigner => "ERR_UNKNOWN_SIGNER",
            CertUntrusted => "ERR_CERT_UNTRUSTED",
            CertInvalid => "ERR_CERT_INVALID",
            KeyCertMismatch => "ERR_KEY_CERT_MISMATCH",
            CertNotFound => "ERR_CERT_NOT_FOUND",
            Malformed => "ERR_MALFORMED",
            Truncated => "ERR_TRUNCATED",
            MalformedMime => "ERR_MALFORMED_MIME",
            TooDeep => "ERR_TOO_DEEP",
            TooLarge => "ERR_TOO_LARGE",
            DecompressFailed => "ERR_DECOMPRESS_FAILED",
            ExpansionTooLarge => "ERR_EXPANSION_TOO_LARGE",
            MustUnderstand => "ERR_MUST_UNDERSTAND",
            SignatureRequired => "ERR_SIGNATURE_REQUIRED",
            SignatureWrapping => "ERR_SIGNATURE_WRAPPING",
            UnsignedPart => "ERR_UNSIGNED_PART",
            InvalidEbms => "ERR_INVALID_EBMS",
            EbmsError => "ERR_EBMS_ERROR",
            ConnectFailed => "ERR_CONNECT_FAILED",
            Timeout => "ERR_TIMEOUT",
            TlsFailed => "ERR_TLS_FAILED",
            HttpStatus => "ERR_HTTP_STATUS",
            BadResponse => "ERR_BAD_RESPONSE",
            Refused => "ERR_REFUSED",
            MailStatus => "ERR_MAIL_STATUS",
            LoginFailed => "ERR_LOGIN_FAILED",
            ReceiptPending => "ERR_RECEIPT_PENDING",
            StateCorrupt => "ERR_STATE_CORRUPT",
            ConfigInvalid => "ERR_CONFIG_INVALID",
            StateLocked => "ERR_STATE_LOCKED",
            Internal => "ERR_INTERNAL",
            Panic => "ERR_PANIC",
        }
    }

    /// The family of the code: "argument", "crypto", "certificate", "format", "protocol",
    /// "transport", "store" or "internal".
    pub fn family(self) -> &'static str {
        match self.as_i32() / 100 {
            1 => "argument",
            2 => "crypto",
            3 => "certificate",
            4 => "format",
            5 => "protocol",
            6 => "transport",
            7 => "store",
            _ => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LS_{}", self.name())
    }
}

/// A failure of the core. Each variant carries a message meant for the user; none ever contains
/// key material, passwords or document content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("missing argument: {0}")]
    NullArgument(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wrong password or unreadable key: {0}")]
    BadPassword(String),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A PKCS#11 token refused the PIN (or it is locked). Never retried: each wrong attempt
    /// counts towards the token's lock-out.
    #[error("the token refused the PIN: {0}")]
    PinIncorrect(String),
    /// The PKCS#11 module cannot be loaded, or the token is absent or was removed: may
    /// succeed later (a token plugged in, a module installed).
    #[error("the token is not available: {0}")]
    TokenUnavailable(String),
    /// The token holds no private key (or no public key or certificate for it) that matches
    /// the `pkcs11:` URI.
    #[error("key not found on the token: {0}")]
    KeyNotFound(String),
    #[error("decryption failed, the message was altered or damaged: {0}")]
    DecryptFailed(String),
    #[error("this message is not addressed to us: {0}")]
    NotARecipient(String),
    #[error("could not recover the content key with our private key: {0}")]
    KeyUnwrapFailed(String),
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    #[error("signed by someone other than the expected partner: {0}")]
    SignerMismatch(String),
    #[error("the document is not signed: {0}")]
    Unsigned(String),
    #[error("the signed content does not match its digest: {0}")]
    DigestMismatch(String),
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("algorithm refused by policy: {0}")]
    WeakAlgorithm(String),
    /// A signed receipt that does not answer the message it is checked against (another
    /// message's signature, content type or content identifier).
    #[error("the receipt does not answer this message: {0}")]
    ReceiptMismatch(String),
    /// The token cannot do what was asked with its key (a mechanism or its parameters it does
    /// not support, e.g. RSA-OAEP with SHA-256 on SoftHSM2 2.6).
    #[error("the token does not support this mechanism: {0}")]
    MechanismUnsupported(String),
    #[error("certificate expired: {0}")]
    CertExpired(String),
    #[error("certificate not yet valid: {0}")]
    CertNotYetValid(String),
    #[error("certificate not allowed for this use: {0}")]
    CertKeyUsage(String),
    #[error("unknown signer: {0}")]
    UnknownSigner(String),
    #[error("certificate not trusted: {0}")]
    CertUntrusted(String),
    #[error("invalid certificate: {0}")]
    CertInvalid(String),
    #[error("private key does not belong to the certificate: {0}")]
    KeyCertMismatch(String),
    #[error("certificate not found: {0}")]
    CertNotFound(String),
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("truncated input: {0}")]
    Truncated(String),
    #[error("malformed MIME: {0}")]
    MalformedMime(String),
    #[error("too deeply nested: {0}")]
    TooDeep(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("decompression failed: {0}")]
    DecompressFailed(String),
    /// Compressed content that expands to more than the limit (a decompression bomb, or a
    /// document larger than the recipient accepts). Found without holding the expanded data.
    #[error("expands beyond the limit: {0}")]
    ExpansionTooLarge(String),
    #[error("SOAP header not understood: {0}")]
    MustUnderstand(String),
    #[error("a signature is required: {0}")]
    SignatureRequired(String),
    #[error("the signature does not cover what is processed: {0}")]
    SignatureWrapping(String),
    #[error("part not covered by the signature: {0}")]
    UnsignedPart(String),
    #[error("invalid ebMS message: {0}")]
    InvalidEbms(String),
    /// The service answered a request of ours with a signed ebMS error signal (`ebms_code` e.g.
    /// `EBMS:0101`): it refused `refused` — the message we pushed, our pull request or our
    /// receipt. (A partner refuses what we sent with a signed refusal notice, not with this.)
    #[error("the service refused {refused}: {ebms_code} {message}")]
    EbmsError {
        ebms_code: String,
        message: String,
        /// What was refused: `the message`, `the pull request`, `the receipt`.
        refused: &'static str,
    },
    /// DNS failed, the TCP connect was refused or unreachable, or the connection dropped before
    /// a response began.
    #[error("cannot reach the service: {0}")]
    ConnectFailed(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The TLS handshake failed or the server's certificate was refused (untrusted, wrong host
    /// name, pin mismatch: the message says which).
    #[error("TLS failed: {0}")]
    TlsFailed(String),
    /// An HTTP status that the caller treats as a failure.
    #[error("HTTP status {status}: {message}")]
    HttpStatus { status: u16, message: String },
    /// Not HTTP, truncated, or badly framed.
    #[error("bad HTTP response: {0}")]
    BadResponse(String),
    /// The service refused the request for good with an HTTP status (a 4xx other than 408
    /// and 429; 413: the message is larger than the service accepts). Sending it again cannot
    /// succeed.
    #[error("refused for good: {0}")]
    Refused(String),
    /// A mail server answered with a temporary failure (an SMTP 4xx reply, an IMAP or POP3
    /// server that is busy or closing): worth a retry. A permanent SMTP refusal (5xx: the size
    /// limit, an unknown recipient) is [`Error::Refused`].
    #[error("mail server: {message}")]
    MailStatus { code: u16, message: String },
    /// A mail server refused our user name and password (SMTP AUTH, IMAP LOGIN, POP3 PASS).
    /// Not retried at once: trying again with the same password cannot succeed and may lock
    /// the account.
    #[error("login refused: {0}")]
    LoginFailed(String),
    /// The message was handed over (by e-mail) and the service's answer has not arrived yet:
    /// the send completes when it comes (`layersec run`, or the next attempt).
    #[error("submitted, receipt pending: {0}")]
    ReceiptPending(String),
    /// A file of the client's journal (its state folder) cannot be read as written.
    #[error("the client's state is damaged: {0}")]
    StateCorrupt(String),
    /// The client's configuration file is missing, unreadable or has a bad setting; the message
    /// is `<file>: <key>: <what is expected>`.
    #[error("invalid configuration: {0}")]
    ConfigInvalid(String),
    /// Another process (or thread) is working on the same part of the client's state.
    #[error("busy: {0}")]
    StateLocked(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        use Error::*;
        match self {
            NullArgument(_) => ErrorCode::NullArgument,
            InvalidArgument(_) => ErrorCode::InvalidArgument,
            Io { .. } => ErrorCode::Io,
            BadPassword(_) => ErrorCode::BadPassword,
            UnsupportedKey(_) => ErrorCode::UnsupportedKey,
            PinIncorrect(_) => ErrorCode::PinIncorrect,
            TokenUnavailable(_) => ErrorCode::TokenUnavailable,
            KeyNotFound(_) => ErrorCode::KeyNotFound,
            DecryptFailed(_) => ErrorCode::DecryptFailed,
            NotARecipient(_) => ErrorCode::NotARecipient,
            KeyUnwrapFailed(_) => ErrorCode::KeyUnwrapFailed,
            BadSignature(_) => ErrorCode::BadSignature,
            SignerMismatch(_) => ErrorCode::SignerMismatch,
            Unsigned(_) => ErrorCode::Unsigned,
            DigestMismatch(_) => ErrorCode::DigestMismatch,
            UnsupportedAlgorithm(_) => ErrorCode::UnsupportedAlgorithm,
            WeakAlgorithm(_) => ErrorCode::WeakAlgorithm,
            ReceiptMismatch(_) => ErrorCode::ReceiptMismatch,
            MechanismUnsupported(_) => ErrorCode::MechanismUnsupported,
            CertExpired(_) => ErrorCode::CertExpired,
            CertNotYetValid(_) => ErrorCode::CertNotYetValid,
            CertKeyUsage(_) => ErrorCode::CertKeyUsage,
            UnknownSigner(_) => ErrorCode::UnknownSigner,
            CertUntrusted(_) => ErrorCode::CertUntrusted,
            CertInvalid(_) => ErrorCode::CertInvalid,
            KeyCertMismatch(_) => ErrorCode::KeyCertMismatch,
            CertNotFound(_) => ErrorCode::CertNotFound,
            Malformed(_) => ErrorCode::Malformed,
            Truncated(_) => ErrorCode::Truncated,
            MalformedMime(_) => ErrorCode::MalformedMime,
            TooDeep(_) => ErrorCode::TooDeep,
            TooLarge(_) => ErrorCode::TooLarge,
            DecompressFailed(_) => ErrorCode::DecompressFailed,
            ExpansionTooLarge(_) => ErrorCode::ExpansionTooLarge,
            MustUnderstand(_) => ErrorCode::MustUnderstand,
            SignatureRequired(_) => ErrorCode::SignatureRequired,
            SignatureWrapping(_) => ErrorCode::SignatureWrapping,
            UnsignedPart(_) => ErrorCode::UnsignedPart,
            InvalidEbms(_) => ErrorCode::InvalidEbms,
            EbmsError { .. } => ErrorCode::EbmsError,
            ConnectFailed(_) => ErrorCode::ConnectFailed,
            Timeout(_) => ErrorCode::Timeout,
            TlsFailed(_) => ErrorCode::TlsFailed,
            HttpStatus { .. } => ErrorCode::HttpStatus,
            BadResponse(_) => ErrorCode::BadResponse,
            Refused(_) => ErrorCode::Refused,
            MailStatus { .. } => ErrorCode::MailStatus,
            LoginFailed(_) => ErrorCode::LoginFailed,
            ReceiptPending(_) => ErrorCode::ReceiptPending,
            StateCorrupt(_) => ErrorCode::StateCorrupt,
            ConfigInvalid(_) => ErrorCode::ConfigInvalid,
            StateLocked(_) => ErrorCode::StateLocked,
            Internal(_) => ErrorCode::Internal,
        }
    }

    /// Whether retrying the same operation later could succeed. Nothing in the document layer is
    /// transient except I/O; of the transport's failures, `ConnectFailed`, `Timeout` and
    /// `HttpStatus` for 5xx, 408 and 429, `MailStatus` and `ReceiptPending` are (`TlsFailed`,
    /// `BadResponse` and `LoginFailed` are not); of a PKCS#11 token's, `TokenUnavailable` is
    /// (`PinIncorrect` is not: retrying it would count towards the token's lock-out).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            Error::ConnectFailed(_)
            | Error::Timeout(_)
            | Error::MailStatus { .. }
            | Error::ReceiptPending(_)
            | Error::TokenUnavailable(_) => true,
            Error::HttpStatus { status, .. } => matches!(status, 500..=599 | 408 | 429),
            _ => false,
        }
    }

    /// An I/O failure with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// OpenSSL errors that escape a specific mapping are internal: every expected failure is mapped
/// where it happens, with a message that says what the user's input did wrong.
impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Error {
        Error::Internal(format!("OpenSSL: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure as machine output reports it — the same object everywhere: the CLI's `--json`
/// errors, the `error` members of `inspect`, the client's reports and events (`send`, `poll`,
/// `run`, `status`) and the service's admin API.
///
/// Serialised as `{"code": 204, "name": "LS_ERR_SIGNER_MISMATCH", "family": "crypto",
/// "message": "…", "transient": false}`, plus `"exit_code"` where a command prints it. `code`
/// and `name` are the C ABI's `ls_result` and its macro name, `family` is
/// [`ErrorCode::family`], `transient` is [`Error::is_transient`]: whether trying again later
/// may succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
    pub transient: bool,
    /// The process exit status, where a command prints the error (`layersec --json`).
    pub exit_code: Option<u8>,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReport {
        ErrorReport {
            code,
            message: message.into(),
            transient: false,
            exit_code: None,
        }
    }

    pub fn with_exit_code(mut self, exit_code: u8) -> ErrorReport {
        self.exit_code = Some(exit_code);
        self
    }
}

impl From<&Error> for ErrorReport {
    fn from(e: &Error) -> ErrorReport {
        ErrorReport {
            code: e.code(),
            message: e.to_string(),
            transient: e.is_transient(),
            exit_code: None,
        }
    }
}

impl From<Error> for ErrorReport {
    fn from(e: Error) -> ErrorReport {
        ErrorReport::from(&e)
    }
}

impl serde::Serialize for ErrorReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = if self.exit_code.is_some() { 6 } else { 5 };
        let mut st = s.serialize_struct("ErrorReport", n)?;
        st.serialize_field("code", &self.code.as_i32())?;
        st.serialize_field("name", &self.code.to_string())?;
        st.serialize_field("family", self.code.family())?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("transient", &self.transient)?;
        if let Some(x) = self.exit_code {
            st.serialize_field("exit_code", &x)?;
        }
        st.end()
    }
}

/// Read back what [`ErrorReport`] writes. `code` may also be a name (`"LS_ERR_IO"`), as the
/// client's earlier reports had it; `name` and `family` follow from the code.
impl<'de> serde::Deserialize<'de> for ErrorReport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Code {
            Number(i32),
            Name(String),
        }
        #[derive(serde::Deserialize)]
        struct Raw {
            code: Code,
            message: String,
            #[serde(default)]
            transient: bool,
            #[serde(default)]
            exit_code: Option<u8>,
        }
        let raw = Raw::deserialize(d)?;
        let code = match &raw.code {
            Code::Number(n) => ErrorCode::from_i32(*n),
            Code::Name(s) => ErrorCode::from_name(s),
        }
        .ok_or_else(|| serde::de::Error::custom("an unknown error code"))?;
        Ok(ErrorReport {
            code,
            message: raw.message,
            transient: raw.transient,
            exit_code: raw.exit_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_object_is_one_shape() {
        let e = Error::SignerMismatch("signed by CN=mallory".into());
        let r = ErrorReport::from(&e);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"code":204,"name":"LS_ERR_SIGNER_MISMATCH","family":"crypto","message":"signed by someone other than the expected partner: signed by CN=mallory","transient":false}"#
        );
        let r = ErrorReport::from(&Error::Timeout("30 s".into())).with_exit_code(9);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"code":601,"name":"LS_ERR_TIMEOUT","family":"transport","message":"timed out: 30 s","transient":true,"exit_code":9}"#
        );
        // Read back, and from the shape the client's journal keeps (the code by its name).
        let back: ErrorReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let old: ErrorReport = serde_json::from_str(
            r#"{"code":"LS_ERR_CONNECT_FAILED","message":"m","transient":true}"#,
        )
        .unwrap();
        assert_eq!(old.code, ErrorCode::ConnectFailed);
        assert!(old.transient && old.exit_code.is_none());
        assert!(serde_json::from_str::<ErrorReport>(r#"{"code":999,"message":"m"}"#).is_err());
    }

    #[test]
    fn codes_by_name() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(&c.to_string()), Some(c));
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
        }
        assert_eq!(ErrorCode::from_name("LS_ERR_NOPE"), None);
    }

    #[test]
    fn an_ebms_refusal_says_who_refused_what() {
        let e = Error::EbmsError {
            ebms_code: "EBMS:0101".into(),
            message: "FailedAuthentication".into(),
            refused: "the pull request",
        };
        assert_eq!(
            e.to_string(),
            "the service refused the pull request: EBMS:0101 FailedAuthentication"
        );
    }
}
