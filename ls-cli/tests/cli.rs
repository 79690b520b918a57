//! End-to-end tests of the `layersec` executable: every command, every documented exit code, and
//! the promises around files (atomic output, nothing written on failure, no overwrite of keys).

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_layersec");

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh folder under the system temp dir, removed when dropped (kept when the test fails).
struct TempDir(ls_tests::TempDir);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(ls_tests::tempdir(&format!("cli-{name}")))
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_string()
    }
}

struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
}

fn layersec<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    Run {
        args: args.into_iter().map(|s| s.as_ref().to_string()).collect(),
        env: Vec::new(),
        stdin: None,
        cwd: None,
    }
}

impl Run {
    fn env(mut self, k: &str, v: &str) -> Run {
        self.env.push((k.into(), v.into()));
        self
    }
    fn stdin(mut self, data: &[u8]) -> Run {
        self.stdin = Some(data.to_vec());
        self
    }
    fn cwd(mut self, dir: &Path) -> Run {
        self.cwd = Some(dir.to_path_buf());
        self
    }
    fn run(self) -> Output {
        let mut c = Command::new(BIN);
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c.args(&self.args)
            .env_remove("LAYERSEC_TEST_PW")
            .env_remove("LAYERSEC_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("run layersec");
        if let Some(data) = self.stdin {
            let mut si = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = si.write_all(&data);
            });
        }
        child.wait_with_output().unwrap()
    }
    /// Run and require exit status `code`.
    fn expect(self, code: i32) -> Output {
        let desc = self.args.join(" ");
        let out = self.run();
        assert_eq!(
            out.status.code(),
            Some(code),
            "layersec {desc}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// The failure is reported on stderr in the documented form, with the expected code.
fn assert_error(o: &Output, name: &str) {
    let e = stderr(o);
    assert!(
        e.contains(&format!("layersec: error[LS_{name}]: ")),
        "expected error[LS_{name}] on stderr, got: {e}"
    );
}

/// A document that does not compress away, so a flipped byte lands in ciphertext.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn invoice() -> Vec<u8> {
    let mut v = b"<?xml version=\"1.0\"?>\n<Invoices>\n".to_vec();
    for i in 0..200 {
        v.extend_from_slice(
            format!(
                "  <Invoice id=\"{i}\"><Amount currency=\"EUR\">{}.50</Amount></Invoice>\n",
                i * 37 % 1000
            )
            .as_bytes(),
        );
    }
    v.extend_from_slice(b"</Invoices>\n");
    v
}

/// Files in `dir` other than `expected` (e.g. leftover temporary files).
fn extra_files(dir: &Path, expected: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

/// Parties shared by the tests, generated once through `layersec keygen`:
/// alice (RSA 2048, key encrypted with "alice-pw"), bob (EC P-256), carol (RSA 2048).
struct World {
    dir: PathBuf,
}

const ALICE_PW: &str = "alice-pw";

/// The folder of the shared parties. They live as long as the test process, and a static is
/// never dropped, so they are not in a temporary folder of their own: they are kept in cargo's
/// scratch folder for integration tests (`target/tmp`), one folder per process, and each run
/// removes the folders of processes that have ended.
fn world_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("cli-world-")) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("cli-world-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl World {
    fn get() -> &'static World {
        static W: OnceLock<World> = OnceLock::new();
        W.get_or_init(|| {
            let dir = world_dir();
            let out = dir.join("keys").to_str().unwrap().to_string();
            layersec([
                "keygen",
                "--party",
                "alice",
                "--out",
                &out,
                "--rsa-bits",
                "2048",
                "--pass-env",
                "LAYERSEC_TEST_PW",
            ])
            .env("LAYERSEC_TEST_PW", ALICE_PW)
            .expect(0);
            layersec([
                "keygen",
                "--party",
                "bob",
                "--out",
                &out,
                "--key-type",
                "ec",
            ])
            .expect(0);
            layersec([
                "keygen",
                "--party",
                "carol",
                "--out",
                &out,
                "--rsa-bits",
                "2048",
            ])
            .expect(0);
            World { dir }
        })
    }
    fn key(&self, who: &str) -> String {
        self.file(&format!("keys/{who}.key.pem"))
    }
    fn cert(&self, who: &str) -> String {
        self.file(&format!("keys/{who}.cert.pem"))
    }
    fn file(&self, rel: &str) -> String {
        self.dir.join(rel).to_str().unwrap().to_string()
    }
    /// `seal` args signing as alice (password from the environment) for `to`.
    fn seal_as_alice(&self, to: &str, extra: &[&str], input: &str, output: &str) -> Run {
        let mut a: Vec<String> = vec![
            "seal".into(),
            "--sign-key".into(),
            self.key("alice"),
            "--sign-cert".into(),
            self.cert("alice"),
            "--pass-env".into(),
            "LAYERSEC_TEST_PW".into(),
            "--to".into(),
            self.cert(to),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(input.into());
        a.push(output.into());
        layersec(a).env("LAYERSEC_TEST_PW", ALICE_PW)
    }
    /// `open` args as `me` (unencrypted key) expecting `from`.
    fn open_as(&self, me: &str, from: &str, extra: &[&str], input: &str, output: &str) -> Run {
        let mut a: Vec<String> = vec![
            "open".into(),
            "--key".into(),
            self.key(me),
            "--cert".into(),
            self.cert(me),
            "--from".into(),
            self.cert(from),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(input.into());
        a.push(output.into());
        layersec(a)
    }
}

fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}

// ---------------------------------------------------------------------------------------------
// keygen → seal → open

fn keygen_seal_open(key_type: &[&str], expect_type: &str) {
    let w = World::get();
    let t = TempDir::new("roundtrip");
    let out = t.s("keys");
    let o = layersec(
        [
            &[
                "keygen", "--party", "dave", "--out", &out, "--json", "--days", "30",
            ][..],
            key_type,
        ]
        .concat(),
    )
    .expect(0);
    let g = json(&o);
    assert_eq!(g["party"], "dave");
    assert_eq!(g["key_type"], expect_type);
    assert_eq!(g["key_encrypted"], false);
    assert_eq!(g["subject"], "CN=dave");
    let fp = g["fingerprint"].as_str().unwrap().to_string();
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{fp:?}: lower-case hex without separators"
    );
    assert!(is_iso8601(g["not_after"].as_str().unwrap()));
    for (k, f) in [
        ("key", "dave.key.pem"),
        ("cert", "dave.cert.pem"),
        ("csr", "dave.csr.pem"),
    ] {
        assert_eq!(g[k], t.s(&format!("keys/{f}")));
        assert!(t.path(&format!("keys/{f}")).is_file(), "{f}");
    }
    let key_pem = std::fs::read_to_string(t.path("keys/dave.key.pem")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let mode = std::fs::metadata(t.path("keys/dave.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(t.path("keys/dave.csr.pem"))
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    let doc = invoice();
    std::fs::write(t.path("invoice.xml"), &doc).unwrap();
    let o = layersec([
        "seal",
        "--sign-key",
        &t.s("keys/dave.key.pem"),
        "--sign-cert",
        &t.s("keys/dave.cert.pem"),
        "--to",
        &w.cert("carol"),
        &t.s("invoice.xml"),
        &t.s("invoice.p7m"),
    ])
    .expect(0);
    assert!(o.stdout.is_empty());
    let sealed = std::fs::read(t.path("invoice.p7m")).unwrap();
    assert_eq!(sealed[0], 0x30, "DER by default");
    assert!(
        !ls_core::bytes::contains(&sealed, b"<Invoice id="),
        "the document is encrypted"
    );

    let o = w
        .open_as("carol", "carol", &[], &t.s("invoice.p7m"), &t.s("x"))
        .expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--from",
        &t.s("keys/dave.cert.pem"),
        "--json",
        &t.s("invoice.p7m"),
        &t.s("received.xml"),
    ])
    .expect(0);
    assert_eq!(std::fs::read(t.path("received.xml")).unwrap(), doc);
    let j = json(&o);
    assert_eq!(j["filename"], "invoice.xml");
    assert_eq!(j["mime_type"], "application/xml");
    assert_eq!(j["size"], doc.len());
    assert_eq!(j["encrypted"], true);
    assert_eq!(j["signer"]["subject"], "CN=dave");
    assert_eq!(j["signer"]["fingerprint"], fp.as_str());
    assert_eq!(j["signer"]["serial"], g["serial"]);
    assert!(
        is_iso8601(j["signing_time"].as_str().unwrap()),
        "{}",
        j["signing_time"]
    );
    let layers: Vec<&str> = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(layers[0].starts_with("authEnvelopedData"), "{layers:?}");
    assert!(layers
        .iter()
        .any(|l| l.starts_with("signedData") && l.contains("CN=dave")));
    assert!(
        layers.iter().any(|l| l.starts_with("compressedData")),
        "{layers:?}"
    );
    // A decrypted document is private by default.
    let mode = std::fs::metadata(t.path("received.xml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

#[test]
fn keygen_rsa_seal_open_round_trip() {
    keygen_seal_open(&["--key-type", "rsa", "--rsa-bits", "2048"], "rsa-2048");
}

#[test]
fn keygen_ec_seal_open_round_trip() {
    keygen_seal_open(&["--key-type", "ec"], "ec-p256");
}

#[test]
fn keygen_text_output_shows_paths_and_fingerprint() {
    let t = TempDir::new("keygen-text");
    let o = layersec([
        "keygen",
        "--party",
        "erin",
        "--out",
        &t.s("k"),
        "--key-type",
        "ec",
    ])
    .expect(0);
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(text.contains(&t.s("k/erin.key.pem")), "{text}");
    assert!(text.contains(&t.s("k/erin.cert.pem")), "{text}");
    assert!(text.contains(&t.s("k/erin.csr.pem")), "{text}");
    let fp = text
        .split_once("fingerprint:  SHA256 ")
        .map(|(_, rest)| rest.lines().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"));
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{fp:?}: lower-case hex without separators"
    );
    assert!(
        stderr(&o).contains("not encrypted"),
        "warns about a plain key"
    );
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let t = TempDir::new("overwrite");
    let out = t.s("k");
    layersec([
        "keygen",
        "--party",
        "acme",
        "--out",
        &out,
        "--key-type",
        "ec",
    ])
    .expect(0);
    let key1 = std::fs::read(t.path("k/acme.key.pem")).unwrap();
    let cert1 = std::fs::read(t.path("k/acme.cert.pem")).unwrap();
    let o = layersec([
        "keygen",
        "--party",
        "acme",
        "--out",
        &out,
        "--key-type",
        "ec",
    ])
    .expect(3);
    assert_error(&o, "ERR_IO");
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(t.path("k/acme.key.pem")).unwrap(), key1);
    assert_eq!(std::fs::read(t.path("k/acme.cert.pem")).unwrap(), cert1);

    // Only one of the three exists: still nothing is written.
    std::fs::remove_file(t.path("k/acme.key.pem")).unwrap();
    std::fs::remove_file(t.path("k/acme.cert.pem")).unwrap();
    layersec([
        "keygen",
        "--party",
        "acme",
        "--out",
        &out,
        "--key-type",
        "ec",
    ])
    .expect(3);
    assert!(!t.path("k/acme.key.pem").exists());
    assert!(!t.path("k/acme.cert.pem").exists());

    // --force replaces them, and the new key is 0600 even if the old file was readable by all.
    std::fs::write(t.path("k/acme.key.pem"), b"old").unwrap();
    std::fs::set_permissions(
        t.path("k/acme.key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    layersec([
        "keygen",
        "--party",
        "acme",
        "--out",
        &out,
        "--key-type",
        "ec",
        "--force",
    ])
    .expect(0);
    let key2 = std::fs::read(t.path("k/acme.key.pem")).unwrap();
    assert_ne!(key2, b"old");
    assert_ne!(key2, key1);
    let mode = std::fs::metadata(t.path("k/acme.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(extra_files(
        &t.path("k"),
        &["acme.key.pem", "acme.cert.pem", "acme.csr.pem"]
    )
    .is_empty());
}

#[test]
fn keygen_rejects_bad_arguments() {
    let t = TempDir::new("keygen-args");
    let out = t.s("k");
    for args in [
        vec!["keygen", "--party", "../evil", "--out", &out],
        vec!["keygen", "--party", "", "--out", &out],
        vec![
            "keygen",
            "--party",
            "x",
            "--out",
            &out,
            "--key-type",
            "ec",
            "--rsa-bits",
            "2048",
        ],
        vec![
            "keygen",
            "--party",
            "x",
            "--out",
            &out,
            "--rsa-bits",
            "1024",
        ],
        vec!["keygen", "--party", "x", "--out", &out, "--key-type", "dsa"],
        vec!["keygen", "--party", "x", "--out", &out, "--days", "0"],
        vec![
            "keygen",
            "--party",
            "x",
            "--out",
            &out,
            "--password",
            "secret",
        ],
    ] {
        let o = layersec(&args).expect(2);
        assert!(stderr(&o).contains("error"), "{args:?}");
    }
    // An empty password would silently give an unencrypted key.
    layersec([
        "keygen",
        "--party",
        "x",
        "--out",
        &out,
        "--pass-env",
        "EMPTY_PW",
    ])
    .env("EMPTY_PW", "")
    .expect(2);
    assert!(!t.path("k/x.key.pem").exists());
}

// ---------------------------------------------------------------------------------------------
// streams and formats

#[test]
fn stdin_and_stdout_with_dash() {
    let w = World::get();
    let doc = invoice();
    let o = w
        .seal_as_alice("bob", &["--filename", "piped.xml", "--pem"], "-", "-")
        .stdin(&doc)
        .expect(0);
    let sealed = o.stdout;
    assert!(sealed.starts_with(b"-----BEGIN CMS-----"));
    let o = w
        .open_as("bob", "alice", &[], "-", "-")
        .stdin(&sealed)
        .expect(0);
    assert_eq!(o.stdout, doc, "the document, and nothing else, on stdout");
    assert!(stderr(&o).contains("piped.xml"), "{}", stderr(&o));

    // Without --filename a piped document has no name.
    let t = TempDir::new("dash");
    let o = w
        .seal_as_alice("bob", &["--smime"], "-", "-")
        .stdin(b"hello")
        .expect(0);
    std::fs::write(t.path("m.eml"), &o.stdout).unwrap();
    let o = w
        .open_as("bob", "alice", &["--json"], &t.s("m.eml"), &t.s("out"))
        .expect(0);
    let j = json(&o);
    assert_eq!(j["filename"], Value::Null);
    assert_eq!(j["mime_type"], "application/octet-stream");
    assert_eq!(std::fs::read(t.path("out")).unwrap(), b"hello");

    // --json and a document on stdout cannot share it.
    let o = w
        .open_as("bob", "alice", &["--json"], &t.s("m.eml"), "-")
        .expect(2);
    assert_error(&o, "ERR_INVALID_ARGUMENT");
}

#[test]
fn smime_pem_and_options_round_trip() {
    let w = World::get();
    let t = TempDir::new("formats");
    let doc = invoice();
    std::fs::write(t.path("invoice.xml"), &doc).unwrap();
    let cases: [(&[&str], &str, &str, &str); 4] = [
        (
            &["--smime"],
            "MIME-Version: 1.0",
            "authEnvelopedData",
            "compressedData",
        ),
        (
            &["--pem", "--cbc"],
            "-----BEGIN CMS-----",
            "envelopedData",
            "compressedData",
        ),
        (
            &["--pss", "--no-compress"],
            "\x30",
            "RSASSA-PSS",
            "!compressedData",
        ),
        (
            &["--smime", "--cbc", "--pss"],
            "MIME-Version",
            "envelopedData (aes256-CBC",
            "RSASSA-PSS",
        ),
    ];
    for (i, (opts, prefix, layer1, layer2)) in cases.iter().enumerate() {
        let sealed = t.s(&format!("s{i}"));
        w.seal_as_alice("carol", opts, &t.s("invoice.xml"), &sealed)
            .expect(0);
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(bytes.starts_with(prefix.as_bytes()), "{opts:?}");
        let o = w
            .open_as(
                "carol",
                "alice",
                &["--json"],
                &sealed,
                &t.s(&format!("o{i}")),
            )
            .expect(0);
        assert_eq!(
            std::fs::read(t.path(&format!("o{i}"))).unwrap(),
            doc,
            "{opts:?}"
        );
        let layers = json(&o)["layers"].to_string();
        assert!(layers.contains(layer1), "{opts:?}: {layers}");
        match layer2.strip_prefix('!') {
            Some(absent) => assert!(!layers.contains(absent), "{opts:?}: {layers}"),
            None => assert!(layers.contains(layer2), "{opts:?}: {layers}"),
        }
    }
    // --smime and --pem exclude each other; --pss needs an RSA key.
    layersec([
        "seal",
        "--sign-key",
        &w.key("carol"),
        "--sign-cert",
        &w.cert("carol"),
        "--to",
        &w.cert("bob"),
        "--smime",
        "--pem",
        &t.s("invoice.xml"),
        &t.s("bad"),
    ])
    .expect(2);
    let o = layersec([
        "seal",
        "--sign-key",
        &w.key("bob"),
        "--sign-cert",
        &w.cert("bob"),
        "--to",
        &w.cert("carol"),
        "--pss",
        &t.s("invoice.xml"),
        &t.s("bad"),
    ])
    .expect(2);
    assert!(stderr(&o).contains("--pss"));
    assert!(!t.path("bad").exists());
}

#[test]
fn seal_profile_legacy_as2_and_open_profiles() {
    let w = World::get();
    let t = TempDir::new("profiles");
    let doc = invoice();
    std::fs::write(t.path("invoice.xml"), &doc).unwrap();
    // alice (RSA) to carol (RSA): what the JSON says, what open finds.
    let o = w
        .seal_as_alice(
            "carol",
            &["--profile", "legacy-as2", "--smime", "--json"],
            &t.s("invoice.xml"),
            &t.s("m.eml"),
        )
        .expect(0);
    let j = json(&o);
    assert_eq!(j["profile"], "legacy-as2");
    assert_eq!(j["cipher"], "aes-256-cbc");
    assert_eq!(j["key_transport"], "rsa-pkcs1v15");
    assert_eq!(j["signature"], "rsa-pkcs1v15-sha256");
    assert_eq!(j["signature_format"], "multipart-signed");
    assert_eq!(j["format"], "smime");
    let o = w
        .open_as("carol", "alice", &["--json"], &t.s("m.eml"), &t.s("o1"))
        .expect(0);
    assert_eq!(std::fs::read(t.path("o1")).unwrap(), doc);
    let layers = json(&o)["layers"].to_string();
    for l in [
        "envelopedData (aes256-CBC, key transport rsaEncryption)",
        "multipart/signed",
        "compressedData",
    ] {
        assert!(layers.contains(l), "{l}: {layers}");
    }
    w.open_as(
        "carol",
        "alice",
        &["--profile", "legacy-as2"],
        &t.s("m.eml"),
        &t.s("o2"),
    )
    .expect(0);
    // The modern policy and --reject-legacy refuse it; nothing is written.
    for extra in [&["--profile", "modern"][..], &["--reject-legacy"]] {
        let o = w
            .open_as("carol", "alice", extra, &t.s("m.eml"), &t.s("no"))
            .expect(4);
        assert_error(&o, "ERR_WEAK_ALGORITHM");
        assert!(!t.path("no").exists());
    }
    // inspect describes it.
    let o = layersec([
        "inspect",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--from",
        &w.cert("alice"),
        &t.s("m.eml"),
    ])
    .expect(0);
    let r = json(&o);
    assert_eq!(r["verified"], true, "{r}");
    let layers = r["layers"].to_string();
    assert!(
        layers.contains("\"layer\":\"multipart/signed\""),
        "{layers}"
    );
    assert!(layers.contains("\"micalg\":\"sha-256\""), "{layers}");
    assert!(
        layers.contains("\"algorithm\":\"rsaEncryption\""),
        "{layers}"
    );

    // Single settings over the modern default: OAEP-SHA-1, multipart/signed.
    let o = w
        .seal_as_alice(
            "carol",
            &[
                "--key-transport",
                "rsa-oaep-sha1",
                "--signature-format",
                "multipart-signed",
                "--json",
            ],
            &t.s("invoice.xml"),
            &t.s("m2"),
        )
        .expect(0);
    let j = json(&o);
    assert_eq!(j["profile"], "modern");
    assert_eq!(j["cipher"], "aes-256-gcm");
    assert_eq!(j["key_transport"], "rsa-oaep-sha1");
    assert_eq!(j["signature_format"], "multipart-signed");
    let o = w
        .open_as("carol", "alice", &["--json"], &t.s("m2"), &t.s("o3"))
        .expect(0);
    let layers = json(&o)["layers"].to_string();
    assert!(
        layers.contains("authEnvelopedData (aes256-GCM, key transport id-RSAES-OAEP)"),
        "{layers}"
    );
    // multipart/signed is what the modern policy refuses here.
    let o = w
        .open_as(
            "carol",
            "alice",
            &["--profile", "modern"],
            &t.s("m2"),
            &t.s("no"),
        )
        .expect(4);
    assert!(stderr(&o).contains("multipart/signed"), "{}", stderr(&o));

    // EC keys: legacy-as2 needs RSA, and says which key is not.
    let o = layersec([
        "seal",
        "--profile",
        "legacy-as2",
        "--sign-key",
        &w.key("bob"),
        "--sign-cert",
        &w.cert("bob"),
        "--to",
        &w.cert("carol"),
        &t.s("invoice.xml"),
        &t.s("bad"),
    ])
    .expect(2);
    assert!(
        stderr(&o).contains("legacy-as2 needs an RSA identity (this one is EC P-256)"),
        "{}",
        stderr(&o)
    );
    let o = w
        .seal_as_alice(
            "bob",
            &["--profile", "legacy-as2"],
            &t.s("invoice.xml"),
            &t.s("bad"),
        )
        .expect(2);
    assert!(
        stderr(&o).contains("legacy-as2 needs an RSA certificate (the one of CN=bob is EC P-256)"),
        "{}",
        stderr(&o)
    );
    let o = w
        .seal_as_alice(
            "bob",
            &["--key-transport", "rsa-pkcs1v15"],
            &t.s("invoice.xml"),
            &t.s("bad"),
        )
        .expect(2);
    assert!(stderr(&o).contains("RSA PKCS#1 v1.5 key transport needs an RSA certificate"));
    assert!(!t.path("bad").exists());
    // Unknown values are usage errors.
    w.seal_as_alice(
        "carol",
        &["--profile", "as2"],
        &t.s("invoice.xml"),
        &t.s("bad"),
    )
    .expect(2);
}

#[test]
fn several_recipients_and_encrypt_to_self() {
    let w = World::get();
    let t = TempDir::new("multi");
    std::fs::write(t.path("d.txt"), b"for both of you").unwrap();
    w.seal_as_alice(
        "bob",
        &["--to", &w.cert("carol"), "--encrypt-to-self"],
        &t.s("d.txt"),
        &t.s("m"),
    )
    .expect(0);
    for me in ["bob", "carol"] {
        w.open_as(me, "alice", &[], &t.s("m"), &t.s(me)).expect(0);
        assert_eq!(std::fs::read(t.path(me)).unwrap(), b"for both of you");
    }
    // Alice's archive copy: her own (encrypted) key, password from a file.
    std::fs::write(t.path("pw"), format!("{ALICE_PW}\n")).unwrap();
    layersec([
        "open",
        "--key",
        &w.key("alice"),
        "--cert",
        &w.cert("alice"),
        "--pass-file",
        &t.s("pw"),
        "--from",
        &w.cert("alice"),
        &t.s("m"),
        &t.s("self"),
    ])
    .expect(0);
    assert_eq!(std::fs::read(t.path("self")).unwrap(), b"for both of you");
}

// ---------------------------------------------------------------------------------------------
// passwords and key formats

#[test]
fn passwords_from_env_and_file_and_wrong_password_is_7() {
    let t = TempDir::new("passwords");
    let secret = "s3cr3t-Pa55word";
    std::fs::write(t.path("pw"), format!("{secret}\r\nsecond line ignored\n")).unwrap();
    let o = layersec([
        "keygen",
        "--party",
        "frank",
        "--out",
        &t.s("k"),
        "--key-type",
        "ec",
        "--pass-file",
        &t.s("pw"),
        "--json",
    ])
    .expect(0);
    assert_eq!(json(&o)["key_encrypted"], true);
    let key = std::fs::read_to_string(t.path("k/frank.key.pem")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );
    std::fs::write(t.path("doc.txt"), b"payload").unwrap();
    let seal = |pass: &[&str], out: &str| {
        let mut a = vec![
            "seal".to_string(),
            "--sign-key".into(),
            t.s("k/frank.key.pem"),
            "--sign-cert".into(),
            t.s("k/frank.cert.pem"),
            "--to".into(),
            t.s("k/frank.cert.pem"),
        ];
        a.extend(pass.iter().map(|s| s.to_string()));
        a.push(t.s("doc.txt"));
        a.push(t.s(out));
        layersec(a)
    };
    // The same password from a file (first line, CRLF stripped) and from the environment.
    seal(&["--pass-file", &t.s("pw")], "a").expect(0);
    seal(&["--pass-env", "FRANK_PW"], "b")
        .env("FRANK_PW", secret)
        .expect(0);
    assert!(t.path("a").exists() && t.path("b").exists());

    let checks: Vec<(Run, i32, &str)> = vec![
        (
            seal(&["--pass-env", "FRANK_PW"], "c").env("FRANK_PW", "wrong"),
            7,
            "ERR_BAD_PASSWORD",
        ),
        (seal(&[], "c"), 7, "ERR_BAD_PASSWORD"),
        (
            seal(&["--pass-env", "NOT_SET_ANYWHERE_42"], "c"),
            2,
            "ERR_INVALID_ARGUMENT",
        ),
        (seal(&["--pass-file", &t.s("missing")], "c"), 3, "ERR_IO"),
        (
            seal(&["--pass-env", "FRANK_PW", "--pass-file", &t.s("pw")], "c")
                .env("FRANK_PW", secret),
            2,
            "ERR_INVALID_ARGUMENT",
        ),
    ];
    for (run, code, name) in checks {
        let o = run.expect(code);
        assert_error(&o, name);
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(!all.contains(secret), "the password leaked: {all}");
        assert!(!t.path("c").exists());
    }
    // Opening with a wrong password is 7 as well, with --json error on stdout.
    let o = layersec([
        "open",
        "--key",
        &t.s("k/frank.key.pem"),
        "--cert",
        &t.s("k/frank.cert.pem"),
        "--pass-env",
        "FRANK_PW",
        "--from",
        &t.s("k/frank.cert.pem"),
        "--json",
        &t.s("a"),
        &t.s("out"),
    ])
    .env("FRANK_PW", "nope")
    .expect(7);
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_BAD_PASSWORD");
    assert!(!t.path("out").exists());
}

#[test]
fn pkcs12_identity_needs_no_cert_option() {
    use openssl::pkcs12::Pkcs12;
    let w = World::get();
    let t = TempDir::new("p12");
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(w.key("carol")).unwrap()).unwrap();
    let cert = openssl::x509::X509::from_pem(&std::fs::read(w.cert("carol")).unwrap()).unwrap();
    let p12 = Pkcs12::builder()
        .name("carol")
        .pkey(&key)
        .cert(&cert)
        .build2("p12-pass")
        .unwrap();
    std::fs::write(t.path("carol.p12"), p12.to_der().unwrap()).unwrap();
    std::fs::write(t.path("doc.csv"), b"a;b;c\n1;2;3\n").unwrap();
    layersec([
        "seal",
        "--sign-key",
        &t.s("carol.p12"),
        "--pass-env",
        "P12",
        "--to",
        &w.cert("bob"),
        &t.s("doc.csv"),
        &t.s("m"),
    ])
    .env("P12", "p12-pass")
    .expect(0);
    let o = w
        .open_as("bob", "carol", &["--json"], &t.s("m"), &t.s("out"))
        .expect(0);
    assert_eq!(json(&o)["mime_type"], "text/csv");
    // Seal for carol and open with the PKCS#12 file alone.
    w.seal_as_alice("carol", &[], &t.s("doc.csv"), &t.s("m2"))
        .expect(0);
    layersec([
        "open",
        "--key",
        &t.s("carol.p12"),
        "--pass-env",
        "P12",
        "--from",
        &w.cert("alice"),
        &t.s("m2"),
        &t.s("out2"),
    ])
    .env("P12", "p12-pass")
    .expect(0);
    assert_eq!(std::fs::read(t.path("out2")).unwrap(), b"a;b;c\n1;2;3\n");
    let o = layersec([
        "open",
        "--key",
        &t.s("carol.p12"),
        "--pass-env",
        "P12",
        "--from",
        &w.cert("alice"),
        &t.s("m2"),
        &t.s("out3"),
    ])
    .env("P12", "wrong")
    .expect(7);
    assert_error(&o, "ERR_BAD_PASSWORD");
    // A PEM key without --cert is a usage error that names the missing option.
    let o = layersec([
        "open",
        "--key",
        &w.key("bob"),
        "--from",
        &w.cert("alice"),
        &t.s("m2"),
        &t.s("out3"),
    ])
    .expect(2);
    assert!(stderr(&o).contains("--cert"), "{}", stderr(&o));
    assert!(!t.path("out3").exists());
}

// ---------------------------------------------------------------------------------------------
// failures: each class has its exit code, and nothing is written

/// A sealed invoice from alice to bob, in `t`.
fn sealed_for_bob(w: &World, t: &TempDir, doc: &[u8]) -> String {
    std::fs::write(t.path("doc.bin"), doc).unwrap();
    w.seal_as_alice("bob", &[], &t.s("doc.bin"), &t.s("m.p7m"))
        .expect(0);
    t.s("m.p7m")
}

#[test]
fn wrong_recipient_is_exit_4() {
    let w = World::get();
    let t = TempDir::new("wrong-rcpt");
    let m = sealed_for_bob(w, &t, b"only for bob");
    let o = w.open_as("carol", "alice", &[], &m, &t.s("out")).expect(4);
    assert_error(&o, "ERR_NOT_A_RECIPIENT");
    assert!(stderr(&o).contains("not addressed to us"), "{}", stderr(&o));
    assert!(!t.path("out").exists());
    // Without any key.
    let o = layersec(["open", "--from", &w.cert("alice"), &m, &t.s("out")]).expect(4);
    assert_error(&o, "ERR_NOT_A_RECIPIENT");
}

#[test]
fn signer_other_than_from_is_exit_4() {
    let w = World::get();
    let t = TempDir::new("wrong-signer");
    let m = sealed_for_bob(w, &t, b"from alice");
    let o = w
        .open_as("bob", "carol", &["--json"], &m, &t.s("out"))
        .expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    assert!(stderr(&o).contains("CN=alice") && stderr(&o).contains("CN=carol"));
    let j = json(&o);
    assert_eq!(j["error"]["code"], 204);
    assert_eq!(j["error"]["name"], "LS_ERR_SIGNER_MISMATCH");
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expected CN=carol"));
    assert!(!t.path("out").exists());
}

#[test]
fn tampered_message_is_exit_4() {
    let w = World::get();
    let t = TempDir::new("tampered");
    let m = sealed_for_bob(w, &t, &noise(20_000, 7));
    let mut bytes = std::fs::read(&m).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(t.path("bad.p7m"), &bytes).unwrap();
    let o = w
        .open_as("bob", "alice", &[], &t.s("bad.p7m"), &t.s("out"))
        .expect(4);
    assert_error(&o, "ERR_DECRYPT_FAILED");
    assert!(!t.path("out").exists());
}

#[test]
fn tampered_signed_content_is_exit_4() {
    // Flip a byte of the document inside a (signed, not encrypted) SignedData built by OpenSSL.
    let w = World::get();
    let t = TempDir::new("tampered-sig");
    let (key, cert) = load_pair(&w.key("carol"), &w.cert("carol"));
    let entity = b"Content-Type: text/plain\r\n\r\nPay 100 EUR to ACME".to_vec();
    let mut der = openssl::cms::CmsContentInfo::sign(
        Some(&cert),
        Some(&key),
        None,
        Some(&entity),
        openssl::cms::CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    w.open_as("bob", "carol", &[], &write(&t, "ok.p7m", &der), &t.s("ok"))
        .expect(0);
    assert_eq!(std::fs::read(t.path("ok")).unwrap(), b"Pay 100 EUR to ACME");
    let pos = ls_core::bytes::find(&der, b"100").unwrap();
    der[pos] = b'9';
    let o = w
        .open_as(
            "bob",
            "carol",
            &[],
            &write(&t, "bad.p7m", &der),
            &t.s("out"),
        )
        .expect(4);
    assert_error(&o, "ERR_DIGEST_MISMATCH");
    assert!(!t.path("out").exists());
}

#[test]
fn truncated_and_garbage_input_is_exit_6() {
    let w = World::get();
    let t = TempDir::new("garbage");
    let m = sealed_for_bob(w, &t, &invoice());
    let bytes = std::fs::read(&m).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("half", bytes[..bytes.len() / 2].to_vec(), "ERR_TRUNCATED"),
        (
            "garbage",
            b"this is not a sealed message at all".to_vec(),
            "ERR_MALFORMED",
        ),
        ("empty", Vec::new(), "ERR_TRUNCATED"),
        ("binary", noise(3000, 99), "ERR_MALFORMED"),
    ];
    for (name, data, code) in cases {
        let input = write(&t, name, &data);
        let o = w
            .open_as("bob", "alice", &[], &input, &t.s("out"))
            .expect(6);
        assert_error(&o, code);
        assert!(!t.path("out").exists(), "{name}");
    }
}

#[test]
fn max_size_is_enforced_with_exit_6() {
    let w = World::get();
    let t = TempDir::new("max-size");
    let m = sealed_for_bob(w, &t, &invoice());
    let o = w
        .open_as("bob", "alice", &["--max-size", "1K"], &m, &t.s("out"))
        .expect(6);
    assert_error(&o, "ERR_TOO_LARGE");
    assert!(!t.path("out").exists());
    w.open_as("bob", "alice", &["--max-size", "10M"], &m, &t.s("out"))
        .expect(0);
    w.open_as("bob", "alice", &["--max-size", "lots"], &m, &t.s("out2"))
        .expect(2);
}

#[test]
fn missing_files_are_exit_3() {
    let w = World::get();
    let t = TempDir::new("missing");
    let m = sealed_for_bob(w, &t, b"x");
    let o = w
        .open_as("bob", "alice", &[], &t.s("nope.p7m"), &t.s("out"))
        .expect(3);
    assert_error(&o, "ERR_IO");
    assert!(stderr(&o).contains("nope.p7m"));
    let o = w
        .seal_as_alice("bob", &[], &t.s("nope.xml"), &t.s("out"))
        .expect(3);
    assert_error(&o, "ERR_IO");
    w.seal_as_alice(
        "bob",
        &["--to", &t.s("nobody.pem")],
        &t.s("doc.bin"),
        &t.s("out"),
    )
    .expect(3);
    layersec([
        "open",
        "--key",
        &t.s("nokey.pem"),
        "--cert",
        &w.cert("bob"),
        "--from",
        &w.cert("alice"),
        &m,
        &t.s("out"),
    ])
    .expect(3);
    layersec([
        "open",
        "--partners",
        &t.s("no-such-dir"),
        "--key",
        &w.key("bob"),
        "--cert",
        &w.cert("bob"),
        &m,
        &t.s("out"),
    ])
    .expect(3);
    // An output folder that does not exist.
    let o = w
        .open_as("bob", "alice", &[], &m, &t.s("no/such/dir/out"))
        .expect(3);
    assert_error(&o, "ERR_IO");
    assert!(!t.path("out").exists());
    layersec(["inspect", &t.s("nope.p7m")]).expect(3);
}

#[test]
fn nothing_written_to_out_on_failure() {
    let w = World::get();
    let t = TempDir::new("no-partial");
    let m = sealed_for_bob(w, &t, &invoice());
    // An existing OUT is left untouched by a failed open, and no temporary file remains.
    std::fs::write(t.path("out.xml"), b"previous content").unwrap();
    w.open_as("bob", "carol", &[], &m, &t.s("out.xml"))
        .expect(4);
    assert_eq!(
        std::fs::read(t.path("out.xml")).unwrap(),
        b"previous content"
    );
    let o = w.open_as("bob", "alice", &[], &m, "-").stdin(b"").expect(0);
    assert_eq!(o.stdout, invoice(), "reading the file, not stdin");
    // With OUT `-`, a failure writes nothing to stdout.
    let o = w.open_as("bob", "carol", &[], &m, "-").expect(4);
    assert!(o.stdout.is_empty());
    // A failed seal (expired recipient would be 5; here: a recipient that is not a certificate).
    write(
        &t,
        "not-a-cert.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    std::fs::write(t.path("sealed.p7m"), b"old sealed").unwrap();
    let o = w
        .seal_as_alice(
            "bob",
            &["--to", &t.s("not-a-cert.pem")],
            &t.s("doc.bin"),
            &t.s("sealed.p7m"),
        )
        .expect(5);
    assert_error(&o, "ERR_CERT_INVALID");
    assert_eq!(std::fs::read(t.path("sealed.p7m")).unwrap(), b"old sealed");
    // A successful open replaces OUT atomically and keeps its permissions.
    std::fs::set_permissions(t.path("out.xml"), std::fs::Permissions::from_mode(0o640)).unwrap();
    w.open_as("bob", "alice", &[], &m, &t.s("out.xml"))
        .expect(0);
    assert_eq!(std::fs::read(t.path("out.xml")).unwrap(), invoice());
    let mode = std::fs::metadata(t.path("out.xml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let left = extra_files(
        &t.0,
        &[
            "m.p7m",
            "doc.bin",
            "out.xml",
            "not-a-cert.pem",
            "sealed.p7m",
        ],
    );
    assert!(left.is_empty(), "leftovers: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// certificates and trust

fn load_pair(
    key: &str,
    cert: &str,
) -> (
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    (
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(key).unwrap()).unwrap(),
        openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap(),
    )
}

fn write(t: &TempDir, name: &str, data: &[u8]) -> String {
    std::fs::write(t.path(name), data).unwrap();
    t.s(name)
}

/// An RSA key and a self-signed party certificate valid from `not_before` to `not_after`
/// (ASN.1 GeneralizedTime text, e.g. "20200101000000Z"): OpenSSL's command line cannot make one
/// that has already expired.
fn cert_with_validity(
    cn: &str,
    not_before: &str,
    not_after: &str,
) -> (
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    let at = |t: &str| ls_core::time::parse_asn1_time(0x18, t.as_bytes()).unwrap();
    let g = ls_core::CertificateBuilder::new(cn, ls_core::CertPurpose::Party)
        .key_type(ls_core::KeyType::Rsa(2048))
        .validity(at(not_before), at(not_after))
        .build(None)
        .unwrap();
    (
        openssl::pkey::PKey::private_key_from_pem(&g.key_pem).unwrap(),
        g.identity.certificate().x509().clone(),
    )
}

/// What an OpenSSL-based partner sends: a MIME entity, signed (CMS), wrapped as S/MIME, then
/// encrypted for `rcpt` (AES-256-CBC, RSA key transport). Unsigned when `signer` is `None`.
fn openssl_sealed(
    entity: &[u8],
    signer: Option<(
        &openssl::pkey::PKey<openssl::pkey::Private>,
        &openssl::x509::X509,
    )>,
    rcpt: &openssl::x509::X509,
) -> Vec<u8> {
    use openssl::cms::{CMSOptions, CmsContentInfo};
    let inner = match signer {
        Some((key, cert)) => {
            let sd = CmsContentInfo::sign(
                Some(cert),
                Some(key),
                None,
                Some(entity),
                CMSOptions::BINARY,
            )
            .unwrap()
            .to_der()
            .unwrap();
            let mut e = b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\
                Content-Transfer-Encoding: binary\r\n\r\n"
                .to_vec();
            e.extend_from_slice(&sd);
            e
        }
        None => entity.to_vec(),
    };
    let mut certs = openssl::stack::Stack::new().unwrap();
    certs.push(rcpt.clone()).unwrap();
    CmsContentInfo::encrypt(
        &certs,
        &inner,
        openssl::symm::Cipher::aes_256_cbc(),
        CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap()
}

#[test]
fn expired_sender_certificate_is_exit_5() {
    let w = World::get();
    let t = TempDir::new("expired");
    let (key, cert) = cert_with_validity("old-partner", "20200101000000Z", "20210101000000Z");
    let cert_path = write(&t, "old.pem", &cert.to_pem().unwrap());
    let key_path = write(&t, "old.key", &key.private_key_to_pem_pkcs8().unwrap());
    let (_, carol_cert) = load_pair(&w.key("carol"), &w.cert("carol"));
    let entity = b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"old.txt\"\r\n\r\nhello from 2020";
    let m = write(
        &t,
        "m.p7m",
        &openssl_sealed(entity, Some((&key, &cert)), &carol_cert),
    );
    let (carol_key, carol_crt) = (w.key("carol"), w.cert("carol"));
    let run = |extra: &[&str], out: &str| {
        let mut a = vec![
            "open", "--key", &carol_key, "--cert", &carol_crt, "--from", &cert_path,
        ];
        a.extend_from_slice(extra);
        let out = t.s(out);
        a.extend_from_slice(&[&m, &out]);
        layersec(a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let o = run(&["--json"], "out").expect(5);
    assert_error(&o, "ERR_CERT_EXPIRED");
    assert!(stderr(&o).contains("CN=old-partner") && stderr(&o).contains("2021-01-01"));
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_CERT_EXPIRED");
    assert!(!t.path("out").exists());
    // Accepted on request, and the OpenSSL-made message opens byte-exact.
    let o = run(&["--allow-expired", "--json"], "out").expect(0);
    assert_eq!(std::fs::read(t.path("out")).unwrap(), b"hello from 2020");
    assert_eq!(json(&o)["filename"], "old.txt");
    // inspect reports but does not fail on expiry alone.
    let o = layersec([
        "inspect",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--from",
        &cert_path,
        &m,
    ])
    .expect(0);
    assert_eq!(json(&o)["verified"], true);
    // We cannot seal with an expired certificate of our own either.
    let o = layersec([
        "seal",
        "--sign-key",
        &key_path,
        "--sign-cert",
        &cert_path,
        "--to",
        &w.cert("bob"),
        &m,
        &t.s("never"),
    ])
    .expect(5);
    assert_error(&o, "ERR_CERT_EXPIRED");
    assert!(!t.path("never").exists());
    // Nor for an expired recipient.
    let o = w
        .seal_as_alice("bob", &["--to", &cert_path], &m, &t.s("never"))
        .expect(5);
    assert_error(&o, "ERR_CERT_EXPIRED");
}

#[test]
fn not_yet_valid_sender_is_exit_5() {
    let w = World::get();
    let t = TempDir::new("future");
    let (key, cert) = cert_with_validity("future-partner", "20990101000000Z", "21000101000000Z");
    let cert_path = write(&t, "future.pem", &cert.to_pem().unwrap());
    let (_, carol_cert) = load_pair(&w.key("carol"), &w.cert("carol"));
    let m = write(
        &t,
        "m.p7m",
        &openssl_sealed(
            b"Content-Type: text/plain\r\n\r\nearly",
            Some((&key, &cert)),
            &carol_cert,
        ),
    );
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--from",
        &cert_path,
        &m,
        &t.s("out"),
    ])
    .expect(5);
    assert_error(&o, "ERR_CERT_NOT_YET_VALID");
}

#[test]
fn partners_folder_accepts_known_and_rejects_unknown_signers() {
    let w = World::get();
    let t = TempDir::new("partners");
    let m = sealed_for_bob(w, &t, b"hello partners");
    std::fs::create_dir_all(t.path("known")).unwrap();
    std::fs::copy(w.cert("alice"), t.path("known/alice.pem")).unwrap();
    std::fs::copy(w.cert("carol"), t.path("known/carol.pem")).unwrap();
    std::fs::create_dir_all(t.path("strangers")).unwrap();
    std::fs::copy(w.cert("carol"), t.path("strangers/carol.pem")).unwrap();
    std::fs::create_dir_all(t.path("empty")).unwrap();
    let open = |dir: &str, out: &str| {
        layersec([
            "open",
            "--key",
            &w.key("bob"),
            "--cert",
            &w.cert("bob"),
            "--partners",
            &t.s(dir),
            "--json",
            &m,
            &t.s(out),
        ])
    };
    let o = open("known", "out").expect(0);
    assert_eq!(json(&o)["signer"]["subject"], "CN=alice");
    assert_eq!(std::fs::read(t.path("out")).unwrap(), b"hello partners");
    let o = open("strangers", "out2").expect(5);
    assert_error(&o, "ERR_UNKNOWN_SIGNER");
    assert!(!t.path("out2").exists());
    let o = open("empty", "out2").expect(2);
    assert!(stderr(&o).contains("no certificates"), "{}", stderr(&o));
    // --from and --partners exclude each other.
    layersec([
        "open",
        "--from",
        &w.cert("alice"),
        "--partners",
        &t.s("known"),
        "--key",
        &w.key("bob"),
        "--cert",
        &w.cert("bob"),
        &m,
        &t.s("out3"),
    ])
    .expect(2);
}

// ---------------------------------------------------------------------------------------------
// verify-receipt

/// alice seals for bob asking for a receipt (content identifier `id`); bob opens it and signs
/// the receipt. Returns the paths of the original SignedData and of the receipt.
fn receipted(w: &World, t: &TempDir, id: &str) -> (String, String) {
    use ls_core::cms::{receipt, seal_with_evidence};
    let alice = ls_core::Identity::load(
        w.key("alice"),
        Some(Path::new(&w.cert("alice"))),
        Some(ALICE_PW),
    )
    .unwrap();
    let bob = ls_core::Identity::load(w.key("bob"), Some(Path::new(&w.cert("bob"))), None).unwrap();
    let s = seal_with_evidence(
        &invoice(),
        &alice,
        &[bob.certificate().clone()],
        &ls_core::SealOptions {
            receipt_request: Some(id.as_bytes().to_vec()),
            ..Default::default()
        },
    )
    .unwrap();
    let o = ls_core::open(
        &s.sealed,
        &ls_core::OpenOptions {
            recipient: Some(&bob),
            sender: Some(alice.certificate()),
            ..Default::default()
        },
    )
    .unwrap();
    let r = receipt::sign_receipt(&o.signed_data.unwrap(), &bob, &Default::default()).unwrap();
    (
        write(t, &format!("{id}.signed.p7m"), &s.signed_data),
        write(t, &format!("{id}.receipt.p7m"), &r),
    )
}

#[test]
fn verify_receipt_checks_a_receipt_offline() {
    let w = World::get();
    let t = TempDir::new("verify-receipt");
    let (original, receipt) = receipted(w, &t, "MSG-1@acme");
    let bob = w.cert("bob");
    let args = |r: &str, o: &str, partner: &str| {
        vec![
            "verify-receipt".to_string(),
            "--receipt".into(),
            r.into(),
            "--original".into(),
            o.into(),
            "--partner".into(),
            partner.into(),
        ]
    };

    let o = layersec(args(&receipt, &original, &bob)).expect(0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("receipt:             verified")
            && text.contains("signer:              CN=bob")
            && text.contains("content identifier:  4d53472d314061636d65 (MSG-1@acme)"),
        "{text}"
    );

    let mut a = args(&receipt, &original, &bob);
    a.push("--json".into());
    let v = json(&layersec(a).expect(0));
    assert_eq!(v["verified"], true);
    assert_eq!(v["signer_subject"], "CN=bob");
    assert_eq!(v["content_identifier"], "4d53472d314061636d65");
    assert!(is_iso8601(v["signing_time"].as_str().unwrap()), "{v}");
    let fp = ls_core::Certificate::load(&bob)
        .unwrap()
        .sha256_fingerprint();
    assert_eq!(v["signer_sha256"], fp);

    // The receipt from stdin, and a second certificate of the partner given too.
    let o = layersec({
        let mut a = args("-", &original, &w.cert("carol"));
        a.extend(["--partner".into(), bob.clone()]);
        a
    })
    .stdin(&std::fs::read(&receipt).unwrap())
    .expect(0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("CN=bob"));

    // Signed by someone else than the partner named: exit 4.
    let o = layersec(args(&receipt, &original, &w.cert("carol"))).expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    // A receipt for another message: exit 4, with --json the error object.
    let (other, _) = receipted(w, &t, "MSG-2@acme");
    let mut a = args(&receipt, &other, &bob);
    a.push("--json".into());
    let o = layersec(a).expect(4);
    assert_error(&o, "ERR_RECEIPT_MISMATCH");
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_RECEIPT_MISMATCH");
    assert_eq!(json(&o)["error"]["exit_code"], 4);
    // The receipt altered: exit 4.
    let mut bad = std::fs::read(&receipt).unwrap();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let bad = write(&t, "bad.p7m", &bad);
    let o = layersec(args(&bad, &original, &bob)).expect(4);
    assert_error(&o, "ERR_BAD_SIGNATURE");
    // Not a receipt at all (the original given as the receipt), garbage, truncation: exit 6.
    let o = layersec(args(&original, &original, &bob)).expect(6);
    assert_error(&o, "ERR_MALFORMED");
    let junk = write(&t, "junk.p7m", b"not a receipt");
    layersec(args(&junk, &original, &bob)).expect(6);
    let cut = std::fs::read(&receipt).unwrap();
    let cut = write(&t, "cut.p7m", &cut[..cut.len() / 2]);
    let o = layersec(args(&cut, &original, &bob)).expect(6);
    assert_error(&o, "ERR_TRUNCATED");
    // inspect describes the receipt (and verifies its signature).
    let v = json(&layersec(["inspect", "--from", &bob, &receipt]).expect(0));
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["layers"][1]["layer"], "receipt", "{v}");
    assert_eq!(v["layers"][1]["content_identifier"], "4d53472d314061636d65");
    // Files missing: exit 3; no --partner, or both from stdin: exit 2.
    layersec(args(&t.s("nope.p7m"), &original, &bob)).expect(3);
    layersec(args(&receipt, &original, &t.s("nope.pem"))).expect(3);
    layersec([
        "verify-receipt",
        "--receipt",
        &receipt,
        "--original",
        &original,
    ])
    .expect(2);
    layersec(args("-", "-", &bob)).expect(2);

    // --allow-expired (old evidence, whose certificate has expired since: see ls-core's
    // receipt tests) says whether the certificate is valid now.
    let v = json(
        &layersec({
            let mut a = args(&receipt, &original, &bob);
            a.extend(["--allow-expired".into(), "--json".into()]);
            a
        })
        .expect(0),
    );
    assert_eq!(v["certificate_now"], "valid");
}

#[test]
fn unsigned_messages_need_allow_unsigned() {
    let w = World::get();
    let t = TempDir::new("unsigned");
    let (_, carol_cert) = load_pair(&w.key("carol"), &w.cert("carol"));
    let m = write(
        &t,
        "unsigned.p7m",
        &openssl_sealed(
            b"Content-Type: text/plain\r\n\r\nanonymous",
            None,
            &carol_cert,
        ),
    );
    // Fail closed: no --from/--partners and no --allow-unsigned is a usage error.
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        &m,
        &t.s("out"),
    ])
    .expect(2);
    assert!(stderr(&o).contains("--from"), "{}", stderr(&o));
    let o = w.open_as("carol", "alice", &[], &m, &t.s("out")).expect(4);
    assert_error(&o, "ERR_UNSIGNED");
    assert!(!t.path("out").exists());
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--allow-unsigned",
        "--json",
        &m,
        &t.s("out"),
    ])
    .expect(0);
    assert_eq!(json(&o)["signer"], Value::Null);
    assert_eq!(json(&o)["signing_time"], Value::Null);
    assert_eq!(std::fs::read(t.path("out")).unwrap(), b"anonymous");
    // --allow-unsigned does not accept a signed message without knowing the signer.
    let signed = sealed_for_bob(w, &t, b"signed");
    layersec([
        "open",
        "--key",
        &w.key("bob"),
        "--cert",
        &w.cert("bob"),
        "--allow-unsigned",
        &signed,
        &t.s("out2"),
    ])
    .expect(2);
    assert!(!t.path("out2").exists());
    // inspect with --from fails on an unsigned message: the certificate verifies nothing.
    let o = layersec([
        "inspect",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--from",
        &w.cert("alice"),
        &m,
    ])
    .expect(4);
    assert_eq!(json(&o)["signed"], false, "{}", json(&o));
}

#[test]
fn hostile_file_name_is_neither_used_nor_printed_raw() {
    let w = World::get();
    let t = TempDir::new("hostile-name");
    let (_, carol_cert) = load_pair(&w.key("carol"), &w.cert("carol"));
    let m = write(
        &t,
        "m.p7m",
        &openssl_sealed(
            b"Content-Type: text/plain\r\nContent-Disposition: attachment; \
              filename=\"../../\x1b[2J\x1b]0;pwned\x07evil\xe2\x80\xaetxt.sh\"\r\n\r\nbody",
            None,
            &carol_cert,
        ),
    );
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--allow-unsigned",
        &m,
        &t.s("out"),
    ])
    .expect(0);
    let e = stderr(&o);
    assert!(
        !e.contains('\x1b') && !e.contains('\x07') && !e.contains('\u{202e}'),
        "{e:?}"
    );
    assert!(e.contains("evil"), "{e}");
    assert_eq!(std::fs::read(t.path("out")).unwrap(), b"body");
    let o = layersec([
        "open",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        "--allow-unsigned",
        "--json",
        &m,
        &t.s("out2"),
    ])
    .expect(0);
    let j = json(&o);
    assert!(j["filename"].as_str().unwrap().starts_with("../../\x1b"));
    let safe = j["safe_filename"].as_str().unwrap();
    assert!(
        !safe.contains('/') && !safe.chars().any(char::is_control),
        "{safe:?}"
    );
    assert!(extra_files(&t.0, &["m.p7m", "out", "out2"]).is_empty());
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_reports_layers_recipients_signers() {
    let w = World::get();
    let t = TempDir::new("inspect");
    let m = sealed_for_bob(w, &t, &invoice());
    // No keys: the envelope only.
    let o = layersec(["inspect", &m]).expect(0);
    let j = json(&o);
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers[0]["layer"], "authEnvelopedData");
    let r = &layers[0]["recipients"][0];
    assert_eq!(r["type"], "key agreement");
    assert!(r["ids"][0].as_str().unwrap().contains("CN=bob"), "{r}");
    assert_eq!(j["complete"], false);

    // With bob's key and the right sender: every layer, verified.
    let o = layersec([
        "inspect",
        "--key",
        &w.key("bob"),
        "--cert",
        &w.cert("bob"),
        "--from",
        &w.cert("alice"),
        &m,
    ])
    .expect(0);
    let j = json(&o);
    assert_eq!(j["verified"], true);
    assert_eq!(j["complete"], true);
    assert_eq!(j["signed"], true);
    assert_eq!(j["encrypted"], true);
    let layers = j["layers"].as_array().unwrap();
    let sd = layers
        .iter()
        .find(|l| l["layer"] == "signedData")
        .expect("signedData layer");
    assert_eq!(sd["signers"][0]["subject"], "CN=alice");
    assert_eq!(sd["verified"], true);
    let doc = layers.last().unwrap();
    assert_eq!(doc["layer"], "document");
    assert_eq!(doc["size"], invoice().len());

    // From stdin too.
    let o = layersec(["inspect", "-"])
        .stdin(&std::fs::read(&m).unwrap())
        .expect(0);
    assert_eq!(json(&o)["layers"][0]["layer"], "authEnvelopedData");
}

