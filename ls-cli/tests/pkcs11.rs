//! `layersec` with its key on a PKCS#11 token (SoftHSM2, `ls_tests::softhsm`): two parties whose
//! EC P-256 keys were generated on tokens as non-extractable send a document each way through a
//! real `layersec-server` over TLS with `send` / `poll`, the documents arrive byte for byte and
//! the signed receipts come back; a wrong PIN is exit 7, `LS_ERR_PIN_INCORRECT`, one login.

use ls_core::keys::pkcs11::Pkcs11Key;
use ls_core::{CertPurpose, CertificateBuilder, KeyType};
use ls_tests::client::{json, Client};
use ls_tests::service::{server_bin_beside, RunningService};
use ls_tests::softhsm::{SoftHsm, EC_TOKEN, PIN, PIN_TOKEN};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");
/// The environment variable the parties' configurations name for the token's PIN.
const PIN_ENV: &str = "LS_TEST_TOKEN_PIN";

/// Party `id` of `svc` (`layersec init`), its key then generated on `token` (label `cli-<id>`,
/// non-extractable) with a self-signed certificate made by the token key, which replaces the
/// file identity: `[identity]` names the token (with a `module-path` in the URI that `module`
/// wins over), the PIN comes from [`PIN_ENV`]. Registered
/// with the service with the token certificate.
fn token_party(hsm: &SoftHsm, svc: &RunningService, token: &str, id: &str) -> (Client, String) {
    let c = Client::init(Path::new(LAYERSEC), svc, id, &[]);
    let uri = hsm.uri(token, &format!("cli-{id}"));
    let key = Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256)
        .unwrap_or_else(|e| panic!("generating {id}'s key on {token}: {e}"));
    let g = CertificateBuilder::new(id, CertPurpose::Party)
        .private_key(Arc::new(key))
        .valid_days(30)
        .build(None)
        .unwrap();
    assert!(g.key_pem.is_empty(), "a token key has no PEM");
    std::fs::write(&c.cert, &g.cert_pem).unwrap();
    let key_file = c.dir.join("identity/key.pem");
    std::fs::remove_file(&key_file).unwrap();
    let module = hsm.module().display().to_string();
    c.edit_config(|t| {
        let mut out = String::new();
        for line in t.lines() {
            if line.starts_with("key = ") {
                out.push_str(&format!(
                    "pkcs11_uri = \"{uri}?module-path=/nonexistent/p11.so\"\n\
                     module = \"{module}\"\npin_env = \"{PIN_ENV}\"\n"
                ));
            } else if !line.starts_with("password_env = ") {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(out.contains("pkcs11_uri"), "no key line in {t}");
        out
    });
    c.register(svc, &[]);
    (c, uri)
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

/// A document from `from` to `to` with `send`, `poll` at `to` (arrives byte for byte, signed
/// receipt back), `poll` at `from` (the receipt processed).
fn one_way(from: &Client, to: &Client, name: &str, doc: &[u8]) {
    let f = from.dir.join(name);
    std::fs::write(&f, doc).unwrap();
    let v = json(&from.ok(&["send", f.to_str().unwrap(), "--to", &to.id, "--json"]));
    assert_eq!(v["delivered"], true, "{v}");
    let id = v["message_id"].as_str().unwrap().to_string();
    let got = to.poll_received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["sender"], from.id.as_str());
    assert_eq!(got[0]["message_id"], id.as_str());
    let arrived = std::fs::read(got[0]["path"].as_str().unwrap()).unwrap();
    assert!(arrived == doc, "{name}: the document differs");
    assert_eq!(receipt_states(from), ["waiting"], "before the receipt");
    from.ok(&["poll"]);
    assert_eq!(receipt_states(from), ["processed"], "the signed receipt");
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(from.dir.join(format!("sent/{name}.sent.json"))).unwrap(),
    )
    .unwrap();
    let r = &rec["partner_receipt"]["receipt"];
    assert_eq!(r["verified"], true, "{rec}");
    assert_eq!(r["signer_subject"], format!("CN={}", to.id), "{rec}");
}

#[test]
fn both_parties_on_tokens_send_and_poll_through_the_service() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    // Read by the `layersec` processes this test starts (and by nothing else of this one).
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11", |t| t.to_string());
    svc.serve();
    let (alice, alice_uri) = token_party(hsm, &svc, EC_TOKEN, "alice");
    let (bob, _) = token_party(hsm, &svc, EC_TOKEN, "bob");
    alice.ok(&["partners", "add", "bob", bob.cert.to_str().unwrap()]);
    bob.ok(&["partners", "add", "alice", alice.cert.to_str().unwrap()]);

    // status says where the key is: the URI, no module path, no PIN.
    let st = json(&alice.ok(&["status", "--json"]));
    assert_eq!(st["key_location"], alice_uri.as_str(), "{st}");
    let text = String::from_utf8_lossy(&alice.ok(&["status"]).stdout).to_string();
    assert!(
        text.contains(&format!("our key:        {alice_uri}")),
        "{text}"
    );
    assert!(!text.contains(PIN) && !st.to_string().contains(PIN));

    let to_bob: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    one_way(&alice, &bob, "to-bob.bin", &to_bob);
    let to_alice = b"<Order n=\"42\">\x00\xff binary too</Order>\n".to_vec();
    one_way(&bob, &alice, "to-alice.xml", &to_alice);

    // A key file cannot replace the key on the token in a rollover (pkcs11_keygen.rs rolls
    // over on a token).
    let g = ls_core::Identity::generate("alice", KeyType::EcP256, 30, None).unwrap();
    let (k, c) = (alice.dir.join("new.key.pem"), alice.dir.join("new.crt.pem"));
    std::fs::write(&k, &g.key_pem).unwrap();
    std::fs::write(&c, &g.cert_pem).unwrap();
    let o = alice.cmd(&[
        "rollover",
        "--key",
        k.to_str().unwrap(),
        "--cert",
        c.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("on a PKCS#11 token"), "{err}");
}

