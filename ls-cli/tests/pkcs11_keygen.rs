//! `layersec keygen --pkcs11` and `layersec init --pkcs11` with a real SoftHSM2
//! (`ls_tests::softhsm`): the key pair is made on the token as sensitive and never
//! extractable, the certificate and the request are signed by it, no key file is written;
//! `init --pkcs11 --enrol` registers through a real `layersec-server` with the token key and
//! the party sends and polls; the refusals (pin-value, a key already there, a password option,
//! a module that does not load, a wrong PIN: one login).
//!
//! Labels of this file start with `kg-`; the wrong-PIN test alone uses `PIN_TOKEN`.

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::keys::private::PrivateKey;
use ls_core::{CertPurpose, Certificate, CertificateBuilder};
use ls_tests::client::{json, Client};
use ls_tests::service::{server_bin_beside, RunningService};
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN, PIN_TOKEN, RSA_TOKEN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");
/// The environment variable the commands of this file read the token's PIN from.
const PIN_ENV: &str = "LS_TEST_KEYGEN_PIN";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `layersec keygen --party <party> --out <out> --json` and `args`, with the PIN in
/// [`PIN_ENV`] (the SoftHSM2 configuration is in the environment the harness set).
fn keygen(party: &str, out: &Path, args: &[&str]) -> Output {
    Command::new(LAYERSEC)
        .args(["keygen", "--party", party, "--out"])
        .arg(out)
        .arg("--json")
        .args(args)
        .env(PIN_ENV, PIN)
        .output()
        .unwrap()
}

