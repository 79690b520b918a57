//! `[store] kind = "postgres"` from the command line: `init --store-url` writes it and applies
//! the schema, `migrate` is idempotent, a node refuses an unmigrated database, TLS to the
//! database is verified (the CA given, and the host name), a password in the URL is refused.
//! Against a real PostgreSQL (`ls_tests::postgres::PgServer`, skipped visibly without one).

use ls_tests::postgres::PgServer;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_layersec-server");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(o)))
}

/// `init --store-url` in a new folder; its configuration's path.
fn init(dir: &Path, url: &str, password_file: &Path) -> Output {
    run(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--store-url",
        url,
        "--store-password-file",
        password_file.to_str().unwrap(),
    ])
}

#[test]
fn init_and_migrate_a_postgres_store() {
    let Some(pg) = PgServer::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let o = init(&dir, &pg.url(), &pg.password_file());
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["store"]["kind"], "postgres");
    assert_eq!(v["store"]["migrated"], true);
    let cfg = dir.join("layersec-server.toml");
    let c = cfg.to_str().unwrap();
    let again = json(&run(&["migrate", "--config", c]));
    assert_eq!(again["migrated"], false, "{again}");
    assert_eq!(again["schema_version"], again["schema_version_found"]);
    // The admin commands work on it.
    let sub = json(&run(&[
        "admin",
        "-c",
        c,
        "subscriber",
        "add",
        "--organisation",
        "Acme",
    ]));
    let list = json(&run(&["admin", "-c", c, "subscriber", "list"]));
    assert_eq!(list[0]["id"], sub["id"], "{list}");
    // A password in the URL is refused, naming the key; nothing is written.
    let bad = tmp.path().join("bad");
    let url = pg.url().replace("layersec@", "layersec:secret@");
    let o = init(&bad, &url, &pg.password_file());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("store.url") && !err.contains("secret"),
        "{err}"
    );
    assert!(!bad.join("layersec-server.toml").exists());
    // A node finds an older schema: refused, naming the command (the schema dropped here).
    pg.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION layersec");
    let o = run(&["serve", "--config", c]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("layersec-server migrate"));
}

#[test]
fn tls_to_the_database_is_verified() {
    let Some(pg) = PgServer::start_tls() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("svc");
    let o = init(&dir, &pg.url(), &pg.password_file());
    // `prefer` without the CA: the server offers TLS, its certificate is not trusted.
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(!dir.join("layersec-server.toml").exists());
    // With the CA written into the configuration: verified, migrated, served.
    let cfg = dir.join("layersec-server.toml");
    let template = |ca: &Path, tls: &str| {
        format!(
            "[service]\nlisten = \"127.0.0.1:0\"\n[tls]\ncertificate = \"x\"\nkey = \"x\"\n\
             [identity]\nkey = \"x\"\n[store]\nkind = \"postgres\"\nurl = \"{}\"\n\
             password_file = \"{}\"\ntls = \"{tls}\"\nca_file = \"{}\"\n",
            pg.url(),
            pg.password_file().display(),
            ca.display()
        )
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&cfg, template(&pg.ca_pem().unwrap(), "require")).unwrap();
    let o = run(&["migrate", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // Another CA: refused (no silent fallback to plain text or to an unverified connection).
    std::fs::write(&cfg, template(&pg.other_ca_pem().unwrap(), "require")).unwrap();
    let o = run(&["migrate", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
}
