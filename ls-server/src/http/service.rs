//! One request, once hyper has parsed its head: the checks hyper leaves to us, the body under
//! its deadline and limit, the handler on the blocking pool, the response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Version};
use tokio::sync::Semaphore;

use super::body::{
    next_piece, pump, BodyFail, BodyStream, OutBody, Progress, PumpState, IN_FLIGHT,
};
use super::io::{ConnState, Phase};
use super::MAX_MESSAGE_BYTES_HEADER;
use super::{bump, Handler, HttpStats, Limits, Request, Response, Shutdown};

/// Bodies are not preallocated beyond this from a declared Content-Length.
const BODY_PREALLOC: u64 = 1024 * 1024;

/// What every connection of one listener shares.
pub(super) struct Shared {
    pub limits: Limits,
    pub handler: Arc<dyn Handler>,
    pub stats: Arc<HttpStats>,
    pub handlers: Arc<Semaphore>,
    /// Turns of handlers that read their body as it arrives.
    pub streams: Arc<Semaphore>,
    pub shutdown: Shutdown,
}

/// One connection, as its requests see it.
pub(super) struct ConnInfo {
    pub peer: SocketAddr,
    pub client_cert: Option<Vec<u8>>,
    pub state: Arc<ConnState>,
}

pub(super) type HttpResponse = hyper::Response<OutBody>;

/// Answer one request (never an error: every failure is a response).
pub(super) async fn respond(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
) -> Result<HttpResponse, Infallible> {
    conn.state.set(Phase::Busy);
    let (parts, body) = req.into_parts();
    let is_head = parts.method == Method::HEAD;

    if let Err((status, why)) = check_head(&parts) {
        return Ok(refuse(&shared, &conn, is_head, status, why));
    }
    let (path, query) = target(&parts);
    // The listener's limit, or the handler's smaller one for this path.
    let limit = match shared.handler.max_body_bytes(&path) {
        Some(m) if m < shared.limits.max_body_bytes => BodyLimit::Path(m),
        _ => BodyLimit::Listener(shared.limits.max_body_bytes),
    };
    let max = limit.bytes();
    let declared = body.size_hint().exact();
    if let Some(n) = declared.filter(|n| *n > max) {
        return Ok(too_large(&shared, &conn, is_head, Some(n), limit, &path));
    }
    let progress = Progress {
        idle: shared.limits.body_idle_timeout,
        rate: shared.limits.min_rate,
    };
    let streamed = !is_head
        && declared != Some(0)
        && shared
            .handler
            .stream_body(parts.method.as_str(), &path, declared);

    // A streamed body is pumped to the handler while it runs; another is read whole first.
    let (body, body_stream, pumped) = if streamed {
        let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let state = Arc::new(PumpState::default());
        let pump = tokio::spawn(pump(body, tx, max, progress, state.clone()));
        (
            Vec::new(),
            Some(BodyStream::new(rx, declared)),
            Some((pump, state)),
        )
    } else {
        match read_body(body, max, declared, progress).await {
            Ok(body) => (body, None, None),
            Err(fail) => return Ok(body_failed(&shared, &conn, is_head, fail, limit, &path)),
        }
    };

    let keep_alive_10 = parts.version == Version::HTTP_10 && wants_keep_alive_10(&parts);
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        query,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        body_stream,
        peer: conn.peer,
        client_cert: conn.client_cert.clone(),
    };
    bump(&shared.stats.requests);

    let turns = if streamed {
        &shared.streams
    } else {
        &shared.handlers
    };
    let Ok(permit) = turns.clone().acquire_owned().await else {
        return Ok(closing(Response::text(503, "stopping\n"), is_head, &conn));
    };
    let handler = shared.handler.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let _turn = permit;
        handler.handle(request)
    })
    .await;
    let (response, mut close) = match joined {
        Ok(response) => (response, false),
        // The panic message went through the process's panic hook.
        Err(_) => {
            bump(&shared.stats.handler_panics);
            (Response::text(500, "internal server error\n"), true)
        }
    };
    if let Some((pump, state)) = pumped {
        // A body that failed is answered for here, whatever the handler said about it.
        if let Some(fail) = state.failure() {
            pump.abort();
            return Ok(body_failed(&shared, &conn, is_head, fail, limit, &path));
        }
        if !state.complete.load(Ordering::Acquire) {
            // The handler answered before the body's end: the rest is not read.
            pump.abort();
            conn.state.unread_body.store(true, Ordering::Relaxed);
            close = true;
        }
    }
    // HTTP/1.0 closes unless asked; and a stopping server closes after each response.
    if shared.shutdown.is_triggered() || (parts.version == Version::HTTP_10 && !keep_alive_10) {
        close = true;
    }
    Ok(finish(
        response,
        is_head,
        close,
        keep_alive_10 && !close,
        &conn,
    ))
}

/// The answer to a body that could not be read.
fn body_failed(
    shared: &Shared,
    conn: &ConnInfo,
    is_head: bool,
    fail: BodyFail,
    limit: BodyLimit,
    path: &str,
) -> HttpResponse {
    match fail {
        BodyFail::TooLarge => too_large(shared, conn, is_head, None, limit, path),
        BodyFail::Malformed => refuse(shared, conn, is_head, 400, "malformed request body"),
        // The client went away: nobody will read an answer.
        BodyFail::Gone => closing(
            Response::text(400, "incomplete request body\n"),
            is_head,
            conn,
        ),
        BodyFail::Timeout => {
            bump(&shared.stats.timeouts);
            conn.state.unread_body.store(true, Ordering::Relaxed);
            closing(
                Response::text(
                    408,
                    "request timeout (the body stalled or came too slowly)\n",
                ),
                is_head,
                conn,
            )
        }
    }
}

