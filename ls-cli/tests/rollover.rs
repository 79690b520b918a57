//! Key rollover through real processes over TLS on loopback: `layersec-server` and a
//! `layersec` client per party (`rollover`, `run`, `poll`, `status`), with documents in flight
//! while the keys change, a partner offline during the rollover, and the old key refused once
//! the overlap is over; forged, replayed and new-key-only updates refused.

use ls_core::as4::coordination::{self, UpdateHeader};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, Exchange};
use ls_core::as4::message::{self, Built, Outgoing, Payload};
use ls_core::as4::model::Messaging;
use ls_core::as4::xml::Limits;
use ls_core::rollover::{self as contract, CertificateUpdate};
use ls_core::transport::{HttpsConfig, HttpsTransport};
use ls_core::{Certificate, Identity};
use ls_tests::service::{server_bin_beside, RunningService};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn start_service(name: &str) -> RunningService {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut s = RunningService::init(&bin, name, |text| {
        text.replace("redeliver_after_secs = 300", "redeliver_after_secs = 2")
    });
    s.serve();
    s
}

struct Party {
    id: String,
    dir: PathBuf,
    config: PathBuf,
}

/// `layersec init` for `id`, registered at the service, polling every second.
fn party(svc: &RunningService, id: &str, extra_config: &str) -> Party {
    let dir = svc.dir.join(format!("client-{id}"));
    let o = Command::new(LAYERSEC)
        .args([
            "init",
            "--party",
            id,
            "--service",
            &svc.url,
            "--dir",
            dir.to_str().unwrap(),
            "--service-cert",
            svc.service_cert_path().to_str().unwrap(),
            "--ca-file",
            svc.tls_cert_path().to_str().unwrap(),
            "--key-type",
            "ec",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    let config = PathBuf::from(v["config"].as_str().unwrap());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_secs = 60", "interval_secs = 1")
        .replace("initial_secs = 30", "initial_secs = 1")
        .replace("max_secs = 3600", "max_secs = 2")
        .replace("[identity]\n", &format!("[identity]\n{extra_config}"));
    std::fs::write(&config, text).unwrap();
    let sub = svc.admin(&["subscriber", "add", "--organisation", id]);
    svc.admin(&[
        "party",
        "add",
        "--subscriber",
        &sub["id"].to_string(),
        "--party",
        id,
        "--certificate",
        v["certificate"].as_str().unwrap(),
    ]);
    Party {
        id: id.into(),
        dir,
        config,
    }
}

impl Party {
    fn cmd(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--config", self.config.to_str().unwrap()]);
        Command::new(LAYERSEC).args(&a).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "layersec {args:?} ({}): exit {:?}: {}",
            self.id,
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("identity/cert.pem")
    }

    fn trust(&self, other: &Party) {
        // The partner's certificate as it is now (a copy: the file changes with a rollover).
        let copy = self.dir.join(format!("{}-initial.crt", other.id));
        std::fs::copy(other.cert_path(), &copy).unwrap();
        self.ok(&["partners", "add", &other.id, copy.to_str().unwrap()]);
    }

    fn spawn_run(&self) -> Child {
        let log = std::fs::File::create(self.dir.join("run.log")).unwrap();
        Command::new(LAYERSEC)
            .args(["run", "--json", "--config", self.config.to_str().unwrap()])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn status(&self) -> Value {
        json(&self.ok(&["status", "--json"]))
    }

    /// Our identity as the files hold it now.
    fn identity(&self) -> Identity {
        Identity::load(
            self.dir.join("identity/key.pem"),
            Some(&self.cert_path()),
            None,
        )
        .unwrap()
    }

    /// Documents in a folder (not metadata, records or temporary files).
    fn documents(&self, folder: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join(folder))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            p.is_file()
                && !n.starts_with('.')
                && !n.ends_with(".meta.json")
                && !n.ends_with(".sent.json")
                && !n.ends_with(".reason.txt")
                && !n.ends_with(".signed.p7m")
                && !n.ends_with(".receipt.p7m")
        });
        v.sort();
        v
    }

    /// Put `n` documents for `to` in the outbox, written under temporary names and renamed.
    fn outbox(&self, to: &str, n: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
        let out = self.dir.join("outbox").join(to);
        std::fs::create_dir_all(&out).unwrap();
        (0..n)
            .map(|i| {
                let name = format!("{tag}-{}-to-{to}-{i}.txt", self.id);
                let data = format!("<doc from=\"{}\" to=\"{to}\" n=\"{i}\">{tag}</doc>\n", self.id)
                    .repeat(40 + i)
                    .into_bytes();
                let tmp = out.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, &data).unwrap();
                std::fs::rename(&tmp, out.join(&name)).unwrap();
                (name, data)
            })
            .collect()
    }
}

