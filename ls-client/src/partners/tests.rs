//! The partners folder and its records, on a temporary folder.

use super::*;
use crate::fsutil::random_hex;
use ls_core::error::ErrorCode;
use ls_core::keys::{Identity, KeyType};
use std::fs;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn folder() -> Dir {
    let d = std::env::temp_dir().join(format!("ls-partners-{}", random_hex(6)));
    fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn cert(name: &str) -> Certificate {
    Identity::generate(name, KeyType::EcP256, 30, None)
        .unwrap()
        .identity
        .certificate()
        .clone()
}

fn config_error(dir: &Path) -> String {
    let e = PartnerFolder::load(dir).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigInvalid, "{e}");
    e.to_string()
}

#[test]
fn a_record_is_saved_and_read_back_beside_the_certificate() {
    let d = folder();
    let c = cert("globex");
    fs::write(d.0.join("globex.crt"), c.to_pem()).unwrap();
    // Without a record: a partner with the defaults.
    let f = PartnerFolder::load(&d.0).unwrap();
    let p = f.get("globex").unwrap();
    assert_eq!(p.current, vec![c.clone()]);
    assert!(p.record.is_none());
    assert!(p.receipts());
    assert_eq!(p.profile(), Profile::Modern);
    let r = Record {
        profile: Some(Profile::LegacyAs2),
        receipts: false,
        added: Some("2026-12-07T07:00:00Z".into()),
        source: Some(Source::Directory),
        previous: Vec::new(),
        ..Record::default()
    };
    save_record(&d.0, "globex", &r).unwrap();
    let text = fs::read_to_string(d.0.join("globex.toml")).unwrap();
    assert!(
        text.starts_with("# written by layersec; edit with care\n"),
        "{text}"
    );
    assert!(text.contains("profile = \"legacy-as2\""), "{text}");
    assert!(text.contains("source = \"directory\""), "{text}");
    assert_eq!(load_record(&d.0, "globex").unwrap(), Some(r));
    let p = PartnerFolder::load(&d.0)
        .unwrap()
        .get("globex")
        .unwrap()
        .clone();
    assert!(!p.receipts());
    assert_eq!(p.profile(), Profile::LegacyAs2);
    // Written by hand, with only what differs from the defaults.
    fs::write(d.0.join("globex.toml"), "receipts = false\n").unwrap();
    let r = load_record(&d.0, "globex").unwrap().unwrap();
    assert_eq!((r.profile, r.receipts, r.source), (None, false, None));
    // A record alone does not make a partner; temporary files are not read.
    fs::write(d.0.join("initech.toml"), "profile = \"modern\"\n").unwrap();
    fs::write(d.0.join(".tmp-1234-initech.crt"), b"half written").unwrap();
    let f = PartnerFolder::load(&d.0).unwrap();
    assert!(f.accepted("initech", time::now_unix()).is_empty());
    assert!(f.current("initech").is_empty());
}

#[test]
fn a_malformed_record_names_the_file_and_the_key() {
    let d = folder();
    fs::write(d.0.join("globex.crt"), cert("globex").to_pem()).unwrap();
    let rec = d.0.join("globex.toml");
    let shown = rec.display().to_string();
    for (text, key) in [
        ("profile = \"futuristic\"\n", "profile"),
        ("receipts = \"maybe\"\n", "receipts"),
        ("profil = \"modern\"\n", "profil"),
        ("source = \"hearsay\"\n", "source"),
        ("added = \"yesterday\"\n", "added"),
        (
            "[[previous]]\nfile = \"globex.history/x.crt\"\nuntil = \"soon\"\n",
            "previous[0].until",
        ),
        (
            "[[previous]]\nfile = \"../elsewhere.crt\"\nuntil = \"2030-01-01T00:00:00Z\"\n",
            "previous[0].file",
        ),
        (
            "[[previous]]\nfile = \"/etc/ssl/x.crt\"\nuntil = \"2030-01-01T00:00:00Z\"\n",
            "previous[0].file",
        ),
        (
            "[[previous]]\nfile = \"globex.history/missing.crt\"\nuntil = \"2030-01-01T00:00:00Z\"\n",
            "previous[0].file",
        ),
        ("[[previous]]\nuntil = \"2030-01-01T00:00:00Z\"\n", "previous.file"),
        ("profile = \n", "profile"),
    ] {
        fs::write(&rec, text).unwrap();
        let e = config_error(&d.0);
        assert!(
            e.contains(&format!("{shown}: {key}")),
            "{text:?}: expected the file and {key}: {e}"
        );
    }
}

