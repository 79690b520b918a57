//! The bodies of the fuzz targets (one public function per target, called by
//! `fuzz_targets/<name>.rs`; `client_config` and `admin_api` are in their own modules). Each
//! feeds arbitrary bytes to public ls-core (or ls-server) APIs and must never
//! panic: every hostile input is an `Err`, never a crash. The few `assert!`s check properties the
//! API promises (limits, round trips); a failed one is a bug like any other panic.
//!
//! Keys: by default one identity is generated per process (RSA-2048, in a `OnceLock`) and used
//! both as our recipient key and as the pinned partner certificate. `scripts/fuzz-smoke.sh`
//! instead hands over keys made with `layersec keygen` (and seeds sealed with them) so that
//! mutated inputs get past decryption and signature checks into the inner layers:
//!
//! - `LS_FUZZ_KEY`, `LS_FUZZ_CERT`: our identity (PEM key and certificate)
//! - `LS_FUZZ_SENDER`: the partner certificate expected on CMS signatures
//! - `LS_FUZZ_PARTNERS`: a folder of partner certificates (`CertStore::load_dir`) for AS4
//!   signatures, so fixture messages verify up to their signature value

mod admin_api;
mod client_config;

pub use admin_api::admin_api;
pub use client_config::client_config;

use ls_core::as4::{c14n, wss, xml};
use ls_core::mime::{self, Entity};
use ls_core::{CertStore, Certificate, Identity, KeyType, OpenOptions};
use std::path::Path;
use std::sync::OnceLock;

struct Keys {
    identity: Identity,
    sender: Certificate,
    partners: Option<CertStore>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let identity = match (env("LS_FUZZ_KEY"), env("LS_FUZZ_CERT")) {
            (Some(key), Some(cert)) => {
                Identity::load(Path::new(&key), Some(Path::new(&cert)), None)
                    .expect("LS_FUZZ_KEY/LS_FUZZ_CERT: cannot load the identity")
            }
            _ => {
                Identity::generate("fuzz-recipient", KeyType::Rsa(2048), 30, None)
                    .expect("cannot generate the fuzzing identity")
                    .identity
            }
        };
        let sender = match env("LS_FUZZ_SENDER") {
            Some(path) => Certificate::load(&path).expect("LS_FUZZ_SENDER: cannot load"),
            None => identity.certificate().clone(),
        };
        let partners = env("LS_FUZZ_PARTNERS")
            .map(|dir| CertStore::load_dir(&dir).expect("LS_FUZZ_PARTNERS: cannot load"));
        Keys {
            identity,
            sender,
            partners,
        }
    })
}

/// The output limit of `cms_open`.
const MAX_OUTPUT: u64 = 1 << 20;

