//! `layersec-server` with its own signing key on a PKCS#11 token (SoftHSM2, `ls_tests::softhsm`):
//! an EC P-256 key generated on the token as non-extractable signs the service's receipts; a
//! client sends, the recipient polls, the sender's receipt verifies against the service
//! certificate made from the token key, and no private key of the service's identity is in a
//! file; `admin service rollover` makes the next key on the token. At `serve` start, a wrong
//! PIN (one login, counted with pkcs11-spy), a key not on the token and a missing PIN variable
//! each stop the service with exit status 2 and a message naming the configuration key; a
//! module or token that is not there with 75 (EX_TEMPFAIL: a service manager restarts).

use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::{CertPurpose, Certificate, CertificateBuilder, KeyType};
use ls_tests::client::{json, Client};
use ls_tests::service::{server_bin_beside, RunningService};
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN, PIN_TOKEN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

/// A service folder (`layersec-server init`, not started) whose `[identity]` is a key generated
/// on `token` with label `label` (non-extractable), with a self-signed certificate made by the
/// token key written over `identity/service.crt` (so clients made afterwards pin it) and
/// `identity/service.key` deleted. `identity` is the text that replaces the template's `key =`
/// line (`{uri}` and `{module}` are filled in). Returns the service, the URI and the
/// certificate the file key had (PEM).
fn token_service(
    hsm: &SoftHsm,
    name: &str,
    token: &str,
    label: &str,
    identity: &str,
) -> (RunningService, String, Vec<u8>) {
    let uri = hsm.uri(token, label);
    let key = Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256)
        .unwrap_or_else(|e| panic!("generating the service's key on {token}: {e}"));
    let g = CertificateBuilder::new("svc.test", CertPurpose::Party)
        .private_key(Arc::new(key))
        .valid_days(30)
        .build(None)
        .unwrap();
    assert!(g.key_pem.is_empty(), "a token key has no PEM");
    let module = hsm.module().display().to_string();
    let identity = identity.replace("{uri}", &uri).replace("{module}", &module);
    let svc = RunningService::init(&server_bin_beside(Path::new(LAYERSEC)), name, |t| {
        assert!(t.contains("key = \"identity/service.key\"\n"), "{t}");
        t.replace("key = \"identity/service.key\"\n", &identity)
    });
    let file_cert = std::fs::read(svc.service_cert_path()).unwrap();
    std::fs::write(svc.service_cert_path(), &g.cert_pem).unwrap();
    std::fs::remove_file(svc.dir.join("identity/service.key")).unwrap();
    (svc, uri, file_cert)
}

