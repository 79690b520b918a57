//! The `client_config` target: `ls_client::Config::parse` on arbitrary TOML text, and
//! when it parses, what the client derives from it.
//!
//! The configuration is parsed as if read from `<tmp>/client.toml`, where `<tmp>` is a folder
//! made once per process (under `$TMPDIR`) holding real files for the paths a configuration
//! names:
//!
//! | path (relative to the file) | what |
//! |---|---|
//! | `identity/key.pem`, `identity/cert.pem` | our EC key (no password) and certificate |
//! | `identity/enc-key.pem` | the same key encrypted with the password `fuzz-password` |
//! | `secrets/password` | `fuzz-password` on its first line |
//! | `service/service.crt`, `service/ca.crt` | the service's certificate, a CA file |
//! | `tls/client.crt`, `tls/client.key` | a TLS client identity |
//! | `partners/bob.crt` | a partner certificate |
//!
//! and the environment variable `LS_FUZZ_CONFIG_PASSWORD` holds `fuzz-password`.
//!
//! What must hold:
//! - a refused text is an `ERR_CONFIG_INVALID` whose message names the file;
//! - the derived values (`domain`, `compression`, `content_cipher`, `password`) are sane;
//! - the template `layersec init` writes, filled from the parsed values, parses back to them;
//! - when every file the configuration names is inside `<tmp>`, `Client::from_config` (it
//!   reads the keys and certificates, sets up HTTPS without connecting, creates the folders)
//!   and `status`/`partners_list` run; the folders it made are removed afterwards. Nothing is
//!   read or created outside `<tmp>` (a configuration naming `/etc/…` is only parsed).

use ls_client::{Client, Config, TemplateOptions};
use ls_core::{ErrorCode, Identity, KeyType};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

pub const PASSWORD_ENV: &str = "LS_FUZZ_CONFIG_PASSWORD";
const PASSWORD: &str = "fuzz-password";
/// The folders holding the fixed files; everything else in `<tmp>` is removed after each run.
const FIXED_DIRS: [&str; 5] = ["identity", "secrets", "service", "tls", "partners"];

fn tmp() -> &'static Path {
    static TMP: OnceLock<PathBuf> = OnceLock::new();
    TMP.get_or_init(|| {
        let dir = std::path::absolute(std::env::temp_dir())
            .expect("client_config: the temporary folder")
            .join(format!(
                "ls-fuzz-config-{}-{}",
                std::process::id(),
                ls_core::time::now_unix()
            ));
        let write = |rel: &str, data: &[u8]| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("client_config: mkdir");
            std::fs::write(&p, data).expect("client_config: write a fixed file");
        };
        let gen = |name: &str, password: Option<&str>| {
            Identity::generate(name, KeyType::EcP256, 30, password)
                .expect("client_config: cannot generate a key")
        };
        let me = gen("fuzz-client", None);
        write("identity/key.pem", &me.key_pem);
        write("identity/cert.pem", &me.cert_pem);
        let enc = gen("fuzz-client-enc", Some(PASSWORD));
        write("identity/enc-key.pem", &enc.key_pem);
        write("identity/enc-cert.pem", &enc.cert_pem);
        write(
            "secrets/password",
            format!("{PASSWORD}\nignored\n").as_bytes(),
        );
        let service = gen("fuzz-service", None);
        write("service/service.crt", &service.cert_pem);
        write("service/ca.crt", &service.cert_pem);
        let tls = gen("fuzz-tls-client", None);
        write("tls/client.crt", &tls.cert_pem);
        write("tls/client.key", &tls.key_pem);
        write("partners/bob.crt", &gen("bob", None).cert_pem);
        std::env::set_var(PASSWORD_ENV, PASSWORD);
        dir
    })
}

/// `p` without `.` and `..` (lexically: `<tmp>` holds no symbolic links).
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn inside(p: &Path) -> bool {
    normal(p).starts_with(tmp())
}