/// S/MIME entity parsing, BER, every CMS content type and the layer walker: `open` with our key
/// and a pinned sender, and `inspect` without and with keys.
pub fn cms_open(data: &[u8]) {
    let k = keys();
    let opts = OpenOptions {
        recipient: Some(&k.identity),
        sender: Some(&k.sender),
        allow_unsigned: true,
        max_output: MAX_OUTPUT,
        ..Default::default()
    };
    let in_memory = ls_core::open(data, &opts);
    if let Ok(opened) = &in_memory {
        assert!(
            opened.document.len() as u64 <= MAX_OUTPUT,
            "open returned {} bytes, above max_output",
            opened.document.len()
        );
        if let Some(name) = opened.safe_filename() {
            assert!(!name.contains('/') && !name.contains('\\') && !name.is_empty());
        }
    }
    // The streaming open decides as the in-memory one: what one accepts the other accepts,
    // with the same document and signer. (Where the stream refuses what memory accepts, it
    // says it is a limit of streaming: UnsupportedAlgorithm.)
    let mut out = Vec::new();
    let streamed = ls_core::open_stream(&mut &data[..], &mut out, &opts);
    match (&in_memory, &streamed) {
        (Ok(m), Ok(s)) => {
            assert!(
                m.document == out,
                "open_stream wrote another document than open"
            );
            assert_eq!(
                m.signer, s.signer,
                "open_stream and open name other signers"
            );
            assert_eq!(s.size, out.len() as u64);
        }
        (Err(_), Ok(_)) => panic!("open_stream accepted what open refused: {in_memory:?}"),
        // miniz_oxide (the in-memory inflate) skips the Adler-32 check when built for fuzzing
        // (`cfg(fuzzing)`); zlib-rs (the streaming one) does not.
        (Ok(_), Err(ls_core::Error::DecompressFailed(m)))
            if cfg!(fuzzing) && m.contains("incorrect data check") => {}
        (Ok(_), Err(e)) => assert_eq!(
            e.code(),
            ls_core::ErrorCode::UnsupportedAlgorithm,
            "open_stream refused what open accepted: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
    let _ = ls_core::inspect(data, &OpenOptions::default()).to_json_pretty();
    let _ = ls_core::inspect(data, &opts).to_json_pretty();
}

/// Subslice check: `part` lies inside `whole` (the MIME splitters return views, never copies).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fn entity(data: &[u8], depth: u32) {
    let _ = mime::looks_like_entity(data);
    let Ok(e) = Entity::parse(data) else { return };
    assert!(
        within(data, e.body),
        "Entity::parse: body outside its input"
    );
    let _ = e.content_type();
    let _ = e.filename();
    let _ = e.header("content-type");
    let _ = e.content_type_param("boundary");
    let _ = e.decoded_body();
    if let Ok(parts) = mime::split_signed(&e) {
        assert!(within(data, parts.content) && within(data, parts.signature));
        if depth < 2 {
            entity(parts.content, depth + 1);
            entity(parts.signature, depth + 1);
        }
    }
    if let Some(b) = e.content_type_param("boundary") {
        if let Ok(parts) = mime::split_multipart(e.body, &b) {
            for p in parts {
                assert!(within(e.body, p), "split_multipart: part outside its body");
            }
        }
    }
}

/// MIME: entity headers, parameters, transfer encodings, multipart splitting, base64.
pub fn mime_entity(data: &[u8]) {
    entity(data, 0);
    if let Ok(parts) = mime::split_multipart(data, "b") {
        for p in parts {
            assert!(within(data, p), "split_multipart: part outside its input");
        }
    }
    let _ = mime::base64_decode(data);
    // What we write, we read back.
    let enc = mime::base64_encode_mime(data);
    assert_eq!(
        mime::base64_decode(&enc).ok().as_deref(),
        Some(data),
        "base64 round trip"
    );
    let _ = mime::param(&String::from_utf8_lossy(data), "filename");
    // Parameter values are file names and boundaries: a short prefix is enough (format_param
    // costs a formatted string per byte, which would dominate on large inputs).
    let text = String::from_utf8_lossy(&data[..data.len().min(256)]);
    let header = format!(
        "application/octet-stream; {}",
        mime::format_param("name", &text)
    );
    assert_eq!(
        mime::param(&header, "name").as_deref(),
        Some(&*text),
        "format_param/param round trip of {header:?}"
    );
    let _ = mime::guess_type(&text);
}

/// Elements whose local name is `name`, in any namespace.
fn named<'a, 'i>(doc: &'a roxmltree::Document<'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

/// The AS4 XML layer: bounded parsing, Id lookup, exclusive C14N, WS-Security verification.
pub fn as4_xml(data: &[u8]) {
    let Ok(doc) = xml::parse_bytes(data, &xml::Limits::default()) else {
        return;
    };
    let root = doc.root_element();
    let _ = c14n::canonicalize(root, &[]);
    let _ = c14n::canonicalize(root, &["#default", "soap", "eb", "S12"]);

    // Every Id in the document (a few), and some that are not there.
    let mut ids: Vec<&str> = doc
        .descendants()
        .filter(|n| n.is_element())
        .filter_map(xml::id_of)
        .take(8)
        .collect();
    ids.extend(["", "body", "_1"]);
    for id in ids {
        if let Ok(Some(n)) = xml::by_id(&doc, id) {
            assert_eq!(
                xml::id_of(n),
                Some(id),
                "by_id found an element with another Id"
            );
            let _ = c14n::canonicalize(n, &[]);
        }
    }
    for n in doc.descendants().filter(|n| n.is_element()).take(64) {
        let _ = xml::source_qname(n);
        let _ = xml::text(n);
        if let Some(pl) = n.attribute("PrefixList") {
            let _ = c14n::canonicalize(root, &c14n::prefix_list(pl));
        }
    }

    let security = named(&doc, "Security");
    let body = named(&doc, "Body").unwrap_or(root);
    let messaging = named(&doc, "Messaging");
    let k = keys();
    let pinned = wss::VerifyPolicy {
        signer: Some(k.identity.certificate()),
        ..Default::default()
    };
    let covered = wss::Covered {
        messaging,
        body,
        attachments: &[],
        partial: false,
    };
    let _ = wss::verify(&doc, security, &covered, &pinned);
    let attachment: &[(&str, &[u8])] = &[("payload@fuzz", b"payload")];
    let partial = wss::Covered {
        messaging,
        body,
        attachments: attachment,
        partial: true,
    };
    let _ = wss::verify(&doc, security, &partial, &pinned);
    if let Some(store) = &k.partners {
        let partners = wss::VerifyPolicy {
            partners: Some(store),
            allow_expired: true,
            ..Default::default()
        };
        let _ = wss::verify(&doc, security, &covered, &partners);
        let _ = wss::verify(&doc, security, &partial, &partners);
    }
}

/// What a received AS4 message goes through: a raw HTTP capture or a body with its Content-Type
/// into a SOAP-with-attachments package, the SOAP envelope (mustUnderstand, one Messaging, one
/// Security), the ebMS3 header model, gzip, and the whole read (decrypt, verify, payloads).
/// The spooler (a body received in pieces into a file) reads `data` as `Package::parse` did:
/// the same package or an error of the same code, in pieces cut where the data says.
fn spools_alike(
    ct: &str,
    data: &[u8],
    limits: &xml::Limits,
    parsed: &ls_core::Result<ls_core::as4::package::Package>,
) {
    use ls_core::as4::spool::{SpooledBody, Spooler};
    let cut = |k: usize| match data.get(k) {
        Some(&b) if !data.is_empty() => (b as usize * 7919) % (data.len() + 1),
        _ => 0,
    };
    let mut cuts = [cut(0), cut(1), cut(2)];
    cuts.sort_unstable();
    let spooled = Spooler::new(ct, std::io::Cursor::new(Vec::new()), limits).and_then(|mut s| {
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            s.feed(&data[at..c])?;
            at = c;
        }
        s.finish()
    });
    match (parsed, spooled) {
        (Ok(p), Ok((sp, file))) => {
            let file = file.into_inner();
            assert_eq!(file, data, "the spool differs from the body");
            assert_eq!(sp.soap, p.soap, "spool/parse: SOAP part differs");
            assert_eq!(sp.attachments.len(), p.attachments.len());
            for (a, b) in sp.attachments.iter().zip(&p.attachments) {
                assert_eq!(a.content_id, b.content_id);
                let bytes = match &a.body {
                    SpooledBody::File { offset, len, .. } => {
                        &file[*offset as usize..(*offset + *len) as usize]
                    }
                    SpooledBody::Memory(d) => &d[..],
                };
                assert_eq!(bytes, &b.data[..], "spool/parse: attachment differs");
            }
        }
        // Both refuse. The codes agree, except that the spooler applies the part-count limit
        // as delimiters arrive, before it has read the headers of earlier parts, so a body
        // over the limit with a bad header before may be refused for either reason first.
        (Err(a), Err(b))
            if [&a, &b]
                .iter()
                .any(|e| e.to_string().contains("MIME parts")) => {}
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "spool/parse: {a} / {b}"),
        (a, b) => panic!(
            "spool/parse disagree: parse {:?}, spool {:?}",
            a.as_ref().map(|_| ()),
            b.map(|_| ())
        ),
    }
}