fn partner_state(status: &Value, partner: &str) -> String {
    status["rollover"]["partners"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["partner"] == partner))
        .map(|p| p["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

fn sigterm(c: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    None
}

/// HTTPS to the service's AS4 endpoint, trusting its TLS certificate.
fn transport(svc: &RunningService) -> HttpsTransport {
    let mut c = HttpsConfig::new(&svc.url);
    c.ca_pem = Some(std::fs::read(svc.tls_cert_path()).unwrap());
    c.timeout = Duration::from_secs(60);
    HttpsTransport::new(c).unwrap()
}

fn exchange<'a>(t: &'a HttpsTransport, me: &'a Identity, svc: &'a Certificate) -> Exchange<'a> {
    Exchange {
        transport: t,
        me,
        service: svc,
        soap: SoapVersion::Soap12,
        domain: "test.example".into(),
        limits: Limits::default(),
    }
}

/// A document message from `from` to `to` signed (AS4 and CMS) by `signer`, sealed for
/// `rcpt`.
fn document_message(from: &str, to: &str, signer: &Identity, rcpt: &Certificate) -> Built {
    let sealed = ls_core::seal(
        b"<doc>signed with a key whose time is over</doc>",
        signer,
        std::slice::from_ref(rcpt),
        &ls_core::SealOptions::default(),
    )
    .unwrap();
    let um = exchange::user_message(
        from,
        to,
        "urn:layersec:service:document",
        "Deliver",
        "",
        "test.example",
    )
    .unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "document@test".into(),
            mime_type: "application/pkcs7-mime".into(),
            data: sealed,
            compress: false,
            properties: Vec::new(),
        }],
        signer,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn ebms_code(e: &ls_core::Error) -> String {
    match e {
        ls_core::Error::EbmsError { ebms_code, .. } => ebms_code.clone(),
        other => format!("not an ebMS error: {other}"),
    }
}

/// Every document of `sent` arrived in `to`'s inbox exactly once, byte for byte.
fn arrived_once(to: &Party, sent: &[(String, Vec<u8>)]) -> bool {
    let inbox = to.documents("inbox");
    sent.iter().all(|(name, data)| {
        let found: Vec<_> = inbox
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy() == *name)
            .collect();
        found.len() == 1 && std::fs::read(found[0]).unwrap() == *data
    })
}