#[test]
fn inspect_fails_with_wrong_from() {
    let w = World::get();
    let t = TempDir::new("inspect-wrong");
    let m = sealed_for_bob(w, &t, b"x");
    let o = layersec([
        "inspect",
        "--key",
        &w.key("bob"),
        "--cert",
        &w.cert("bob"),
        "--from",
        &w.cert("carol"),
        &m,
    ])
    .expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    let j = json(&o);
    assert_eq!(j["verified"], false, "{j}");
    let sd = j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "signedData")
        .unwrap()
        .clone();
    assert_eq!(sd["verification_error"]["name"], "LS_ERR_SIGNER_MISMATCH");
    // The one error object: code, name, family, message, transient.
    assert_eq!(sd["verification_error"]["code"], 204);
    assert_eq!(sd["verification_error"]["family"], "crypto");
    assert_eq!(sd["verification_error"]["transient"], false);
    // Not our message: the walk ends in an error.
    let o = layersec([
        "inspect",
        "--key",
        &w.key("carol"),
        "--cert",
        &w.cert("carol"),
        &m,
    ])
    .expect(4);
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_NOT_A_RECIPIENT");
    // Garbage: a format error, still JSON on stdout.
    let g = write(&t, "g", b"garbage garbage");
    let o = layersec(["inspect", &g]).expect(6);
    let e = &json(&o)["error"];
    assert_eq!(e["name"], "LS_ERR_MALFORMED");
    assert_eq!(e["code"], 400);
    assert_eq!(e["family"], "format");
    // Inside the report: no exit status (the command's is the process's).
    assert!(e.get("exit_code").is_none(), "{e}");
    // A missing file: the error object on stdout.
    let o = layersec(["inspect", &t.s("missing")]).expect(3);
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_IO");
    assert_eq!(json(&o)["error"]["exit_code"], 3);
}