/// `--pkcs11 <uri> --module <SoftHSM2> --pin-env PIN_ENV`.
fn token_args(hsm: &SoftHsm, uri: &str) -> Vec<String> {
    vec![
        "--pkcs11".into(),
        uri.into(),
        "--module".into(),
        hsm.module().display().to_string(),
        "--pin-env".into(),
        PIN_ENV.into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The certificate's public key is the token key's, and the request is signed by that key
/// and carries it.
fn assert_certified_by(hsm: &SoftHsm, uri: &str, cert: &Path, csr: &Path) {
    let key = Pkcs11Key::open(uri, Some(hsm.module()), Some(PIN)).unwrap();
    let cert = Certificate::load(cert).unwrap();
    assert!(
        cert.public_key().unwrap().public_eq(key.public_key()),
        "the certificate is not for the token key"
    );
    assert!(
        cert.x509().verify(key.public_key()).unwrap(),
        "the certificate is not signed by the token key"
    );
    let req = openssl::x509::X509Req::from_pem(&std::fs::read(csr).unwrap()).unwrap();
    let req_key = req.public_key().unwrap();
    assert!(
        req_key.public_eq(key.public_key()),
        "the CSR is for another key"
    );
    assert!(
        req.verify(&req_key).unwrap(),
        "the CSR's signature does not verify"
    );
}

#[test]
fn keygen_makes_the_key_on_the_token_and_certifies_it() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let tmp = ls_tests::tempdir("p11-keygen");

    for (token, label, kind) in [
        (EC_TOKEN, "kg-ec", &["--key-type", "ec"][..]),
        (
            RSA_TOKEN,
            "kg-rsa",
            &["--key-type", "rsa", "--rsa-bits", "2048"][..],
        ),
    ] {
        let uri = hsm.uri(token, label);
        let out = tmp.path().join(label);
        let mut args = token_args(hsm, &uri);
        args.extend(kind.iter().map(|s| s.to_string()));
        let o = keygen(label, &out, &strs(&args));
        assert!(o.status.success(), "keygen {label}: {}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["key"], uri.as_str(), "{v}");
        assert_eq!(v["key_on_token"], true, "{v}");
        assert_eq!(v["key_encrypted"], false, "{v}");
        let (cert, csr) = (
            out.join(format!("{label}.cert.pem")),
            out.join(format!("{label}.csr.pem")),
        );
        assert_eq!(v["cert"], cert.display().to_string());
        assert!(
            !out.join(format!("{label}.key.pem")).exists(),
            "no key file with a token"
        );
        assert!(
            !stderr(&o).contains("not encrypted") && !stderr(&o).contains(PIN),
            "{}",
            stderr(&o)
        );
        hsm.assert_one_locked_key(token, label);
        assert_certified_by(hsm, &uri, &cert, &csr);

        // The same label again: refused, saying so; nothing written, no second key.
        let again = tmp.path().join(format!("{label}-again"));
        let o = keygen(label, &again, &strs(&args));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = json(&o);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("holds a key"),
            "{e}"
        );
        assert!(!again.join(format!("{label}.cert.pem")).exists());
        hsm.assert_one_locked_key(token, label);
    }
}

#[test]
fn keygen_refusals() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let tmp = ls_tests::tempdir("p11-keygen");
    let out = tmp.path().join("out");
    let module = hsm.module().display().to_string();
    let refused = |args: &[&str], code: i32, name: &str, says: &[&str]| {
        let o = keygen("kg-refused", &out, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["error"]["name"], name, "{args:?}: {v}");
        let m = v["error"]["message"].as_str().unwrap().to_string();
        for s in says {
            assert!(m.contains(s), "{args:?}: {m:?} lacks {s:?}");
        }
        assert!(!m.contains(PIN), "the PIN is never shown");
        assert!(!out.exists(), "{args:?}: something was written");
    };
    let uri = hsm.uri(EC_TOKEN, "kg-refused");
    let base = ["--pkcs11", &uri, "--module", &module, "--pin-env", PIN_ENV];
    // A PIN in the URI.
    let with_pin = format!("{uri}?pin-value={PIN}");
    let mut a = base.to_vec();
    a[1] = &with_pin;
    refused(&a, 2, "LS_ERR_INVALID_ARGUMENT", &["pin-value"]);
    // A URI that does not name the new key.
    let unnamed = format!("pkcs11:token={EC_TOKEN};type=private");
    let mut a = base.to_vec();
    a[1] = &unnamed;
    refused(&a, 2, "LS_ERR_INVALID_ARGUMENT", &["object="]);
    // A password makes no sense for a key on a token.
    let pass_file = tmp.path().join("pass");
    std::fs::write(&pass_file, "secret\n").unwrap();
    let mut a = base.to_vec();
    a.extend(["--pass-file", pass_file.to_str().unwrap()]);
    refused(&a, 2, "LS_ERR_INVALID_ARGUMENT", &["--pass-file", "token"]);
    // No PIN, no module; token options without --pkcs11.
    refused(&base[..4], 2, "LS_ERR_INVALID_ARGUMENT", &["--pin-env"]);
    let mut a = base.to_vec();
    a.drain(2..4);
    refused(&a, 2, "LS_ERR_INVALID_ARGUMENT", &["--module"]);
    refused(
        &["--module", &module],
        2,
        "LS_ERR_INVALID_ARGUMENT",
        &["--pkcs11"],
    );
    // A module that cannot be loaded: the token is unavailable, exit 7.
    let mut a = base.to_vec();
    a[3] = "/nonexistent/libp11.so";
    refused(
        &a,
        7,
        "LS_ERR_TOKEN_UNAVAILABLE",
        &["/nonexistent/libp11.so"],
    );
    let not_a_module = tmp.path().join("not-a-module.so");
    std::fs::write(&not_a_module, "not a library").unwrap();
    let mut a = base.to_vec();
    a[3] = not_a_module.to_str().unwrap();
    refused(&a, 7, "LS_ERR_TOKEN_UNAVAILABLE", &["cannot be loaded"]);
    assert!(hsm.private_keys(EC_TOKEN, "kg-refused").is_empty());
}

#[test]
fn keygen_with_a_wrong_pin_is_exit_7_after_one_login() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let tmp = ls_tests::tempdir("p11-keygen");
    let out = tmp.path().join("out");
    let uri = hsm.uri(PIN_TOKEN, "kg-wrong-pin");
    let spy_log = tmp.path().join("spy.log");
    let module = hsm.spy().unwrap_or(hsm.module()).display().to_string();
    let pin_file = tmp.path().join("pin");
    std::fs::write(&pin_file, "0000-wrong\n").unwrap();
    let o = Command::new(LAYERSEC)
        .args(["keygen", "--party", "kg-wrong-pin", "--json", "--out"])
        .arg(&out)
        .args(["--key-type", "ec", "--pkcs11", &uri, "--module", &module])
        .arg("--pin-file")
        .arg(&pin_file)
        .env("PKCS11SPY", hsm.module())
        .env("PKCS11SPY_OUTPUT", &spy_log)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_PIN_INCORRECT", "{v}");
    assert!(!stderr(&o).contains("0000-wrong"), "the PIN is never shown");
    assert!(!out.exists(), "nothing written");
    if let Some(log) = hsm.assert_one_refused_login(&spy_log) {
        assert!(!log.contains("C_GenerateKeyPair"), "no key was made");
    }
}