#[test]
fn a_rollover_among_three_parties_with_documents_in_flight() {
    let svc = start_service("rollover-e2e");
    let acme = party(&svc, "acme", "");
    let globex = party(&svc, "globex", "");
    let initech = party(&svc, "initech", "");
    for (a, b) in [(&acme, &globex), (&acme, &initech), (&globex, &initech)] {
        a.trust(b);
        b.trust(a);
    }
    let old_cert = Certificate::load(acme.cert_path()).unwrap();
    let old_identity = acme.identity();
    let svc_cert = Certificate::load(svc.service_cert_path()).unwrap();

    // acme and globex run; initech is offline. 50 documents in flight, both ways.
    let mut a_run = acme.spawn_run();
    let mut g_run = globex.spawn_run();
    let a_to_g = acme.outbox("globex", 15, "during");
    let g_to_a = globex.outbox("acme", 15, "during");
    let a_to_i = acme.outbox("initech", 10, "during");
    let i_to_a = initech.outbox("acme", 10, "during");

    // acme rolls over while they are on their way (its daemon keeps running).
    let overlap_hours = "0.02"; // 72 s
    let o = acme.ok(&["rollover", "--overlap-hours", overlap_hours, "--json"]);
    let r = json(&o);
    assert_eq!(r["service"], "accepted", "{r}");
    assert_eq!(r["phase"], "announcing", "{r}");
    assert_eq!(r["old_certificate_sha256"], old_cert.sha256_fingerprint());
    let old_valid_until = r["old_valid_until"].as_i64().unwrap();
    let new_sha = r["new_certificate_sha256"].as_str().unwrap().to_string();
    // The service has both certificates, the old one until the overlap ends.
    let shown = svc.admin(&["party", "show", "acme"]);
    assert_eq!(shown["certificates"].as_array().unwrap().len(), 2, "{shown}");
    // A second rollover while this one runs is refused.
    let again = acme.cmd(&["rollover"]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));

    // globex takes the update and answers; acme still signs with the old key (initech has
    // not answered).
    assert!(
        wait_until(Duration::from_secs(30), || partner_state(&acme.status(), "globex")
            == "accepted"),
        "{}",
        acme.status()
    );
    let st = acme.status();
    assert_eq!(partner_state(&st, "initech"), "pending", "{st}");
    assert!(st["rollover"]["switched_at"].is_null(), "{st}");
    let gl = globex.status();
    let upd = &gl["partner_updates"][0];
    assert_eq!(upd["partner"], "acme");
    assert_eq!(upd["decision"], "accepted", "{gl}");
    let record = std::fs::read_to_string(globex.dir.join("partners/acme.toml")).unwrap();
    assert!(record.contains("source = \"rollover\""), "{record}");
    assert_eq!(
        Certificate::load(globex.dir.join("partners/acme.crt"))
            .unwrap()
            .sha256_fingerprint(),
        new_sha
    );

    // initech comes back during the overlap: it sends what waited in its outbox (sealed for
    // acme's old certificate: acme's old key opens it), takes the update, receives.
    let mut i_run = initech.spawn_run();
    assert!(
        wait_until(Duration::from_secs(30), || partner_state(&acme.status(), "initech")
            == "accepted"),
        "{}",
        acme.status()
    );
    // Everyone accepted: acme signs with the new key now.
    assert!(
        wait_until(Duration::from_secs(10), || acme.status()["rollover"]["switched_because"]
            == "accepted"),
        "{}",
        acme.status()
    );
    assert_eq!(
        Certificate::load(acme.cert_path()).unwrap().sha256_fingerprint(),
        new_sha
    );
    assert!(acme
        .dir
        .join(format!(
            "identity/previous/{}.key.pem",
            old_cert.sha256_fingerprint()
        ))
        .is_file());

    // Every document delivered exactly once and opened; none refused.
    assert!(
        wait_until(Duration::from_secs(60), || arrived_once(&globex, &a_to_g)
            && arrived_once(&acme, &g_to_a)
            && arrived_once(&initech, &a_to_i)
            && arrived_once(&acme, &i_to_a)),
        "acme inbox {:?}\nglobex inbox {:?}\ninitech inbox {:?}\nacme {}",
        acme.documents("inbox").len(),
        globex.documents("inbox").len(),
        initech.documents("inbox").len(),
        acme.status()
    );
    for p in [&acme, &globex, &initech] {
        let st = p.status();
        assert_eq!(st["failed"], 0, "{}: {st}", p.id);
        assert_eq!(st["incoming_failures"], serde_json::json!([]), "{}: {st}", p.id);
        assert_eq!(st["refused_by_partners"], serde_json::json!([]), "{}: {st}", p.id);
        assert!(p.documents("failed").is_empty(), "{}", p.id);
    }
    assert_eq!(acme.documents("inbox").len(), 25);
    assert_eq!(acme.documents("sent").len(), 25);
    // What acme sends now is signed with the new key and accepted.
    let after_switch = acme.outbox("globex", 2, "after");
    let back = globex.outbox("acme", 2, "after");
    assert!(
        wait_until(Duration::from_secs(30), || arrived_once(&globex, &after_switch)
            && arrived_once(&acme, &back)),
        "{}",
        globex.status()
    );

    // Before the overlap ends globex goes offline, and a message signed with acme's old key
    // reaches the service (still valid there).
    assert_eq!(sigterm(&mut g_run), Some(0));
    let t = transport(&svc);
    let globex_cert = Certificate::load(globex.cert_path()).unwrap();
    let late = document_message("acme", "globex", &old_identity, &globex_cert);
    assert!(
        ls_core::time::now_unix() < old_valid_until - 2,
        "the overlap ended before the test got here: make it longer"
    );
    exchange(&t, &old_identity, &svc_cert).push(&late).unwrap();
    // After the overlap: the service refuses the old key…
    assert!(
        wait_until(Duration::from_secs(120), || ls_core::time::now_unix()
            > old_valid_until + 1),
        "the overlap does not end"
    );
    let refused = document_message("acme", "globex", &old_identity, &globex_cert);
    let e = exchange(&t, &old_identity, &svc_cert)
        .push(&refused)
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101", "{e}");
    // … and so does globex, once it polls: refused with a notice, not written.
    let o = globex.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("\"path\""), "{out}");
    let st = globex.status();
    let f = &st["incoming_failures"][0];
    assert_eq!(f["sender"], "acme", "{st}");
    assert_eq!(f["refused"], "not_trusted", "{st}");
    assert!(
        f["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer accepted"),
        "{st}"
    );
    // acme learns of the refusal (its daemon polls), and its rollover is finished.
    assert!(
        wait_until(Duration::from_secs(30), || acme.status()["refused_by_partners"]
            .as_array()
            .is_some_and(|a| a.len() == 1)),
        "{}",
        acme.status()
    );
    let text = String::from_utf8_lossy(&acme.ok(&["status"]).stdout).into_owned();
    assert!(text.contains("globex") && text.contains("accepted"), "{text}");
    assert!(text.contains("signing with:     the new key"), "{text}");
    assert_eq!(sigterm(&mut a_run), Some(0));
    assert_eq!(sigterm(&mut i_run), Some(0));
}