pub fn as4_package(data: &[u8]) {
    use ls_core::as4::package::{self, Package};
    use ls_core::as4::{envelope, message, model};

    let limits = xml::Limits::default();
    let k = keys();
    let mut pkgs = Vec::new();
    if let Ok(p) = Package::parse_http(data, &limits) {
        pkgs.push(p);
    }
    for ct in [
        "multipart/related; boundary=b; type=\"application/soap+xml\"; start=\"<soap@x>\"",
        "application/soap+xml",
    ] {
        let parsed = Package::parse(ct, data, &limits);
        spools_alike(ct, data, &limits, &parsed);
        if let Ok(p) = parsed {
            pkgs.push(p);
        }
    }
    for pkg in &pkgs {
        for a in &pkg.attachments {
            assert!(
                pkg.attachment(&format!("cid:{}", a.content_id)).is_some(),
                "attachment {:?} not found by its own Content-ID",
                a.content_id
            );
            let _ = package::gunzip(&a.data, MAX_OUTPUT);
        }
        if let Ok(doc) = xml::parse_bytes(&pkg.soap, &limits) {
            if let Ok(env) = envelope::read(&doc, envelope::UNDERSTOOD) {
                if let Some(m) = env.messaging {
                    let _ = model::Messaging::parse(m);
                }
            }
        }
        // What we would forward or store reads back the same.
        if let Ok((ct, body)) = pkg.to_mime() {
            let back = Package::parse(&ct, &body, &limits)
                .unwrap_or_else(|e| panic!("to_mime output does not parse back: {e}"));
            assert_eq!(back.soap, pkg.soap, "to_mime/parse: SOAP part differs");
            let ids = |p: &Package| -> Vec<(String, Vec<u8>)> {
                p.attachments
                    .iter()
                    .map(|a| (a.content_id.clone(), a.data.clone()))
                    .collect()
            };
            assert_eq!(ids(&back), ids(pkg), "to_mime/parse: attachments differ");
            // With the fixture signers as partners when given (gets fixture messages past the
            // signer check), else our pinned sender (fails there, after the digests).
            let policy = match &k.partners {
                Some(store) => wss::VerifyPolicy {
                    partners: Some(store),
                    allow_expired: true,
                    ..Default::default()
                },
                None => wss::VerifyPolicy {
                    signer: Some(&k.sender),
                    ..Default::default()
                },
            };
            let opts = message::ReadOptions {
                recipient: Some(&k.identity),
                policy,
                ..Default::default()
            };
            let _ = message::read(&ct, &body, &opts);
        }
    }
}

