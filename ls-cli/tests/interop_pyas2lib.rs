//! Interoperability of the `legacy-as2` profile with pyas2lib (PyPI), an AS2 library of the kind
//! the profile is for, both directions, through the `layersec` executable:
//! - `layersec seal --profile legacy-as2 --smime` output is decrypted, verified against our
//!   certificate and decompressed by pyas2lib's `Message.parse` (the partner set up to require
//!   encryption and signature), the document byte-exact; with `--no-compress`,
//!   `--key-transport rsa-oaep-sha1` and `--pss` too. Negative controls: another partner certificate, and the `modern` profile (which
//!   pyas2lib cannot read: why the profile exists), are refused.
//! - what pyas2lib's `Message.build` sends with its defaults (3DES, RSA PKCS#1 v1.5, SHA-256
//!   multipart/signed; compressed or not; AES-256-CBC) is opened by `layersec open --profile
//!   legacy-as2`, and refused by `--profile modern`, `--reject-3des` and another `--from`.
//!
//! The peer is tests/py/pyas2lib_peer.py. scripts/deps.sh installs pyas2lib (pinned) and patches
//! oscrypto's OpenSSL version check (scripts/patch-oscrypto.py); without them each test prints
//! `SKIPPED …`, and fails under `LS_REQUIRE_FIXTURES=1` (as in CI).

use ls_core::KeyType;
use ls_tests::{python, skip, tempdir, Party};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_layersec");

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/pyas2lib_peer.py")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether pyas2lib loads; else the test is skipped (a failure under LS_REQUIRE_FIXTURES=1).
fn have_pyas2lib() -> bool {
    match Command::new(python())
        .arg(peer_script())
        .arg("deps")
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(format_args!(
                "pyas2lib is not usable: {} (run scripts/deps.sh: pip install pyas2lib==1.4.4, \
                 then python3 scripts/patch-oscrypto.py)",
                text(&o).replace('\n', " ")
            ));
            false
        }
        Err(e) => {
            skip(format_args!(
                "cannot run {} ({e}): Python 3 with pyas2lib is needed (run scripts/deps.sh)",
                python()
            ));
            false
        }
    }
}

fn peer(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(python());
    c.arg(peer_script());
    for a in args {
        c.arg(a);
    }
    c.output().expect("run python")
}

fn layersec(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(BIN);
    c.env_remove("LAYERSEC_CONFIG");
    for a in args {
        c.arg(a);
    }
    c.output().expect("run layersec")
}

/// `key=value` pairs of the peer's output.
fn fields(o: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect()
}

fn field(o: &Output, k: &str) -> String {
    fields(o)
        .into_iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {k}= in {}", text(o)))
}

struct Parties {
    acme: Party,
    globex: Party,
    mallory: Party,
}

fn parties(dir: &Path) -> Parties {
    Parties {
        acme: ls_tests::party(dir, "acme", KeyType::Rsa(2048)),
        globex: ls_tests::party(dir, "globex", KeyType::Rsa(2048)),
        mallory: ls_tests::party(dir, "mallory", KeyType::Rsa(2048)),
    }
}

fn invoice() -> Vec<u8> {
    ls_tests::invoice(30_000)
}

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// pyas2lib parses `msg` as sent by acme to globex, checking the signature against
/// `partner_cert`.
fn pyas2lib_parse(dir: &Path, p: &Parties, msg: &Path, partner_cert: &Path) -> Output {
    peer(&[
        &"parse",
        &"--org-key",
        &p.globex.key,
        &"--org-cert",
        &p.globex.cert,
        &"--partner-cert",
        &partner_cert,
        &"--in",
        &msg,
        &"--out",
        &dir.join("pyas2lib.out"),
    ])
}