/// A document from `from` to `to` with `send`, `poll` at `to` (byte for byte), `poll` at
/// `from` (the signed receipt processed).
fn one_way(from: &Client, to: &Client, name: &str, doc: &[u8]) {
    let f = from.dir.join(name);
    std::fs::write(&f, doc).unwrap();
    let v = json(&from.ok(&["send", f.to_str().unwrap(), "--to", &to.id, "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    let got = to.poll_received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["sender"], from.id.as_str());
    let arrived = std::fs::read(got[0]["path"].as_str().unwrap()).unwrap();
    assert!(arrived == doc, "{name}: the document differs");
    from.ok(&["poll"]);
    let r = json(&from.ok(&["receipts", "--json"]));
    assert_eq!(r["receipts"][0]["state"], "processed", "{r}");
}

#[test]
fn init_with_the_key_on_a_token_enrols_and_exchanges_documents() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    // Read by the `layersec` processes the harness's `Client` starts.
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11-init", |t| t.to_string());
    svc.serve();
    let sub = svc.admin(&["subscriber", "add", "--organisation", "Acme"])["id"].to_string();
    let uri = hsm.uri(EC_TOKEN, "kg-alice");
    let token = token_args(hsm, &uri);

    // A refused enrolment writes nothing and leaves no key on the token: the same command
    // with a good code then works.
    let dir: PathBuf = svc.dir.join("client-kg-alice");
    let o = Command::new(LAYERSEC)
        .args([
            "init",
            "--party",
            "kg-alice",
            "--service",
            &svc.url,
            "--dir",
        ])
        .arg(&dir)
        .arg("--ca-file")
        .arg(svc.tls_cert_path())
        .args(["--enrol", "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ"])
        .args(&token)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    assert!(
        hsm.private_keys(EC_TOKEN, "kg-alice").is_empty(),
        "the key made for the refused enrolment was removed"
    );

    let code = svc.admin(&["subscriber", "enrol", &sub, "--party", "kg-alice", "--json"])["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut args = vec!["--enrol", &code];
    args.extend(strs(&token));
    let alice = Client::init(Path::new(LAYERSEC), &svc, "kg-alice", &args);
    hsm.assert_one_locked_key(EC_TOKEN, "kg-alice");
    assert!(!dir.join("identity/key.pem").exists(), "no key file");
    let config = std::fs::read_to_string(&alice.config).unwrap();
    let module = hsm.module().display().to_string();
    for line in [
        format!("pkcs11_uri = \"{uri}\""),
        format!("module = \"{module}\""),
        format!("pin_env = \"{PIN_ENV}\""),
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} lacks in\n{config}"
        );
    }
    assert!(
        !config
            .lines()
            .any(|l| l.starts_with("key = ") || l.starts_with("password_env")),
        "{config}"
    );
    assert!(!config.contains(PIN));
    let key = Pkcs11Key::open(&uri, Some(hsm.module()), Some(PIN)).unwrap();
    assert!(Certificate::load(&alice.cert)
        .unwrap()
        .public_key()
        .unwrap()
        .public_eq(key.public_key()));

    let st = json(&alice.ok(&["status", "--json"]));
    assert_eq!(st["key_location"], uri.as_str(), "{st}");

    // A partner with its key in a file; documents both ways, receipts signed on the token.
    let bob = Client::init(Path::new(LAYERSEC), &svc, "kg-bob", &[]);
    bob.register(&svc, &[]);
    alice.ok(&["partners", "add", "kg-bob", bob.cert.to_str().unwrap()]);
    bob.ok(&["partners", "add", "kg-alice", alice.cert.to_str().unwrap()]);
    one_way(&alice, &bob, "to-bob.bin", &[7u8; 3000]);
    one_way(&bob, &alice, "to-alice.xml", b"<Order n=\"1\"/>\n");
}

/// The public key of the private key `label` on `token` (through our own loading).
fn token_public_key(hsm: &SoftHsm, token: &str, label: &str) -> Option<Vec<u8>> {
    Pkcs11Key::open(&hsm.uri(token, label), Some(hsm.module()), Some(PIN))
        .ok()
        .map(|k| k.public_key().public_key_to_der().unwrap())
}

fn cert_public_key(path: &Path) -> Vec<u8> {
    Certificate::load(path)
        .unwrap()
        .public_key()
        .unwrap()
        .public_key_to_der()
        .unwrap()
}

/// Whether the SignedData in `p7m` (detached: the client keeps it for the partner's receipt)
/// carries `cert` as its signer's certificate (the partner's signed receipt, checked by the
/// client, binds it to the signature).
fn signed_by(p7m: &Path, cert: &Path) -> bool {
    let p7 = openssl::pkcs7::Pkcs7::from_der(&std::fs::read(p7m).unwrap()).unwrap();
    let want = cert_public_key(cert);
    let certs = p7.signed().and_then(|s| s.certificates()).unwrap();
    assert_eq!(certs.len(), 1, "one certificate in the SignedData");
    certs
        .iter()
        .all(|c| c.public_key().unwrap().public_key_to_der().unwrap() == want)
}

#[test]
fn rollover_with_the_key_on_a_token() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11-rollover", |t| t.to_string());
    svc.serve();
    let label = "kg-carol";
    let uri = hsm.uri(EC_TOKEN, label);
    let mut args = vec!["--key-type", "ec"];
    let token = token_args(hsm, &uri);
    args.extend(strs(&token));
    let carol = Client::init(Path::new(LAYERSEC), &svc, label, &args);
    carol.register(&svc, &[]);
    let dave = Client::init(Path::new(LAYERSEC), &svc, "kg-dave", &["--key-type", "ec"]);
    dave.register(&svc, &[]);
    // gina is offline during the rollover: she keeps carol's old certificate.
    let gina = Client::init(Path::new(LAYERSEC), &svc, "kg-gina", &["--key-type", "ec"]);
    gina.register(&svc, &[]);
    for p in [&dave, &gina] {
        carol.ok(&["partners", "add", &p.id, p.cert.to_str().unwrap()]);
        p.ok(&["partners", "add", label, carol.cert.to_str().unwrap()]);
    }
    let config_before = std::fs::read_to_string(&carol.config).unwrap();
    let old_cert = carol.dir.join("old-cert.pem");
    std::fs::copy(&carol.cert, &old_cert).unwrap();
    let old_key = token_public_key(hsm, EC_TOKEN, label).unwrap();

    // Before: signed with the old token key.
    one_way(&carol, &dave, "before.txt", b"before the rollover\n");
    assert!(signed_by(
        &carol.dir.join("sent/before.txt.signed.p7m"),
        &old_cert
    ));

    // A key file cannot replace a key on a token.
    let o = carol.cmd(&[
        "rollover",
        "--key",
        dave.dir.join("identity/key.pem").to_str().unwrap(),
        "--cert",
        dave.cert.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("on a PKCS#11 token") && stderr(&o).contains("--key"),
        "{}",
        stderr(&o)
    );

    // The rollover: the new key made on the same token as <label>.next, non-extractable.
    let r = json(&carol.ok(&["rollover", "--overlap-hours", "0.01", "--json"]));
    assert_eq!(r["service"], "accepted", "{r}");
    assert_eq!(r["phase"], "announcing", "{r}");
    let next = format!("{label}.next");
    hsm.assert_one_locked_key(EC_TOKEN, &next);
    let new_cert = carol.dir.join("identity/rollover/new.crt.pem");
    assert_eq!(
        token_public_key(hsm, EC_TOKEN, &next).unwrap(),
        cert_public_key(&new_cert)
    );
    let new_cert_copy = carol.dir.join("new-cert.pem");
    std::fs::copy(&new_cert, &new_cert_copy).unwrap();
    assert!(!carol.dir.join("identity/rollover/new.key.pem").exists());
    // As the client decides it: a tenth of the overlap (at most an hour) before its end.
    let margin = (r["overlap_secs"].as_i64().unwrap() / 10).min(3600);
    let switch_at = r["old_valid_until"].as_i64().unwrap() - margin;

    // dave polls, takes the announcement (signed by the old token key, counter-signed by the
    // new) and answers.
    dave.ok(&["poll"]);
    let st = json(&dave.ok(&["status", "--json"]));
    let upd = &st["partner_updates"][0];
    assert_eq!(upd["partner"], label, "{st}");
    assert_eq!(upd["decision"], "accepted", "{st}");
    assert_eq!(
        cert_public_key(&dave.dir.join(format!("partners/{label}.crt"))),
        cert_public_key(&new_cert_copy),
        "dave holds carol's new certificate"
    );

    // gina does not answer: carol switches when the overlap is nearly over.
    while ls_core::time::now_unix() < switch_at {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    carol.ok(&["poll"]);
    let st = json(&carol.ok(&["status", "--json"]));
    assert_eq!(st["rollover"]["phase"], "switched", "{st}");

    // gina, still offline for the update, seals a document for carol's old certificate:
    // carol's previous key, still on the token, opens it.
    let f = gina.dir.join("sealed-for-old.txt");
    std::fs::write(&f, b"sealed for the old certificate\n").unwrap();
    let v = json(&gina.ok(&["send", f.to_str().unwrap(), "--to", label, "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    let got = carol.poll_received();
    assert_eq!(got.len(), 1, "{got:?}\n{}", stderr(&o));
    assert_eq!(got[0]["sender"], "kg-gina");
    assert_eq!(
        std::fs::read(got[0]["path"].as_str().unwrap()).unwrap(),
        b"sealed for the old certificate\n",
        "opened with the previous key, still on the token"
    );
    let st = json(&carol.ok(&["status", "--json"]));
    assert!(!st["rollover"]["switched_at"].is_null(), "{st}");
    assert_eq!(st["key_location"], uri.as_str(), "{st}");

    // On the token: <label> is the new key, the old one is <label>.previous-<sha>, no .next;
    // the configuration is as it was, the certificate file is the new one.
    assert_eq!(
        token_public_key(hsm, EC_TOKEN, label).unwrap(),
        cert_public_key(&new_cert_copy)
    );
    assert!(token_public_key(hsm, EC_TOKEN, &next).is_none());
    let old_sha = Certificate::load(&old_cert).unwrap().sha256_fingerprint();
    let previous = format!("{label}.previous-{}", &old_sha[..16]);
    assert_eq!(token_public_key(hsm, EC_TOKEN, &previous).unwrap(), old_key);
    hsm.assert_one_locked_key(EC_TOKEN, label);
    hsm.assert_one_locked_key(EC_TOKEN, &previous);
    assert_eq!(
        std::fs::read_to_string(&carol.config).unwrap(),
        config_before
    );
    assert_eq!(
        cert_public_key(&carol.cert),
        cert_public_key(&new_cert_copy)
    );

    // After: signed with the new token key, received by dave.
    one_way(&carol, &dave, "after.txt", b"after the rollover\n");
    let signed = carol.dir.join("sent/after.txt.signed.p7m");
    assert!(
        signed_by(&signed, &new_cert_copy),
        "signed with the new key"
    );
    assert!(!signed_by(&signed, &old_cert));
}

#[test]
fn a_switch_on_the_token_interrupted_by_a_crash_is_finished_by_the_next_run() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11-switch", |t| t.to_string());
    svc.serve();
    let label = "kg-erin";
    let uri = hsm.uri(EC_TOKEN, label);
    let mut args = vec!["--key-type", "ec"];
    let token = token_args(hsm, &uri);
    args.extend(strs(&token));
    let erin = Client::init(Path::new(LAYERSEC), &svc, label, &args);
    erin.register(&svc, &[]);
    let frank = Client::init(Path::new(LAYERSEC), &svc, "kg-frank", &["--key-type", "ec"]);
    frank.register(&svc, &[]);
    erin.ok(&["partners", "add", "kg-frank", frank.cert.to_str().unwrap()]);
    frank.ok(&["partners", "add", label, erin.cert.to_str().unwrap()]);
    let old_key = token_public_key(hsm, EC_TOKEN, label).unwrap();
    let old_sha = Certificate::load(&erin.cert).unwrap().sha256_fingerprint();

    let r = json(&erin.ok(&["rollover", "--json"]));
    assert_eq!(r["phase"], "announcing", "{r}");
    let new_key = token_public_key(hsm, EC_TOKEN, &format!("{label}.next")).unwrap();
    frank.ok(&["poll"]);

    // The process switching was killed after it recorded the old key as previous, moved the
    // old key pair's label and saved the phase, before the new key got the label: the
    // configured URI names no key now.
    let previous = format!("{label}.previous-{}", &old_sha[..16]);
    let prev_dir = erin.dir.join("identity/previous");
    std::fs::create_dir_all(&prev_dir).unwrap();
    std::fs::copy(&erin.cert, prev_dir.join(format!("{old_sha}.crt.pem"))).unwrap();
    std::fs::write(
        prev_dir.join(format!("{old_sha}.uri")),
        format!("pkcs11:token={EC_TOKEN};type=private;object={previous}"),
    )
    .unwrap();
    let n = Pkcs11Key::relabel(&uri, Some(hsm.module()), Some(PIN), &previous).unwrap();
    assert_eq!(n, 2, "the private and the public key object");
    let state = erin.dir.join("state/rollover.json");
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"announcing\""), "{text}");
    std::fs::write(&state, text.replace("\"announcing\"", "\"switching\"")).unwrap();
    assert!(token_public_key(hsm, EC_TOKEN, label).is_none());

    // The next run finishes the switch: the new key has the label, the certificate file is
    // the new certificate, the old key is the previous one.
    let st = json(&erin.ok(&["status", "--json"]));
    assert_eq!(
        token_public_key(hsm, EC_TOKEN, label).unwrap(),
        new_key,
        "{st}"
    );
    assert!(token_public_key(hsm, EC_TOKEN, &format!("{label}.next")).is_none());
    assert_eq!(token_public_key(hsm, EC_TOKEN, &previous).unwrap(), old_key);
    assert_eq!(cert_public_key(&erin.cert), new_key);
    erin.ok(&["poll"]);
    let st = json(&erin.ok(&["status", "--json"]));
    assert_eq!(st["rollover"]["phase"], "switched", "{st}");
    one_way(
        &erin,
        &frank,
        "after-crash.txt",
        b"signed with the new key\n",
    );
    assert!(signed_by(
        &erin.dir.join("sent/after-crash.txt.signed.p7m"),
        &erin.cert
    ));
}

/// A client `label` with its EC key on the token, registered, with a partner (a key file) that
/// holds its certificate, and a rollover started (phase `announcing`, the new key
/// `<label>.next` on the token). The service goes with the test.
fn client_rolling_over(
    hsm: &SoftHsm,
    name: &str,
    label: &str,
    partner: &str,
) -> (RunningService, Client, Client) {
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, name, |t| t.to_string());
    svc.serve();
    let uri = hsm.uri(EC_TOKEN, label);
    let mut args = vec!["--key-type", "ec"];
    let token = token_args(hsm, &uri);
    args.extend(strs(&token));
    let me = Client::init(Path::new(LAYERSEC), &svc, label, &args);
    me.register(&svc, &[]);
    let other = Client::init(Path::new(LAYERSEC), &svc, partner, &["--key-type", "ec"]);
    other.register(&svc, &[]);
    me.ok(&["partners", "add", partner, other.cert.to_str().unwrap()]);
    other.ok(&["partners", "add", label, me.cert.to_str().unwrap()]);
    let r = json(&me.ok(&["rollover", "--json"]));
    assert_eq!(r["phase"], "announcing", "{r}");
    (svc, me, other)
}

/// Set the rollover's phase to `switching` (a process was killed in the switch after it saved
/// the phase).
fn interrupt_switch(c: &Client) {
    let state = c.dir.join("state/rollover.json");
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"announcing\""), "{text}");
    std::fs::write(&state, text.replace("\"announcing\"", "\"switching\"")).unwrap();
}