#[test]
fn previous_certificates_are_accepted_until_their_time() {
    let d = folder();
    let (old, new, newer) = (cert("globex"), cert("globex"), cert("globex"));
    set_current(&d.0, "globex", &old, Source::File, None, &[]).unwrap();
    let now = time::now_unix();
    // A replacement keeping the old one for an hour: both accepted, only the new one current.
    let r = set_current(
        &d.0,
        "globex",
        &new,
        Source::Rollover,
        Some(now + 3600),
        &[],
    )
    .unwrap();
    assert_eq!(r.old, vec![old.clone()]);
    assert_eq!(r.accepted_until, Some(now + 3600));
    let f = PartnerFolder::load(&d.0).unwrap();
    assert_eq!(f.current("globex"), vec![new.clone()]);
    assert_eq!(f.accepted("globex", now), [new.clone(), old.clone()]);
    assert_eq!(f.accepted("globex", now + 3600), vec![new.clone()]);
    let rec = load_record(&d.0, "globex").unwrap().unwrap();
    assert_eq!(rec.source, Some(Source::Rollover));
    assert_eq!(
        rec.previous,
        [PreviousEntry {
            file: format!("globex.history/{}.crt", old.sha256_fingerprint()),
            until: time::iso8601(now + 3600),
        }]
    );
    assert!(d.0.join(&rec.previous[0].file).is_file());
    // Expired entries are dropped (the file stays in the history); a live one is kept.
    let mut r2 = rec.clone();
    r2.previous[0].until = time::iso8601(now - 1);
    save_record(&d.0, "globex", &r2).unwrap();
    assert_eq!(
        PartnerFolder::load(&d.0).unwrap().accepted("globex", now),
        vec![new.clone()]
    );
    assert_eq!(drop_expired(&d.0, "globex", now).unwrap(), 1);
    assert!(load_record(&d.0, "globex")
        .unwrap()
        .unwrap()
        .previous
        .is_empty());
    assert!(d.0.join(&rec.previous[0].file).is_file());
    save_record(&d.0, "globex", &rec).unwrap();
    assert_eq!(drop_expired(&d.0, "globex", now).unwrap(), 0);
    // Replaced without keeping: the old one is history only.
    set_current(&d.0, "globex", &newer, Source::File, None, &[]).unwrap();
    let f = PartnerFolder::load(&d.0).unwrap();
    assert_eq!(f.current("globex"), vec![newer.clone()]);
    // (the entry kept for `old` still runs)
    assert_eq!(f.accepted("globex", now), [newer.clone(), old.clone()]);
    assert!(d
        .0
        .join(format!("globex.history/{}.crt", new.sha256_fingerprint()))
        .is_file());
    // The profile and receipts of the record survive replacements.
    let mut r3 = load_record(&d.0, "globex").unwrap().unwrap();
    r3.receipts = false;
    r3.profile = Some(Profile::LegacyAs2);
    save_record(&d.0, "globex", &r3).unwrap();
    set_current(&d.0, "globex", &old, Source::File, None, &[]).unwrap();
    let r4 = load_record(&d.0, "globex").unwrap().unwrap();
    assert_eq!((r4.receipts, r4.profile), (false, Some(Profile::LegacyAs2)));
    // …and the new current one is not also listed as previous.
    assert!(r4
        .previous
        .iter()
        .all(|p| !p.file.contains(&old.sha256_fingerprint())));
}

#[test]
fn an_earlier_versions_certificate_files_still_work_and_are_replaced_whole() {
    let d = folder();
    let (a, b, c) = (cert("globex"), cert("globex"), cert("globex"));
    // An earlier `partners add` appended a rollover's certificate to the same file; a second
    // file was copied in by hand.
    let mut pem = a.to_pem();
    pem.extend_from_slice(&b.to_pem());
    fs::write(d.0.join("globex.crt"), pem).unwrap();
    fs::write(d.0.join("globex.pem"), c.to_pem()).unwrap();
    let f = PartnerFolder::load(&d.0).unwrap();
    assert_eq!(f.current("globex").len(), 3);
    assert_eq!(f.accepted("globex", time::now_unix()).len(), 3);
    let n = cert("globex");
    let r = set_current(&d.0, "globex", &n, Source::File, None, &[]).unwrap();
    assert_eq!(r.old.len(), 3);
    assert!(!d.0.join("globex.pem").exists());
    let f = PartnerFolder::load(&d.0).unwrap();
    assert_eq!(f.current("globex"), [n]);
    assert_eq!(fs::read_dir(d.0.join("globex.history")).unwrap().count(), 3);
}