// ---------------------------------------------------------------------------------------------
// the interface itself

#[test]
fn usage_errors_are_exit_2_with_json_when_asked() {
    let w = World::get();
    let t = TempDir::new("usage");
    let o = layersec(["open", "--json", "--no-such-option", "a", "b"]).expect(2);
    let j = json(&o);
    assert_eq!(j["error"]["code"], 101);
    assert_eq!(j["error"]["name"], "LS_ERR_INVALID_ARGUMENT");
    assert_eq!(j["error"]["family"], "argument");
    assert_eq!(j["error"]["transient"], false);
    assert_eq!(j["error"]["exit_code"], 2);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--no-such-option"));
    assert_error(&o, "ERR_INVALID_ARGUMENT");
    layersec(["seal", "in"]).expect(2);
    layersec(["frobnicate"]).expect(2);
    layersec::<[&str; 0], &str>([]).expect(2);
    // seal needs a recipient.
    std::fs::write(t.path("d"), b"d").unwrap();
    let o = layersec([
        "seal",
        "--sign-key",
        &w.key("bob"),
        "--sign-cert",
        &w.cert("bob"),
        &t.s("d"),
        &t.s("o"),
    ])
    .expect(2);
    assert!(stderr(&o).contains("--to"));
    // Errors without --json leave stdout empty.
    assert!(o.stdout.is_empty());
}

