//! Thousands of idle or byte-trickling connections held against a service from loopback
//! addresses other than 127.0.0.1, for the lockout test and `scripts/bench-lockout.sh`.
//!
//! Connection `i` is, by `i % 3`: a TCP connection that never says anything; a TLS
//! connection that completes its handshake and then says nothing; a TLS connection that starts
//! a request head and then sends one more byte of it every [`TRICKLE_EVERY`]. They are spread
//! over consecutive addresses from 127.0.0.2, `per_address` each, and held until
//! [`Attack::stop`] (or until the server closes them: counted).
#![allow(dead_code)]

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_openssl::SslStream;

/// A trickling connection sends one more head byte this often.
pub const TRICKLE_EVERY: Duration = Duration::from_secs(3);
/// Connections being opened at once.
const OPENING_AT_ONCE: usize = 256;
/// How long one connect or TLS handshake may take before the attacker gives it up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TcpSilent,
    TlsSilent,
    TlsTrickle,
}

impl Kind {
    pub fn of(i: usize) -> Kind {
        match i % 3 {
            0 => Kind::TcpSilent,
            1 => Kind::TlsSilent,
            _ => Kind::TlsTrickle,
        }
    }
}

#[derive(Default)]
pub struct Counters {
    /// Connected (and, for TLS, handshaken).
    pub established: AtomicUsize,
    /// Closed by the server after being established.
    pub closed_by_server: AtomicUsize,
    /// Could not connect or complete the handshake.
    pub failed: AtomicUsize,
    /// Bytes trickled.
    pub trickled: AtomicUsize,
}

/// The held connections (a runtime of their own); [`Attack::stop`] closes them all.
pub struct Attack {
    rt: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    pub counters: Arc<Counters>,
    /// Connections started.
    pub total: usize,
}

impl Attack {
    /// Start `count` connections to `target`, `per_address` from each address counted up from
    /// `first`, and `extra` more from `extra_from` (to go over a per-address limit).
    pub fn start(
        target: SocketAddr,
        count: usize,
        first: Ipv4Addr,
        per_address: usize,
        extra: Option<(Ipv4Addr, usize)>,
    ) -> Attack {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("attack")
            .enable_all()
            .build()
            .unwrap();
        let stop = watch::Sender::new(false);
        let counters = Arc::new(Counters::default());
        let mut c = SslConnector::builder(SslMethod::tls_client()).unwrap();
        c.set_verify(SslVerifyMode::NONE);
        let connector = Arc::new(c.build());
        let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let base = u32::from(first);
        let mut plan: Vec<(Ipv4Addr, Kind)> = (0..count)
            .map(|i| (Ipv4Addr::from(base + (i / per_address) as u32), Kind::of(i)))
            .collect();
        if let Some((from, n)) = extra {
            plan.extend((0..n).map(|i| (from, Kind::of(i))));
        }
        let total = plan.len();
        for (from, kind) in plan {
            let (connector, counters, opening) =
                (connector.clone(), counters.clone(), opening.clone());
            let stop = stop.subscribe();
            rt.spawn(async move {
                hold(target, from, kind, &connector, &counters, &opening, stop).await;
            });
        }
        Attack {
            rt: Some(rt),
            stop,
            counters,
            total,
        }
    }

    pub fn established(&self) -> usize {
        self.counters.established.load(Ordering::SeqCst)
    }
    pub fn closed_by_server(&self) -> usize {
        self.counters.closed_by_server.load(Ordering::SeqCst)
    }
    pub fn failed(&self) -> usize {
        self.counters.failed.load(Ordering::SeqCst)
    }
    /// Established and not closed by the server.
    pub fn held(&self) -> usize {
        self.established() - self.closed_by_server()
    }
    /// Every connection is established, failed or closed: the attack is in place.
    pub fn settled(&self) -> bool {
        self.established() + self.failed() >= self.total
    }

    /// Close every connection and end the attack's runtime.
    pub fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn connect(from: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(from, 0)))?;
    sock.connect(target).await
}

async fn hold(
    target: SocketAddr,
    from: Ipv4Addr,
    kind: Kind,
    connector: &SslConnector,
    counters: &Counters,
    opening: &Semaphore,
    mut stop: watch::Receiver<bool>,
) {
    let turn = opening.acquire().await.unwrap();
    let tcp = match tokio::time::timeout(STEP_TIMEOUT, connect(from, target)).await {
        Ok(Ok(tcp)) => tcp,
        _ => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if kind == Kind::TcpSilent {
        counters.established.fetch_add(1, Ordering::SeqCst);
        drop(turn);
        let mut tcp = tcp;
        let mut b = [0u8; 64];
        tokio::select! {
            _ = tcp.read(&mut b) => { counters.closed_by_server.fetch_add(1, Ordering::SeqCst); }
            _ = stopped => {}
        }
        return;
    }
    let ssl = connector
        .configure()
        .and_then(|c| c.verify_hostname(false).into_ssl("localhost"))
        .unwrap();
    let mut tls = SslStream::new(ssl, tcp).unwrap();
    match tokio::time::timeout(STEP_TIMEOUT, Pin::new(&mut tls).connect()).await {
        Ok(Ok(())) => {}
        _ => {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    counters.established.fetch_add(1, Ordering::SeqCst);
    drop(turn);
    let (mut rd, mut wr) = tokio::io::split(tls);
    let closed = async {
        let mut b = [0u8; 256];
        loop {
            match rd.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let trickle = async {
        if kind != Kind::TlsTrickle {
            return std::future::pending::<()>().await;
        }
        let head = b"POST /as4 HTTP/1.1\r\nHost: localhost\r\nX-Trickle: ";
        if wr.write_all(head).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(TRICKLE_EVERY).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            counters.trickled.fetch_add(1, Ordering::Relaxed);
        }
    };
    tokio::select! {
        _ = closed => { counters.closed_by_server.fetch_add(1, Ordering::SeqCst); }
        _ = trickle => { counters.closed_by_server.fetch_add(1, Ordering::SeqCst); }
        _ = stopped => {}
    }
}
