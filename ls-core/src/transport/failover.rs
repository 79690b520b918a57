//! Failover between the nodes of one Messaging Service: several URLs behind the same TLS trust
//! and the same service certificate (the client's `[service] url` and `urls`).
//!
//! A request goes to the node that answered last (sticky) and on to the next one, round the
//! list, when that node is down:
//! - it cannot be reached, or drops the connection before an answer (`ConnectFailed`: refused,
//!   reset, closed, a host that does not resolve);
//! - connecting, the TLS handshake or the exchange times out (`Timeout`);
//! - it answers HTTP 502, 503 or 504 (a node, or the proxy before it, that cannot serve now).
//!
//! Any other outcome is definite and returned as it is: an answer with any other status (a
//! signed ebMS error, a 4xx), and every TLS failure. A certificate that does not verify is
//! never a reason to try another node: it is an error to be seen (a node with the wrong
//! certificate, or someone between us and it), not a node to route around. Each node is
//! verified by the same trust.
//!
//! Single-use requests are not sent twice: a pull request is built anew for every node it goes
//! to ([`Transport::post_fresh`]: a node that failed after taking it may have remembered its
//! MessageId, and the next would refuse the same bytes as a replay); a request signed with a
//! nonce (`post`: enrolment, rollover, directory) goes on only past a node that could not be
//! reached, and otherwise fails, its caller's next request starting at the next node.
//!
//! Sending the same message to another node is safe: it is the same signed bytes (the same
//! MessageId) wherever it goes, and the service's store, shared by its nodes, takes it once and
//! answers a repeat with the first receipt. A body read in pieces goes to the next node only if
//! the caller can read it again ([`Reopen`]) or no node has read any of it yet; otherwise the
//! failure is returned (the next request starts at the next node). When every node fails, the
//! failure of the last one is returned, transient as it was, so that journals retry later.

use super::{HttpResponse, HttpsConfig, HttpsTransport, Reopen, StreamingResponse, Transport};
use crate::error::{Error, Result};
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// What a [`Failover`] tells its observers: a node failed, or a node answered and requests go to
/// it from now on (the first answer, or a switch to another node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// The node's place in the list (0: the first, the primary).
    pub node: usize,
    /// Its URL, any user info redacted.
    pub url: String,
    /// When (Unix time).
    pub at: i64,
    /// Why the node counts as down; `None`: it answered.
    pub failure: Option<String>,
    /// On a failure: the URL of the node tried next (redacted), if one is.
    pub next: Option<String>,
}

/// Called with each [`NodeEvent`] (on the thread of the request; keep it short).
pub type Observer = Arc<dyn Fn(&NodeEvent) + Send + Sync>;

/// A [`Transport`] over the nodes of one service, each reached by its own transport `T`. See the
/// module documentation for when it moves on to the next node.
pub struct Failover<T> {
    nodes: Vec<Node<T>>,
    /// The node tried first: the one that answered last.
    preferred: AtomicUsize,
    /// Whether any node answered yet (the first answer is told to observers).
    answered: AtomicBool,
    observers: RwLock<Vec<Observer>>,
}

struct Node<T> {
    /// Redacted.
    url: String,
    transport: T,
}

impl<T> fmt::Debug for Failover<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("nodes", &self.urls())
            .field("preferred", &self.preferred())
            .finish_non_exhaustive()
    }
}

/// What one node made of a request.
enum Step<R> {
    /// A definite outcome: returned.
    Done(Result<R>),
    /// The node is down (why); `go_on`: the request can go to the next node.
    Down(Result<R>, String, bool),
}

impl Failover<HttpsTransport> {
    /// HTTPS to each of `configs` (one per node, in order; the same trust in each).
    pub fn https(configs: Vec<HttpsConfig>) -> Result<Failover<HttpsTransport>> {
        let nodes = configs
            .into_iter()
            .map(|c| {
                let url = c.url.clone();
                HttpsTransport::new(c).map(|t| (url, t))
            })
            .collect::<Result<Vec<_>>>()?;
        Failover::new(nodes)
    }

