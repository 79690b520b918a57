//! Seal and open, in process, next to their anchors measured in the same run:
//! - the two RSA-2048 private-key operations a 1 KiB seal+open must do (sign, decrypt);
//! - `openssl cms` (sign+encrypt, decrypt+verify) as processes on the same inputs;
//! - compression throughput on business text.
//!
//! `scripts/bench-report.py` turns the results into the ratios the targets are stated in.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ls_core::*;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// UBL, EDIFACT and CSV as back offices produce them (the generator of the compression
/// benchmark, `ls_tests::business_text`).
fn business_text(n: usize) -> Vec<u8> {
    ls_tests::business_text::generate(1, ls_tests::business_text::Mix::Mixed, n)
}

struct Fixture {
    dir: PathBuf,
    alice: Identity,
    bob: Identity,
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("ls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mk = |name: &str| {
        let g = Identity::generate(name, KeyType::Rsa(2048), 30, None).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &g.key_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), &g.cert_pem).unwrap();
        g.identity
    };
    let alice = mk("alice");
    let bob = mk("bob");
    Fixture { dir, alice, bob }
}

const SIZES: &[(&str, usize)] = &[("1KiB", 1 << 10), ("1MiB", 1 << 20), ("100MiB", 100 << 20)];

fn openssl_seal(dir: &Path, input: &Path, out: &Path) {
    let signed = out.with_extension("signed");
    let st = Command::new("openssl")
        .args([
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-outform",
            "DER",
            "-in",
        ])
        .arg(input)
        .arg("-signer")
        .arg(dir.join("alice.crt"))
        .arg("-inkey")
        .arg(dir.join("alice.key"))
        .arg("-out")
        .arg(&signed)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("openssl")
        .args([
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-gcm",
            "-inform",
            "DER",
            "-outform",
            "DER",
            "-in",
        ])
        .arg(&signed)
        .arg("-recip")
        .arg(dir.join("bob.crt"))
        .args([
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
            "-keyopt",
            "rsa_mgf1_md:sha256",
        ])
        .arg("-out")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
}