#[test]
fn a_switch_without_the_pin_or_without_the_new_key_writes_no_certificate() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let label = "kg-hank";
    let (_svc, hank, _ida) = client_rolling_over(hsm, "pkcs11-lost-next", label, "kg-ida");
    let uri = hsm.uri(EC_TOKEN, label);
    let next = format!("{label}.next");
    let old_pem = std::fs::read(&hank.cert).unwrap();
    let old_key = token_public_key(hsm, EC_TOKEN, label).unwrap();
    let new_key = token_public_key(hsm, EC_TOKEN, &next).unwrap();
    interrupt_switch(&hank);
    let unchanged = |why: &str| {
        assert!(
            std::fs::read(&hank.cert).unwrap() == old_pem,
            "{why}: the certificate file was replaced"
        );
        assert_eq!(
            token_public_key(hsm, EC_TOKEN, label).unwrap(),
            old_key,
            "{why}: the label moved"
        );
        // The old key still loads with its certificate (key and certificate match).
        ls_core::Identity::from_pkcs11(&uri, Some(hsm.module()), Some(PIN), Some(&old_pem))
            .unwrap_or_else(|e| panic!("{why}: the old key does not load: {e}"));
    };

    // Without the PIN the token hides its private keys: the switch is refused, not taken
    // for done.
    let config = std::fs::read_to_string(&hank.config).unwrap();
    let pin_line = format!("pin_env = \"{PIN_ENV}\"");
    assert!(config.lines().any(|l| l == pin_line), "{config}");
    let without_pin: String = config
        .lines()
        .filter(|l| *l != pin_line)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&hank.config, without_pin).unwrap();
    let o = hank.cmd(&["status", "--json"]);
    unchanged("no PIN");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_CONFIG_INVALID", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("PIN"),
        "{v}"
    );
    assert_eq!(token_public_key(hsm, EC_TOKEN, &next).unwrap(), new_key);
    std::fs::write(&hank.config, &config).unwrap();

    // Another key took the new key's place as <label>.next: nothing is renamed.
    let next_uri = hsm.uri(EC_TOKEN, &next);
    let destroy = |u: &str| {
        Pkcs11Key::open(u, Some(hsm.module()), Some(PIN))
            .unwrap()
            .destroy()
            .unwrap()
    };
    destroy(&next_uri);
    Pkcs11Key::generate(&next_uri, Some(hsm.module()), PIN, ls_core::KeyType::EcP256).unwrap();
    let impostor = token_public_key(hsm, EC_TOKEN, &next).unwrap();
    let o = hank.cmd(&["status", "--json"]);
    unchanged("another key as .next");
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_KEY_NOT_FOUND", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not the key of the new certificate"),
        "{v}"
    );
    assert_eq!(token_public_key(hsm, EC_TOKEN, &next).unwrap(), impostor);

    // The new key is removed from the token (by its owner, or another tool): the switch
    // cannot finish; it says so and writes nothing.
    destroy(&next_uri);
    for _ in 0..2 {
        let o = hank.cmd(&["status", "--json"]);
        unchanged("no new key");
        assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["error"]["name"], "LS_ERR_KEY_NOT_FOUND", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("new key") && m.contains("is not on the token") && m.contains(&next),
            "{m}"
        );
        assert!(!m.contains(PIN));
    }
    let previous = Certificate::load(&hank.cert).unwrap().sha256_fingerprint();
    assert!(
        hsm.private_keys(EC_TOKEN, &format!("{label}.previous-{}", &previous[..16]))
            .is_empty(),
        "the old key was not moved"
    );
}

