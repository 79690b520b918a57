//! A client with several nodes of its service (`[service] urls`) against a real
//! `layersec-server`: a node that is down (a closed port) or answers 503 is passed over and the
//! next one used (the log line and `status` name it); a node whose TLS certificate the client
//! does not trust is an error, never passed over to another node and never accepted.

use ls_tests::client::{json, Client};
use ls_tests::service::{server_bin_beside, RunningService};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

fn start_service(name: &str) -> RunningService {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut s = RunningService::init(&bin, name, |t| t);
    s.serve();
    s
}

/// Alice and bob, registered at `svc`, each other's partners.
fn pair(svc: &RunningService) -> (Client, Client) {
    let bin = Path::new(LAYERSEC);
    let alice = Client::init(bin, svc, "alice", &[]);
    let bob = Client::init(bin, svc, "bob", &[]);
    for c in [&alice, &bob] {
        c.register(svc, &[]);
    }
    alice.ok(&["partners", "add", "bob", bob.cert.to_str().unwrap()]);
    bob.ok(&["partners", "add", "alice", alice.cert.to_str().unwrap()]);
    (alice, bob)
}

/// The client's nodes: `first` (the primary `url`), then the live service.
fn nodes(c: &Client, svc: &RunningService, first: &str, extra: &str) {
    c.edit_config(|t| {
        let live = format!("url = \"{}\"\n", svc.url);
        assert!(t.contains(&live), "{t}");
        t.replace(
            &live,
            &format!("url = \"{first}\"\nurls = [\"{}\"]\n{extra}", svc.url),
        )
    });
}

/// A loopback URL where nothing listens (a port bound, then closed), with the service's path.
fn dead_url(svc: &RunningService) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("https://127.0.0.1:{port}{}", path_of(&svc.url))
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    &rest[rest.find('/').unwrap_or(rest.len())..]
}

/// A plain-HTTP node that reads each request and answers `HTTP/1.1 503`; how many it answered.
fn unavailable_node() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    let _ = std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink());
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                          Content-Length: 12\r\nConnection: close\r\n\r\nnot serving\n",
                    );
                    count.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
    });
    (format!("http://{addr}/as4"), answered)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Send a document from alice to bob; bob polls it. The send's stderr.
fn send_and_receive(alice: &Client, bob: &Client, name: &str) -> String {
    let doc = alice.dir.join(name);
    std::fs::write(&doc, format!("<{name}/>")).unwrap();
    let o = alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]);
    let v = json(&o);
    assert_eq!(v["delivered"], true, "{v}\n{}", stderr(&o));
    assert_eq!(v["attempts"], 1, "delivered at the first attempt: {v}");
    let p = bob.ok(&["poll", "--json"]);
    assert!(
        String::from_utf8_lossy(&p.stdout).contains(&format!(
            "\"message_id\":\"{}\"",
            v["message_id"].as_str().unwrap()
        )),
        "bob received it: {}\n{}",
        String::from_utf8_lossy(&p.stdout),
        stderr(&p)
    );
    stderr(&o)
}

#[test]
fn a_dead_first_node_is_passed_over_and_status_names_the_node_in_use() {
    let svc = start_service("failover-dead");
    let (alice, bob) = pair(&svc);
    let dead = dead_url(&svc);
    nodes(&alice, &svc, &dead, "");
    nodes(&bob, &svc, &dead, "");
    let log = send_and_receive(&alice, &bob, "first.xml");
    assert!(
        log.contains(&format!("service node {dead} is down"))
            && log.contains(&format!("trying {}", svc.url))
            && log.contains(&format!("using service node {}", svc.url)),
        "{log}"
    );
    let st = json(&alice.ok(&["status", "--json"]));
    let n = st["service_nodes"].as_array().unwrap();
    assert_eq!(n.len(), 2, "{st}");
    assert_eq!(n[0]["url"], dead.as_str());
    assert_eq!(n[0]["in_use"], false);
    assert!(n[0]["last_failure"]["error"].is_string(), "{st}");
    assert_eq!(n[1]["url"], svc.url.as_str());
    assert_eq!(n[1]["in_use"], true);
    let text = String::from_utf8_lossy(&alice.ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("* {} (in use)", svc.url)) && text.contains(&dead),
        "{text}"
    );
    // The next run starts at the node that answered: the dead one is not tried again.
    let log = send_and_receive(&alice, &bob, "second.xml");
    assert!(!log.contains("is down"), "{log}");
}

#[test]
fn a_first_node_answering_503_is_passed_over() {
    let svc = start_service("failover-503");
    let (alice, bob) = pair(&svc);
    let (busy, answered) = unavailable_node();
    nodes(&alice, &svc, &busy, "allow_plain_http = true\n");
    let log = send_and_receive(&alice, &bob, "invoice.xml");
    assert!(answered.load(Ordering::SeqCst) >= 1);
    assert!(
        log.contains(&format!("service node {busy} is down (HTTP 503)"))
            && log.contains(&format!("using service node {}", svc.url)),
        "{log}"
    );
}

#[test]
fn a_node_with_an_untrusted_certificate_is_an_error_not_a_reason_to_go_elsewhere() {
    let svc = start_service("failover-trusted");
    // Another real service: its own self-signed TLS certificate, which alice does not trust.
    let stranger = start_service("failover-stranger");
    let (alice, _bob) = pair(&svc);
    let untrusted = format!("https://{}{}", stranger.hostport(), path_of(&svc.url));
    nodes(&alice, &svc, &untrusted, "");
    let doc = alice.dir.join("secret.xml");
    std::fs::write(&doc, "<secret/>").unwrap();
    let o = alice.cmd(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]);
    let log = stderr(&o);
    let v = json(&o);
    assert_eq!(v["delivered"], false, "{v}\n{log}");
    assert_eq!(v["last_error"]["code"], 602, "{v}\n{log}");
    assert!(
        !log.contains("is down") && !log.contains("using service node"),
        "no failover on a TLS failure: {log}"
    );
    // Neither the untrusted node nor the trusted one behind it got the message.
    assert!(svc.admin(&["messages"]).as_array().unwrap().is_empty());
    assert!(stranger.admin(&["messages"]).as_array().unwrap().is_empty());
    // The job waits (the untrusted node is tried, and refused, again at the next attempt).
    let st = json(&alice.ok(&["status", "--json"]));
    assert_eq!(st["pending"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["service_nodes"][0]["in_use"], true, "{st}");
}