fn openssl_open(dir: &Path, input: &Path, out: &Path) {
    let inner = out.with_extension("inner");
    let st = Command::new("openssl")
        .args([
            "cms", "-decrypt", "-binary", "-inform", "DER", "-outform", "DER", "-in",
        ])
        .arg(input)
        .arg("-recip")
        .arg(dir.join("bob.crt"))
        .arg("-inkey")
        .arg(dir.join("bob.key"))
        .arg("-out")
        .arg(&inner)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-nointern",
            "-partial_chain",
            "-in",
        ])
        .arg(&inner)
        .arg("-certfile")
        .arg(dir.join("alice.crt"))
        .arg("-CAfile")
        .arg(dir.join("alice.crt"))
        .arg("-out")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let bob_cert = f.bob.certificate().clone();
    let alice_cert = f.alice.certificate().clone();
    let plain = SealOptions {
        compression: Compression::Never,
        filename: Some("invoice.xml".into()),
        ..Default::default()
    };
    let open_opts = OpenOptions {
        recipient: Some(&f.bob),
        sender: Some(&alice_cert),
        ..Default::default()
    };

    // Anchor: the two RSA-2048 private-key operations of a seal+open.
    {
        let key = openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(f.dir.join("bob.key")).unwrap(),
        )
        .unwrap();
        let cek = [7u8; 32];
        let mut enc = Vec::new();
        let mut ctx = PkeyCtx::new(&key).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        ctx.set_rsa_oaep_md(Md::sha256()).unwrap();
        ctx.set_rsa_mgf1_md(Md::sha256()).unwrap();
        ctx.encrypt_to_vec(&cek, &mut enc).unwrap();
        let attrs = [0x31u8; 110];
        c.bench_function("anchor/rsa2048_sign+decrypt", |b| {
            b.iter(|| {
                let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
                let sig = s.sign_oneshot_to_vec(&attrs).unwrap();
                let mut ctx = PkeyCtx::new(&key).unwrap();
                ctx.decrypt_init().unwrap();
                ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
                ctx.set_rsa_oaep_md(Md::sha256()).unwrap();
                ctx.set_rsa_mgf1_md(Md::sha256()).unwrap();
                let mut out = Vec::new();
                ctx.decrypt_to_vec(&enc, &mut out).unwrap();
                (sig, out)
            })
        });
    }

    for &(name, n) in SIZES {
        let doc = business_text(n);
        let sealed = seal(&doc, &f.alice, std::slice::from_ref(&bob_cert), &plain).unwrap();
        let mut g = c.benchmark_group(format!("ours/{name}"));
        g.throughput(Throughput::Bytes(n as u64));
        if n >= 100 << 20 {
            g.sample_size(10).measurement_time(Duration::from_secs(8));
        }
        g.bench_function("seal", |b| {
            b.iter(|| seal(&doc, &f.alice, std::slice::from_ref(&bob_cert), &plain).unwrap())
        });
        g.bench_function("open", |b| b.iter(|| open(&sealed, &open_opts).unwrap()));
        if n <= 1 << 20 {
            g.bench_function("seal+open", |b| {
                b.iter(|| {
                    let s = seal(&doc, &f.alice, std::slice::from_ref(&bob_cert), &plain).unwrap();
                    open(&s, &open_opts).unwrap()
                })
            });
        }
        g.finish();

        // openssl cms on the same input, as processes (what a shell integration would do).
        let input = f.dir.join(format!("doc-{name}"));
        std::fs::write(&input, &doc).unwrap();
        let os_sealed = f.dir.join(format!("os-{name}.der"));
        openssl_seal(&f.dir, &input, &os_sealed);
        let mut g = c.benchmark_group(format!("openssl_cms/{name}"));
        g.throughput(Throughput::Bytes(n as u64));
        g.sample_size(10);
        if n >= 100 << 20 {
            g.measurement_time(Duration::from_secs(25));
        }
        let out = f.dir.join(format!("os-out-{name}"));
        g.bench_function("seal", |b| b.iter(|| openssl_seal(&f.dir, &input, &out)));
        g.bench_function("open", |b| {
            b.iter(|| openssl_open(&f.dir, &os_sealed, &out))
        });
        g.finish();
    }

    // Compression on business text: throughput of a compressing seal.
    let compress = SealOptions {
        compression: Compression::Always,
        ..plain.clone()
    };
    for (name, n) in [("1MiB", 1usize << 20), ("100MiB", 100 << 20)] {
        let doc = business_text(n);
        let sealed = seal(&doc, &f.alice, std::slice::from_ref(&bob_cert), &compress).unwrap();
        eprintln!(
            "compressed seal of {name} business text: {} -> {} bytes ({:.3})",
            n,
            sealed.len(),
            sealed.len() as f64 / n as f64
        );
        let mut g = c.benchmark_group(format!("ours_compressed/{name}"));
        g.throughput(Throughput::Bytes(n as u64));
        if n >= 100 << 20 {
            g.sample_size(10).measurement_time(Duration::from_secs(10));
            std::fs::write(f.dir.join("business-100MiB.txt"), &doc).unwrap();
            std::fs::write(f.dir.join("business-100MiB.p7m"), &sealed).unwrap();
        }
        g.bench_function("seal", |b| {
            b.iter(|| seal(&doc, &f.alice, std::slice::from_ref(&bob_cert), &compress).unwrap())
        });
        g.bench_function("open", |b| b.iter(|| open(&sealed, &open_opts).unwrap()));
        g.finish();
    }
    // Leave the 100 MiB business text for the size comparison with gzip -6 (bench script).
    println!("BENCH_DIR={}", f.dir.display());
}

criterion_group! {
    name = all;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(all);