#[test]
fn help_and_version() {
    let o = layersec(["--version"]).expect(0);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim(),
        format!("layersec {}", env!("CARGO_PKG_VERSION"))
    );
    let o = layersec(["--help"]).expect(0);
    let h = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "Exit codes:",
        "  4   cryptographic",
        "  7   wrong password",
        "--pass-env",
        "Examples:",
    ] {
        assert!(h.contains(needle), "--help lacks {needle:?}");
    }
    for needle in [
        "  9   the service",
        "  10  refused",
        "  11  the client's state",
    ] {
        assert!(h.contains(needle), "--help lacks {needle:?}");
    }
    for cmd in [
        "keygen",
        "seal",
        "open",
        "inspect",
        "verify-receipt",
        "init",
        "send",
        "poll",
        "run",
        "status",
    ] {
        let o = layersec([cmd, "--help"]).expect(0);
        let h = String::from_utf8(o.stdout).unwrap();
        assert!(h.contains("Example"), "{cmd} --help has no example");
        assert!(h.contains("Exit codes:"), "{cmd} --help has no exit codes");
        let o = layersec([cmd, "-h"]).expect(0);
        assert!(String::from_utf8(o.stdout).unwrap().contains("Example"));
    }
}

// ---------------------------------------------------------------------------------------------
// inspect: AS4 messages