/// Every file under `dir`, but the folders named in `skip` (relative to `dir`).
fn files_under(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn receipt_states(p: &Client) -> Vec<String> {
    let r = json(&p.ok(&["receipts", "--json"]));
    r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_services_receipts_are_signed_on_its_token() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let (mut svc, uri, file_cert) = token_service(
        hsm,
        "p11-svc",
        EC_TOKEN,
        "svc-receipts",
        // A module-path in the URI that `module` wins over; the PIN from a file.
        "pkcs11_uri = \"{uri}?module-path=/nonexistent/p11.so\"\nmodule = \"{module}\"\n\
         pin_file = \"token.pin\"\n",
    );
    std::fs::write(svc.dir.join("token.pin"), format!("{PIN}\n")).unwrap();
    svc.serve();
    let logs = svc.logs().join("\n");
    assert!(
        logs.contains("service_key_on_token") && logs.contains(&uri),
        "{logs}"
    );
    assert!(!logs.contains(PIN), "the PIN is never logged");

    let alice = Client::init(Path::new(LAYERSEC), &svc, "alice", &[]);
    let bob = Client::init(Path::new(LAYERSEC), &svc, "bob", &[]);
    alice.register(&svc, &[]);
    bob.register(&svc, &[]);
    alice.ok(&["partners", "add", "bob", bob.cert.to_str().unwrap()]);
    bob.ok(&["partners", "add", "alice", alice.cert.to_str().unwrap()]);

    // alice → bob: the push is answered with the service's receipt, signed on the token and
    // checked by alice against the service certificate she pins (the token key's).
    let doc: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    let f = alice.dir.join("order.bin");
    std::fs::write(&f, &doc).unwrap();
    let v = json(&alice.ok(&["send", f.to_str().unwrap(), "--to", "bob", "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    let id = v["message_id"].as_str().unwrap().to_string();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.dir.join("sent/order.bin.sent.json")).unwrap())
            .unwrap();
    assert!(
        !rec["receipt_message_id"].as_str().unwrap_or("").is_empty(),
        "the service's receipt was taken: {rec}"
    );
    // bob polls (the pull answer and the empty-pull signal are signed on the token too).
    let got = bob.poll_received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["message_id"], id.as_str());
    assert!(std::fs::read(got[0]["path"].as_str().unwrap()).unwrap() == doc);
    alice.ok(&["poll"]);
    assert_eq!(receipt_states(&alice), ["processed"]);

    // The same push checked against the certificate of the file key `init` made: the
    // service's receipt does not verify, so the send is not taken as delivered.
    let pinned = alice.dir.join("service/service.crt");
    assert!(pinned.is_file(), "alice pins {}", pinned.display());
    let token_cert = std::fs::read(&pinned).unwrap();
    std::fs::write(&pinned, &file_cert).unwrap();
    let f2 = alice.dir.join("second.bin");
    std::fs::write(&f2, b"second").unwrap();
    let o = alice.cmd(&["send", f2.to_str().unwrap(), "--to", "bob", "--json"]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success() && out.contains("LS_ERR_SIGNER_MISMATCH"),
        "a receipt checked against the wrong service certificate must fail: {:?} {out}",
        o.status.code()
    );
    std::fs::write(&pinned, &token_cert).unwrap();

    // No private key of the service's identity in a file: only the TLS key (which stays in
    // tls/, by design) in the service's folder, clients' folders aside.
    let skip: Vec<String> = ["tls", "client-alice", "client-bob"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
    for p in files_under(&svc.dir, &skip) {
        let data = std::fs::read(&p).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            p.display()
        );
    }
    assert!(!svc.dir.join("identity/service.key").exists());
    assert!(!svc.dir.join("identity/next.key").exists());

    // admin service show: where the key is (the URI without its query), no PIN.
    let show = svc.admin(&["service", "show"]);
    assert_eq!(show["key_location"], uri.as_str(), "{show}");
    assert!(!show.to_string().contains(PIN));
    assert_eq!(show["rollover"], serde_json::Value::Null, "{show}");
}

/// `admin service rollover` with the key on the token: the new key is generated on the same
/// token (no key file written), announced to the parties, and used after the overlap; a
/// restart loads it (the certificate file names it) and warns that the configuration names
/// the old one.
#[test]
fn a_rollover_makes_the_next_key_on_the_token() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let (mut svc, uri, _) = token_service(
        hsm,
        "p11-svc-roll",
        EC_TOKEN,
        "svc-roll",
        "pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\npin_file = \"token.pin\"\n",
    );
    std::fs::write(svc.dir.join("token.pin"), format!("{PIN}\n")).unwrap();
    svc.serve();
    let alice = Client::init(Path::new(LAYERSEC), &svc, "alice", &[]);
    let bob = Client::init(Path::new(LAYERSEC), &svc, "bob", &[]);
    alice.register(&svc, &[]);
    bob.register(&svc, &[]);
    alice.ok(&["partners", "add", "bob", bob.cert.to_str().unwrap()]);
    bob.ok(&["partners", "add", "alice", alice.cert.to_str().unwrap()]);
    let old = Certificate::load(svc.service_cert_path()).unwrap();

    let r = svc.admin(&["service", "rollover", "--overlap-hours", "0.002"]);
    let new_sha = r["new_certificate_sha256"].as_str().unwrap().to_string();
    assert_eq!(r["announced"].as_array().unwrap().len(), 2, "{r}");
    let switch_at = ls_core::time::parse_date_time(r["switch_at"].as_str().unwrap()).unwrap();
    // The new key is on the token, no key file is written; its URI is in the state.
    assert!(!svc.dir.join("identity/next.key").exists());
    let show = svc.admin(&["service", "show"]);
    let next_uri = show["rollover"]["next_pkcs11_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{show}"))
        .to_string();
    assert!(
        next_uri.starts_with("pkcs11:token=ls-ec;object=layersec-service-"),
        "{next_uri}"
    );
    assert_eq!(
        show["key_location"],
        uri.as_str(),
        "before the switch: {show}"
    );
    let next_cert = Certificate::load(svc.dir.join("identity/next.crt")).unwrap();
    assert_eq!(next_cert.sha256_fingerprint(), new_sha);
    let next_key = Pkcs11Key::open(&next_uri, Some(hsm.module()), Some(PIN)).unwrap();
    assert!(
        ls_core::keys::private::PrivateKey::public_key(&next_key)
            .public_eq(&next_cert.public_key().unwrap()),
        "next.crt is the new token key's"
    );
    // Running it again while under way tells nobody new and makes no other key.
    let again = svc.admin(&["service", "rollover"]);
    assert_eq!(again["under_way"], true, "{again}");
    assert_eq!(again["new_certificate_sha256"], new_sha.as_str(), "{again}");

    // alice takes the update during the overlap (signed by the old token key, counter-signed
    // by the new one).
    alice.ok(&["poll"]);
    assert_eq!(
        Certificate::load(alice.dir.join("service/service.crt"))
            .unwrap()
            .sha256_fingerprint(),
        new_sha
    );
    // After the overlap the service signs with the new key.
    while ls_core::time::now_unix() <= switch_at + 1 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let doc = alice.dir.join("after.xml");
    std::fs::write(&doc, b"<after/>").unwrap();
    alice.ok(&["send", doc.to_str().unwrap(), "--to", "bob"]);
    let show = svc.admin(&["service", "show"]);
    assert_eq!(show["certificate_sha256"], new_sha.as_str(), "{show}");
    assert_eq!(show["key_location"], next_uri.as_str(), "{show}");
    assert_ne!(Certificate::load(svc.service_cert_path()).unwrap(), old);
    // A client installed now pins the new certificate only: the service's receipt verifies.
    let carol = Client::init(Path::new(LAYERSEC), &svc, "carol", &[]);
    carol.register(&svc, &[]);
    carol.ok(&["partners", "add", "bob", bob.cert.to_str().unwrap()]);
    let doc = carol.dir.join("new-key.xml");
    std::fs::write(&doc, b"<new/>").unwrap();
    let v = json(&carol.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    assert_eq!(v["delivered"], true, "{v}");

    // A restart loads the new key (the certificate file is its) and says the configuration
    // names the old one.
    svc.stop();
    // A crash between the certificate file and the state (the switch not recorded) with the
    // token not there at the next start: a temporary failure (75, for a service manager to
    // restart it), not a configuration error; with the token back, the switch is finished.
    let state_path = svc.dir.join("identity/service-rollover.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    let mut st: serde_json::Value = serde_json::from_str(&state).unwrap();
    st["switched_at"] = serde_json::Value::Null;
    std::fs::write(&state_path, st.to_string()).unwrap();
    let config = std::fs::read_to_string(&svc.config).unwrap();
    let module = hsm.module().display().to_string();
    assert!(config.contains(&module), "{config}");
    std::fs::write(&svc.config, config.replace(&module, "/nonexistent/p11.so")).unwrap();
    let (code, err) = serve_fails(&svc, &[]);
    assert_eq!(code, Some(75), "{err}");
    assert!(
        err.contains("finishing the switch") && err.contains("LS_ERR_TOKEN_UNAVAILABLE"),
        "{err}"
    );
    std::fs::write(&svc.config, config).unwrap();
    svc.serve();
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert!(
        st["switched_at"].is_i64(),
        "the switch is finished at start: {st}"
    );
    let logs = svc.logs().join("\n");
    assert!(logs.contains("service_key_uri_outdated"), "{logs}");
    let doc = carol.dir.join("after-restart.xml");
    std::fs::write(&doc, b"<restart/>").unwrap();
    let v = json(&carol.ok(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    // The next rollover (once the clients' overlap is over) wants the configuration to name
    // the current key first: the state that names it now is replaced by a rollover.
    let old_valid_until =
        ls_core::time::parse_date_time(r["old_valid_until"].as_str().unwrap()).unwrap();
    while ls_core::time::now_unix() <= old_valid_until + 1 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = svc.admin_raw(&["service", "rollover"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("identity.pkcs11_uri names the key before the last rollover")
            && err.contains(&next_uri),
        "{err}"
    );
    // Once the configuration names the new key, nothing to warn about.
    let t = std::fs::read_to_string(&svc.config).unwrap();
    std::fs::write(&svc.config, t.replace(&uri, &next_uri)).unwrap();
    svc.stop();
    let before = svc.logs().len();
    svc.serve();
    let logs = svc.logs()[before..].join("\n");
    assert!(!logs.contains("service_key_uri_outdated"), "{logs}");
    assert!(logs.contains(&next_uri), "{logs}");
    for p in files_under(
        &svc.dir,
        &["tls", "client-alice", "client-bob", "client-carol"],
    ) {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            p.display()
        );
    }
}

/// `layersec-server serve` of `svc` as it is configured, with `env` besides; it must stop at
/// once (the identity is loaded before it listens).
fn serve_fails(svc: &RunningService, env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(server_bin_beside(Path::new(LAYERSEC)));
    cmd.args(["serve", "--config", svc.config.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o: Output = cmd.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn set_identity(svc: &RunningService, identity: &str) {
    let t = std::fs::read_to_string(&svc.config).unwrap();
    let start = t.find("[identity]\n").unwrap() + "[identity]\n".len();
    let end = start + t[start..].find("certificate = ").unwrap();
    let t = format!("{}{identity}{}", &t[..start], &t[end..]);
    std::fs::write(&svc.config, t).unwrap();
}

#[test]
fn serve_stops_with_exit_2_or_75_when_the_token_key_cannot_be_used() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    // PIN_TOKEN: no other test of this process logs in to it (the service is a process of its
    // own, with its own login state, in any case).
    let (svc, uri, _) = token_service(
        hsm,
        "p11-svc-pin",
        PIN_TOKEN,
        "svc-wrong-pin",
        "pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\npin_file = \"token.pin\"\n",
    );
    std::fs::write(svc.dir.join("token.pin"), "0000-wrong\n").unwrap();
    // A wrong PIN: exit 2, LS_ERR_PIN_INCORRECT naming identity.pkcs11_uri, the PIN not shown,
    // one C_Login (through OpenSC's pkcs11-spy when installed).
    let module = hsm.spy().unwrap_or(hsm.module()).display().to_string();
    set_identity(
        &svc,
        &format!("pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\npin_file = \"token.pin\"\n"),
    );
    let spy_log = svc.dir.join("spy.log");
    let (code, err) = serve_fails(
        &svc,
        &[
            ("PKCS11SPY", hsm.module()),
            ("PKCS11SPY_OUTPUT", spy_log.as_path()),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("identity.pkcs11_uri") && err.contains("LS_ERR_PIN_INCORRECT"),
        "{err}"
    );
    assert!(!err.contains("0000-wrong"), "the PIN is never shown: {err}");
    hsm.assert_one_refused_login(&spy_log);

    // The other failures: (identity settings, exit status, what the message names). A token
    // or module that is not there may come back: a temporary failure (EX_TEMPFAIL, 75), which
    // a service manager restarts on, unlike a configuration error (2).
    std::fs::write(svc.dir.join("token.pin"), format!("{PIN}\n")).unwrap();
    let module = hsm.module().display().to_string();
    let no_key = hsm.uri(EC_TOKEN, "svc-no-such-key");
    for (identity, code, names) in [
        (
            format!("pkcs11_uri = \"{uri}\"\nmodule = \"/nonexistent/p11.so\"\npin_file = \"token.pin\"\n"),
            75,
            &["identity.pkcs11_uri", "/nonexistent/p11.so", "LS_ERR_TOKEN_UNAVAILABLE"][..],
        ),
        // Only the URI's module-path, not there.
        (
            format!("pkcs11_uri = \"{uri}?module-path=/nonexistent/p11.so\"\npin_file = \"token.pin\"\n"),
            75,
            &["identity.pkcs11_uri", "LS_ERR_TOKEN_UNAVAILABLE"],
        ),
        // A key that is not on the token (right PIN).
        (
            format!("pkcs11_uri = \"{no_key}\"\nmodule = \"{module}\"\npin_file = \"token.pin\"\n"),
            2,
            &["identity.pkcs11_uri", "LS_ERR_KEY_NOT_FOUND"],
        ),
        // The PIN's variable not set.
        (
            format!("pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\npin_env = \"LS_TEST_SVC_NO_PIN\"\n"),
            2,
            &["identity.pin_env", "LS_TEST_SVC_NO_PIN"],
        ),
        // A PIN in the file: refused before any token is asked, and not repeated.
        (
            format!("pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\npin = \"{PIN}\"\n"),
            2,
            &["identity.pin:"],
        ),
    ] {
        set_identity(&svc, &identity);
        let (got, err) = serve_fails(&svc, &[]);
        assert_eq!(got, Some(code), "{identity}: {err}");
        for n in names {
            assert!(err.contains(n), "{identity}: {n} not in: {err}");
        }
        assert!(!err.contains(PIN), "the PIN is never shown: {err}");
    }
}
