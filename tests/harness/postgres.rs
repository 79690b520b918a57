//! A real PostgreSQL 15 for tests: a throwaway cluster on a loopback port of its own, every file
//! in one temporary folder, run by `scripts/pg-server.sh` (see its header for the details).
//!
//! The role [`ROLE`] (`layersec`, password [`PASSWORD`] `layersec-pw`, scram-sha-256 over TCP)
//! owns the database [`DATABASE`] (`layersec`); [`PgServer::url`] is
//! `postgres://layersec@127.0.0.1:PORT/layersec` without the password, which is in
//! [`PgServer::password_file`] (the password alone, no newline). The superuser `postgres` is
//! trusted over the unix socket only ([`PgServer::sql`]); it is refused over TCP. A cluster of
//! [`PgServer::start_tls`] accepts `layersec` over TLS only, with a certificate for `localhost`
//! and `127.0.0.1` signed by [`PgServer::ca_pem`]. fsync is off (speed), synchronous_commit on.
//!
//! ```no_run
//! let Some(mut pg) = ls_tests::postgres::PgServer::start() else { return };
//! pg.sql("CREATE TABLE t (x int)");
//! // … a node connects to pg.url() with the password of pg.password_file() …
//! pg.restart();
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The password-authenticated role of the tests.
pub const ROLE: &str = "layersec";
/// Its password (also in [`PgServer::password_file`]).
pub const PASSWORD: &str = "layersec-pw";
/// The database, owned by [`ROLE`].
pub const DATABASE: &str = "layersec";

/// A running PostgreSQL cluster. Dropping it stops the server and removes the folder (kept, and
/// its path printed, when the thread panics: `server.log` is in it).
pub struct PgServer {
    /// The cluster's folder: `data/`, `run/` (the unix socket), `server.log`, `password`,
    /// `pgpass`, and with TLS `ca.pem`, `other-ca.pem`, `tls/`.
    pub dir: PathBuf,
    port: u16,
    tls: bool,
    script: PathBuf,
    stopped: bool,
    tmp: Option<tempfile::TempDir>,
}