/// Remove what a run left in `<tmp>`: any folder but the fixed ones, and folders made inside
/// the fixed ones (which hold only files).
fn clean() {
    let Ok(entries) = std::fs::read_dir(tmp()) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let fixed = e
            .file_name()
            .to_str()
            .is_some_and(|n| FIXED_DIRS.contains(&n));
        if !fixed {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            continue;
        }
        for sub in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if sub.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(sub.path());
            }
        }
    }
}

fn text_of(p: &Path) -> String {
    p.to_str().expect("paths from TOML are UTF-8").to_string()
}

/// The template `layersec init` writes, filled from `cfg`, parses back to the same values.
fn template_round_trip(cfg: &Config, file: &Path) {
    let s = &cfg.service;
    let Some(cert) = &cfg.identity.certificate else {
        return;
    };
    if !s.url.trim().to_ascii_lowercase().starts_with("https://") {
        return; // http:// needs allow_plain_http, which the template does not write
    }
    let mut t = TemplateOptions::new(&cfg.party.id, &s.url);
    t.key = text_of(&cfg.identity.key);
    t.certificate = text_of(cert);
    t.service_certificate = text_of(&s.service_certificate);
    t.password_env = cfg.identity.password_env.clone();
    t.ca_file = s.ca_file.as_deref().map(text_of);
    t.pinned_sha256 = s.pinned_sha256.clone();
    let text = Config::template(&t);
    let back = Config::parse(&text, file)
        .unwrap_or_else(|e| panic!("the template does not parse back: {e}\n{text}"));
    assert_eq!(back.party.id, cfg.party.id, "template: party.id");
    assert_eq!(back.service.url, s.url, "template: service.url");
    assert_eq!(
        back.identity.key, cfg.identity.key,
        "template: identity.key"
    );
    assert_eq!(back.identity.certificate.as_ref(), Some(cert));
    assert_eq!(back.identity.password_env, cfg.identity.password_env);
    assert_eq!(back.service.ca_file, s.ca_file, "template: ca_file");
    assert_eq!(back.service.pinned_sha256, s.pinned_sha256);
    if cfg.party.domain.is_none() {
        // (The template has no domain setting: with one, the derived domain differs.)
        assert_eq!(back.domain(), cfg.domain(), "template: domain");
    }
}

pub fn client_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // Config::load reads the file as UTF-8 first
    };
    let file = tmp().join("client.toml");
    let cfg = match Config::parse(text, &file) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::ConfigInvalid, "{e}");
            let m = e.to_string();
            assert!(m.contains(&file.display().to_string()), "no file name: {m}");
            return;
        }
    };
    assert_eq!(cfg.file, file);

    let domain = cfg.domain();
    assert!(
        !domain.is_empty()
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
        "domain {domain:?}"
    );
    let _ = (cfg.policy.compression(), cfg.policy.content_cipher());
    let _ = format!("{cfg:?}");
    template_round_trip(&cfg, &file);

    let i = &cfg.identity;
    let s = &cfg.service;
    let f = &cfg.folders;
    let named = [
        Some(&i.key),
        i.certificate.as_ref(),
        i.password_file.as_ref(),
    ]
    .into_iter()
    .chain([
        Some(&s.service_certificate),
        s.ca_file.as_ref(),
        s.client_certificate.as_ref(),
        s.client_key.as_ref(),
    ])
    .chain(
        [
            &cfg.partners.dir,
            &f.outbox,
            &f.sent,
            &f.failed,
            &f.inbox,
            &f.state,
        ]
        .map(Some),
    )
    .flatten()
    .all(|p| inside(p));
    if !named {
        return;
    }
    if let (Some(_), Ok(Some(p))) = (&i.password_file, cfg.password()) {
        assert!(
            !p.contains('\n'),
            "a password file's first line with its line end"
        );
    }
    if let Ok(client) = Client::from_config(&cfg) {
        assert_eq!(client.party_id(), cfg.party.id);
        let _ = client.status().map(|st| st.to_json());
        let _ = client.partners_list();
        let _ = format!("{client:?}");
    }
    drop(cfg);
    clean();
}