/// `../shared/fixtures/as4` beside the checkout (or `$LS_FIXTURES/as4`); `None` after a
/// visible skip (a failure under `LS_REQUIRE_FIXTURES=1`) when absent.
fn as4_fixtures() -> Option<PathBuf> {
    ls_tests::fixture_dir("as4")
}

fn p(dir: &Path, rel: &str) -> String {
    dir.join(rel).to_str().unwrap().to_string()
}

/// The `result` of each entry of `verification.references`.
fn reference_results(j: &Value) -> Vec<String> {
    j["verification"]["references"]
        .as_array()
        .unwrap_or_else(|| panic!("no verification.references in {j}"))
        .iter()
        .map(|r| r["result"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn inspect_as4_receipt_verifies_with_an_expired_certificate() {
    let Some(dir) = as4_fixtures() else { return };
    let o = layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/helger.signer.cert.pem"),
        &p(&dir, "derived/helger.soap.xml"),
    ])
    .expect(0);
    let j = json(&o);
    assert_eq!(j["kind"], "as4");
    assert_eq!(j["input"], "soap");
    assert_eq!(j["soap_version"], "1.2");
    assert_eq!(j["error"], Value::Null);
    let receipt = &j["messaging"]["signals"][0];
    assert_eq!(receipt["type"], "receipt");
    assert_eq!(
        receipt["ref_to_message_id"],
        "3b3775c9-e88d-47f9-be5a-8e045ca2bc07@phase4"
    );
    assert_eq!(receipt["non_repudiation"].as_array().unwrap().len(), 3);
    let sig = &j["security"]["signature"];
    assert_eq!(
        sig["signature_method"],
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );
    assert_eq!(
        sig["canonicalization"],
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    );
    assert_eq!(sig["key_info"]["type"], "token_reference");
    assert!(sig["signer"]["subject"]
        .as_str()
        .unwrap()
        .contains("CN=POP000306"));
    assert_eq!(
        j["security"]["tokens"][0]["certificates"][0]["expired"],
        true
    );
    let v = &j["verification"];
    assert_eq!(reference_results(&j), ["ok", "ok"]);
    assert_eq!(v["references"][0]["target"], "eb:Messaging");
    assert_eq!(v["references"][1]["target"], "S12:Body");
    assert_eq!(v["signature_value"], "ok");
    assert_eq!(v["signer_matches"], true);
    assert_eq!(v["certificate_expired"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(j["verified"], true);
    // The raw HTTP capture of the same receipt reads the same (headers skipped).
    let o = layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/helger.signer.cert.pem"),
        &p(&dir, "phase4/verify/helger.as4in"),
    ])
    .expect(0);
    let j = json(&o);
    assert_eq!(j["input"], "http");
    assert!(j["content_type"]
        .as_str()
        .unwrap()
        .starts_with("application/soap+xml"));
    assert_eq!(j["verified"], true);
}

#[test]
fn inspect_as4_names_the_altered_messaging_header() {
    let Some(dir) = as4_fixtures() else { return };
    // Holodeck receipt whose eb:Messaging attribute was edited after signing.
    let o = layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/dataport1-mustunderstand.signer.cert.pem"),
        &p(&dir, "phase4/verify/dataport1.as4in"),
    ])
    .expect(4);
    assert_error(&o, "ERR_DIGEST_MISMATCH");
    let j = json(&o);
    let refs = j["verification"]["references"].as_array().unwrap();
    let messaging = refs
        .iter()
        .find(|r| r["target"].as_str().unwrap_or("").ends_with(":Messaging"))
        .unwrap_or_else(|| panic!("no Messaging reference: {j}"));
    assert_eq!(messaging["result"], "digest mismatch");
    let body = refs
        .iter()
        .find(|r| r["target"].as_str().unwrap_or("").ends_with(":Body"))
        .unwrap();
    assert_eq!(body["result"], "ok");
    assert_eq!(j["verification"]["error"]["name"], "LS_ERR_DIGEST_MISMATCH");
    assert_eq!(j["verification"]["signer_matches"], true);
    assert_eq!(j["verified"], false);
    // The header is still described, as received.
    assert_eq!(j["messaging"]["signals"][0]["type"], "receipt");
    assert_eq!(j["error"], Value::Null);
    // The untampered original verifies.
    layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/dataport1-mustunderstand.signer.cert.pem"),
        &p(&dir, "phase4/verify/dataport1-mustunderstand.as4in"),
    ])
    .expect(0);
}