    /// GET the URL of the node that answered last ([`HttpsTransport::get`]), failing over as a
    /// POST does.
    pub fn get(&self) -> Result<HttpResponse> {
        self.each(|_, t| step(t.get(), |r| r.status, true))
    }
}

impl<T> Failover<T> {
    /// Failover over `nodes`: each one's URL (for messages; user info is redacted) and
    /// transport. The first is tried first until another answers. At least one is expected.
    pub fn new(nodes: Vec<(String, T)>) -> Result<Failover<T>> {
        if nodes.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one service URL is expected".into(),
            ));
        }
        Ok(Failover {
            nodes: nodes
                .into_iter()
                .map(|(url, transport)| Node {
                    url: super::https::redact_userinfo(url.trim()),
                    transport,
                })
                .collect(),
            preferred: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            observers: RwLock::new(Vec::new()),
        })
    }

    /// The nodes' URLs, in order, user info redacted.
    pub fn urls(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.url.as_str()).collect()
    }

    /// The node tried first now (the one that answered last).
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// Try node `node` first from now on (one remembered from an earlier run); ignored when
    /// out of range.
    pub fn prefer(&self, node: usize) {
        if node < self.nodes.len() {
            self.preferred.store(node, Ordering::Relaxed);
        }
    }

    /// Tell `observer` of every [`NodeEvent`] from now on. A failover over one node tells
    /// nothing (there is nothing to fail over to).
    pub fn add_observer(&self, observer: Observer) {
        self.observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// The transports of the nodes, in order.
    pub fn transports(&self) -> impl Iterator<Item = &T> {
        self.nodes.iter().map(|n| &n.transport)
    }

    fn tell(&self, node: usize, failure: Option<String>, next: Option<usize>) {
        if self.nodes.len() < 2 {
            return;
        }
        let observers = self
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if observers.is_empty() {
            return;
        }
        let ev = NodeEvent {
            node,
            url: self.nodes[node].url.clone(),
            at: crate::time::now_unix(),
            failure,
            next: next.map(|n| self.nodes[n].url.clone()),
        };
        for o in observers {
            o(&ev);
        }
    }

    /// Run `f` on the nodes from the preferred one on, round the list, until one gives a
    /// definite outcome; see the module documentation.
    fn each<R>(&self, mut f: impl FnMut(usize, &T) -> Step<R>) -> Result<R> {
        let n = self.nodes.len();
        let start = self.preferred() % n;
        for k in 0..n {
            let i = (start + k) % n;
            match f(i, &self.nodes[i].transport) {
                Step::Done(r) => {
                    if r.is_ok() {
                        let before = self.preferred.swap(i, Ordering::Relaxed);
                        let first = !self.answered.swap(true, Ordering::Relaxed);
                        if before != i || first {
                            self.tell(i, None, None);
                        }
                    }
                    return r;
                }
                Step::Down(r, why, go_on) => {
                    let next = (go_on && k + 1 < n).then_some((i + 1) % n);
                    self.tell(i, Some(why), next);
                    if next.is_none() {
                        if !go_on {
                            // The next request starts at the next node.
                            self.preferred.store((i + 1) % n, Ordering::Relaxed);
                        }
                        return r;
                    }
                }
            }
        }
        unreachable!("the last node's outcome is returned")
    }
}

/// Why an outcome means the node is down, if it does: an answer of 502, 503 or 504, or the
/// node not reached, or gone before it answered (`ConnectFailed`, `Timeout`).
fn down<R>(r: &Result<R>, status: impl Fn(&R) -> u16) -> Option<String> {
    match r {
        Ok(resp) => {
            let s = status(resp);
            matches!(s, 502..=504).then(|| format!("HTTP {s}"))
        }
        Err(e @ (Error::ConnectFailed(_) | Error::Timeout(_))) => Some(e.to_string()),
        Err(_) => None,
    }
}

