//! `layersec seal` and `layersec open` on documents far larger than their memory: peak RSS of
//! each child process asserted (GNU time's %M; memory, unlike time, is stable on shared
//! machines), the document byte-identical after the round trip, a refused stream leaving no
//! file. 256 MiB incompressible and 64 MiB of compressible text in every run, 1 GiB too
//! (`make test`, CI), 5 GiB (beyond 32-bit lengths) when `LS_TEST_5GIB=1` asks for it.

use ls_tests::{opt_in, peak_rss, tempdir};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_layersec");
/// The bound asserted on each child: generous (the target is 32 MiB for the release
/// build; this is the debug build of the tests).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Run `layersec args` under GNU time: its output and its peak resident memory in KiB.
fn run_rss(args: &[&str], dir: &Path) -> (Output, u64) {
    peak_rss(Command::new(BIN).args(args), dir)
}

struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(dir: &Path) -> Keys {
        for (party, kt) in [("alice", "rsa"), ("bob", "ec")] {
            let o = Command::new(BIN)
                .args(["keygen", "--party", party, "--key-type", kt, "--out"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        Keys { dir: dir.into() }
    }

    fn p(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }
}

/// A deterministic stream: incompressible (ChaCha-like mixing of a counter) or text.
struct Gen {
    left: u64,
    n: u64,
    text: bool,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize & !7;
        let want = if want == 0 {
            self.left.min(buf.len() as u64) as usize
        } else {
            want
        };
        if self.text {
            let mut i = 0;
            while i < want {
                let line = format!(
                    "{};2026-12-{:02};ACME-{:05};{}.{:02};EUR\n",
                    self.n,
                    self.n % 28 + 1,
                    self.n * 7 % 99991,
                    self.n * 37 % 9973,
                    self.n % 100
                );
                let b = line.as_bytes();
                let k = b.len().min(want - i);
                buf[i..i + k].copy_from_slice(&b[..k]);
                i += k;
                self.n += 1;
            }
        } else {
            for c in buf[..want].chunks_mut(8) {
                let mut x = self.n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                x ^= x >> 29;
                x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                x ^= x >> 32;
                c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
                self.n += 1;
            }
        }
        self.left -= want as u64;
        Ok(want)
    }
}

fn write_doc(path: &Path, size: u64, text: bool) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    std::io::copy(
        &mut Gen {
            left: size,
            n: 0,
            text,
        },
        &mut f,
    )
    .unwrap();
    f.flush().unwrap();
}

/// Whether the file holds exactly what the generator makes.
fn same_as_generated(path: &Path, size: u64, text: bool) -> bool {
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut g = Gen {
        left: size,
        n: 0,
        text,
    };
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fill(&mut g, &mut a);
        let m = fill(&mut f, &mut b[..n.max(1)]);
        if n != m || a[..n] != b[..n] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn fill(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Seal then open `size` bytes through the CLI, each step's peak RSS under the limit.
fn round_trip(size: u64, text: bool, extra_seal: &[&str]) {
    let dir = tempdir("cli-streaming");
    let keys = Keys::new(&dir);
    let doc = dir.join("doc.bin");
    write_doc(&doc, size, text);
    let sealed = dir.join("doc.p7m");
    let mut args = vec![
        "seal",
        "--sign-key",
        &*Box::leak(keys.p("alice.key.pem").into_boxed_str()),
        "--sign-cert",
        &*Box::leak(keys.p("alice.cert.pem").into_boxed_str()),
        "--to",
        &*Box::leak(keys.p("bob.cert.pem").into_boxed_str()),
        "--json",
    ];
    args.extend_from_slice(extra_seal);
    let doc_s = doc.to_str().unwrap().to_string();
    let sealed_s = sealed.to_str().unwrap().to_string();
    args.push(&doc_s);
    args.push(&sealed_s);
    let (o, seal_kib) = run_rss(&args, &dir);
    assert!(
        o.status.success(),
        "seal: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(&doc).unwrap();
    let out = dir.join("out.bin");
    let (o, open_kib) = run_rss(
        &[
            "open",
            "--key",
            &keys.p("bob.key.pem"),
            "--cert",
            &keys.p("bob.cert.pem"),
            "--from",
            &keys.p("alice.cert.pem"),
            "--max-size",
            &size.max(1).to_string(),
            "--json",
            sealed.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(
        o.status.success(),
        "open: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sealed_size = std::fs::metadata(&sealed).unwrap().len();
    eprintln!(
        "{size} bytes ({}): sealed {sealed_size} bytes; peak RSS seal {seal_kib} KiB, open {open_kib} KiB",
        if text { "text" } else { "incompressible" }
    );
    assert!(seal_kib < RSS_LIMIT_KIB, "seal peak RSS {seal_kib} KiB");
    assert!(open_kib < RSS_LIMIT_KIB, "open peak RSS {open_kib} KiB");
    std::fs::remove_file(&sealed).unwrap();
    assert!(
        same_as_generated(&out, size, text),
        "the opened document differs"
    );
}

#[test]
fn seal_and_open_256_mib_in_constant_memory() {
    round_trip(256 << 20, false, &[]);
}

#[test]
fn seal_and_open_64_mib_of_text_compressed_in_constant_memory() {
    round_trip(64 << 20, true, &[]);
}

#[test]
fn seal_and_open_1_gib() {
    round_trip(1 << 30, false, &["--no-compress"]);
}

#[test]
fn seal_and_open_5_gib_beyond_32_bit_lengths() {
    if !opt_in(
        "LS_TEST_5GIB",
        "a 5 GiB round trip takes minutes and 10 GiB of disk",
    ) {
        return;
    }
    round_trip(5 << 30, false, &["--no-compress"]);
}

#[test]
fn a_refused_stream_leaves_no_file() {
    let dir = tempdir("cli-streaming-refused");
    let keys = Keys::new(&dir);
    let doc = dir.join("doc.bin");
    write_doc(&doc, 3 << 20, false);
    let sealed = dir.join("doc.p7m");
    let o = Command::new(BIN)
        .args([
            "seal",
            "--sign-key",
            &keys.p("alice.key.pem"),
            "--sign-cert",
            &keys.p("alice.cert.pem"),
        ])
        .args(["--to", &keys.p("bob.cert.pem")])
        .arg(&doc)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bytes = std::fs::read(&sealed).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    std::fs::write(&sealed, &bytes).unwrap();
    for out in ["out.bin", "-"] {
        let o = Command::new(BIN)
            .args([
                "open",
                "--key",
                &keys.p("bob.key.pem"),
                "--cert",
                &keys.p("bob.cert.pem"),
            ])
            .args(["--from", &keys.p("alice.cert.pem")])
            .arg(&sealed)
            .arg(if out == "-" {
                "-".into()
            } else {
                dir.join(out)
            })
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("LS_ERR_DECRYPT_FAILED")
                || String::from_utf8_lossy(&o.stderr).contains("authentication tag"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Nothing of the altered document reached standard output or the folder.
        assert!(o.stdout.is_empty(), "{} bytes on stdout", o.stdout.len());
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".pem"))
        .collect();
    names.sort();
    assert_eq!(names, ["doc.bin", "doc.p7m"]);
}