/// The objects of `class` labelled `label` on `token`, each one's CKA_ID, read through
/// cryptoki directly.
fn objects(token: &str, class: ObjectClass, label: &str) -> Vec<Vec<u8>> {
    with_session(token, |s| {
        s.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()
        .into_iter()
        .map(
            |h| match s.get_attributes(h, &[AttributeType::Id]).unwrap().pop() {
                Some(Attribute::Id(id)) => id,
                other => panic!("{other:?}"),
            },
        )
        .collect()
    })
}

/// `f` with a read-write session on `token`, logged in.
fn with_session<T>(token: &str, f: impl FnOnce(&Session) -> T) -> T {
    let hsm = SoftHsm::get().unwrap();
    let ctx = ls_core::keys::pkcs11::module(hsm.module()).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    match s.login(UserType::User, Some(&PIN.to_string().into())) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    f(&s)
}

/// A certificate object `label` with `id` on `token` holding `cert`.
fn put_certificate(token: &str, label: &str, id: &[u8], cert: &Certificate) {
    with_session(token, |s| {
        s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Subject(cert.x509().subject_name().to_der().unwrap()),
            Attribute::Value(cert.der().to_vec()),
        ])
        .unwrap();
    });
}

/// An EC P-256 public key object `label` with `id` on `token`: another key's.
fn put_foreign_ec_public_key(token: &str, label: &str, id: &[u8]) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let key = openssl::ec::EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let point = key
        .public_key()
        .to_bytes(
            &group,
            openssl::ec::PointConversionForm::UNCOMPRESSED,
            &mut ctx,
        )
        .unwrap();
    let mut octets = vec![0x04, point.len() as u8];
    octets.extend(point);
    with_session(token, |s| {
        s.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            // prime256v1
            Attribute::EcParams(vec![
                0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ]),
            Attribute::EcPoint(octets),
        ])
        .unwrap();
    });
}