/// `scripts/pg-server.sh` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-server.sh")
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `KEY=value` lines of the script's output.
fn keys(out: &Output) -> HashMap<String, String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl PgServer {
    /// Start a cluster on a free loopback port; `None` after [`crate::skip`] when it cannot run
    /// here (PostgreSQL 15 not installed, not root), which fails the test under
    /// `LS_REQUIRE_FIXTURES=1`. Panics when the server fails to start.
    #[track_caller]
    pub fn start() -> Option<PgServer> {
        Self::start_with(false)
    }

    /// As [`PgServer::start`], with TLS: the role `layersec` is accepted over TLS only; clients
    /// verify the server with [`PgServer::ca_pem`] (`sslmode=verify-full`: the certificate
    /// names `localhost` and `127.0.0.1`).
    #[track_caller]
    pub fn start_tls() -> Option<PgServer> {
        Self::start_with(true)
    }

    #[track_caller]
    fn start_with(tls: bool) -> Option<PgServer> {
        let script = script();
        let mut last = String::new();
        // A port found free may be taken by another test before the server binds it: a new one.
        for _ in 0..3 {
            let tmp = tempfile::Builder::new()
                .prefix("ls-pg-")
                // Under /tmp whatever TMPDIR says: the server runs as `postgres`, which must
                // cross every folder above the cluster (o+x).
                .tempdir_in("/tmp")
                .unwrap_or_else(|e| panic!("cannot make a folder in /tmp: {e}"));
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            let port = free_port();
            let mut cmd = Command::new("bash");
            cmd.arg(&script)
                .arg("start")
                .arg(tmp.path())
                .args(["--port", &port.to_string()])
                .stdin(Stdio::null());
            if tls {
                cmd.arg("--tls");
            }
            let out = crate::run(&mut cmd);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            match out.status.code() {
                Some(0) => {
                    let k = keys(&out);
                    let dir = PathBuf::from(k.get("PG_DIR").expect("PG_DIR= from the script"));
                    return Some(PgServer {
                        dir,
                        port,
                        tls,
                        script,
                        stopped: false,
                        tmp: Some(tmp),
                    });
                }
                Some(3) => {
                    crate::skip(format_args!(
                        "no PostgreSQL here: {} (scripts/deps.sh installs postgresql-15)",
                        stderr.trim()
                    ));
                    return None;
                }
                _ => {
                    // Stop whatever half started before the folder goes.
                    let _ = Command::new("bash")
                        .arg(&script)
                        .arg("stop")
                        .arg(tmp.path())
                        .stdin(Stdio::null())
                        .output();
                    last = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
                }
            }
        }
        panic!("scripts/pg-server.sh start failed three times:\n{last}");
    }

    /// `postgres://layersec@127.0.0.1:PORT/layersec`: no password in it (see
    /// [`PgServer::password_file`]) and no TLS parameters (with TLS a client adds
    /// `sslmode=verify-full` and the CA, as [`PgServer::tls_url`] does).
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// [`PgServer::url`] with `?sslmode=verify-full&sslrootcert=<ca.pem>` (libpq's parameters).
    /// Panics for a cluster without TLS.
    pub fn tls_url(&self) -> String {
        let ca = self
            .ca_pem()
            .expect("tls_url of a cluster without TLS (start_tls)");
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.url(),
            ca.display()
        )
    }

    /// A `layersec-server` configuration text (as `init` writes it) with its store in this
    /// database: `[store] kind = "postgres"`, [`PgServer::url`], the password from
    /// [`PgServer::password_file`], TLS verified against [`PgServer::ca_pem`] for a cluster of
    /// [`PgServer::start_tls`] (disabled otherwise). The schema is not applied (`migrate`).
    pub fn service_config(&self, text: &str) -> String {
        let sqlite =
            "kind = \"sqlite\"          # the embedded store (SQLite, WAL, synced commits)";
        assert!(
            text.contains(sqlite),
            "not a configuration as init writes it"
        );
        let tls = match self.ca_pem() {
            Some(ca) => format!("tls = \"require\"\nca_file = \"{}\"", ca.display()),
            None => "tls = \"disable\"".to_string(),
        };
        let store = format!(
            "kind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n{tls}",
            self.url(),
            self.password_file().display()
        );
        text.replace(sqlite, &store)
    }

    /// The file holding the password of [`ROLE`], [`PASSWORD`], alone (no newline).
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// A libpq password file (`PGPASSFILE`, mode 0600) with [`ROLE`]'s password for this port,
    /// for `psql` and other libpq clients.
    pub fn pgpass_file(&self) -> PathBuf {
        self.dir.join("pgpass")
    }

    /// The CA that signed the server's certificate (EC P-256; SAN `localhost`, `127.0.0.1`), for
    /// a cluster of [`PgServer::start_tls`]; `None` without TLS.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("ca.pem"))
    }

    /// A CA that did NOT sign the server's certificate (same subject name as the real one), for
    /// a cluster of [`PgServer::start_tls`]: a client trusting only this must refuse the server.
    pub fn other_ca_pem(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.join("other-ca.pem"))
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of the unix socket (the superuser's way in).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn script_cmd(&self, args: &[&str]) -> Output {
        let o = crate::run(
            Command::new("bash")
                .arg(&self.script)
                .arg(args[0])
                .arg(&self.dir)
                .args(&args[1..])
                .stdin(Stdio::null()),
        );
        assert!(
            o.status.success(),
            "pg-server.sh {} failed: {}{}\n--- server.log\n{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        o
    }

    /// Runs `sql` (one or more statements) in the database `layersec` as the superuser
    /// `postgres` over the unix socket; returns psql's output: rows one a line, fields separated
    /// by `|`, no header, trailing newline trimmed. Panics when psql fails (an SQL error).
    pub fn sql(&self, sql: &str) -> String {
        let o = self.script_cmd(&["sql", sql]);
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    /// [`PgServer::sql`] in database `db` (another than [`DATABASE`]).
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let o = self.script_cmd(&["sql", sql, db]);
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    /// Fast shutdown, then start again on the same port with the same data (sessions are cut:
    /// clients see their connections fail and must reconnect). Also starts a cluster that was
    /// stopped or killed ([`PgServer::kill9`]: crash recovery). Returns the script's timing,
    /// `RESTART_MS`, in milliseconds.
    pub fn restart(&mut self) -> u64 {
        let o = self.script_cmd(&["restart"]);
        self.stopped = false;
        keys(&o)
            .get("RESTART_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL to the postmaster and every backend at once (a crash of PostgreSQL); returns when
    /// all are gone. [`PgServer::restart`] brings it back with crash recovery; committed data
    /// survive (fsync off loses data only when the machine crashes, not PostgreSQL).
    pub fn kill9(&mut self) {
        self.script_cmd(&["kill9"]);
    }

    /// Whether the postmaster runs.
    pub fn is_running(&self) -> bool {
        Command::new("bash")
            .arg(&self.script)
            .arg("status")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The server's log (`server.log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server, fast shutdown (also done on drop). The folder stays until the drop;
    /// [`PgServer::restart`] starts it again.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let out = Command::new("bash")
                .arg(&self.script)
                .arg("stop")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .output();
            if let Ok(o) = out {
                if !o.status.success() {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "pg-server.sh stop {}: {}",
                        self.dir.display(),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A killed cluster may have left nothing to stop; stopping is harmless then.
        self.stopped = false;
        self.stop();
        if let Some(d) = self.tmp.take() {
            if std::thread::panicking() {
                let kept = d.keep();
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "kept {} for inspection (the test failed): server.log, data/",
                    kept.display()
                );
            }
        }
    }
}
