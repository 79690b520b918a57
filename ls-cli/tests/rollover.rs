//! Key rollover through real processes over TLS on loopback: `layersec-server` and a
//! `layersec` client per party (`rollover`, `run`, `poll`, `status`), with documents in flight
//! while the keys change, a partner offline during the rollover, and the old key refused once
//! the overlap is over; forged, replayed and new-key-only updates refused.

use ls_core::as4::coordination::{self, UpdateHeader};
use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::exchange::{self, Exchange};
use ls_core::as4::message::{self, Built, Outgoing, Payload};
use ls_core::as4::model::Messaging;
use ls_core::as4::xml::Limits;
use ls_core::rollover::{self as contract, CertificateUpdate};
use ls_core::transport::{HttpsConfig, HttpsTransport, Transport};
use ls_core::{Certificate, Identity};
use ls_tests::client::{json, Client};
use ls_tests::service::{server_bin_beside, RunningService};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const LAYERSEC: &str = env!("CARGO_BIN_EXE_layersec");

fn start_service(name: &str) -> RunningService {
    let bin = server_bin_beside(Path::new(LAYERSEC));
    let mut s = RunningService::init(&bin, name, |text| {
        text.replace("redeliver_after_secs = 300", "redeliver_after_secs = 2")
    });
    s.serve();
    s
}

type Party = Client;

/// `layersec init` for `id` (an EC key), registered at the service, polling every second;
/// `extra_config` goes into its `[identity]` section.
fn party(svc: &RunningService, id: &str, extra_config: &str) -> Party {
    let c = Client::init(Path::new(LAYERSEC), svc, id, &["--key-type", "ec"]);
    c.edit_config(|t| t.replace("[identity]\n", &format!("[identity]\n{extra_config}")));
    c.register(svc, &[]);
    c
}

/// What the rollover tests do with a client besides the shared commands.
trait Ops {
    fn cert_path(&self) -> PathBuf;
    fn trust(&self, other: &Party);
    fn status(&self) -> Value;
    fn identity(&self) -> Identity;
    fn outbox(&self, to: &str, n: usize, tag: &str) -> Vec<(String, Vec<u8>)>;
}

impl Ops for Party {
    fn cert_path(&self) -> PathBuf {
        self.dir.join("identity/cert.pem")
    }

    fn trust(&self, other: &Party) {
        // The partner's certificate as it is now (a copy: the file changes with a rollover).
        let copy = self.dir.join(format!("{}-initial.crt", other.id));
        std::fs::copy(other.cert_path(), &copy).unwrap();
        self.ok(&["partners", "add", &other.id, copy.to_str().unwrap()]);
    }

    fn status(&self) -> Value {
        json(&self.ok(&["status", "--json"]))
    }

    /// Our identity as the files hold it now.
    fn identity(&self) -> Identity {
        Identity::load(
            self.dir.join("identity/key.pem"),
            Some(&self.cert_path()),
            None,
        )
        .unwrap()
    }

    /// Put `n` documents for `to` in the outbox, written under temporary names and renamed.
    fn outbox(&self, to: &str, n: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
        let out = self.dir.join("outbox").join(to);
        std::fs::create_dir_all(&out).unwrap();
        (0..n)
            .map(|i| {
                let name = format!("{tag}-{}-to-{to}-{i}.txt", self.id);
                let data = format!(
                    "<doc from=\"{}\" to=\"{to}\" n=\"{i}\">{tag}</doc>\n",
                    self.id
                )
                .repeat(40 + i)
                .into_bytes();
                let tmp = out.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, &data).unwrap();
                std::fs::rename(&tmp, out.join(&name)).unwrap();
                (name, data)
            })
            .collect()
    }
}

fn partner_state(status: &Value, partner: &str) -> String {
    status["rollover"]["partners"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["partner"] == partner))
        .map(|p| p["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

fn sigterm(c: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    None
}

/// HTTPS to the service's AS4 endpoint, trusting its TLS certificate.
fn transport(svc: &RunningService) -> HttpsTransport {
    let mut c = HttpsConfig::new(&svc.url);
    c.ca_pem = Some(std::fs::read(svc.tls_cert_path()).unwrap());
    c.idle_timeout = Duration::from_secs(60);
    HttpsTransport::new(c).unwrap()
}

fn exchange<'a>(t: &'a HttpsTransport, me: &'a Identity, svc: &'a Certificate) -> Exchange<'a> {
    Exchange {
        transport: t,
        me,
        service: svc,
        service_previous: &[],
        soap: SoapVersion::Soap12,
        domain: "test.example".into(),
        limits: Limits::default(),
    }
}

