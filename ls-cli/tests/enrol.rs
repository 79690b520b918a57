//! Installation with enrolment codes through real processes: `layersec-server admin subscriber
//! enrol` issues a code, `layersec init --enrol` installs a client with it (no `admin party
//! add`, no certificate carried by hand), and two clients installed so exchange a document.
//! Bad codes fail with a clear refusal and leave nothing behind, so the same command can be
//! run again.

use ls_tests::service::{server_bin_beside, RunningService};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `layersec init --party ID --service URL --dir DIR --ca-file TLS` and `extra`.
fn init(svc: &RunningService, id: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(LAYERSEC)
        .args(["init", "--party", id, "--service", &svc.url, "--dir"])
        .arg(dir)
        .arg("--ca-file")
        .arg(svc.tls_cert_path())
        .args(extra)
        .output()
        .unwrap()
}

fn layersec(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(LAYERSEC)
        .args(args)
        .arg("--config")
        .arg(dir.join("layersec.toml"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "layersec {args:?}: exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
    o
}

/// `admin subscriber enrol SUB --party P --json`: the code.
fn code(svc: &RunningService, sub: &str, party: &str) -> String {
    svc.admin(&["subscriber", "enrol", sub, "--party", party, "--json"])["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Nothing at all was left in `dir` (it does not exist, or is empty).
fn nothing_in(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn two_parties_enrol_with_codes_and_exchange_a_document() {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "cli-enrol", |t| t);
    svc.serve();
    let service_fp = ls_core::Certificate::load(svc.service_cert_path())
        .unwrap()
        .sha256_fingerprint();
    let acme = svc.admin(&["subscriber", "add", "--organisation", "Acme"])["id"].to_string();
    let globex = svc.admin(&["subscriber", "add", "--organisation", "Globex"])["id"].to_string();
    let mut codes = Vec::new();

    // alice: the code as --json gives it; init fetches the service certificate itself.
    let code_alice = code(&svc, &acme, "alice");
    codes.push(code_alice.clone());
    let alice = svc.dir.join("client-alice");
    let o = init(&svc, "alice", &alice, &["--enrol", &code_alice, "--json"]);
    assert!(o.status.success(), "init --enrol: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["enrolled"], true);
    assert_eq!(v["service_certificate_sha256"], service_fp.as_str());
    assert_eq!(v["service_certificate_present"], true);
    assert_eq!(v["enrolment"]["outcome"], "registered");
    assert_eq!(v["enrolment"]["service_certificate_fetched"], true);
    assert_eq!(v["enrolment"]["service_certificate_matches_given"], false);
    // The fingerprint was shown (on stderr, before the code went out).
    assert!(
        stderr(&o).contains(&format!(
            "SHA256 {service_fp}: compare it with the fingerprint"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(v["enrolment"]["subscriber_id"].to_string(), acme);
    assert_eq!(
        std::fs::read(alice.join("service/service.crt")).unwrap(),
        ls_core::Certificate::load(svc.service_cert_path())
            .unwrap()
            .to_pem()
    );

    // bob: the code as the text output shows it, --service-cert given (and the same), text.
    let o = svc.admin_raw(&["subscriber", "enrol", &globex, "--party", "bob"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let code_bob = text
        .lines()
        .find_map(|l| l.strip_prefix("    ").filter(|c| c.len() == 29))
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_string();
    codes.push(code_bob.clone());
    assert!(text.contains("shown only this once"), "{text}");
    let bob = svc.dir.join("client-bob");
    let service_cert = svc.service_cert_path();
    let o = init(
        &svc,
        "bob",
        &bob,
        &[
            "--enrol",
            &code_bob,
            "--service-cert",
            service_cert.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "init --enrol: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "service SHA-256:      {service_fp} (from the service, the same as --service-cert)"
        )),
        "{out}"
    );
    assert!(
        out.contains("enrolled:             party bob registered"),
        "{out}"
    );
    assert!(!out.contains("For the provider"), "{out}");
    assert!(stderr(&o).contains("`send` and `poll` work now"));

    // Registered exactly as `admin party add` would have: a document goes from alice to bob.
    let cert = |dir: &Path| dir.join("identity/cert.pem");
    layersec(
        &alice,
        &["partners", "add", "bob", cert(&bob).to_str().unwrap()],
    );
    layersec(
        &bob,
        &["partners", "add", "alice", cert(&alice).to_str().unwrap()],
    );
    let doc = alice.join("invoice.xml");
    std::fs::write(&doc, b"<Invoice>enrolled</Invoice>").unwrap();
    let sent = json(&layersec(
        &alice,
        &["send", doc.to_str().unwrap(), "--to", "bob", "--json"],
    ));
    assert_eq!(sent["delivered"], true, "{sent}");
    layersec(&bob, &["poll"]);
    assert_eq!(
        std::fs::read(bob.join("inbox/invoice.xml")).unwrap(),
        b"<Invoice>enrolled</Invoice>"
    );
    let parties = svc.admin(&["party", "list"]);
    assert_eq!(parties.as_array().unwrap().len(), 2, "{parties}");

    // A wrong code: exit 10, the service's reason and what to do, nothing written.
    let carol = svc.dir.join("client-carol");
    let wrong = "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ";
    let o = init(&svc, "carol", &carol, &["--enrol", wrong]);
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("invalid_code"), "{e}");
    assert!(e.contains("nothing was written"), "{e}");
    assert!(nothing_in(&carol), "{:?}", std::fs::read_dir(&carol).ok());
    // Another party's code (alice's, used besides): the same answer, as JSON too.
    let o = init(&svc, "carol", &carol, &["--enrol", &code_alice, "--json"]);
    assert_eq!(o.status.code(), Some(10));
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_REFUSED");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid_code"));
    assert!(nothing_in(&carol));
    // Not a code: a usage error, before the service is asked.
    let o = init(&svc, "carol", &carol, &["--enrol", "1234"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The same command, now with carol's own code (read from stdin): no --force needed.
    let code_carol = code(&svc, &acme, "carol");
    codes.push(code_carol.clone());
    let mut child = Command::new(LAYERSEC)
        .args(["init", "--party", "carol", "--service", &svc.url, "--dir"])
        .arg(&carol)
        .arg("--ca-file")
        .arg(svc.tls_cert_path())
        .args(["--enrol", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", code_carol.to_lowercase()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Used: refused, and carol's installation stays as it is.
    let carol2 = svc.dir.join("client-carol-2");
    let o = init(&svc, "carol", &carol2, &["--enrol", &code_carol]);
    assert_eq!(o.status.code(), Some(10));
    assert!(stderr(&o).contains("code_used"), "{}", stderr(&o));
    assert!(nothing_in(&carol2));

    // --service-cert that is not the service's: exit 5 before the code is sent (it stays
    // usable), nothing written.
    let code_dave = code(&svc, &globex, "dave");
    codes.push(code_dave.clone());
    let dave = svc.dir.join("client-dave");
    let not_it = svc.tls_cert_path();
    let o = init(
        &svc,
        "dave",
        &dave,
        &[
            "--enrol",
            &code_dave,
            "--service-cert",
            not_it.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains(&service_fp), "{}", stderr(&o));
    assert!(nothing_in(&dave));
    let o = init(&svc, "dave", &dave, &["--enrol", &code_dave]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Without --enrol, init is as it was: nothing registered, the certificate for the provider.
    let erin: PathBuf = svc.dir.join("client-erin");
    let o = init(&svc, "erin", &erin, &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("For the provider"));
    assert_eq!(svc.admin(&["party", "list"]).as_array().unwrap().len(), 4);

    // No code reached the service's log.
    let log = svc.logs().join("\n");
    assert!(log.contains("\"event\":\"enrolled\""), "{log}");
    for c in &codes {
        assert!(!log.contains(c.as_str()), "{c} in the log:\n{log}");
        assert!(!log.contains(&c.replace('-', "")), "{c} in the log:\n{log}");
    }
}

#[test]
fn expired_revoked_and_guessed_codes_are_refused_and_leave_nothing() {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "cli-enrol-bad", |t| {
        t.replace(
            "max_failures_per_account = 20",
            "max_failures_per_account = 2",
        )
        .replace("lockout_secs = 900", "lockout_secs = 3")
    });
    svc.serve();
    let sub = svc.admin(&["subscriber", "add", "--organisation", "Acme"])["id"].to_string();

    // Expired.
    let old = code(&svc, &sub, "old");
    rusqlite::Connection::open(svc.dir.join("data/layersec.db"))
        .unwrap()
        .execute(
            "UPDATE enrolment_codes SET expires_at = 1 WHERE pid = 'old'",
            [],
        )
        .unwrap();
    let dir = svc.dir.join("client-old");
    let o = init(&svc, "old", &dir, &["--enrol", &old]);
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    assert!(stderr(&o).contains("code_expired"), "{}", stderr(&o));
    assert!(nothing_in(&dir));

    // Revoked by the operator.
    let rev = code(&svc, &sub, "rev");
    let id = svc
        .admin(&["subscriber", "enrolments", &sub])
        .as_array()
        .unwrap()[0]["id"]
        .to_string();
    svc.admin(&["subscriber", "enrol", &sub, "--revoke", &id]);
    let dir = svc.dir.join("client-rev");
    let o = init(&svc, "rev", &dir, &["--enrol", &rev]);
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    assert!(stderr(&o).contains("code_revoked"), "{}", stderr(&o));
    assert!(nothing_in(&dir));

    // Guessed: two wrong codes for an account lock it (the failures above were another
    // account's); then even the right code is refused for now (exit 9, transient, nothing
    // written), and once the lockout ends the same command works.
    let other = svc.admin(&["subscriber", "add", "--organisation", "Other"])["id"].to_string();
    let good = code(&svc, &other, "acme");
    let dir = svc.dir.join("client-acme");
    for guess in [
        "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ",
        "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ",
    ] {
        let o = init(&svc, "acme", &dir, &["--enrol", guess]);
        assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    }
    let o = init(&svc, "acme", &dir, &["--enrol", &good, "--json"]);
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["error"]["transient"], true);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("locked_out") && m.contains("for this account"),
        "{m}"
    );
    assert!(nothing_in(&dir));
    let t = std::time::Instant::now();
    let o = loop {
        let o = init(&svc, "acme", &dir, &["--enrol", &good]);
        if o.status.code() != Some(9) || t.elapsed() > std::time::Duration::from_secs(30) {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(o.status.success(), "{}", stderr(&o));
    let log = svc.logs().join("\n");
    for c in [&old, &rev, &good] {
        assert!(!log.contains(c.as_str()), "{c} in the log");
    }
}