#[test]
fn pyas2lib_reads_what_layersec_seals_with_legacy_as2() {
    if !have_pyas2lib() {
        return;
    }
    let dir = tempdir("pyas2lib-reads-ours");
    let p = parties(&dir);
    for (name, doc, extra, compressed) in [
        ("text", invoice(), &[][..], "True"),
        // legacy-as2 compresses even what does not shrink (see docs/CLI.md).
        ("binary", noise(20_000), &[][..], "True"),
        (
            "binary, --no-compress",
            noise(20_000),
            &["--no-compress", "--mime-type", "application/pdf"][..],
            "False",
        ),
        (
            "OAEP-SHA-1 key transport",
            invoice(),
            &["--key-transport", "rsa-oaep-sha1"][..],
            "True",
        ),
        ("RSASSA-PSS signature", invoice(), &["--pss"][..], "True"),
    ] {
        let doc_path = dir.join("doc");
        std::fs::write(&doc_path, &doc).unwrap();
        let msg = dir.join("msg.eml");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"seal",
            &"--profile",
            &"legacy-as2",
            &"--smime",
            &"--sign-key",
            &p.acme.key,
            &"--sign-cert",
            &p.acme.cert,
            &"--to",
            &p.globex.cert,
        ];
        for e in extra {
            args.push(e);
        }
        args.push(&doc_path);
        args.push(&msg);
        let o = layersec(&args);
        assert!(o.status.success(), "{name}: {}", text(&o));

        let o = pyas2lib_parse(&dir, &p, &msg, &p.acme.cert);
        assert!(
            o.status.success(),
            "{name}: pyas2lib refused it: {}",
            text(&o)
        );
        assert_eq!(field(&o, "status"), "processed", "{name}");
        assert_eq!(field(&o, "encrypted"), "True", "{name}");
        assert_eq!(field(&o, "signed"), "True", "{name}");
        assert_eq!(field(&o, "digest_alg"), "sha256", "{name}");
        assert_eq!(field(&o, "compressed"), compressed, "{name}");
        assert_eq!(
            std::fs::read(dir.join("pyas2lib.out")).unwrap(),
            doc,
            "{name}: pyas2lib delivered another document"
        );

        // Negative control: verified against another partner's certificate, it is refused.
        let o = pyas2lib_parse(&dir, &p, &msg, &p.mallory.cert);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("REJECTED IntegrityError"),
            "{name}: {}",
            text(&o)
        );
    }

    // The modern profile (AES-GCM AuthEnvelopedData, OAEP-SHA-256, opaque SignedData) is what
    // pyas2lib cannot read.
    let doc_path = dir.join("doc");
    std::fs::write(&doc_path, invoice()).unwrap();
    let msg = dir.join("modern.eml");
    let o = layersec(&[
        &"seal",
        &"--smime",
        &"--sign-key",
        &p.acme.key,
        &"--sign-cert",
        &p.acme.cert,
        &"--to",
        &p.globex.cert,
        &doc_path,
        &msg,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pyas2lib_parse(&dir, &p, &msg, &p.acme.cert);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// pyas2lib builds a message from acme to globex; `layersec open` as globex, expecting acme.
fn pyas2lib_build(dir: &Path, p: &Parties, doc: &[u8], extra: &[&str]) -> PathBuf {
    let doc_path = dir.join("pyas2lib-doc");
    std::fs::write(&doc_path, doc).unwrap();
    let msg = dir.join("pyas2lib.as2");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"build",
        &"--sender-key",
        &p.acme.key,
        &"--sender-cert",
        &p.acme.cert,
        &"--partner-cert",
        &p.globex.cert,
        &"--in",
        &doc_path,
        &"--out",
        &msg,
    ];
    for e in extra {
        args.push(e);
    }
    let o = peer(&args);
    assert!(o.status.success(), "pyas2lib build: {}", text(&o));
    msg
}

fn open_as_globex(p: &Parties, msg: &Path, from: &Path, extra: &[&str], out: &Path) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--json",
        &"open",
        &"--key",
        &p.globex.key,
        &"--cert",
        &p.globex.cert,
        &"--from",
        &from,
    ];
    for e in extra {
        args.push(e);
    }
    args.push(&msg);
    args.push(&out);
    layersec(&args)
}

#[test]
fn layersec_opens_what_pyas2lib_sends() {
    if !have_pyas2lib() {
        return;
    }
    let dir = tempdir("ours-reads-pyas2lib");
    let p = parties(&dir);
    let out = dir.join("opened");
    for (name, doc, extra, cipher, compressed) in [
        (
            "defaults (3DES)",
            noise(20_000),
            &[][..],
            "des-ede3-cbc",
            false,
        ),
        (
            "compressed",
            noise(5_000),
            &["--compress"][..],
            "des-ede3-cbc",
            true,
        ),
        (
            "AES-256-CBC",
            noise(5_000),
            &["--enc-alg", "aes_256_cbc"][..],
            "aes256-CBC",
            false,
        ),
    ] {
        let msg = pyas2lib_build(&dir, &p, &doc, extra);
        let o = open_as_globex(&p, &msg, &p.acme.cert, &["--profile", "legacy-as2"], &out);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            doc,
            "{name}: document differs"
        );
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["signer"]["subject"], "CN=acme", "{name}");
        assert_eq!(j["encrypted"], true, "{name}");
        let layers = j["layers"].to_string();
        assert!(
            layers.contains(&format!(
                "envelopedData ({cipher}, key transport rsaEncryption)"
            )),
            "{name}: {layers}"
        );
        assert!(layers.contains("\"multipart/signed\""), "{name}: {layers}");
        assert_eq!(
            layers.contains("compressedData"),
            compressed,
            "{name}: {layers}"
        );

        // Refused: by the modern policy, by another expected partner; nothing written.
        std::fs::remove_file(&out).unwrap();
        let o = open_as_globex(&p, &msg, &p.acme.cert, &["--profile", "modern"], &out);
        assert_eq!(o.status.code(), Some(4), "{name}: {}", text(&o));
        assert!(
            text(&o).contains("LS_ERR_WEAK_ALGORITHM"),
            "{name}: {}",
            text(&o)
        );
        let o = open_as_globex(
            &p,
            &msg,
            &p.mallory.cert,
            &["--profile", "legacy-as2"],
            &out,
        );
        assert_eq!(o.status.code(), Some(4), "{name}: {}", text(&o));
        assert!(
            text(&o).contains("LS_ERR_SIGNER_MISMATCH"),
            "{name}: {}",
            text(&o)
        );
        assert!(!out.exists(), "{name}");
        // 3DES is a setting of its own.
        let o = open_as_globex(
            &p,
            &msg,
            &p.acme.cert,
            &["--profile", "legacy-as2", "--reject-3des"],
            &out,
        );
        let refused = cipher == "des-ede3-cbc";
        assert_eq!(o.status.success(), !refused, "{name}: {}", text(&o));
        let _ = std::fs::remove_file(&out);
    }

    // A text document: pyas2lib signs it in canonical form (its lines end in CRLF, as RFC 8551
    // wants for text); we deliver what it signed, which is what pyas2lib itself reads back.
    let doc = invoice();
    let msg = pyas2lib_build(&dir, &p, &doc, &["--content-type", "application/xml"]);
    let o = open_as_globex(&p, &msg, &p.acme.cert, &["--profile", "legacy-as2"], &out);
    assert!(o.status.success(), "{}", text(&o));
    let ours = std::fs::read(&out).unwrap();
    let o = pyas2lib_parse(&dir, &p, &msg, &p.acme.cert);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ours, std::fs::read(dir.join("pyas2lib.out")).unwrap());
    let crlf = String::from_utf8(doc).unwrap().replace('\n', "\r\n");
    assert_eq!(ours, crlf.as_bytes());
}