/// A document message from `from` to `to` signed (AS4 and CMS) by `signer`, sealed for
/// `rcpt`.
fn document_message(from: &str, to: &str, signer: &Identity, rcpt: &Certificate) -> Built {
    let sealed = ls_core::seal(
        b"<doc>signed with a key whose time is over</doc>",
        signer,
        std::slice::from_ref(rcpt),
        &ls_core::SealOptions::default(),
    )
    .unwrap();
    let um = exchange::user_message(
        from,
        to,
        "urn:layersec:service:document",
        "Deliver",
        "",
        "test.example",
    )
    .unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "document@test".into(),
            mime_type: "application/pkcs7-mime".into(),
            data: sealed,
            compress: false,
            properties: Vec::new(),
        }],
        signer,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn ebms_code(e: &ls_core::Error) -> String {
    match e {
        ls_core::Error::EbmsError { ebms_code, .. } => ebms_code.clone(),
        other => format!("not an ebMS error: {other}"),
    }
}

/// Every document of `sent` arrived in `to`'s inbox exactly once, byte for byte.
fn arrived_once(to: &Party, sent: &[(String, Vec<u8>)]) -> bool {
    let inbox = to.documents("inbox");
    sent.iter().all(|(name, data)| {
        let found: Vec<_> = inbox
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy() == *name)
            .collect();
        found.len() == 1 && std::fs::read(found[0]).unwrap() == *data
    })
}

