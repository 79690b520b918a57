//! The nodes of the service (`[service] url` and `urls`): HTTPS to each through one
//! [`Failover`], the node in use remembered across runs (`state/service-nodes.json`), and who
//! is told when a node fails or another one takes over.
//!
//! Every HTTPS use of the service goes through here: the AS4 endpoint, the rollover
//! registration and the partner directory beside it (each node's own path derived from its
//! URL). The record is what `layersec status` shows; it also lets the next run start at the
//! node that answered last instead of one found down (a `layersec send` is a process of its
//! own). It is written only when something changes (a failure, another node answering, the
//! first answer of a run), never per request; a record that cannot be written is no error.

use crate::config::Config;
use crate::fsutil::{io_err, read_json, to_json, write_atomic};
use ls_core::error::Result;
use ls_core::transport::failover::Observer;
use ls_core::transport::{Failover, HttpsConfig, HttpsTransport, NodeEvent};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// HTTPS to every node of the service, failing over between them.
pub type ServiceNodes = Failover<HttpsTransport>;

/// The record in the state folder.
pub(crate) const RECORD: &str = "service-nodes.json";

/// A node as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its URL, any user info redacted.
    pub url: String,
    /// The node requests go to first: the one that answered last (or the first node, before
    /// any answered).
    pub in_use: bool,
    /// When it last took over or answered first in a run (Unix seconds).
    pub answered_at: Option<i64>,
    /// Its last failure, if it had one since it last answered.
    pub last_failure: Option<NodeFailure>,
}

/// Why a node counted as down, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFailure {
    /// Unix seconds.
    pub at: i64,
    pub error: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// The URL of the node in use (redacted).
    current: Option<String>,
    nodes: Vec<NodeStatus>,
}

/// Who else is told of node events in this process (the CLI's log lines).
static OBSERVERS: RwLock<Vec<Observer>> = RwLock::new(Vec::new());
/// One writer of the record at a time in this process.
static WRITING: Mutex<()> = Mutex::new(());

/// Tell `observer` of every [`NodeEvent`] of this process's clients from now on: a node that
/// failed (and the one tried next), another node taking over. For logs; keep it short. Events
/// come only with more than one node.
pub fn observe_service_nodes(observer: Observer) {
    OBSERVERS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(observer);
}

/// HTTPS to every node of `cfg`'s service, each at the URL `derive` makes of the node's AS4 URL
/// (the AS4 URL itself, or a path beside it), trusted and authenticated as `[service]` says,
/// reading responses of at most `max_response_bytes`; the node that answered last tried first.
pub(crate) fn https_nodes(
    cfg: &Config,
    derive: impl Fn(&str) -> Result<String>,
    max_response_bytes: u64,
) -> Result<ServiceNodes> {
    let s = &cfg.service;
    let mut base = HttpsConfig::new(String::new());
    if let Some(ca) = &s.ca_file {
        base.ca_pem = Some(std::fs::read(ca).map_err(|e| io_err("cannot read ca_file", ca, e))?);
    }
    base.pinned_sha256 = s.pinned_sha256.clone();
    if let Some(key) = &s.client_key {
        let password = cfg.password()?;
        base.client = Some(ls_core::keys::Identity::load(
            key,
            s.client_certificate.as_deref(),
            password.as_deref().map(String::as_str),
        )?);
    }
    base.connect_timeout = std::time::Duration::from_secs(s.connect_timeout_secs);
    base.idle_timeout = std::time::Duration::from_secs(s.idle_timeout_secs());
    base.min_rate = s.min_rate();
    base.allow_plain_http = s.allow_plain_http;
    base.max_response_bytes = max_response_bytes;
    let mut configs = Vec::new();
    let mut primaries = Vec::new();
    for node in s.nodes() {
        let mut c = base.clone();
        c.url = derive(node)?;
        configs.push(c);
        primaries.push(redact(node));
    }
    let nodes = Failover::https(configs).map_err(|e| match e {
        ls_core::Error::InvalidArgument(m) => {
            ls_core::Error::ConfigInvalid(format!("{}: service: {m}", cfg.file.display()))
        }
        other => other,
    })?;
    if primaries.len() > 1 {
        let path = cfg.folders.state.join(RECORD);
        let record: Record = read_json(&path).ok().flatten().unwrap_or_default();
        if let Some(i) = record
            .current
            .and_then(|c| primaries.iter().position(|p| *p == c))
        {
            nodes.prefer(i);
        }
        nodes.add_observer(Arc::new(move |ev: &NodeEvent| {
            note(&path, &primaries, ev);
            let others = OBSERVERS.read().unwrap_or_else(|e| e.into_inner()).clone();
            for o in others {
                o(ev);
            }
        }));
    }
    Ok(nodes)
}

fn redact(url: &str) -> String {
    ls_core::transport::https::redact_userinfo(url.trim())
}

/// Record `ev` (of a failover over the nodes whose AS4 URLs are `primaries`) in `path`.
fn note(path: &Path, primaries: &[String], ev: &NodeEvent) {
    let Some(primary) = primaries.get(ev.node) else {
        return;
    };
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut r: Record = read_json(path).ok().flatten().unwrap_or_default();
    let i = match r.nodes.iter().position(|n| n.url == *primary) {
        Some(i) => i,
        None => {
            r.nodes.push(NodeStatus {
                url: primary.clone(),
                ..Default::default()
            });
            r.nodes.len() - 1
        }
    };
    match &ev.failure {
        Some(why) => {
            r.nodes[i].last_failure = Some(NodeFailure {
                at: ev.at,
                error: why.clone(),
            });
        }
        None => {
            r.nodes[i].answered_at = Some(ev.at);
            r.nodes[i].last_failure = None;
            r.current = Some(primary.clone());
        }
    }
    // Nodes no longer configured go.
    r.nodes.retain(|n| primaries.contains(&n.url));
    if path.parent().is_some_and(Path::is_dir) {
        let _ = write_atomic(path, &to_json(&r));
    }
}

/// The nodes of `cfg` as the record has them, in the configuration's order.
pub(crate) fn status(cfg: &Config) -> Vec<NodeStatus> {
    let path: PathBuf = cfg.folders.state.join(RECORD);
    let r: Record = read_json(&path).ok().flatten().unwrap_or_default();
    let urls: Vec<String> = cfg.service.nodes().into_iter().map(redact).collect();
    let current = r
        .current
        .as_ref()
        .and_then(|c| urls.iter().position(|u| u == c))
        .unwrap_or(0);
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            let known = r.nodes.iter().find(|n| n.url == *u);
            NodeStatus {
                url: u.clone(),
                in_use: i == current,
                answered_at: known.and_then(|n| n.answered_at),
                last_failure: known.and_then(|n| n.last_failure.clone()),
            }
        })
        .collect()
}
