//! Shared helpers of the integration and interoperability tests.

use ls_core::{Identity, KeyType};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A real `layersec-server` process for tests: [`service::RunningService`].
#[path = "harness/service.rs"]
pub mod service;

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

/// Fixture folder `sub`, or a clear skip message (the test then returns early).
pub fn fixture_dir(sub: &str) -> Option<PathBuf> {
    match fixtures() {
        Some(f) if f.join(sub).is_dir() => Some(f.join(sub)),
        _ => {
            eprintln!("SKIPPED: fixtures folder {sub} not found (expected ../shared/fixtures beside the checkout, or LS_FIXTURES)");
            None
        }
    }
}

/// A fresh temporary folder for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ls-tests-{}-{}-{}",
        name,
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    openssl::rand::rand_bytes(&mut b).unwrap();
    u64::from_le_bytes(b)
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
