//! What the benchmark programs share: registering parties through the admin CLI of a service
//! folder made by `layersec-server init`.

use ls_core::{Identity, KeyType};
use std::path::Path;
use std::process::Command;

/// `layersec-server admin …` on the service folder `dir`; its JSON answer.
pub fn admin(server_bin: &Path, dir: &Path, args: &[&str]) -> serde_json::Value {
    let cfg = dir.join("layersec-server.toml");
    let mut a = vec!["admin", "--config", cfg.to_str().unwrap()];
    a.extend_from_slice(args);
    let o = Command::new(server_bin).args(&a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A new EC identity registered as party `id` (with a subscriber of its own).
pub fn register(server_bin: &Path, dir: &Path, id: &str) -> Identity {
    let ident = Identity::generate(id, KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let sub = admin(
        server_bin,
        dir,
        &["subscriber", "add", "--organisation", id],
    );
    let crt = dir.join(format!("{id}.crt"));
    std::fs::write(&crt, ident.certificate().to_pem()).unwrap();
    admin(
        server_bin,
        dir,
        &[
            "party",
            "add",
            "--subscriber",
            &sub["id"].to_string(),
            "--party",
            id,
            "--certificate",
            crt.to_str().unwrap(),
        ],
    );
    ident
}
