//! What the large-message tests share: parties made with `layersec init` and registered at a
//! real service, documents that do not compress, hashing files in pieces.

#![allow(dead_code)]

use ls_tests::service::RunningService;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

pub const MIB: u64 = 1 << 20;

/// The size of the large document: 256 MiB, or `LS_STREAM_E2E_BYTES`.
pub fn size() -> u64 {
    std::env::var("LS_STREAM_E2E_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 * MIB)
}

pub struct Party {
    pub id: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub cert: PathBuf,
}

impl Party {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(LAYERSEC);
        c.args(args)
            .args(["--config", self.config.to_str().unwrap()]);
        c
    }

    pub fn ok(&self, args: &[&str]) -> std::process::Output {
        let o = ls_tests::run(&mut self.cmd(args));
        assert!(
            o.status.success(),
            "layersec {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

pub fn party(svc: &RunningService, id: &str) -> Party {
    let dir = svc.dir.join(format!("client-{id}"));
    let o = ls_tests::run(Command::new(LAYERSEC).args([
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
        "--json",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cert = PathBuf::from(v["certificate"].as_str().unwrap());
    let cert = if cert.is_absolute() {
        cert
    } else {
        dir.join(cert)
    };
    let config = PathBuf::from(v["config"].as_str().unwrap());
    let sub = svc.admin(&["subscriber", "add", "--organisation", id]);
    svc.admin(&[
        "party",
        "add",
        "--subscriber",
        &sub["id"].to_string(),
        "--party",
        id,
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    Party {
        id: id.to_string(),
        dir,
        config,
        cert,
    }
}

/// `n` bytes that do not compress (so the sealed payload is as large as the document), written
/// in pieces; their SHA-256.
pub fn write_document(path: &Path, n: u64) -> [u8; 32] {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut sha = openssl::sha::Sha256::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = n;
    while left > 0 {
        for w in buf.chunks_mut(8) {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
        let k = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..k]).unwrap();
        sha.update(&buf[..k]);
        left -= k as u64;
    }
    f.flush().unwrap();
    sha.finish()
}

pub fn sha256_file(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).unwrap();
    let mut sha = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return sha.finish();
        }
        sha.update(&buf[..n]);
    }
}