fn step<R>(r: Result<R>, status: impl Fn(&R) -> u16, go_on: bool) -> Step<R> {
    match down(&r, status) {
        None => Step::Done(r),
        Some(why) => Step::Down(r, why, go_on),
    }
}

/// A body reader that counts what was taken from it.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    taken: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        Ok(n)
    }
}

impl<T: Transport> Transport for Failover<T> {
    /// Single-use requests signed with a nonce (enrolment, rollover, directory): another node
    /// is tried only when this one could not be reached; after a 502/503/504 or a timeout (the
    /// node may have taken the nonce, and the next node would refuse the same bytes as a
    /// replay) the failure is returned and the next request, made anew by the caller, starts
    /// at the next node.
    fn post(&self, content_type: &str, body: &[u8]) -> Result<HttpResponse> {
        self.each(|_, t| {
            let r = t.post(content_type, body);
            let unreached = matches!(r, Err(Error::ConnectFailed(_)));
            step(r, |r| r.status, unreached)
        })
    }

    fn post_fresh(&self, build: super::FreshRequest<'_>) -> Result<StreamingResponse> {
        self.each(|_, t| {
            let r = build().and_then(|(content_type, body)| {
                t.post_streaming(&content_type, &mut &body[..], body.len() as u64)
            });
            step(r, |r| r.status, true)
        })
    }

    fn post_streaming(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
    ) -> Result<StreamingResponse> {
        self.post_reopenable(content_type, body, len, None)
    }

