//! What the benchmark programs share: registering parties through the admin CLI of a service
//! folder made by `layersec-server init`, and building the signed message they push.

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange;
use ls_core::as4::message::{self, Built, Outgoing, Payload};
use ls_core::as4::model::Messaging;
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

/// A new EC P-256 identity for party `id`: in memory, or, with `LOADGEN_PKCS11_MODULE` set,
/// generated on the PKCS#11 token `LOADGEN_PKCS11_TOKEN` (label `id`, non-extractable; PIN from
/// `LOADGEN_PKCS11_PIN`; the module's own configuration, e.g. `SOFTHSM2_CONF`, from the
/// environment) with a certificate the token key signed.
pub fn party_identity(id: &str) -> Identity {
    let Ok(module) = std::env::var("LOADGEN_PKCS11_MODULE") else {
        return Identity::generate(id, KeyType::EcP256, 30, None)
            .unwrap()
            .identity;
    };
    let token = std::env::var("LOADGEN_PKCS11_TOKEN").expect("LOADGEN_PKCS11_TOKEN");
    let pin = std::env::var("LOADGEN_PKCS11_PIN").expect("LOADGEN_PKCS11_PIN");
    let uri = format!("pkcs11:token={token};object={id};type=private");
    let key = ls_core::keys::pkcs11::Pkcs11Key::generate(
        &uri,
        Some(Path::new(&module)),
        &pin,
        KeyType::EcP256,
    )
    .unwrap_or_else(|e| panic!("generating {id}'s key on {token}: {e}"));
    ls_core::CertificateBuilder::new(id, ls_core::CertPurpose::Party)
        .private_key(std::sync::Arc::new(key))
        .valid_days(30)
        .build(None)
        .unwrap()
        .identity
}

/// A new EC identity registered as party `id` (with a subscriber of its own); its key in memory
/// or on a token ([`party_identity`]).
pub fn register(server_bin: &Path, dir: &Path, id: &str) -> Identity {
    let ident = party_identity(id);
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

/// A signed UserMessage from `from` to `to` carrying `data` as one payload.
pub fn build(from: &str, to: &str, me: &Identity, data: &[u8]) -> Built {
    let um = exchange::user_message(
        from,
        to,
        "urn:layersec:bench",
        "Deliver",
        "",
        "bench.example",
    )
    .unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "doc@bench".into(),
            mime_type: "application/pkcs7-mime".into(),
            data: data.to_vec(),
            compress: false,
            properties: Vec::new(),
        }],
        signer: me,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}
