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
    /// Partner directory requests, by result (`answered` or the refusal's reason).
    directory: Mutex<BTreeMap<&'static str, u64>>,
    /// Refusal notices accepted, by failure class.
    refusal_notices: Mutex<BTreeMap<String, u64>>,
    /// Co-ordination messages accepted, by Action (only the Actions the service routes).
    coordination: Mutex<BTreeMap<String, u64>>,
    /// Pushes refused for the account quota, by subscriber id.
    quota_refusals: Mutex<BTreeMap<i64, u64>>,
    /// Enrolment attempts, by result (`registered`, `replaced`, `again`, or a refusal reason).
    enrolments: Mutex<BTreeMap<&'static str, u64>>,
    /// Rollover requests, by result (`registered`, `again`, or a refusal reason).
    rollovers: Mutex<BTreeMap<&'static str, u64>>,
    /// The e-mail gateway's counters.
    pub mail: crate::email::MailMetrics,
}

/// What the store reports at each scrape.
pub struct StoreGauges<'a> {
    /// Messages waiting or leased, per recipient party.
    pub queues: &'a [(String, u64)],
    /// Bytes of undelivered messages per subscriber of their senders.
    pub queued_bytes: &'a [(i64, u64)],
    /// Bytes free for payloads on the store's file system.
    pub free_bytes: Option<u64>,
    /// The configured free-space reserve.
    pub min_free_bytes: u64,
}

impl Metrics {
    pub fn refusal_notice(&self, class: &str) {
        let mut r = self
            .refusal_notices
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r.entry(class.to_string()).or_default() += 1;
    }

    pub fn enrolment(&self, result: &'static str) {
        let mut e = self.enrolments.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry(result).or_default() += 1;
    }

    pub fn rollover(&self, result: &'static str) {
        let mut e = self.rollovers.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry(result).or_default() += 1;
    }

    pub fn coordination(&self, action: &str) {
        let mut c = self.coordination.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(action.to_string()).or_default() += 1;
    }

    pub fn quota_refused(&self, subscriber_id: i64) {
        let mut r = self
            .quota_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r.entry(subscriber_id).or_default() += 1;
    }

    pub fn directory(&self, result: &'static str) {
        let mut d = self.directory.lock().unwrap_or_else(|e| e.into_inner());
        *d.entry(result).or_default() += 1;
    }

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

    /// The Prometheus text exposition, with the store's gauges and the HTTP layer's counters.
    pub fn render(&self, store: &StoreGauges<'_>, http: &crate::http::HttpStats) -> String {
        let queues = store.queues;
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
            "# HELP layersec_directory_requests_total Partner directory requests (POST /directory/<party>), by result (answered, or the refusal's reason).\n# TYPE layersec_directory_requests_total counter"
        );
        for (result, n) in self
            .directory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "layersec_directory_requests_total{{result=\"{result}\"}} {n}"
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
            "# HELP layersec_queued_bytes Bytes of undelivered messages sent by the parties of each subscriber (the quota counts these).\n# TYPE layersec_queued_bytes gauge"
        );
        for (subscriber, n) in store.queued_bytes {
            let _ = writeln!(
                o,
                "layersec_queued_bytes{{subscriber=\"{subscriber}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_quota_refusals_total Pushes refused because the sender's account would exceed its quota of queued bytes.\n# TYPE layersec_quota_refusals_total counter"
        );
        for (subscriber, n) in self
            .quota_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "layersec_quota_refusals_total{{subscriber=\"{subscriber}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_refusal_notices_total Messages refused by their recipients (refusal notices accepted), by failure class.\n# TYPE layersec_refusal_notices_total counter"
        );
        for (class, n) in self
            .refusal_notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "layersec_refusal_notices_total{{class=\"{}\"}} {n}",
                esc(class)
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_enrolments_total Enrolment attempts at POST /enrol, by result (registered, replaced, again, or the refusal's reason).\n# TYPE layersec_enrolments_total counter"
        );
        for (result, n) in self
            .enrolments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "layersec_enrolments_total{{result=\"{result}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP layersec_rollovers_total Key rollovers at POST /rollover, by result (registered, again, or the refusal's reason).\n# TYPE layersec_rollovers_total counter"
        );
        for (result, n) in self
            .rollovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "layersec_rollovers_total{{result=\"{result}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP layersec_coordination_messages_total Co-ordination messages accepted (refusal notices, signed receipts), by Action.\n# TYPE layersec_coordination_messages_total counter"
        );
        for (action, n) in self
            .coordination
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "layersec_coordination_messages_total{{action=\"{}\"}} {n}",
                esc(action)
            );
        }
        self.mail.render(&mut o);
        if let Some(free) = store.free_bytes {
            let _ = writeln!(
                o,
                "# HELP layersec_store_free_bytes Bytes free on the store's file system.\n# TYPE layersec_store_free_bytes gauge\nlayersec_store_free_bytes {free}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP layersec_store_min_free_bytes The free-space reserve: pushes that would leave less free are refused with HTTP 503.\n# TYPE layersec_store_min_free_bytes gauge\nlayersec_store_min_free_bytes {}",
            store.min_free_bytes
        );
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