#[test]
fn a_wrong_pin_is_exit_7_and_one_login() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11-pin", |t| t.to_string());
    svc.serve();
    // Its own token (no other test logs in to it) and PIN variable.
    let c = Client::init(Path::new(LAYERSEC), &svc, "carol", &[]);
    let uri = hsm.uri(PIN_TOKEN, "cli-carol");
    let key = Pkcs11Key::generate(&uri, Some(hsm.module()), PIN, KeyType::EcP256).unwrap();
    let g = CertificateBuilder::new("carol", CertPurpose::Party)
        .private_key(Arc::new(key))
        .valid_days(30)
        .build(None)
        .unwrap();
    std::fs::write(&c.cert, &g.cert_pem).unwrap();
    // Through OpenSC's pkcs11-spy when installed, to count the logins.
    let module = hsm.spy().unwrap_or(hsm.module()).display().to_string();
    c.edit_config(|t| {
        t.lines()
            .map(|l| {
                if l.starts_with("key = ") {
                    format!(
                        "pkcs11_uri = \"{uri}\"\nmodule = \"{module}\"\n\
                         pin_env = \"LS_TEST_WRONG_PIN\"\n"
                    )
                } else if l.starts_with("password_env = ") {
                    String::new()
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    let spy_log = c.dir.join("spy.log");
    let run = |pin: &str| {
        Command::new(LAYERSEC)
            .args(["poll", "--json", "--config", c.config.to_str().unwrap()])
            .env("LS_TEST_WRONG_PIN", pin)
            .env("SOFTHSM2_CONF", hsm.dir.join("softhsm2.conf"))
            .env("PKCS11SPY", hsm.module())
            .env("PKCS11SPY_OUTPUT", &spy_log)
            .output()
            .unwrap()
    };
    let o = run("0000-wrong");
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(7), "{stderr}");
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_PIN_INCORRECT", "{v}");
    assert_eq!(v["error"]["exit_code"], 7, "{v}");
    assert!(
        !stderr.contains("0000-wrong") && !v.to_string().contains("0000-wrong"),
        "the PIN is never shown"
    );
    hsm.assert_one_refused_login(&spy_log);
    // A missing PIN variable: a configuration error naming the key and the variable.
    let o = Command::new(LAYERSEC)
        .args(["poll", "--config", c.config.to_str().unwrap()])
        .env_remove("LS_TEST_WRONG_PIN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("identity.pin_env") && stderr.contains("LS_TEST_WRONG_PIN"),
        "{stderr}"
    );
}

/// The `run --json` events of `c` so far whose `event` is `name`.
fn run_events(c: &Client, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(c.dir.join("run.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

/// Waits up to `secs` for `run --json` of `c` to report `name`.
fn wait_event(c: &Client, name: &str, secs: u64) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = run_events(c, name).pop() {
            return v;
        }
        let log = std::fs::read_to_string(c.dir.join("run.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < until,
            "no {name} event within {secs} s: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_waits_for_a_token_that_is_not_there_and_goes_on_when_it_comes() {
    let Some(hsm) = SoftHsm::get() else { return };
    let _one = hsm.one_at_a_time();
    std::env::set_var(PIN_ENV, PIN);
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut svc = RunningService::init(&bin, "pkcs11-wait", |t| t.to_string());
    svc.serve();
    let erin = Client::init(Path::new(LAYERSEC), &svc, "erin", &[]);
    erin.register(&svc, &[]);
    let (dave, uri) = token_party(hsm, &svc, EC_TOKEN, "dave");
    dave.ok(&["partners", "add", "erin", erin.cert.to_str().unwrap()]);
    erin.ok(&["partners", "add", "dave", dave.cert.to_str().unwrap()]);
    // The module only by the URI's module-path, at a place where it is not (yet).
    let module_link = dave.dir.join("p11-module.so");
    dave.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("module = "))
            .map(|l| {
                if l.starts_with("pkcs11_uri = ") {
                    format!(
                        "pkcs11_uri = \"{uri}?module-path={}\"\n",
                        module_link.display()
                    )
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    // A one-shot command: exit 7, the module named.
    let o = dave.cmd(&["poll", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["error"]["name"], "LS_ERR_TOKEN_UNAVAILABLE", "{v}");
    assert!(v.to_string().contains("p11-module.so"), "{v}");

    // The daemon waits (transient), saying so, instead of ending.
    std::fs::create_dir_all(dave.dir.join("outbox/erin")).unwrap();
    std::fs::write(dave.dir.join("outbox/erin/order.txt"), b"order 7").unwrap();
    let mut child = dave.spawn_run();
    let w = wait_event(&dave, "waiting_for_token", 20);
    assert_eq!(w["error"]["name"], "LS_ERR_TOKEN_UNAVAILABLE", "{w}");
    assert_eq!(w["retry_in_secs"], 5, "{w}");
    assert!(child.try_wait().unwrap().is_none(), "the daemon ended");
    assert!(run_events(&dave, "started").is_empty());
    // The module comes: the daemon starts within the wait and sends the outbox's document.
    std::os::unix::fs::symlink(hsm.module(), &module_link).unwrap();
    wait_event(&dave, "started", 30);
    let sent = wait_event(&dave, "sent", 30);
    assert_eq!(sent["to"], "erin", "{sent}");
    // SIGTERM: a clean stop.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Erin has it, signed by dave's token key.
    let o = erin.ok(&["poll", "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"sender\":\"dave\""));
}