/// The Content-Type the Python `as4` package sent its message with (kept in a JSON file).
fn as4py_content_type(dir: &Path) -> String {
    let h: Value = serde_json::from_slice(
        &std::fs::read(dir.join("as4-pypi-generated/as4py-usermessage.headers.json")).unwrap(),
    )
    .unwrap();
    h["Content-Type"].as_str().unwrap().to_string()
}

#[test]
fn inspect_as4_python_message_decrypted_and_verified() {
    let Some(dir) = as4_fixtures() else { return };
    let ct = as4py_content_type(&dir);
    let o = layersec([
        "inspect",
        "--content-type",
        &ct,
        "--verify-with",
        &p(&dir, "as4-pypi-generated/PTE000001.cert.pem"),
        "--decrypt-with",
        &p(&dir, "as4-pypi-generated/PTE000002.key.pem"),
        "--cert",
        &p(&dir, "as4-pypi-generated/PTE000002.cert.pem"),
        &p(&dir, "as4-pypi-generated/as4py-usermessage.mime"),
    ])
    .expect(0);
    let j = json(&o);
    assert_eq!(j["input"], "body");
    assert_eq!(j["content_type"], ct.as_str());
    let um = &j["messaging"]["user_messages"][0];
    assert_eq!(um["from"]["party_ids"][0]["value"], "PTE000001");
    assert_eq!(
        um["from"]["party_ids"][0]["type"],
        "urn:fdc:peppol.eu:2017:identifiers:ap"
    );
    assert_eq!(um["to"]["party_ids"][0]["value"], "PTE000002");
    assert_eq!(
        um["service"]["value"],
        "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    );
    assert_eq!(um["message_properties"][0]["name"], "originalSender");
    let part = &j["parts"][0];
    let cid = part["content_id"].as_str().unwrap();
    assert_eq!(um["payloads"][0]["href"], format!("cid:{cid}"));
    assert_eq!(part["encrypted"], true);
    assert_eq!(part["signed"], true);
    assert_eq!(part["compression"], "application/gzip");
    let (size, dec, unz) = (
        part["size"].as_u64().unwrap(),
        part["decrypted_size"].as_u64().unwrap(),
        part["decompressed_size"].as_u64().unwrap(),
    );
    assert_eq!(size, dec + 28, "AES-GCM IV and tag");
    assert!(unz > dec, "{unz} {dec}");
    assert_eq!(j["decryption"]["decrypted"][0], cid);
    let ek = &j["security"]["encrypted_keys"][0];
    assert_eq!(ek["algorithm"], "http://www.w3.org/2009/xmlenc11#rsa-oaep");
    assert_eq!(ek["for_us"], true);
    assert_eq!(ek["parts"][0], cid);
    assert_eq!(reference_results(&j), ["ok", "ok", "ok"]);
    assert_eq!(j["verification"]["references"][2]["target"], "attachment");
    assert_eq!(j["verification"]["signature_value"], "ok");
    assert_eq!(j["verification"]["certificate_expired"], false);
    assert_eq!(j["verified"], true);
    assert_eq!(j["warnings"].as_array().unwrap().len(), 0, "{j}");
}

#[test]
fn inspect_as4_python_message_without_the_key() {
    let Some(dir) = as4_fixtures() else { return };
    let ct = as4py_content_type(&dir);
    let msg = p(&dir, "as4-pypi-generated/as4py-usermessage.mime");
    let o = layersec([
        "inspect",
        "--content-type",
        &ct,
        "--verify-with",
        &p(&dir, "as4-pypi-generated/PTE000001.cert.pem"),
        &msg,
    ])
    .expect(0);
    let j = json(&o);
    assert_eq!(
        reference_results(&j),
        ["ok", "ok", "not checked: attachment encrypted and no key"]
    );
    assert_eq!(j["verification"]["signature_value"], "ok");
    assert_eq!(j["verified"], Value::Null);
    assert_eq!(j["parts"][0]["decrypted_size"], Value::Null);
    assert!(stderr(&o).contains("not every signed reference could be checked"));

    // The wrong partner certificate: the signature is someone else's.
    let o = layersec([
        "inspect",
        "--content-type",
        &ct,
        "--verify-with",
        &p(&dir, "as4-pypi-generated/PTE000002.cert.pem"),
        &msg,
    ])
    .expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    let j = json(&o);
    assert_eq!(j["verification"]["signer_matches"], false);
    assert_eq!(j["verified"], false);
    // The wrong key: not a recipient (and the attachment stays unchecked).
    let o = layersec([
        "inspect",
        "--content-type",
        &ct,
        "--decrypt-with",
        &p(&dir, "as4-pypi-generated/PTE000001.key.pem"),
        "--cert",
        &p(&dir, "as4-pypi-generated/PTE000001.cert.pem"),
        &msg,
    ])
    .expect(4);
    assert_error(&o, "ERR_NOT_A_RECIPIENT");
    assert_eq!(
        json(&o)["decryption"]["error"]["name"],
        "LS_ERR_NOT_A_RECIPIENT"
    );
    // --partners is for CMS only.
    let o = layersec([
        "inspect",
        "--content-type",
        &ct,
        "--partners",
        &p(&dir, "as4-pypi-generated"),
        &msg,
    ])
    .expect(2);
    assert!(stderr(&o).contains("--verify-with"), "{}", stderr(&o));
}

#[test]
fn inspect_as4_malformed_and_protocol_errors() {
    let Some(dir) = as4_fixtures() else { return };
    // A header block marked mustUnderstand that AS4 does not know (a typo in the WS-Security
    // namespace of the AS4 specification's example): exit 8, the PullRequest still described.
    let o = layersec(["inspect", &p(&dir, "phase4/soap12test/PullRequest12.xml")]).expect(8);
    assert_error(&o, "ERR_MUST_UNDERSTAND");
    let j = json(&o);
    assert_eq!(j["messaging"]["signals"][0]["type"], "pull_request");
    assert_eq!(
        j["messaging"]["signals"][0]["mpc"],
        "http://as4.bigco.example.com/queues/q_456"
    );
    // Not well-formed XML (a comment before the XML declaration): exit 6.
    let o = layersec(["inspect", &p(&dir, "phase4/holodeck/from-holodeck-1.xml")]).expect(6);
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_MALFORMED");
    // Unsupported signature algorithm, given a certificate: exit 4, reported per section.
    let o = layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/TestReceipt12.signer.cert.pem"),
        &p(&dir, "phase4/testfiles/WrongSigningAlgorithm.xml"),
    ])
    .expect(4);
    let j = json(&o);
    assert_eq!(
        j["verification"]["error"]["name"],
        "LS_ERR_UNSUPPORTED_ALGORITHM"
    );
    assert!(j["verification"]["signature_value"]
        .as_str()
        .unwrap()
        .starts_with("not checked"));
    // An unsigned message, given a certificate: exit 8 (signature required).
    let o = layersec([
        "inspect",
        "--verify-with",
        &p(&dir, "derived/helger.signer.cert.pem"),
        &p(&dir, "phase4/soap12test/UserMessage12.xml"),
    ])
    .expect(8);
    assert_error(&o, "ERR_SIGNATURE_REQUIRED");
}

#[test]
fn inspect_as4_message_built_by_us() {
    use ls_core::as4::envelope::SoapVersion;
    use ls_core::as4::message::{self, Outgoing, Payload};
    use ls_core::as4::model::*;
    // carol signs (unencrypted key); the payloads are encrypted for alice (password-protected key).
    let w = World::get();
    let t = TempDir::new("inspect-as4");
    let carol =
        ls_core::Identity::load(w.key("carol"), Some(w.cert("carol").as_ref()), None).unwrap();
    let alice_cert = ls_core::Certificate::load(w.cert("alice")).unwrap();
    let party = |v: &str, role: &str| Party {
        ids: vec![PartyId {
            value: v.into(),
            r#type: Some("urn:layersec:party".into()),
        }],
        role: role.into(),
    };
    let um = UserMessage {
        info: MessageInfo {
            timestamp: timestamp_now(),
            message_id: new_message_id("layersec.test").unwrap(),
            ref_to_message_id: None,
        },
        mpc: None,
        from: party("carol", "initiator"),
        to: party("alice", "responder"),
        agreement_ref: Some(AgreementRef {
            value: "urn:layersec:agreement".into(),
            r#type: None,
            pmode: Some("pm-1".into()),
        }),
        service: Service {
            value: "urn:layersec:documents".into(),
            r#type: None,
        },
        action: "Deliver".into(),
        conversation_id: "conv-1".into(),
        properties: vec![Property::new("finalRecipient", "alice")],
        payloads: vec![],
    };
    let built = message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: vec![],
        },
        payloads: vec![Payload {
            content_id: "invoice@layersec".into(),
            mime_type: "application/xml".into(),
            data: invoice(),
            compress: true,
            properties: vec![],
        }],
        signer: &carol,
        encrypt_for: Some(&alice_cert),
        soap: SoapVersion::Soap12,
    })
    .unwrap();
    // As an HTTP capture: no --content-type needed.
    let capture = [
        format!(
            "POST /as4 HTTP/1.1\r\nHost: gw.example\r\nContent-Type: {}\r\n\r\n",
            built.content_type
        )
        .into_bytes(),
        built.body.clone(),
    ]
    .concat();
    std::fs::write(t.path("capture.http"), &capture).unwrap();
    let o = layersec([
        "inspect",
        "--verify-with",
        &w.cert("carol"),
        "--decrypt-with",
        &w.key("alice"),
        "--cert",
        &w.cert("alice"),
        "--pass-env",
        "LAYERSEC_TEST_PW",
        &t.s("capture.http"),
    ])
    .env("LAYERSEC_TEST_PW", ALICE_PW)
    .expect(0);
    let j = json(&o);
    assert_eq!(j["input"], "http");
    let um = &j["messaging"]["user_messages"][0];
    assert_eq!(um["message_id"], built.message_id.as_str());
    assert_eq!(um["agreement_ref"]["pmode"], "pm-1");
    assert_eq!(um["payloads"][0]["href"], "cid:invoice@layersec");
    assert_eq!(
        j["parts"][0]["decompressed_size"].as_u64().unwrap(),
        invoice().len() as u64
    );
    assert_eq!(reference_results(&j), ["ok", "ok", "ok"]);
    assert_eq!(j["verified"], true);
    // From stdin, as a bare body with --content-type.
    let o = layersec([
        "inspect",
        "--content-type",
        &built.content_type,
        "--verify-with",
        &w.cert("carol"),
        "-",
    ])
    .stdin(&built.body)
    .expect(0);
    assert_eq!(json(&o)["verified"], Value::Null);
    // A flipped byte in the encrypted attachment: decryption fails (exit 4), nothing else does.
    let mut body = built.body.clone();
    let n = body.len();
    body[n - 60] ^= 1;
    std::fs::write(t.path("bad.mime"), &body).unwrap();
    let o = layersec([
        "inspect",
        "--content-type",
        &built.content_type,
        "--verify-with",
        &w.cert("carol"),
        "--decrypt-with",
        &w.key("alice"),
        "--cert",
        &w.cert("alice"),
        "--pass-env",
        "LAYERSEC_TEST_PW",
        &t.s("bad.mime"),
    ])
    .env("LAYERSEC_TEST_PW", ALICE_PW)
    .expect(4);
    assert_error(&o, "ERR_DECRYPT_FAILED");
    let j = json(&o);
    assert_eq!(
        reference_results(&j),
        [
            "ok",
            "ok",
            "not checked: attachment encrypted and could not be decrypted"
        ]
    );
    // Someone else's certificate: exit 4, signer_matches false.
    let o = layersec([
        "inspect",
        "--content-type",
        &built.content_type,
        "--verify-with",
        &w.cert("alice"),
        &t.s("bad.mime"),
    ])
    .expect(4);
    assert_error(&o, "ERR_SIGNER_MISMATCH");
    assert_eq!(json(&o)["verification"]["signer_matches"], false);
}