#[test]
fn a_partners_profile_and_3des_setting_decide_what_we_accept_from_it() {
    use ls_core::cms::InboundPolicy;
    let d = folder();
    fs::write(d.0.join("globex.crt"), cert("globex").to_pem()).unwrap();
    // As `[policy] accept_legacy_ciphers = true` makes it.
    let global = InboundPolicy::ANY;
    let policy = |record: &str| {
        fs::write(d.0.join("globex.toml"), record).unwrap();
        PartnerFolder::load(&d.0)
            .unwrap()
            .get("globex")
            .unwrap()
            .inbound_policy(global)
    };
    // No profile follows [policy]; a named one overrides it; accept_3des decides 3DES.
    assert_eq!(policy(""), global);
    assert_eq!(policy("profile = \"modern\"\n"), InboundPolicy::MODERN);
    assert_eq!(policy("profile = \"legacy-as2\"\n"), InboundPolicy::ANY);
    let p = policy("profile = \"legacy-as2\"\naccept_3des = false\n");
    assert!(p.accept_cbc && p.accept_rsa_pkcs1v15 && !p.accept_3des);
    let p = policy("accept_3des = false\n");
    assert!(!p.accept_3des && p.accept_cbc);
    let p = policy("profile = \"modern\"\naccept_3des = true\n");
    assert!(p.accept_3des && !p.accept_cbc);
    let p = policy("profile = \"legacy-as2\"\naccept_rsa_pkcs1v15 = false\naccept_cbc = false\n");
    assert!(!p.accept_rsa_pkcs1v15 && !p.accept_cbc && p.accept_multipart_signed && p.accept_3des);
    assert!(config_error_of(&d.0, "accept_3des = \"yes\"\n").contains("accept_3des"));
}

fn config_error_of(dir: &Path, record: &str) -> String {
    fs::write(dir.join("globex.toml"), record).unwrap();
    config_error(dir)
}

#[test]
fn a_records_individual_settings_decide_what_we_seal_with() {
    use ls_core::cms::{ContentCipher, KeyTransport, SealOptions, SignatureFormat};
    let d = folder();
    fs::write(d.0.join("globex.crt"), cert("globex").to_pem()).unwrap();
    let sealed_with = |record: &str| {
        fs::write(d.0.join("globex.toml"), record).unwrap();
        let mut o = SealOptions::default();
        PartnerFolder::load(&d.0)
            .unwrap()
            .get("globex")
            .unwrap()
            .apply_seal(&mut o);
        (o.cipher, o.key_transport, o.signature_format)
    };
    let modern = (
        ContentCipher::Aes256Gcm,
        KeyTransport::RsaOaepSha256,
        SignatureFormat::Opaque,
    );
    assert_eq!(sealed_with(""), modern);
    assert_eq!(sealed_with("profile = \"modern\"\n"), modern);
    assert_eq!(
        sealed_with("profile = \"legacy-as2\"\n"),
        (
            ContentCipher::Aes256Cbc,
            KeyTransport::RsaPkcs1v15,
            SignatureFormat::MultipartSigned
        )
    );
    // legacy-as2 with OAEP-SHA-1 (pyas2lib reads it too), or modern but multipart/signed.
    assert_eq!(
        sealed_with("profile = \"legacy-as2\"\nkey_transport = \"rsa-oaep-sha1\"\n").1,
        KeyTransport::RsaOaepSha1
    );
    assert_eq!(
        sealed_with("signature_format = \"multipart-signed\"\ncipher = \"aes-256-cbc\"\n"),
        (
            ContentCipher::Aes256Cbc,
            KeyTransport::RsaOaepSha256,
            SignatureFormat::MultipartSigned
        )
    );
    assert!(config_error_of(&d.0, "key_transport = \"rsa-md5\"\n").contains("key_transport"));
}
