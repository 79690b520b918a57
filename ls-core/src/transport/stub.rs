//! A [`Transport`] that calls a closure instead of the network, for unit tests of callers.

use super::{HttpResponse, Transport};
use crate::error::Result;
use std::fmt;

type Handler = dyn Fn(&str, &[u8]) -> Result<HttpResponse> + Send + Sync;

/// Answers each `post(content_type, body)` with what the closure returns.
///
/// ```
/// use ls_core::transport::{HttpResponse, StubTransport, Transport};
/// let t = StubTransport::new(|ct, body| {
///     assert_eq!(ct, "application/soap+xml");
///     Ok(HttpResponse::new(200, "application/soap+xml", body.to_vec()))
/// });
/// assert_eq!(t.post("application/soap+xml", b"<x/>").unwrap().body, b"<x/>");
/// ```
pub struct StubTransport {
    handler: Box<Handler>,
}

impl StubTransport {
    pub fn new(
        handler: impl Fn(&str, &[u8]) -> Result<HttpResponse> + Send + Sync + 'static,
    ) -> StubTransport {
        StubTransport {
            handler: Box::new(handler),
        }
    }

    /// Answers every post with a copy of `response`.
    pub fn fixed(response: HttpResponse) -> StubTransport {
        StubTransport::new(move |_, _| Ok(response.clone()))
    }
}

impl fmt::Debug for StubTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StubTransport").finish_non_exhaustive()
    }
}

impl Transport for StubTransport {
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        (self.handler)(content_type, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode};
    use std::sync::{Arc, Mutex};

    #[test]
    fn calls_the_closure_and_passes_errors_through() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let t = StubTransport::new(move |ct, body| {
            s2.lock().unwrap().push((ct.to_string(), body.to_vec()));
            if body.is_empty() {
                Err(Error::Timeout("stub".into()))
            } else {
                Ok(HttpResponse::new(500, "", Vec::new()))
            }
        });
        let r = t.post("text/xml", b"abc").unwrap();
        assert_eq!(r.status, 500);
        let e = t.post("text/xml", b"").unwrap_err();
        assert_eq!(e.code(), ErrorCode::Timeout);
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(
            seen.lock().unwrap()[0],
            ("text/xml".into(), b"abc".to_vec())
        );
        // Usable as a shared trait object.
        let shared: Arc<dyn Transport> = Arc::new(StubTransport::fixed(HttpResponse::new(
            202,
            "text/plain",
            b"ok".to_vec(),
        )));
        assert_eq!(shared.post("a/b", b"x").unwrap().status, 202);
    }

    #[test]
    fn error_for_status_classifies() {
        let ok = HttpResponse::new(204, "", Vec::new());
        assert!(ok.error_for_status().is_ok());
        for (status, transient) in [
            (500, true),
            (503, true),
            (408, true),
            (429, true),
            (404, false),
            (400, false),
            (302, false),
        ] {
            let e = HttpResponse::new(status, "text/html", b"<html/>".to_vec())
                .error_for_status()
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::HttpStatus);
            assert_eq!(e.is_transient(), transient, "{status}");
            assert!(e.to_string().contains(&status.to_string()));
            assert!(!e.to_string().contains("<html/>"));
        }
    }
}