#[test]
fn relabel_moves_only_the_one_key_pair_it_names() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let module = Some(hsm.module());
    let ec = ls_core::KeyType::EcP256;

    // Two private keys labelled alike (the second made under another id): the label does not
    // name one key; refused, nothing renamed.
    let twin = hsm.uri(EC_TOKEN, "kg-twin");
    Pkcs11Key::generate(&twin, module, PIN, ec).unwrap();
    Pkcs11Key::generate(&format!("{twin};id=%07"), module, PIN, ec).unwrap();
    let e = Pkcs11Key::relabel(&twin, module, Some(PIN), "kg-twin-moved").unwrap_err();
    assert_eq!(e.code(), ls_core::ErrorCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("2 private keys"), "{e}");
    assert!(e.to_string().contains("nothing was renamed"), "{e}");
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        assert_eq!(objects(EC_TOKEN, class, "kg-twin").len(), 2, "{class}");
        assert!(
            objects(EC_TOKEN, class, "kg-twin-moved").is_empty(),
            "{class}"
        );
    }
    // Named with its id as well, one of them moves (with its public key).
    let n = Pkcs11Key::relabel(
        &format!("{twin};id=%07"),
        module,
        Some(PIN),
        "kg-twin-moved",
    )
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        objects(EC_TOKEN, ObjectClass::PRIVATE_KEY, "kg-twin-moved"),
        [vec![7u8]]
    );

    // Our key pair (no id), its certificate object, and another key's public key and
    // certificate objects with the same label (another id): only ours move.
    for (token, kind) in [(EC_TOKEN, ec), (RSA_TOKEN, ls_core::KeyType::Rsa(2048))] {
        let own = hsm.uri(token, "kg-own");
        let key = std::sync::Arc::new(Pkcs11Key::generate(&own, module, PIN, kind).unwrap());
        let ours = CertificateBuilder::new("kg-own", CertPurpose::Party)
            .private_key(key.clone())
            .valid_days(30)
            .build(None)
            .unwrap();
        put_certificate(token, "kg-own", &[], ours.identity.certificate());
        let theirs = CertificateBuilder::new("kg-foreign", CertPurpose::Party)
            .key_type(ec)
            .valid_days(30)
            .build(None)
            .unwrap();
        put_certificate(token, "kg-own", &[9], theirs.identity.certificate());
        put_foreign_ec_public_key(token, "kg-own", &[9]);
        let n = Pkcs11Key::relabel(&own, module, Some(PIN), "kg-own-moved").unwrap();
        assert_eq!(n, 3, "{token}: the private and public key, the certificate");
        for class in [
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
            ObjectClass::CERTIFICATE,
        ] {
            assert_eq!(
                objects(token, class, "kg-own-moved"),
                [Vec::<u8>::new()],
                "{token} {class}: ours moved"
            );
        }
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE] {
            assert_eq!(
                objects(token, class, "kg-own"),
                [vec![9u8]],
                "{token} {class}: the other key's object stays"
            );
        }
        let moved = Pkcs11Key::open(&hsm.uri(token, "kg-own-moved"), module, Some(PIN)).unwrap();
        assert!(moved.public_key().public_eq(key.public_key()));

        // Interrupted after the private key moved back: the next run moves the rest of the
        // pair (not the other key's objects) and nothing twice.
        with_session(token, |s| {
            let h = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(b"kg-own-moved".to_vec()),
                ])
                .unwrap();
            assert_eq!(h.len(), 1);
            s.update_attributes(h[0], &[Attribute::Label(b"kg-own".to_vec())])
                .unwrap();
        });
        let n = Pkcs11Key::relabel(&hsm.uri(token, "kg-own-moved"), module, Some(PIN), "kg-own")
            .unwrap();
        assert_eq!(n, 2, "{token}: the public key and the certificate");
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE] {
            let mut ids = objects(token, class, "kg-own");
            ids.sort();
            assert_eq!(ids, [vec![], vec![9u8]], "{token} {class}");
            assert!(objects(token, class, "kg-own-moved").is_empty());
        }
        let n = Pkcs11Key::relabel(&hsm.uri(token, "kg-own-moved"), module, Some(PIN), "kg-own")
            .unwrap();
        assert_eq!(n, 0, "{token}: done already");
    }
}