#[test]
fn a_rollover_among_three_parties_with_documents_in_flight() {
    let svc = start_service("rollover-e2e");
    let acme = party(&svc, "acme", "");
    let globex = party(&svc, "globex", "");
    let initech = party(&svc, "initech", "");
    for (a, b) in [(&acme, &globex), (&acme, &initech), (&globex, &initech)] {
        a.trust(b);
        b.trust(a);
    }
    let old_cert = Certificate::load(acme.cert_path()).unwrap();
    let old_identity = acme.identity();
    let svc_cert = Certificate::load(svc.service_cert_path()).unwrap();

    // acme and globex run; initech is offline. 50 documents in flight, both ways.
    let mut a_run = acme.spawn_run();
    let mut g_run = globex.spawn_run();
    let a_to_g = acme.outbox("globex", 15, "during");
    let g_to_a = globex.outbox("acme", 15, "during");
    let a_to_i = acme.outbox("initech", 10, "during");
    let i_to_a = initech.outbox("acme", 10, "during");

    // acme rolls over while they are on their way (its daemon keeps running).
    let overlap_hours = "0.02"; // 72 s
    let o = acme.ok(&["rollover", "--overlap-hours", overlap_hours, "--json"]);
    let r = json(&o);
    assert_eq!(r["service"], "accepted", "{r}");
    assert_eq!(r["phase"], "announcing", "{r}");
    assert_eq!(r["old_certificate_sha256"], old_cert.sha256_fingerprint());
    let old_valid_until = r["old_valid_until"].as_i64().unwrap();
    let new_sha = r["new_certificate_sha256"].as_str().unwrap().to_string();
    // The service has both certificates, the old one until the overlap ends.
    let shown = svc.admin(&["party", "show", "acme"]);
    assert_eq!(
        shown["certificates"].as_array().unwrap().len(),
        2,
        "{shown}"
    );
    // A second rollover while this one runs is refused.
    let again = acme.cmd(&["rollover"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // globex takes the update and answers; acme still signs with the old key (initech has
    // not answered).
    assert!(
        wait_until(Duration::from_secs(30), || partner_state(
            &acme.status(),
            "globex"
        ) == "accepted"),
        "{}",
        acme.status()
    );
    let st = acme.status();
    assert_eq!(partner_state(&st, "initech"), "pending", "{st}");
    assert!(st["rollover"]["switched_at"].is_null(), "{st}");
    let gl = globex.status();
    let upd = &gl["partner_updates"][0];
    assert_eq!(upd["partner"], "acme");
    assert_eq!(upd["decision"], "accepted", "{gl}");
    let record = std::fs::read_to_string(globex.dir.join("partners/acme.toml")).unwrap();
    assert!(record.contains("source = \"rollover\""), "{record}");
    assert_eq!(
        Certificate::load(globex.dir.join("partners/acme.crt"))
            .unwrap()
            .sha256_fingerprint(),
        new_sha
    );

    // initech comes back during the overlap: it sends what waited in its outbox (sealed for
    // acme's old certificate: acme's old key opens it), takes the update, receives.
    let mut i_run = initech.spawn_run();
    assert!(
        wait_until(Duration::from_secs(30), || partner_state(
            &acme.status(),
            "initech"
        ) == "accepted"),
        "{}",
        acme.status()
    );
    // Everyone accepted: acme signs with the new key now.
    assert!(
        wait_until(Duration::from_secs(10), || acme.status()["rollover"]
            ["switched_because"]
            == "accepted"),
        "{}",
        acme.status()
    );
    assert_eq!(
        Certificate::load(acme.cert_path())
            .unwrap()
            .sha256_fingerprint(),
        new_sha
    );
    assert!(acme
        .dir
        .join(format!(
            "identity/previous/{}.key.pem",
            old_cert.sha256_fingerprint()
        ))
        .is_file());

    // Every document delivered exactly once and opened; none refused.
    assert!(
        wait_until(Duration::from_secs(60), || arrived_once(&globex, &a_to_g)
            && arrived_once(&acme, &g_to_a)
            && arrived_once(&initech, &a_to_i)
            && arrived_once(&acme, &i_to_a)),
        "acme inbox {:?}\nglobex inbox {:?}\ninitech inbox {:?}\nacme {}",
        acme.documents("inbox").len(),
        globex.documents("inbox").len(),
        initech.documents("inbox").len(),
        acme.status()
    );
    for p in [&acme, &globex, &initech] {
        let st = p.status();
        assert_eq!(st["failed"], 0, "{}: {st}", p.id);
        assert_eq!(
            st["incoming_failures"],
            serde_json::json!([]),
            "{}: {st}",
            p.id
        );
        assert_eq!(
            st["refused_by_partners"],
            serde_json::json!([]),
            "{}: {st}",
            p.id
        );
        assert!(p.documents("failed").is_empty(), "{}", p.id);
    }
    assert_eq!(acme.documents("inbox").len(), 25);
    assert_eq!(acme.documents("sent").len(), 25);
    // What acme sends now is signed with the new key and accepted.
    let after_switch = acme.outbox("globex", 2, "after");
    let back = globex.outbox("acme", 2, "after");
    assert!(
        wait_until(Duration::from_secs(30), || arrived_once(
            &globex,
            &after_switch
        ) && arrived_once(&acme, &back)),
        "{}",
        globex.status()
    );

    // Before the overlap ends globex goes offline, and a message signed with acme's old key
    // reaches the service (still valid there).
    assert_eq!(sigterm(&mut g_run), Some(0));
    let t = transport(&svc);
    let globex_cert = Certificate::load(globex.cert_path()).unwrap();
    let late = document_message("acme", "globex", &old_identity, &globex_cert);
    assert!(
        ls_core::time::now_unix() < old_valid_until - 2,
        "the overlap ended before the test got here: make it longer"
    );
    exchange(&t, &old_identity, &svc_cert).push(&late).unwrap();
    // After the overlap: the service refuses the old key…
    assert!(
        wait_until(Duration::from_secs(120), || ls_core::time::now_unix()
            > old_valid_until + 1),
        "the overlap does not end"
    );
    let refused = document_message("acme", "globex", &old_identity, &globex_cert);
    let e = exchange(&t, &old_identity, &svc_cert)
        .push(&refused)
        .unwrap_err();
    assert_eq!(ebms_code(&e), "EBMS:0101", "{e}");
    // … and so does globex, once it polls: refused with a notice, not written.
    let o = globex.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("\"path\""), "{out}");
    let st = globex.status();
    let f = &st["incoming_failures"][0];
    assert_eq!(f["sender"], "acme", "{st}");
    assert_eq!(f["refused"], "not_trusted", "{st}");
    assert!(
        f["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer accepted"),
        "{st}"
    );
    // acme learns of the refusal (its daemon polls), and its rollover is finished.
    assert!(
        wait_until(Duration::from_secs(30), || acme.status()
            ["refused_by_partners"]
            .as_array()
            .is_some_and(|a| a.len() == 1)),
        "{}",
        acme.status()
    );
    let text = String::from_utf8_lossy(&acme.ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains("globex") && text.contains("accepted"),
        "{text}"
    );
    assert!(text.contains("signing with:     the new key"), "{text}");
    assert_eq!(sigterm(&mut a_run), Some(0));
    assert_eq!(sigterm(&mut i_run), Some(0));
}

/// A certificate update from `from` to `to`: AS4-signed by `signer`, carrying `u` counter-signed
/// by `counter`, the header naming `named` as the new certificate.
fn update_message(
    from: &str,
    to: &str,
    signer: &Identity,
    u: &CertificateUpdate,
    counter: &Identity,
    named: &Certificate,
) -> Built {
    let h = UpdateHeader {
        new_certificate_sha256: named.sha256_fingerprint(),
        old_valid_until: u.old_valid_until.clone(),
    };
    let um = coordination::certificate_update_message(from, to, &h, "test.example").unwrap();
    let statement =
        ls_core::cms::signed::sign_statement(&serde_json::to_vec(u).unwrap(), counter).unwrap();
    message::build(Outgoing {
        messaging: Messaging {
            user_messages: vec![um],
            signals: Vec::new(),
        },
        payloads: vec![Payload {
            content_id: "update@test".into(),
            mime_type: contract::UPDATE_CONTENT_TYPE.into(),
            data: statement,
            compress: false,
            properties: Vec::new(),
        }],
        signer,
        encrypt_for: None,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

/// A certificate for the key of `csr_pem` (a request `layersec keygen` made), issued by a CA:
/// end entity, may sign and agree keys; PEM, followed by the CA's certificate.
fn issue_from_csr(csr_pem: &[u8]) -> Vec<u8> {
    use ls_core::keys::builder::{CertPurpose, CertificateBuilder};
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, KeyUsage};
    use openssl::x509::{X509Builder, X509Req, X509};
    let ca = CertificateBuilder::new("Layer Security Test CA", CertPurpose::Ca)
        .key_type(ls_core::KeyType::EcP256)
        .build(None)
        .unwrap();
    let ca_key = PKey::private_key_from_pem(&ca.key_pem).unwrap();
    let ca_cert = X509::from_pem(&ca.cert_pem).unwrap();
    let req = X509Req::from_pem(csr_pem).unwrap();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(4711).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(req.subject_name()).unwrap();
    b.set_issuer_name(ca_cert.subject_name()).unwrap();
    b.set_pubkey(&req.public_key().unwrap()).unwrap();
    let now = ls_core::time::now_unix();
    b.set_not_before(&Asn1Time::from_unix(now - 60).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + 365 * 86400).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .non_repudiation()
            .key_agreement()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let mut pem = b.build().to_pem().unwrap();
    pem.extend_from_slice(&ca.cert_pem);
    pem
}

fn updates_of(status: &Value, partner: &str) -> Vec<Value> {
    let mut v: Vec<Value> = status["partner_updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["partner"] == partner)
        .cloned()
        .collect();
    v.sort_by_key(|u| u["received_at"].as_i64());
    v
}

#[test]
fn forged_replayed_and_new_key_only_updates_are_refused_and_a_ca_issued_certificate_works() {
    let svc = start_service("rollover-forged");
    let acme = party(&svc, "acme", "");
    let globex = party(&svc, "globex", "");
    let mallory = party(&svc, "mallory", "");
    acme.trust(&globex);
    globex.trust(&acme);
    globex.trust(&mallory);
    mallory.trust(&globex);
    let old = acme.identity();
    let svc_cert = Certificate::load(svc.service_cert_path()).unwrap();
    let t = transport(&svc);

    // The new key and a request for a CA (`layersec keygen`), the CA's certificate for it.
    let new_dir = acme.dir.join("new");
    let o = Command::new(LAYERSEC)
        .args([
            "keygen",
            "--party",
            "acme",
            "--out",
            new_dir.to_str().unwrap(),
        ])
        .args(["--key-type", "ec", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csr = std::fs::read(new_dir.join("acme.csr.pem")).unwrap();
    let issued = acme.dir.join("acme-ca.crt");
    std::fs::write(&issued, issue_from_csr(&csr)).unwrap();
    let new_key = new_dir.join("acme.key.pem");
    let x = Identity::load(&new_key, Some(&issued), None).unwrap();
    assert_eq!(x.chain().len(), 1, "issued by the CA");

    // Before acme's own rollover reaches globex: the new certificate registered at the
    // service (as `layersec rollover` will do again), and an update signed by the new key
    // alone on its way to globex.
    let claims =
        contract::RequestClaims::new("acme", old.certificate(), x.certificate(), 3600, &svc_cert)
            .unwrap();
    let mut c = HttpsConfig::new(contract::rollover_url(&svc.url).unwrap());
    c.ca_pem = Some(std::fs::read(svc.tls_cert_path()).unwrap());
    let r = HttpsTransport::new(c)
        .unwrap()
        .post(
            contract::CONTENT_TYPE,
            &contract::build_request(&old, &x, &claims).unwrap(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let now = ls_core::time::now_unix();
    let u = CertificateUpdate::new(
        "acme",
        "globex",
        old.certificate(),
        x.certificate(),
        now,
        now + 3600,
    )
    .unwrap();
    let new_only = update_message("acme", "globex", &x, &u, &x, x.certificate());
    exchange(&t, &x, &svc_cert).push(&new_only).unwrap();
    // Another party (a partner of globex) tries to replace acme's certificate with a key of
    // its own.
    let mal = mallory.identity();
    let thief = Identity::generate("acme", ls_core::KeyType::EcP256, 30, None)
        .unwrap()
        .identity;
    let forged = CertificateUpdate::new(
        "acme",
        "globex",
        old.certificate(),
        thief.certificate(),
        now,
        now + 3600,
    )
    .unwrap();
    let forged_msg = update_message(
        "mallory",
        "globex",
        &mal,
        &forged,
        &thief,
        mal.certificate(),
    );
    exchange(&t, &mal, &svc_cert).push(&forged_msg).unwrap();

    // acme's rollover to the CA-issued certificate (the service recognises the registration).
    let o = acme.ok(&[
        "rollover",
        "--key",
        new_key.to_str().unwrap(),
        "--cert",
        issued.to_str().unwrap(),
        "--overlap-hours",
        "1",
        "--json",
    ]);
    let r = json(&o);
    assert_eq!(
        r["new_certificate_sha256"],
        x.certificate().sha256_fingerprint(),
        "{r}"
    );
    assert_eq!(r["partners"][0]["partner"], "globex", "{r}");
    assert_eq!(r["partners"][0]["state"], "pending", "{r}");

    // globex judges the three in order: the new-key-only update refused (with a notice),
    // mallory's refused (wrong party), acme's accepted.
    globex.ok(&["poll"]);
    let st = globex.status();
    let ups = updates_of(&st, "acme");
    assert_eq!(ups.len(), 2, "{st}");
    assert_eq!(ups[0]["decision"], "rejected", "{st}");
    assert_eq!(ups[0]["reason"], "unknown_signer", "{st}");
    assert_eq!(ups[1]["decision"], "accepted", "{st}");
    let m = updates_of(&st, "mallory");
    assert_eq!(m.len(), 1, "{st}");
    assert_eq!(m[0]["reason"], "wrong_party", "{st}");
    assert_eq!(
        Certificate::load(globex.dir.join("partners/mallory.crt")).unwrap(),
        *mal.certificate(),
        "mallory's certificate unchanged"
    );
    assert_eq!(
        Certificate::load(globex.dir.join("partners/acme.crt")).unwrap(),
        *x.certificate()
    );

    // acme takes the answer, switches to the CA-issued certificate; the refusal of the
    // update it did not send is recorded as a partner's refusal.
    acme.ok(&["poll"]);
    let st = acme.status();
    assert_eq!(partner_state(&st, "globex"), "accepted", "{st}");
    assert_eq!(st["rollover"]["switched_because"], "accepted", "{st}");
    assert_eq!(
        Certificate::load(acme.cert_path()).unwrap(),
        *x.certificate()
    );

    // The accepted update replayed in a new message (acme's old key still valid at the
    // service): refused, the certificate unchanged.
    let nonce = ups[1]["nonce"].as_str().unwrap().to_string();
    let mut replay = u.clone();
    replay.nonce = nonce;
    let replayed = update_message("acme", "globex", &old, &replay, &x, x.certificate());
    exchange(&t, &old, &svc_cert).push(&replayed).unwrap();
    globex.ok(&["poll"]);
    let st = globex.status();
    let ups = updates_of(&st, "acme");
    assert_eq!(ups.len(), 3, "{st}");
    assert_eq!(ups[2]["reason"], "replayed", "{st}");
    assert_eq!(
        Certificate::load(globex.dir.join("partners/acme.crt")).unwrap(),
        *x.certificate()
    );
    // The answers to updates they did not send change nothing for acme and mallory.
    acme.ok(&["poll"]);
    mallory.ok(&["poll"]);
    assert_eq!(partner_state(&acme.status(), "globex"), "accepted");
    assert!(mallory.status()["rollover"].is_null());

    // A document with the CA-issued key, both ways.
    let doc = acme.dir.join("after.xml");
    std::fs::write(&doc, b"<after/>").unwrap();
    acme.ok(&["send", doc.to_str().unwrap(), "--to", "globex"]);
    globex.ok(&["poll"]);
    assert_eq!(globex.documents("inbox").len(), 1, "{}", globex.status());
    let back = globex.dir.join("back.xml");
    std::fs::write(&back, b"<back/>").unwrap();
    globex.ok(&["send", back.to_str().unwrap(), "--to", "acme"]);
    acme.ok(&["poll"]);
    assert_eq!(acme.documents("inbox").len(), 1, "{}", acme.status());
    // The text of status says what happened at globex.
    let text = String::from_utf8_lossy(&globex.ok(&["status"]).stdout).into_owned();
    assert!(
        text.contains("replayed") && text.contains("unknown_signer"),
        "{text}"
    );
}

#[test]
fn status_warns_before_expiry_and_the_daemon_rolls_over_by_itself() {
    let svc = start_service("rollover-auto");
    // Certificates of 825 days: "expiring within 100000 days" is now.
    let acme = party(
        &svc,
        "acme",
        "expiry_warning_days = 100000\nauto_rollover_days = 100000\nrollover_overlap_hours = 1\n",
    );
    let globex = party(&svc, "globex", "");
    acme.trust(&globex);
    globex.trust(&acme);
    let old = Certificate::load(acme.cert_path()).unwrap();
    let o = acme.ok(&["status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: our certificate") && err.contains("layersec rollover"),
        "{err}"
    );
    let st = acme.status();
    assert_eq!(st["certificate"]["expiry_warning"], true, "{st}");
    assert_eq!(st["certificate"]["auto_rollover_due"], true, "{st}");
    assert!(st["rollover"].is_null());
    // The daemon starts the rollover, globex accepts, acme switches.
    let mut a = acme.spawn_run();
    let mut g = globex.spawn_run();
    assert!(
        wait_until(Duration::from_secs(60), || acme.status()["rollover"]
            ["switched_because"]
            == "accepted"),
        "{}",
        acme.status()
    );
    let st = acme.status();
    assert_eq!(st["rollover"]["automatic"], true, "{st}");
    assert_ne!(Certificate::load(acme.cert_path()).unwrap(), old);
    // The new certificate expires within 100000 days too, but one rollover is enough: the
    // daemon does not start another while this one's overlap runs (two more polls).
    let switched_at = st["rollover"]["switched_at"].as_i64().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || acme.status()["last_poll"]["at"]
            .as_i64()
            .is_some_and(|t| t >= switched_at + 3)),
        "{}",
        acme.status()
    );
    assert_eq!(sigterm(&mut a), Some(0));
    assert_eq!(sigterm(&mut g), Some(0));
    let log = std::fs::read_to_string(acme.dir.join("run.log")).unwrap();
    assert_eq!(
        log.matches("\"event\":\"rollover_started\"").count(),
        1,
        "{log}"
    );
    assert!(log.contains("\"event\":\"switched\""), "{log}");
}

#[test]
fn the_services_own_key_rolls_over_and_clients_follow() {
    let svc = start_service("rollover-service");
    let acme = party(&svc, "acme", "");
    let globex = party(&svc, "globex", "");
    acme.trust(&globex);
    globex.trust(&acme);
    let old = Certificate::load(svc.service_cert_path()).unwrap();
    let r = svc.admin(&["service", "rollover", "--overlap-hours", "0.004"]);
    let new_sha = r["new_certificate_sha256"].as_str().unwrap().to_string();
    let announced = r["announced"].as_array().unwrap();
    assert_eq!(announced.len(), 2, "{r}");
    let switch_at = ls_core::time::parse_date_time(r["switch_at"].as_str().unwrap()).unwrap();
    // Run again while under way: one at a time, but a party registered since is told now.
    let late = party(&svc, "latecomer", "");
    let again = svc.admin(&["service", "rollover"]);
    assert_eq!(again["under_way"], true, "{again}");
    assert_eq!(again["new_certificate_sha256"], new_sha.as_str(), "{again}");
    let now_told = again["announced_now"].as_array().unwrap();
    assert_eq!(now_told.len(), 1, "{again}");
    assert!(
        now_told[0].as_str().unwrap().contains("latecomer"),
        "{again}"
    );
    assert_eq!(again["announced"].as_array().unwrap().len(), 3, "{again}");
    drop(late);

    // acme polls during the overlap: it takes the update (signed by the service's old key,
    // counter-signed by the new one) and now holds the new certificate; receipts still come
    // signed by the old key, which it accepts for the overlap after the switch.
    acme.ok(&["poll"]);
    let st = acme.status();
    let u = updates_of(&st, "urn:layersec:service");
    assert_eq!(u.len(), 1, "{st}");
    assert_eq!(u[0]["decision"], "accepted", "{st}");
    assert_eq!(
        Certificate::load(acme.dir.join("service/service.crt"))
            .unwrap()
            .sha256_fingerprint(),
        new_sha
    );
    let doc = acme.dir.join("during.xml");
    std::fs::write(&doc, b"<during/>").unwrap();
    acme.ok(&["send", doc.to_str().unwrap(), "--to", "globex"]);

    // After the overlap the service signs with the new key (and has put it in its files).
    assert!(
        wait_until(Duration::from_secs(60), || ls_core::time::now_unix()
            > switch_at + 1),
        "the overlap does not end"
    );
    let doc = acme.dir.join("after.xml");
    std::fs::write(&doc, b"<after/>").unwrap();
    acme.ok(&["send", doc.to_str().unwrap(), "--to", "globex"]);
    assert!(
        wait_until(Duration::from_secs(10), || svc.admin(&["service", "show"])
            ["certificate_sha256"]
            == new_sha.as_str()),
        "{}",
        svc.admin(&["service", "show"])
    );
    assert_ne!(Certificate::load(svc.service_cert_path()).unwrap(), old);
    // globex was offline all along: its first pull is the update (signed by the old key, which
    // it holds), then the documents; the answers signed by the new key verify.
    let o = globex.ok(&["poll", "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let documents = out.lines().filter(|l| !l.contains("\"summary\"")).count();
    assert_eq!(documents, 2, "{out}");
    let st = globex.status();
    assert_eq!(
        updates_of(&st, "urn:layersec:service")[0]["decision"],
        "accepted",
        "{st}"
    );
    let back = globex.dir.join("back.xml");
    std::fs::write(&back, b"<back/>").unwrap();
    globex.ok(&["send", back.to_str().unwrap(), "--to", "acme"]);
    acme.ok(&["poll"]);
    assert_eq!(acme.documents("inbox").len(), 1, "{}", acme.status());
    assert!(svc
        .logs()
        .iter()
        .any(|l| l.contains("\"service_key_switched\"")));
}