    fn post_reopenable(
        &self,
        content_type: &str,
        body: &mut dyn Read,
        len: u64,
        reopen: Option<Reopen<'_>>,
    ) -> Result<StreamingResponse> {
        // The caller's body while no node has read any of it.
        let mut fresh = Some(body);
        self.each(|_, t| {
            let r = match fresh.take() {
                Some(b) => {
                    let mut counted = Counted { inner: b, taken: 0 };
                    let r = t.post_reopenable(content_type, &mut counted, len, reopen);
                    if counted.taken == 0 {
                        fresh = Some(counted.inner);
                    }
                    r
                }
                None => {
                    let Some(reopen) = reopen else {
                        unreachable!("a body that cannot be read again is not sent twice");
                    };
                    match reopen() {
                        Ok(mut again) => t.post_reopenable(content_type, &mut again, len, None),
                        Err(e) => {
                            return Step::Done(Err(Error::io("cannot read the message again", e)))
                        }
                    }
                }
            };
            let go_on = fresh.is_some() || reopen.is_some();
            step(r, |r| r.status, go_on)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::transport::StubTransport;
    use std::sync::Mutex;

    type Calls = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;
    /// A node's answer: a status, or an error made from a message.
    type Answer = Result<u16, fn(String) -> Error>;

    /// Nodes answering as `answers` says (a status, or an error), recording what each got.
    fn nodes(answers: Vec<Answer>) -> (Failover<StubTransport>, Calls) {
        let calls: Calls = Arc::default();
        let nodes = answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let calls = Arc::clone(&calls);
                let t = StubTransport::new(move |_, body| {
                    calls.lock().unwrap().push((i, body.to_vec()));
                    match a {
                        Ok(s) => Ok(HttpResponse::new(s, "text/plain", format!("node {i}"))),
                        Err(e) => Err(e(format!("node {i} is down"))),
                    }
                });
                (format!("https://user:secret@node{i}.example/as4"), t)
            })
            .collect();
        (Failover::new(nodes).unwrap(), calls)
    }

    fn visited(calls: &Calls) -> Vec<usize> {
        calls.lock().unwrap().iter().map(|c| c.0).collect()
    }

    fn events(f: &Failover<StubTransport>) -> Arc<Mutex<Vec<NodeEvent>>> {
        let seen: Arc<Mutex<Vec<NodeEvent>>> = Arc::default();
        let s = Arc::clone(&seen);
        f.add_observer(Arc::new(move |e| s.lock().unwrap().push(e.clone())));
        seen
    }

    #[test]
    fn down_nodes_are_passed_over_and_the_answering_one_is_kept() {
        let (f, calls) = nodes(vec![
            Err(Error::ConnectFailed),
            Ok(503),
            Err(Error::Timeout),
            Ok(200),
        ]);
        let seen = events(&f);
        // A request built anew for every node (a pull request: single use).
        let built = std::sync::atomic::AtomicUsize::new(0);
        let build = || {
            let n = built.fetch_add(1, Ordering::Relaxed);
            Ok(("text/xml".to_string(), format!("msg{n}").into_bytes()))
        };
        let r = f.post_fresh(&build).unwrap().read_whole(1000).unwrap();
        assert_eq!(r.body, b"node 3");
        assert_eq!(visited(&calls), [0, 1, 2, 3]);
        let bodies: Vec<Vec<u8>> = calls.lock().unwrap().iter().map(|c| c.1.clone()).collect();
        assert_eq!(bodies, [&b"msg0"[..], b"msg1", b"msg2", b"msg3"]);
        assert_eq!(f.preferred(), 3);
        let ev = seen.lock().unwrap().clone();
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert_eq!(ev[1].failure.as_deref(), Some("HTTP 503"));
        assert_eq!(ev[0].next.as_deref(), Some("https://***@node1.example/as4"));
        assert_eq!(ev[3].failure, None);
        assert_eq!(ev[3].url, "https://***@node3.example/as4");
        assert!(ev.iter().all(|e| !format!("{e:?}").contains("secret")));
        // Sticky: the next request goes to node 3 at once, and nothing new is told.
        calls.lock().unwrap().clear();
        f.post("text/xml", b"msg").unwrap();
        assert_eq!(visited(&calls), [3]);
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[test]
    fn definite_answers_are_returned_at_once() {
        for (answer, code) in [
            (Ok(400), None),
            (Ok(500), None),
            (Ok(404), None),
            (Ok(413), None),
            (
                Err(Error::TlsFailed as fn(String) -> Error),
                Some(ErrorCode::TlsFailed),
            ),
            (Err(Error::BadResponse), Some(ErrorCode::BadResponse)),
        ] {
            let (f, calls) = nodes(vec![answer, Ok(200)]);
            let r = f.post("text/xml", b"msg");
            match code {
                None => assert_ne!(r.unwrap().status, 200),
                Some(c) => assert_eq!(r.unwrap_err().code(), c),
            }
            assert_eq!(visited(&calls), [0], "{code:?}");
            assert_eq!(f.preferred(), 0);
        }
    }

    #[test]
    fn round_the_list_and_the_last_failure_when_all_are_down() {
        let build = || Ok(("a/b".to_string(), b"x".to_vec()));
        let (f, calls) = nodes(vec![Ok(200), Err(Error::ConnectFailed), Ok(504)]);
        f.prefer(1);
        let r = f.post_fresh(&build).unwrap().read_whole(1000).unwrap();
        assert_eq!(r.body, b"node 0");
        assert_eq!(visited(&calls), [1, 2, 0]);
        assert_eq!(f.preferred(), 0);
        let (f, calls) = nodes(vec![Ok(502), Err(Error::ConnectFailed)]);
        let e = f.post_fresh(&build).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConnectFailed);
        assert!(e.is_transient());
        assert_eq!(visited(&calls), [0, 1]);
        let (f, _) = nodes(vec![Err(Error::ConnectFailed), Ok(503)]);
        assert_eq!(f.post_fresh(&build).unwrap().status, 503, "as today: a 503");
        assert_eq!(f.preferred(), 0, "no node answered");
    }

    /// `post` (requests signed with a nonce, built once by the caller) goes to the next node
    /// only when a node was not reached; after a 503 or a timeout the failure is returned (the
    /// node may have taken the nonce) and the caller's next request starts at the next node.
    #[test]
    fn single_use_posts_go_on_only_past_nodes_not_reached() {
        let (f, calls) = nodes(vec![Err(Error::ConnectFailed), Ok(503), Ok(200)]);
        assert_eq!(f.post("a/b", b"x").unwrap().status, 503);
        assert_eq!(visited(&calls), [0, 1]);
        assert_eq!(
            f.preferred(),
            2,
            "the next request starts past the node that failed"
        );
        assert_eq!(f.post("a/b", b"y").unwrap().status, 200);
        let (f, calls) = nodes(vec![Err(Error::Timeout), Ok(200)]);
        assert_eq!(f.post("a/b", b"x").unwrap_err().code(), ErrorCode::Timeout);
        assert_eq!(visited(&calls), [0]);
        assert_eq!(f.preferred(), 1);
    }

    #[test]
    fn a_streamed_body_goes_to_the_next_node_only_if_it_can_be_read_again() {
        // A node that reads the body, then fails.
        struct Reads(Calls, usize, Option<u16>);
        impl Transport for Reads {
            fn post(&self, _: &str, body: &[u8]) -> Result<HttpResponse> {
                self.0.lock().unwrap().push((self.1, body.to_vec()));
                match self.2 {
                    Some(s) => Ok(HttpResponse::new(s, "", Vec::new())),
                    None => Err(Error::ConnectFailed("lost".into())),
                }
            }
        }
        let make = || {
            let calls: Calls = Arc::default();
            let f = Failover::new(vec![
                ("https://a/".to_string(), Reads(Arc::clone(&calls), 0, None)),
                (
                    "https://b/".to_string(),
                    Reads(Arc::clone(&calls), 1, Some(200)),
                ),
            ])
            .unwrap();
            (f, calls)
        };
        let data = b"the signed message".to_vec();
        let (f, calls) = make();
        let e = f
            .post_streaming("a/b", &mut &data[..], data.len() as u64)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConnectFailed);
        assert_eq!(visited(&calls), [0]);
        assert_eq!(f.preferred(), 1, "the next attempt starts at the next node");
        let (f, calls) = make();
        let again = || Ok(Box::new(&data[..]) as Box<dyn Read>);
        let r = f
            .post_reopenable("a/b", &mut &data[..], data.len() as u64, Some(&again))
            .unwrap();
        assert_eq!(r.status, 200);
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 2);
        assert!(
            c.iter().all(|c| c.1 == data),
            "the same bytes to both nodes"
        );
    }

    #[test]
    fn a_body_nobody_read_goes_on_without_reopen() {
        // The stub's post_streaming reads the body first: a node that refuses before reading,
        // as a connection refused does.
        struct Refuses;
        impl Transport for Refuses {
            fn post(&self, _: &str, _: &[u8]) -> Result<HttpResponse> {
                unreachable!()
            }
            fn post_streaming(
                &self,
                _: &str,
                _: &mut dyn Read,
                _: u64,
            ) -> Result<StreamingResponse> {
                Err(Error::ConnectFailed("refused".into()))
            }
        }
        let ok = StubTransport::new(|_, body| Ok(HttpResponse::new(200, "", body.to_vec())));
        let f = Failover::new(vec![
            (
                "https://a/".to_string(),
                Box::new(Refuses) as Box<dyn Transport>,
            ),
            ("https://b/".to_string(), Box::new(ok)),
        ])
        .unwrap();
        let r = f
            .post_streaming("a/b", &mut &b"abc"[..], 3)
            .unwrap()
            .read_whole(100)
            .unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(f.preferred(), 1);
    }

    #[test]
    fn one_node_tells_nothing_and_none_is_refused() {
        let (f, _) = nodes(vec![Err(Error::ConnectFailed)]);
        let seen = events(&f);
        assert!(f.post("a/b", b"x").is_err());
        assert!(seen.lock().unwrap().is_empty());
        assert!(Failover::<StubTransport>::new(Vec::new()).is_err());
    }
}