/// The enrolment contract (`ls_core::enrol`) as both ends read it: the service's
/// `verify_request` (JWS, header, `x5c` certificates, signature, claims) and the client's
/// `verify_response` (against our own certificate as the service's, for a request of ours) and
/// `ServiceInfo::read`; as text, the code, URL and base64url readers.
pub fn enrol_request(data: &[u8]) {
    use ls_core::enrol;
    static CLAIMS: OnceLock<enrol::RequestClaims> = OnceLock::new();
    let k = keys();
    let claims = CLAIMS.get_or_init(|| {
        enrol::RequestClaims::new(
            "fuzz",
            "7K2Q-M9XD-0A1B-CDEF-GHJK-MNPZ",
            k.identity.certificate(),
            1 << 20,
        )
        .expect("claims")
    });
    match enrol::verify_request(data, ls_core::time::now_unix()) {
        Ok(v) => {
            assert!(data.len() as u64 <= enrol::MAX_REQUEST_BYTES);
            assert!(enrol::check_key(&v.certificate).is_ok());
            let _ = enrol::normalize_code(&v.claims.code);
        }
        Err(r) => assert!(!r.message.is_empty()),
    }
    if let Ok(e) = enrol::verify_response(
        data,
        k.identity.certificate(),
        claims,
        k.identity.certificate(),
    ) {
        assert_eq!(e.nonce, claims.nonce);
    }
    let _ = enrol::ServiceInfo::read(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(n) = enrol::normalize_code(s) {
            assert_eq!(n.len(), enrol::CODE_SYMBOLS);
            let again = enrol::normalize_code(&enrol::format_code(&n));
            assert_eq!(again.as_deref().map(String::as_str), Some(n.as_str()));
        }
        let _ = enrol::enrolment_url(s);
        if let Some(b) = ls_core::bytes::base64url_decode(s) {
            assert_eq!(ls_core::bytes::base64url_encode(&b), s);
        }
        if let Some(b) = ls_core::bytes::base64_decode_strict(s) {
            assert_eq!(ls_core::bytes::base64_encode(&b), s);
        }
    }
}

/// The contracts of issue 12 that read what others send: a party's rollover request (as the
/// service reads it) and the service's answer (as the client does), a partner's certificate
/// update statement, and the directory's request and answer. None may panic; what verifies
/// must say what was checked.
pub fn coordination_contracts(data: &[u8]) {
    use ls_core::{directory, rollover};
    let k = keys();
    let now = ls_core::time::now_unix();
    let cert = k.identity.certificate();
    match rollover::verify_request(data, now) {
        Ok(v) => assert!(v.old_certificate != v.new_certificate),
        Err(r) => assert!(!r.message.is_empty()),
    }
    if let Ok(u) = rollover::CertificateUpdate::peek(data) {
        let _ = u.new_certificate_sha256.len();
    }
    match rollover::verify_update(
        data,
        "fuzz-sender",
        "fuzz",
        &k.sender,
        &[k.sender.clone()],
        now,
    ) {
        Ok(v) => assert!(v.old_valid_until >= v.valid_from),
        Err(r) => assert!(!r.message.is_empty()),
    }
    let _ = rollover::refusal_error(400, data);
    if let Ok(req) = directory::Request::peek(data) {
        let _ = req.check_fresh(now);
    }
    let _ = directory::Request::verify(data, std::slice::from_ref(cert));
    static REQUEST: OnceLock<directory::Request> = OnceLock::new();
    let request =
        REQUEST.get_or_init(|| directory::Request::new("fuzz", "globex").expect("request"));
    let _ = directory::Answer::verify(data, cert, request);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = directory::party_of_path(s);
        let _ = directory::check_party_id(s);
        let _ = rollover::rollover_url(s);
    }
}

/// A mail from a mailbox (anyone can send one): read as an AS4 message, a bounce or not ours,
/// never a panic; what is read as an AS4 message and written again as a mail is read back as
/// the same message.
pub fn mail_read(data: &[u8]) {
    use ls_core::as4::xml::Limits;
    use ls_core::mail::layout::{self, Content};
    let limits = Limits::default();
    if let Content::As4 {
        content_type, body, ..
    } = layout::read(data, &limits)
    {
        let Ok(mail) = layout::compose(
            &content_type,
            &body,
            "a@example.test",
            "b@example.test",
            &limits,
        ) else {
            return;
        };
        match layout::read(&mail, &limits) {
            Content::As4 { .. } => {}
            other => panic!("a mail we wrote is not read back as AS4: {other:?}"),
        }
    }
}
