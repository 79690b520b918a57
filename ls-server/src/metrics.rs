//! Counters for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Latency buckets (seconds).
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub pulled: AtomicU64,
    pub empty_pulls: AtomicU64,
    pub delivered: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    pub fn reject(&self, reason: &str) {
        let mut r = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry(reason.to_string()).or_default() += 1;
    }

    pub fn observe(&self, kind: &'static str, d: Duration) {
        let s = d.as_secs_f64();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(kind).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// The Prometheus text exposition, with queue depths and the HTTP layer's counters.
    pub fn render(&self, queues: &[(String, u64)], http: &crate::http::HttpStats) -> String {
        let mut o = String::new();
        counter(
            &mut o,
            "layersec_messages_accepted_total",
            "Messages accepted (stored) from senders.",
            self.accepted.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_messages_duplicate_total",
            "Pushes of a MessageId already accepted from the same sender.",
            self.duplicates.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_messages_pulled_total",
            "Messages handed to pulling recipients (including offers again).",
            self.pulled.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_pulls_empty_total",
            "Pull requests that found nothing waiting.",
            self.empty_pulls.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_messages_delivered_total",
            "Messages receipted by their recipients.",
            self.delivered.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_bytes_received_total",
            "Bytes of accepted messages.",
            self.bytes_in.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_bytes_sent_total",
            "Bytes of messages handed to pullers.",
            self.bytes_out.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP layersec_messages_rejected_total Requests refused, by reason.\n# TYPE layersec_messages_rejected_total counter"
        );
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "layersec_messages_rejected_total{{reason=\"{}\"}} {n}",
                esc(reason)
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_queue_depth Messages waiting (or pulled and not yet receipted) per party.\n# TYPE layersec_queue_depth gauge"
        );
        for (party, n) in queues {
            let _ = writeln!(o, "layersec_queue_depth{{party=\"{}\"}} {n}", esc(party));
        }
        let _ = writeln!(
            o,
            "# HELP layersec_request_seconds AS4 request latency by kind.\n# TYPE layersec_request_seconds histogram"
        );
        for (kind, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "layersec_request_seconds_bucket{{kind=\"{kind}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "layersec_request_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}\nlayersec_request_seconds_sum{{kind=\"{kind}\"}} {}\nlayersec_request_seconds_count{{kind=\"{kind}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_http_connections_open Open client connections.\n# TYPE layersec_http_connections_open gauge\nlayersec_http_connections_open {}",
            http.open_connections.load(Relaxed)
        );
        counter(
            &mut o,
            "layersec_http_connections_total",
            "Connections accepted.",
            http.accepted.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_http_connections_refused_total",
            "Connections closed at once because max_connections were open.",
            http.refused_over_limit.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_http_connections_refused_per_address_total",
            "Connections closed at once because max_connections_per_address were open from the same address.",
            http.refused_per_address.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_http_timeouts_total",
            "Connections closed for a handshake, header or body timeout.",
            http.timeouts.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_http_bad_requests_total",
            "Requests refused by the HTTP layer (malformed, too large).",
            http.bad_requests.load(Relaxed),
        );
        counter(
            &mut o,
            "layersec_tls_failures_total",
            "Failed TLS handshakes.",
            http.tls_failures.load(Relaxed),
        );
        o
    }
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
