//! Carrying built messages to a Messaging Service: the [`Transport`] trait, HTTPS over OpenSSL
//! ([`https::HttpsTransport`]) and a stub for unit tests ([`stub::StubTransport`]).
//!
//! Failures of a transport use the 6xx codes: `ConnectFailed`, `Timeout`, `TlsFailed`,
//! `BadResponse`, and `HttpStatus` for callers that decide a status is an error
//! ([`HttpResponse::error_for_status`]). [`Error::is_transient`] tells which are worth a retry.

pub mod https;
pub mod stub;

pub use https::{HttpsConfig, HttpsTransport};
pub use stub::StubTransport;

use crate::error::{Error, Result};
use std::sync::Arc;

/// An HTTP response, read whole (bounded).
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Empty when the response had none.
    pub content_type: String,
    /// The header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Set when the body was longer than the transport accepts: it was read to its end (so the
    /// connection stays usable and the caller can still identify and refuse what it carried)
    /// but `body` holds only its first [`OVERSIZED_HEAD`] bytes.
    pub oversized: Option<Oversized>,
}

/// How much of an oversized response body is kept.
pub const OVERSIZED_HEAD: usize = 1 << 20;

/// The whole of a response body that was too long to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversized {
    pub length: u64,
    pub sha256: [u8; 32],
    /// The transport's limit it exceeded.
    pub limit: u64,
}

impl HttpResponse {
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
            oversized: None,
        }
    }

    /// The first header field with this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response, unless its body was too long to keep (`TooLarge`).
    pub fn whole(self) -> Result<HttpResponse> {
        match self.oversized {
            None => Ok(self),
            Some(o) => Err(Error::TooLarge(format!(
                "the response of {} bytes is longer than the {} bytes allowed",
                o.length, o.limit
            ))),
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response itself when 2xx, else `Error::HttpStatus` (transient for 5xx, 408 and 429).
    /// For callers that found no ebMS signal in a non-2xx response.
    pub fn error_for_status(self) -> Result<HttpResponse> {
        if self.is_success() {
            return Ok(self);
        }
        let ct = if self.content_type.is_empty() {
            "no content type"
        } else {
            &self.content_type
        };
        Err(Error::HttpStatus {
            status: self.status,
            message: format!(
                "the service answered HTTP {} ({ct}, {} bytes)",
                self.status,
                self.body.len()
            ),
        })
    }
}

/// Something that POSTs a message and returns the synchronous response.
pub trait Transport: Send + Sync {
    /// POST `body` with `content_type` to the service. A 2xx response is `Ok`; any other status
    /// is returned as `Ok` too, so the caller can read an ebMS error signal in it — but a 5xx
    /// without an ebMS body is the caller's to treat as transient.
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse>;
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (**self).post(content_type, body)
    }
}