// ---------------------------------------------------------------------------------------------
// The client commands (no service: an https URL to a closed local port)

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A client set up by `layersec init` in `<t>/client`: party "acme", the service at a closed
/// port, carol's certificate standing in for the service's signing certificate.
struct Setup {
    t: TempDir,
    /// The configuration file.
    config: String,
    /// `init --json`.
    init: Value,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let w = World::get();
        let t = TempDir::new(name);
        let url = format!("https://127.0.0.1:{}/as4", closed_port());
        let o = layersec([
            "init",
            "--party",
            "acme",
            "--service",
            &url,
            "--dir",
            &t.s("client"),
            "--service-cert",
            &w.cert("carol"),
            "--json",
        ])
        .expect(0);
        let init = json(&o);
        let config = init["config"].as_str().unwrap().to_string();
        Setup { t, config, init }
    }
    /// `layersec ARGS -c CONFIG`.
    fn cmd(&self, args: &[&str]) -> Run {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.push("-c".into());
        a.push(self.config.clone());
        layersec(a)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.t.path(&format!("client/{rel}"))
    }
}

#[test]
fn init_writes_a_loadable_config_and_prints_what_the_provider_needs() {
    let s = Setup::new("init");
    let v = &s.init;
    assert_eq!(v["config"], s.path("layersec.toml").to_str().unwrap());
    assert_eq!(v["party"], "acme");
    assert_eq!(v["mpc"], "urn:layersec:mpc:acme");
    assert_eq!(
        v["certificate"],
        s.path("identity/cert.pem").to_str().unwrap()
    );
    assert_eq!(v["key_encrypted"], false);
    assert_eq!(v["key_type"], "ec-p256");
    assert_eq!(v["service_certificate_present"], true);
    let fp = v["certificate_sha256"].as_str().unwrap();
    let pem = v["certificate_pem"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    // As sha256sum prints it: lower-case hex of the DER's SHA-256, no separators.
    let der = openssl::x509::X509::from_pem(pem.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    assert_eq!(fp, ls_core::bytes::sha256_hex(&der));
    assert_eq!(
        std::fs::read_to_string(s.path("identity/cert.pem")).unwrap(),
        pem
    );
    // The key is private; the folders are there.
    let mode = std::fs::metadata(s.path("identity/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    for f in [
        "outbox",
        "sent",
        "failed",
        "inbox",
        "state",
        "partners",
        "service/service.crt",
    ] {
        assert!(s.path(f).exists(), "{f} is missing");
    }
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(
        text.contains("id = \"acme\"") && text.contains("# "),
        "{text}"
    );
    // It loads: status on the fresh setup.
    let st = json(&s.cmd(&["status", "--json"]).expect(0));
    assert_eq!(st["party_id"], "acme");
    assert_eq!(st["pending"], serde_json::json!([]));
    assert_eq!(st["sent"], 0);
    assert_eq!(st["inbox"], 0);
    assert!(st["last_poll"].is_null(), "{st}");
    let o = s.cmd(&["status"]).expect(0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("acme") && out.contains("last poll:      never"),
        "{out}"
    );

    // Refuses to overwrite anything without --force; replaces everything with it.
    let url = format!("https://127.0.0.1:{}/as4", closed_port());
    let again = |force: bool| {
        let mut a = vec![
            "init".to_string(),
            "--party".into(),
            "acme".into(),
            "--service".into(),
            url.clone(),
            "--dir".into(),
            s.t.s("client"),
            "--json".into(),
        ];
        if force {
            a.push("--force".into());
        }
        layersec(a)
    };
    let o = again(false).expect(3);
    assert_error(&o, "ERR_IO");
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&s.config).unwrap(), text);
    assert_eq!(
        std::fs::read_to_string(s.path("identity/cert.pem")).unwrap(),
        pem
    );
    let v2 = json(&again(true).expect(0));
    assert_ne!(v2["certificate_sha256"], v["certificate_sha256"]);
    assert!(std::fs::read_to_string(&s.config).unwrap().contains(&url));
    // The service certificate given before is still in its place.
    assert_eq!(v2["service_certificate_present"], true);
    s.cmd(&["status", "--json"]).expect(0);
}

#[test]
fn init_text_output_and_a_missing_service_certificate() {
    let t = TempDir::new("init-text");
    let o = layersec([
        "init",
        "--party",
        "globex",
        "--service",
        "https://ls.example:8443/as4",
        "--dir",
        &t.s("c"),
        "--key-type",
        "rsa2048",
        "--days",
        "30",
    ])
    .expect(0);
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "party id:             globex",
        "MPC:                  urn:layersec:mpc:globex",
        "rsa-2048",
        "SHA-256 fingerprint:  ",
        "-----BEGIN CERTIFICATE-----",
        "(MISSING)",
    ] {
        assert!(out.contains(needle), "{needle:?} not in {out}");
    }
    let e = stderr(&o);
    assert!(
        e.contains("service's signing certificate must be placed at")
            && e.contains(&t.s("c/service/service.crt")),
        "{e}"
    );
    assert!(t.path("c/service").is_dir());
    // Until it is there, the configuration names what is missing.
    let cfg = t.s("c/layersec.toml");
    let o = layersec(["status", "-c", &cfg]).expect(2);
    assert_error(&o, "ERR_CONFIG_INVALID");
    assert!(
        stderr(&o).contains("service.service_certificate"),
        "{}",
        stderr(&o)
    );
    // Bad arguments are usage errors, and nothing is written.
    for bad in [
        vec!["--service", "http://ls.example/as4"],
        vec!["--service", "https://ls.example/as4", "--pin", "abcd"],
        vec!["--service", "https://ls.example/as4", "--key-type", "dsa"],
        vec!["--service", "https://ls.example/as4", "--days", "0"],
    ] {
        let mut a = vec!["init", "--party", "x", "--dir"];
        let d = t.s("bad");
        a.push(&d);
        a.extend(bad.iter().copied());
        layersec(a).expect(2);
        assert!(!t.path("bad/layersec.toml").exists());
    }
    // --config is not how init is told where to write.
    layersec([
        "init",
        "--party",
        "x",
        "--service",
        "https://ls.example/as4",
        "-c",
        &t.s("x.toml"),
    ])
    .expect(2);
    // Nor does it apply to the document commands.
    layersec(["inspect", "-c", &cfg, &cfg]).expect(2);
}

#[test]
fn init_pass_env_encrypts_the_key() {
    let w = World::get();
    let t = TempDir::new("init-pw");
    let url = format!("https://127.0.0.1:{}/as4", closed_port());
    let args = |dir: &str| {
        vec![
            "init".to_string(),
            "--party".into(),
            "acme".into(),
            "--service".into(),
            url.clone(),
            "--dir".into(),
            t.s(dir),
            "--service-cert".into(),
            w.cert("carol"),
            "--pass-env".into(),
            "LS_INIT_PW".into(),
            "--json".into(),
        ]
    };
    // The variable must be set and not empty.
    layersec(args("a")).expect(2);
    layersec(args("a")).env("LS_INIT_PW", "").expect(2);
    assert!(!t.path("a/layersec.toml").exists());
    let v = json(&layersec(args("a")).env("LS_INIT_PW", "s3cret").expect(0));
    assert_eq!(v["key_encrypted"], true);
    let key = std::fs::read_to_string(t.path("a/identity/key.pem")).unwrap();
    assert!(key.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{key}");
    let cfg = std::fs::read_to_string(t.path("a/layersec.toml")).unwrap();
    assert!(cfg.contains("password_env = \"LS_INIT_PW\""), "{cfg}");
    assert!(!cfg.contains("s3cret"));
    let c = t.s("a/layersec.toml");
    // The commands need the password: without it exit 2 naming the setting, wrong: 7.
    let o = layersec(["status", "-c", &c]).expect(2);
    assert!(
        stderr(&o).contains("identity.password_env"),
        "{}",
        stderr(&o)
    );
    layersec(["status", "-c", &c])
        .env("LS_INIT_PW", "wrong")
        .expect(7);
    layersec(["status", "-c", &c])
        .env("LS_INIT_PW", "s3cret")
        .expect(0);
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let s = Setup::new("cfg-errors");
    let bad = s.path("bad.toml");
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&bad, text.replace("[polling]", "[polling]\nintervall = 3")).unwrap();
    let bad = bad.to_str().unwrap();
    for cmd in [
        vec!["status"],
        vec!["poll"],
        vec!["run"],
        vec!["partners", "list"],
    ] {
        let mut a = cmd.clone();
        a.extend(["--config", bad]);
        let o = layersec(a).expect(2);
        assert_error(&o, "ERR_CONFIG_INVALID");
        let e = stderr(&o);
        assert!(
            e.contains("bad.toml") && e.contains("polling.intervall"),
            "{cmd:?}: {e}"
        );
    }
    // With --json the error is also on stdout.
    let o = layersec(["status", "--json", "-c", bad]).expect(2);
    assert_eq!(json(&o)["error"]["name"], "LS_ERR_CONFIG_INVALID");
    assert_eq!(json(&o)["error"]["exit_code"], 2);
    // The default file: $LAYERSEC_CONFIG, else ./layersec.toml.
    layersec(["status", "--json"])
        .env("LAYERSEC_CONFIG", &s.config)
        .expect(0);
    layersec(["status", "--json"]).cwd(&s.path("")).expect(0);
    let o = layersec(["status"]).cwd(&s.t.0).expect(2);
    let e = stderr(&o);
    assert!(
        e.contains("layersec.toml") && e.contains("layersec init"),
        "{e}"
    );
}

