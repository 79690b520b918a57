//! The PostgreSQL of the distributed Messaging Service's tests (`ls_tests::postgres::PgServer`,
//! run by `scripts/pg-server.sh`), checked with an independent client: `psql` (libpq) over TCP
//! as the password role `layersec`. Two tests, two clusters side by side.

use ls_tests::postgres::{PgServer, DATABASE, PASSWORD, ROLE};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// `psql` with connection string `url` and `password` (PGPASSWORD; no password file, no
/// ~/.psqlrc), running `sql`: rows one a line, fields separated by `|`.
fn psql(url: &str, password: &str, sql: &str) -> Output {
    Command::new(PSQL)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGSSLMODE")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PSQL}: {e}"))
}

#[track_caller]
fn psql_ok(pg: &PgServer, url: &str, password: &str, sql: &str) -> String {
    let o = psql(url, password, sql);
    assert!(
        o.status.success(),
        "psql {url} -c {sql:?}: {}\n--- server.log\n{}",
        String::from_utf8_lossy(&o.stderr),
        pg.log()
    );
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

#[track_caller]
fn psql_fails(url: &str, password: &str, sql: &str, why: &str) -> String {
    let o = psql(url, password, sql);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "psql {url} succeeded, expected: {why}");
    assert!(err.contains(why), "psql {url}: expected {why:?}, got {err}");
    err
}

#[test]
fn password_role_over_tcp_survives_restart_and_crash() {
    let t = Instant::now();
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let started = t.elapsed();
    assert_eq!(
        pg.url(),
        format!("postgres://{ROLE}@127.0.0.1:{}/{DATABASE}", pg.port())
    );
    let pw = std::fs::read_to_string(pg.password_file()).unwrap();
    assert_eq!(pw, PASSWORD);
    assert!(pg.ca_pem().is_none());

    // The role's password over TCP (scram-sha-256); a wrong one and none are refused.
    let url = pg.url();
    psql_ok(
        &pg,
        &url,
        &pw,
        "CREATE TABLE msg (id bigint PRIMARY KEY, body text NOT NULL);
         INSERT INTO msg VALUES (1, 'first'), (2, 'second');",
    );
    assert_eq!(
        psql_ok(&pg, &url, &pw, "SELECT id, body FROM msg ORDER BY id"),
        "1|first\n2|second"
    );
    assert_eq!(
        psql_ok(
            &pg,
            &url,
            &pw,
            "SELECT current_user, current_database(), setting FROM pg_settings WHERE name = 'password_encryption'"
        ),
        "layersec|layersec|scram-sha-256"
    );
    psql_fails(&url, "wrong", "SELECT 1", "password authentication failed");
    psql_fails(&url, "", "SELECT 1", "password");
    // The superuser is not reachable over TCP, only over the socket.
    psql_fails(
        &format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", pg.port()),
        "",
        "SELECT 1",
        "pg_hba.conf rejects",
    );
    assert_eq!(
        pg.sql("SELECT current_user, count(*) FROM msg"),
        "postgres|2"
    );
    // Settings the store's tests rely on.
    assert_eq!(
        pg.sql(
            "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit', 'max_connections', 'listen_addresses')"
        ),
        "fsync=off,listen_addresses=127.0.0.1,max_connections=100,synchronous_commit=on"
    );

    // Restart: sessions are cut, the data stay, the role logs in again.
    let restart_ms = pg.restart();
    assert_eq!(
        psql_ok(&pg, &url, &pw, "SELECT body FROM msg WHERE id = 2"),
        "second"
    );

    // A crash (kill -9 of every process): committed rows survive crash recovery.
    psql_ok(
        &pg,
        &url,
        &pw,
        "INSERT INTO msg VALUES (3, 'before the crash')",
    );
    pg.kill9();
    assert!(!pg.is_running());
    psql_fails(&url, &pw, "SELECT 1", "Connection refused");
    let t = Instant::now();
    pg.restart();
    let recovered = t.elapsed();
    assert_eq!(psql_ok(&pg, &url, &pw, "SELECT count(*) FROM msg"), "3");

    let t = Instant::now();
    pg.stop();
    let stopped = t.elapsed();
    assert!(!pg.is_running());
    eprintln!(
        "postgres timings: start {started:?}, restart {restart_ms} ms, restart after kill -9 {recovered:?}, stop {stopped:?}"
    );
}

#[test]
fn tls_verify_full_with_the_clusters_ca() {
    let t = Instant::now();
    let Some(pg) = PgServer::start_tls() else {
        return;
    };
    let started = t.elapsed();
    let ca = pg.ca_pem().expect("a TLS cluster has a CA");
    let pw = std::fs::read_to_string(pg.password_file()).unwrap();
    let url = pg.tls_url();
    assert_eq!(
        url,
        format!(
            "postgres://layersec@127.0.0.1:{}/layersec?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            ca.display()
        )
    );
    // verify-full by address and by name: the certificate names both.
    assert_eq!(
        psql_ok(
            &pg,
            &url,
            &pw,
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ),
        "t|TLSv1.3"
    );
    let by_name = format!(
        "postgres://layersec@localhost:{}/layersec?sslmode=verify-full&sslrootcert={}",
        pg.port(),
        ca.display()
    );
    assert_eq!(psql_ok(&pg, &by_name, &pw, "SELECT 1"), "1");
    // Another CA: the client refuses the server. No TLS: the server refuses the role.
    let other = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        pg.other_ca_pem().unwrap().display()
    );
    psql_fails(&other, &pw, "SELECT 1", "certificate verify failed");
    psql_fails(
        &format!("{}?sslmode=disable", pg.url()),
        &pw,
        "SELECT 1",
        "no encryption",
    );
    // A wrong password under TLS is still refused.
    psql_fails(&url, "wrong", "SELECT 1", "password authentication failed");
    eprintln!("postgres (TLS) start {started:?}");
}