/// What hyper accepts but this service does not.
fn check_head(parts: &Parts) -> Result<(), (u16, &'static str)> {
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && parts.version != Version::HTTP_10) {
        return Err((400, "an HTTP/1.1 request needs exactly one Host"));
    }
    let uri = &parts.uri;
    if uri.path() == "*" && uri.scheme().is_none() {
        if parts.method != Method::OPTIONS {
            return Err((400, "'*' target is only for OPTIONS"));
        }
    } else if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err((400, "malformed request target"));
        }
    } else if !uri.path().starts_with('/') {
        return Err((400, "malformed request target"));
    }
    // hyper frames a body only by a transfer coding list ending in chunked.
    let mut codings = 0;
    for value in parts.headers.get_all(header::TRANSFER_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| (400, "malformed Transfer-Encoding"))?;
        for coding in value.split(',').map(|c| c.trim_matches([' ', '\t'])) {
            if !coding.is_empty() {
                codings += 1;
                if !coding.eq_ignore_ascii_case("chunked") {
                    return Err((501, "unsupported transfer coding"));
                }
            }
        }
    }
    if codings > 1 {
        return Err((501, "unsupported transfer coding"));
    }
    Ok(())
}

/// Path and query of the target (`*` stays `*`; the absolute form is reduced to them).
fn target(parts: &Parts) -> (String, String) {
    let path = match parts.uri.path() {
        "" => "/",
        p => p,
    };
    (
        path.to_string(),
        parts.uri.query().unwrap_or_default().to_string(),
    )
}

/// HTTP/1.0 keeps a connection open only when asked to.
fn wants_keep_alive_10(parts: &Parts) -> bool {
    let tokens = || {
        parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim_matches([' ', '\t']))
    };
    !tokens().any(|t| t.eq_ignore_ascii_case("close"))
        && tokens().any(|t| t.eq_ignore_ascii_case("keep-alive"))
}

/// The whole body, refused as soon as it grows beyond `max` or stops making progress.
async fn read_body(
    mut body: Incoming,
    max: u64,
    declared: Option<u64>,
    progress: Progress,
) -> Result<Vec<u8>, BodyFail> {
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(BODY_PREALLOC) as usize);
    let started = Instant::now();
    let mut received = 0u64;
    while let Some(data) = next_piece(&mut body, progress, started, &mut received, max).await? {
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// A refusal by this layer: counted, `Connection: close`, the body left unread.
fn refuse(shared: &Shared, conn: &ConnInfo, is_head: bool, status: u16, why: &str) -> HttpResponse {
    bump(&shared.stats.bad_requests);
    conn.state.unread_body.store(true, Ordering::Relaxed);
    closing(Response::text(status, &format!("{why}\n")), is_head, conn)
}

/// The body limit of a request: the listener's (`limits.max_message_bytes`), or a smaller one
/// the handler sets for its path.
#[derive(Clone, Copy)]
enum BodyLimit {
    Listener(u64),
    Path(u64),
}

impl BodyLimit {
    fn bytes(self) -> u64 {
        match self {
            BodyLimit::Listener(n) | BodyLimit::Path(n) => n,
        }
    }
}

/// 413, stating the limit in its body and in [`MAX_MESSAGE_BYTES_HEADER`].
fn too_large(
    shared: &Shared,
    conn: &ConnInfo,
    is_head: bool,
    size: Option<u64>,
    limit: BodyLimit,
    path: &str,
) -> HttpResponse {
    bump(&shared.stats.too_large);
    let max = limit.bytes();
    let of = size.map(|n| format!(" of {n} bytes")).unwrap_or_default();
    let text = match limit {
        BodyLimit::Listener(_) => format!(
            "the message{of} is larger than this service accepts (limits.max_message_bytes = {max})\n"
        ),
        BodyLimit::Path(_) => format!(
            "the request{of} is larger than this service accepts at {} ({max} bytes)\n",
            path.chars().filter(|c| !c.is_control()).take(100).collect::<String>()
        ),
    };
    let mut response = Response::text(413, &text);
    response
        .headers
        .push((MAX_MESSAGE_BYTES_HEADER.to_string(), max.to_string()));
    bump(&shared.stats.bad_requests);
    conn.state.unread_body.store(true, Ordering::Relaxed);
    closing(response, is_head, conn)
}

fn closing(response: Response, is_head: bool, conn: &ConnInfo) -> HttpResponse {
    finish(response, is_head, true, false, conn)
}

/// The hyper response for `response`; marks the connection as writing it.
fn finish(
    response: Response,
    is_head: bool,
    close: bool,
    keep_alive_10: bool,
    conn: &ConnInfo,
) -> HttpResponse {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut close = close;
    let mut headers = hyper::HeaderMap::new();
    if !response.content_type.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&response.content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
    }
    for (name, value) in &response.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if name == header::CONNECTION {
            close |= value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
            continue;
        }
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        headers.append(name, value);
    }
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if keep_alive_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    let sends_body = !is_head && !matches!(status.as_u16(), 204 | 304);
    let (body, len) = match response.file {
        Some((file, n)) if sends_body => (OutBody::file(file, n), n),
        Some(_) => (OutBody::bytes(Vec::new()), 0),
        None => {
            let n = if sends_body {
                response.body.len() as u64
            } else {
                0
            };
            (OutBody::bytes(response.body), n)
        }
    };
    let mut out = hyper::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    conn.state.writing(len);
    out
}