#[test]
fn partners_add_and_list() {
    let w = World::get();
    let s = Setup::new("partners");
    let o = s.cmd(&["partners", "list", "--json"]).expect(0);
    assert_eq!(json(&o)["partners"], serde_json::json!([]));
    let o = s
        .cmd(&["partners", "add", "bob", &w.cert("bob"), "--json"])
        .expect(0);
    let v = json(&o);
    assert_eq!(v["party_id"], "bob");
    assert_eq!(v["subject"], "CN=bob");
    assert_eq!(v["valid_now"], true);
    assert_eq!(v["file"], s.path("partners/bob.crt").to_str().unwrap());
    assert!(s.path("partners/bob.crt").is_file());
    let o = s
        .cmd(&["partners", "add", "carol", &w.cert("carol")])
        .expect(0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("partner:      carol") && out.contains("SHA256"),
        "{out}"
    );
    let v = json(&s.cmd(&["partners", "list", "--json"]).expect(0));
    let ids: Vec<&str> = v["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["party_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bob", "carol"]);
    let o = s.cmd(&["partners", "list"]).expect(0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.starts_with("bob\tCN=bob\t"), "{out}");
    // A file that is not a certificate (a key) is refused; nothing is added.
    let o = s
        .cmd(&["partners", "add", "mallory", &w.key("bob")])
        .expect(5);
    assert_error(&o, "ERR_CERT_INVALID");
    let junk = s.t.path("junk.crt");
    std::fs::write(&junk, b"not a certificate").unwrap();
    s.cmd(&["partners", "add", "mallory", junk.to_str().unwrap()])
        .expect(5);
    assert!(!s.path("partners/mallory.crt").exists());
    // A bad party id is a usage error.
    s.cmd(&["partners", "add", "../x", &w.cert("bob")])
        .expect(2);
    s.cmd(&["partners", "add", "nobody", &s.t.s("missing.crt")])
        .expect(3);
    // Another certificate for a known partner: refused (both fingerprints named) unless
    // replaced on purpose; the replaced one is kept in the history.
    let o = s
        .cmd(&["partners", "add", "bob", &w.cert("carol")])
        .expect(5);
    assert_error(&o, "ERR_CERT_UNTRUSTED");
    let e = stderr(&o);
    assert!(e.contains("--replace"), "{e}");
    s.cmd(&[
        "partners",
        "add",
        "bob",
        &w.cert("carol"),
        "--keep-previous-hours",
        "2",
    ])
    .expect(2);
    let o = s
        .cmd(&[
            "partners",
            "add",
            "bob",
            &w.cert("carol"),
            "--replace",
            "--keep-previous-hours",
            "2",
            "--json",
        ])
        .expect(0);
    let v = json(&o);
    assert_eq!(v["outcome"], "replaced");
    assert_eq!(v["subject"], "CN=carol");
    assert_eq!(v["replaced"].as_array().unwrap().len(), 1);
    assert!(v["previous_until"].is_string(), "{v}");
    let v = json(&s.cmd(&["partners", "list", "--json"]).expect(0));
    let bob = &v["partners"][0];
    assert_eq!(bob["party_id"], "bob");
    assert_eq!(bob["subject"], "CN=carol");
    assert_eq!(bob["profile"], "modern");
    assert_eq!(bob["receipts"], true);
    assert_eq!(bob["source"], "file");
    assert_eq!(bob["previous"][0]["subject"], "CN=bob");
    assert_eq!(bob["previous"][0]["accepted"], true);
    let out = String::from_utf8_lossy(&s.cmd(&["partners", "list"]).expect(0).stdout).into_owned();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("profile modern\treceipts on\tprevious: "),
        "{out}"
    );
    // A malformed record is a configuration error naming the file and the key.
    std::fs::write(s.path("partners/bob.toml"), "profile = \"retro\"\n").unwrap();
    let o = s.cmd(&["partners", "list"]).expect(2);
    assert_error(&o, "ERR_CONFIG_INVALID");
    let e = stderr(&o);
    assert!(e.contains("bob.toml: profile"), "{e}");
    for sub in ["add", "fetch", "list"] {
        let o = layersec(["partners", sub, "--help"]).expect(0);
        let h = String::from_utf8(o.stdout).unwrap();
        assert!(h.contains("Example") && h.contains("Exit codes:"), "{h}");
    }
}

#[test]
fn send_to_a_partner_without_certificate_is_exit_5_and_queues_nothing() {
    let s = Setup::new("send-unknown");
    let doc = s.t.path("doc.txt");
    std::fs::write(&doc, b"hello").unwrap();
    let o = s
        .cmd(&["send", doc.to_str().unwrap(), "--to", "carol"])
        .expect(5);
    assert_error(&o, "ERR_CERT_NOT_FOUND");
    assert!(stderr(&o).contains("carol"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let st = json(&s.cmd(&["status", "--json"]).expect(0));
    assert_eq!(st["pending"], serde_json::json!([]), "{st}");
    // A document that is not there: I/O.
    s.cmd(&["send", &s.t.s("nope.txt"), "--to", "carol"])
        .expect(3);
}

#[test]
fn send_with_the_service_unreachable_is_queued_with_exit_9() {
    let w = World::get();
    let s = Setup::new("send-queued");
    s.cmd(&["partners", "add", "bob", &w.cert("bob")]).expect(0);
    let doc = s.t.path("invoice.xml");
    std::fs::write(&doc, invoice()).unwrap();
    let o = s
        .cmd(&["send", doc.to_str().unwrap(), "--to", "bob", "--json"])
        .expect(9);
    let v = json(&o);
    assert_eq!(v["delivered"], false);
    assert_eq!(v["to"], "bob");
    assert_eq!(v["name"], "invoice.xml");
    assert_eq!(v["size"], invoice().len());
    assert!(v["receipt_message_id"].is_null());
    // The one error object: `code` a number (it was the name), `name` and `family` beside it.
    assert_eq!(v["last_error"]["code"], 600, "{v}");
    assert_eq!(v["last_error"]["name"], "LS_ERR_CONNECT_FAILED");
    assert_eq!(v["last_error"]["family"], "transport");
    assert_eq!(v["last_error"]["transient"], true);
    assert!(is_iso8601(v["next_attempt_at"].as_str().unwrap()), "{v}");
    let id = v["message_id"].as_str().unwrap().to_string();
    let e = stderr(&o);
    assert!(
        e.contains("queued") && e.contains("layersec run") && e.contains(&id),
        "{e}"
    );
    // Plain: just the MessageId on stdout.
    let o = s
        .cmd(&["send", doc.to_str().unwrap(), "--to", "bob"])
        .expect(9);
    let id2 = String::from_utf8(o.stdout).unwrap();
    assert_eq!(id2.lines().count(), 1);
    let id2 = id2.trim().to_string();
    assert!(id2.contains('@') && id2 != id, "{id2}");
    // Both wait in the journal; the document stays where it was.
    let st = json(&s.cmd(&["status", "--json"]).expect(0));
    let pending: Vec<&str> = st["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["message_id"].as_str().unwrap())
        .collect();
    assert!(
        pending.contains(&id.as_str()) && pending.contains(&id2.as_str()),
        "{st}"
    );
    assert!(doc.is_file());
    // Each with the one error object of its last attempt (the code a number; there is no
    // last_error_code any more).
    let e = &st["pending"][0]["last_error"];
    assert_eq!(e["code"], 600, "{st}");
    assert_eq!(e["name"], "LS_ERR_CONNECT_FAILED");
    assert_eq!(e["family"], "transport");
    assert!(st["pending"][0].get("last_error_code").is_none(), "{st}");
    let o = s.cmd(&["status"]).expect(0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("queued sends:   2") && out.contains(&id),
        "{out}"
    );
    // Not on a terminal: no progress lines, even for a large document.
    let big = s.t.path("big.bin");
    std::fs::write(&big, noise(1 << 20, 7)).unwrap();
    let o = s
        .cmd(&["send", big.to_str().unwrap(), "--to", "bob"])
        .expect(9);
    assert!(!stderr(&o).contains("pushing"), "{}", stderr(&o));
}

#[test]
fn poll_with_the_service_unreachable_is_exit_9() {
    let s = Setup::new("poll-down");
    let o = s.cmd(&["poll"]).expect(9);
    assert_error(&o, "ERR_CONNECT_FAILED");
    assert!(o.stdout.is_empty());
    // --json: the error as one line, like the stream it ends.
    let o = s.cmd(&["poll", "--json"]).expect(9);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["name"], "LS_ERR_CONNECT_FAILED");
    assert_eq!(v["error"]["code"], 600);
    assert_eq!(v["error"]["family"], "transport");
    assert_eq!(v["error"]["transient"], true);
    assert_eq!(v["error"]["exit_code"], 9);
    // The failed poll is in the status.
    let st = json(&s.cmd(&["status", "--json"]).expect(0));
    assert_eq!(st["last_poll"]["ok"], false, "{st}");
}

/// `layersec run` in the background with stdout piped: its lines as they come.
fn spawn_run(s: &Setup, json: bool) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut a = vec!["run", "-c", &s.config];
    if json {
        a.push("--json");
    }
    let mut child = Command::new(BIN)
        .args(&a)
        .env_remove("LAYERSEC_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The remaining lines, until the process's stdout is closed.
fn drain(lines: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(l) = lines.recv_timeout(std::time::Duration::from_secs(10)) {
        v.push(l);
    }
    v
}

/// SIGTERM (through kill(1)); the exit status if it ends within `limit`.
fn terminate(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let t = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    while t.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    use std::time::Duration;
    let w = World::get();
    let s = Setup::new("run");
    s.cmd(&["partners", "add", "bob", &w.cert("bob")]).expect(0);
    // A document in the outbox: taken into the journal, its push fails, it waits.
    std::fs::create_dir_all(s.path("outbox/bob")).unwrap();
    std::fs::write(s.path("outbox/bob/order.txt"), b"order 1").unwrap();
    let (mut child, lines) = spawn_run(&s, true);
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["event"], "started");
    assert_eq!(v["party_id"], "acme");
    // Events arrive as they happen (flushed per line): the service is unreachable, the
    // document's push failed and waits for a retry.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let v: Value = serde_json::from_str(&l).unwrap();
        let ev = v["event"].as_str().unwrap().to_string();
        // Errors in events are the one error object: the code a number, name and family.
        let e = match ev.as_str() {
            "unreachable" => &v["error"],
            "retrying" => &v["last_error"],
            _ => &Value::Null,
        };
        if !e.is_null() {
            assert_eq!(e["code"], 600, "{l}");
            assert_eq!(e["name"], "LS_ERR_CONNECT_FAILED", "{l}");
            assert_eq!(e["family"], "transport", "{l}");
        }
        seen.push(ev);
        if seen.iter().any(|e| e == "unreachable") && seen.iter().any(|e| e == "retrying") {
            break;
        }
    }
    assert!(
        seen.iter().any(|e| e == "unreachable") && seen.iter().any(|e| e == "retrying"),
        "{seen:?}"
    );
    // The bound only detects a hang (the daemon checks for a stop every 0.1 s).
    assert_eq!(
        terminate(&mut child, Duration::from_secs(30)),
        Some(0),
        "run did not stop with exit 0 within 30 s of SIGTERM"
    );
    let rest = drain(&lines);
    assert_eq!(
        rest.last().map(String::as_str),
        Some("{\"event\":\"stopped\"}"),
        "{rest:?}"
    );
    // The outbox document waits in the journal.
    let st = json(&s.cmd(&["status", "--json"]).expect(0));
    assert_eq!(st["pending"][0]["name"], "order.txt", "{st}");
    assert!(!s.path("outbox/bob/order.txt").exists());

    // Plain text lines, with a timestamp; SIGTERM at once after the start.
    let (mut child, lines) = spawn_run(&s, false);
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        is_iso8601(first.split(' ').next().unwrap()) && first.ends_with("started: party acme"),
        "{first}"
    );
    assert_eq!(terminate(&mut child, Duration::from_secs(30)), Some(0));
    let rest = drain(&lines);
    assert!(
        rest.last().is_some_and(|l| l.ends_with(" stopped")),
        "{rest:?}"
    );
}

#[test]
fn send_shows_its_stages_on_a_terminal_for_large_documents() {
    // script(1) gives the command a terminal; skipped without it.
    if Command::new("script").arg("--version").output().is_err() {
        ls_tests::skip("script(1) is not installed");
        return;
    }
    let w = World::get();
    let s = Setup::new("send-progress");
    s.cmd(&["partners", "add", "bob", &w.cert("bob")]).expect(0);
    let big = s.t.path("big.bin");
    std::fs::write(&big, noise(1 << 20, 9)).unwrap();
    let small = s.t.path("small.txt");
    std::fs::write(&small, b"small").unwrap();
    let on_terminal = |doc: &Path| {
        let cmd = format!(
            "{BIN} send {} --to bob -c {} >/dev/null",
            doc.display(),
            s.config
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("LAYERSEC_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(9), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = on_terminal(&big);
    assert!(
        out.contains("sealing and signing big.bin (1.0 MiB) for bob")
            && out.contains("pushing ")
            && out.contains("queued for retry"),
        "{out}"
    );
    let out = on_terminal(&small);
    assert!(
        !out.contains("sealing") && !out.contains("pushing"),
        "{out}"
    );
}
