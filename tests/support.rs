//! Shared helpers of the integration and interoperability tests.

use ls_core::{Identity, KeyType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A real `layersec-server` process for tests: [`service::RunningService`].
#[path = "harness/service.rs"]
pub mod service;

/// A `layersec` client of such a service: [`client::Client`].
#[path = "harness/client.rs"]
pub mod client;

/// Real mail servers (Postfix + Dovecot on loopback) for tests: [`mail::MailServers`].
#[path = "harness/mail.rs"]
pub mod mail;

/// A real PostgreSQL 15 cluster (loopback, folder of its own) for tests: [`postgres::PgServer`].
#[path = "harness/postgres.rs"]
pub mod postgres;

/// SoftHSM2 tokens in a folder of the test process's own: [`softhsm::SoftHsm`].
#[path = "harness/softhsm.rs"]
pub mod softhsm;

/// Realistic business text (UBL, EDIFACT, CSV) for compression benchmarks and tests.
#[path = "business_text/mod.rs"]
pub mod business_text;

/// `../shared/fixtures` beside the checkout (or `$LS_FIXTURES`), if present.
pub fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("LS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    if p.is_dir() {
        Some(p)
    } else {
        None
    }
}

/// Fixture folder `sub`, or `None` after [`skip`] (the test then returns early).
#[track_caller]
pub fn fixture_dir(sub: &str) -> Option<PathBuf> {
    match fixtures() {
        Some(f) if f.join(sub).is_dir() => Some(f.join(sub)),
        _ => {
            skip(format_args!(
                "fixtures folder {sub} not found (expected ../shared/fixtures beside the checkout, or LS_FIXTURES)"
            ));
            None
        }
    }
}

/// Whether a test that misses a fixture, a tool or a service must fail instead of skipping:
/// `LS_REQUIRE_FIXTURES=1`, as `.ci/run` sets it.
pub fn skips_forbidden() -> bool {
    std::env::var("LS_REQUIRE_FIXTURES").is_ok_and(|v| v == "1")
}

/// The calling test cannot run here (a fixture, a tool or a service is missing): under
/// `LS_REQUIRE_FIXTURES=1` this fails the test; otherwise it prints
/// `SKIPPED <test>: <why>` on standard error and the test returns early.
///
/// The line is written to the process's standard error directly, not through `eprintln!`,
/// which the test harness captures and shows for failed tests only: a skip stays visible in
/// every run, and `make test` lists the skips at the end.
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    if skips_forbidden() {
        panic!("{why} (LS_REQUIRE_FIXTURES=1: a missing fixture, tool or service fails the test)");
    }
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name,
        _ => "a test",
    };
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Whether the opt-in test that calls this runs: the environment variable `flag` is `1`. If
/// not, the test is listed as skipped (`SKIPPED <test>: <why> (opt-in: <flag>=1)`, as
/// [`skip`] writes it, in every run and in `make test`'s summary) and returns early; this is
/// not a missing fixture, so CI does not fail on it.
pub fn opt_in(flag: &str, why: impl std::fmt::Display) -> bool {
    if std::env::var(flag).is_ok_and(|v| v == "1") {
        return true;
    }
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name,
        _ => "a test",
    };
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {why} (opt-in: {flag}=1)"
    );
    false
}

/// Run `cmd` under GNU time: its output and its peak resident memory in KiB (memory, unlike
/// time, is stable on shared machines: bounds on it may be asserted in tests).
pub fn peak_rss(cmd: &mut std::process::Command, dir: &Path) -> (std::process::Output, u64) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let report = dir.join(format!(
        "time-{}-{}.txt",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let o = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .expect("/usr/bin/time (Debian package time; scripts/deps.sh installs it)");
    let kib = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time's %M in {}", report.display()));
    let _ = std::fs::remove_file(report);
    (o, kib)
}

/// A temporary folder, removed when dropped. When the test fails (the drop happens while
/// panicking) the folder is kept for inspection and its path printed.
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path().as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            if std::thread::panicking() {
                let kept = d.keep();
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "kept {} for inspection (the test failed)",
                    kept.display()
                );
            }
        }
    }
}

/// A fresh temporary folder for one test, `ls-tests-<name>-XXXXXX` in the system's temporary
/// folder; removed when the returned guard is dropped.
pub fn tempdir(name: &str) -> TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("ls-tests-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot make a temporary folder: {e}"));
    TempDir(Some(d))
}

/// Waits until `cond` holds, checking every 20 ms; panics naming `what` when it still does not
/// after `timeout` (a bound that only detects a hang: pick it generously).
#[track_caller]
pub fn wait_for(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A generated identity written to `dir` as `<name>.key` and `<name>.crt`.
pub struct Party {
    pub identity: Identity,
    pub key: PathBuf,
    pub cert: PathBuf,
}

pub fn party(dir: &Path, name: &str, kt: KeyType) -> Party {
    let g = Identity::generate(name, kt, 30, None).unwrap();
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    std::fs::write(&key, &g.key_pem).unwrap();
    std::fs::write(&cert, &g.cert_pem).unwrap();
    Party {
        identity: g.identity,
        key,
        cert,
    }
}

/// Run a command; panics with its output if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run a command that must succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The body of a MIME entity (after the first empty line).
pub fn mime_body(entity: &[u8]) -> &[u8] {
    if let Some(i) = ls_core::bytes::find(entity, b"\r\n\r\n") {
        return &entity[i + 4..];
    }
    let i = ls_core::bytes::find(entity, b"\n\n").expect("no header/body separator");
    &entity[i + 2..]
}

/// Business text: an XML invoice batch of about `n` bytes.
pub fn invoice(n: usize) -> Vec<u8> {
    let mut v = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Invoices>\n".to_vec();
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "  <Invoice id=\"INV-{i:08}\"><Date>2026-11-{:02}</Date><Buyer>ACME Ltd</Buyer><Line sku=\"SKU-{}\" qty=\"{}\"><Amount currency=\"EUR\">{}.{:02}</Amount></Line></Invoice>\n",
                i % 28 + 1, i * 7919 % 10007, i % 13 + 1, i * 37 % 1000, i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The peak resident memory (`VmHWM` of `/proc/<pid>/status`) of a running process, in bytes.
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Run `cmd` under `/usr/bin/time` (installed by `scripts/deps.sh`): its output, and its peak
/// resident memory in bytes (the child's `ru_maxrss`).
pub fn run_measuring_rss(cmd: &Command) -> (Output, u64) {
    let report = std::env::temp_dir().join(format!(
        "layersec-rss-{}-{:?}.txt",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = run(&mut timed);
    let kib: u64 = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or_else(|| panic!("/usr/bin/time reported nothing for {:?}", cmd.get_program()));
    let _ = std::fs::remove_file(&report);
    (out, kib * 1024)
}
