//! Independent implementations accept the AS4 messages we produce.
//!
//! - The Debian `xmlsec1` CLI (libxmlsec1/OpenSSL) verifies the signature and the same-document
//!   references (eb:Messaging, SOAP Body) of our signed UserMessage without payloads, PullRequest,
//!   Error signal and NRR receipt. It cannot resolve `cid:` references nor the
//!   wsse:SecurityTokenReference, so it is given the signer's certificate and told which
//!   attributes are IDs.
//! - The PyPI package `as4` 0.2.0 (tests/py/as4_verify.py) verifies and decrypts a full signed and
//!   encrypted UserMessage of ours, attachment references included, through its core parser and
//!   its Peppol receiving path, and checks our NRR receipt and Error signal as its sending side
//!   checks signals. Its own NRR receipt for our message is checked by our `check_receipt`.
//!
//! Each positive check has a negative control (a flipped character inside eb:Messaging, a wrong
//! key, a changed attachment), so a verifier that accepts anything would fail this test.
//! scripts/deps.sh installs the tools; without one a test prints `SKIPPED …`, and fails under
//! `LS_REQUIRE_FIXTURES=1` (as in CI).

use ls_core::as4::envelope::SoapVersion;
use ls_core::as4::message::{self, Built, Incoming, Outgoing, Payload, ReadOptions};
use ls_core::as4::model::*;
use ls_core::as4::wss::VerifyPolicy;
use ls_core::*;
use ls_tests::{party, python, run, skip, tempdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EB_MESSAGING: &str =
    "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/:Messaging";
const S12_BODY: &str = "http://www.w3.org/2003/05/soap-envelope:Body";
const S11_BODY: &str = "http://schemas.xmlsoap.org/soap/envelope/:Body";
const INITIATOR: &str = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator";
const RESPONDER: &str = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder";

// The Peppol AS4 profile's values, which `as4`'s Peppol receiving path checks.
const PEPPOL_AP: &str = "urn:fdc:peppol.eu:2017:identifiers:ap";
const PEPPOL_AGREEMENT: &str = "urn:fdc:peppol.eu:2017:agreements:tia:ap_provider";
const ISO6523: &str = "iso6523-actorid-upis";
const PROCESS: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";
const DOCTYPE: &str = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1";
const SENDER: &str = "0088:5798000000001";
const RECEIVER: &str = "0192:987654325";

// ---------------------------------------------------------------------------------------------
// Tools

/// Whether `xmlsec1` runs; else the test is skipped (a failure under LS_REQUIRE_FIXTURES=1).
fn have_xmlsec1() -> bool {
    match Command::new("xmlsec1").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(format_args!(
                "xmlsec1 --version failed ({}): {} (run scripts/deps.sh: apt-get install xmlsec1)",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            false
        }
        Err(e) => {
            skip(format_args!(
                "xmlsec1 is not installed ({e}): run scripts/deps.sh (apt-get install xmlsec1)"
            ));
            false
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py/as4_verify.py")
}

/// Whether the Python verifier (as4 0.2.0, xmlsec) runs; else the test is skipped (a failure
/// under LS_REQUIRE_FIXTURES=1).
fn have_as4() -> bool {
    match Command::new(python()).arg(script()).arg("deps").output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(format_args!(
                "the Python verifier is not usable ({}): {}{} (run scripts/deps.sh: \
                 pip install as4==0.2.0 xmlsec)",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            false
        }
        Err(e) => {
            skip(format_args!(
                "cannot run {} ({e}): Python 3.11+ with as4==0.2.0 is needed (run scripts/deps.sh)",
                python()
            ));
            false
        }
    }
}

/// `xmlsec1 --verify` of `file` with the key of `cert`, the Messaging and Body Ids registered.
fn xmlsec1_verify(file: &Path, cert: &Path) -> Output {
    run(Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(cert)
        .args(["--id-attr:Id", EB_MESSAGING, "--id-attr:Id", S12_BODY])
        .args(["--id-attr:Id", S11_BODY])
        .arg(file))
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// xmlsec1 says OK and verified every reference of SignedInfo (`refs` of them).
fn assert_xmlsec1_ok(file: &Path, cert: &Path, refs: usize) {
    let o = xmlsec1_verify(file, cert);
    let all = text(&o);
    assert!(o.status.success(), "xmlsec1 rejected {file:?}:\n{all}");
    assert!(all.contains("\nOK") || all.starts_with("OK"), "{all}");
    assert!(
        all.contains(&format!("SignedInfo References (ok/all): {refs}/{refs}")),
        "xmlsec1 should verify {refs} references of {file:?}:\n{all}"
    );
}

/// xmlsec1 refuses `file`, and its output says `because` (so it failed for the right reason).
fn assert_xmlsec1_fails(file: &Path, cert: &Path, why: &str, because: &str) {
    let o = xmlsec1_verify(file, cert);
    let all = text(&o);
    assert!(
        !o.status.success(),
        "xmlsec1 accepted {file:?} ({why}):\n{all}"
    );
    assert!(
        all.contains(because),
        "xmlsec1 refused {file:?} ({why}), but not with {because:?}:\n{all}"
    );
}

/// The Python verifier's outcome: exit code and its `key=value` / `REJECTED …` lines.
struct PyResult {
    code: i32,
    out: String,
}

impl PyResult {
    fn value(&self, key: &str) -> Option<&str> {
        self.out
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    fn accepted(&self) -> &Self {
        assert_eq!(self.code, 0, "as4 rejected our message:\n{}", self.out);
        self
    }

    /// Rejected by `as4` itself (exit 1), for the reason `reason`.
    fn rejected(&self, reason: &str) {
        assert_eq!(
            self.code, 1,
            "as4 should have rejected this (because {reason}):\n{}",
            self.out
        );
        assert!(
            self.out.contains(&format!("REJECTED {reason}")),
            "as4 rejected it, but not with {reason}:\n{}",
            self.out
        );
    }
}

fn as4_verify(args: &[&dyn AsRef<std::ffi::OsStr>]) -> PyResult {
    let mut cmd = Command::new(python());
    cmd.arg(script());
    for a in args {
        cmd.arg(a);
    }
    let o = run(&mut cmd);
    let code = o.status.code().unwrap_or(-1);
    let out = text(&o);
    assert!(
        code == 0 || code == 1,
        "the Python verifier did not run properly:\n{out}"
    );
    PyResult { code, out }
}

// ---------------------------------------------------------------------------------------------
// Messages, built with our public API only

fn party_of(id: &str, id_type: &str, role: &str) -> Party {
    Party {
        ids: vec![PartyId {
            value: id.into(),
            r#type: Some(id_type.into()),
        }],
        role: role.into(),
    }
}

fn info() -> MessageInfo {
    MessageInfo {
        timestamp: timestamp_now(),
        message_id: new_message_id("interop.layersec").unwrap(),
        ref_to_message_id: None,
    }
}

fn typed(name: &str, r#type: &str, value: &str) -> Property {
    Property {
        name: name.into(),
        r#type: Some(r#type.into()),
        value: value.into(),
    }
}

/// A UserMessage shaped as the Peppol AS4 profile asks (party id types, agreement, service,
/// action, originalSender/finalRecipient), from `from` to `to` (access point ids = certificate CNs).
fn peppol_user_message(from: &str, to: &str) -> UserMessage {
    UserMessage {
        info: info(),
        mpc: None,
        from: party_of(from, PEPPOL_AP, INITIATOR),
        to: party_of(to, PEPPOL_AP, RESPONDER),
        agreement_ref: Some(AgreementRef {
            value: PEPPOL_AGREEMENT.into(),
            r#type: None,
            pmode: None,
        }),
        service: Service {
            value: PROCESS.into(),
            r#type: Some("cenbii-procid-ubl".into()),
        },
        action: format!("busdox-docid-qns::{DOCTYPE}"),
        conversation_id: "conv-interop-1".into(),
        properties: vec![
            typed("originalSender", ISO6523, SENDER),
            typed("finalRecipient", ISO6523, RECEIVER),
        ],
        payloads: Vec::new(),
    }
}

/// A Peppol business document: SBDH (schema-valid, participants as in the message properties)
/// around a small UBL invoice.
fn sbdh_document() -> Vec<u8> {
    let (ns, root) = DOCTYPE.split_once("::").unwrap();
    let root = root.split("##").next().unwrap();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<StandardBusinessDocument xmlns="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader">
  <StandardBusinessDocumentHeader>
    <HeaderVersion>1.0</HeaderVersion>
    <Sender><Identifier Authority="{ISO6523}">{SENDER}</Identifier></Sender>
    <Receiver><Identifier Authority="{ISO6523}">{RECEIVER}</Identifier></Receiver>
    <DocumentIdentification>
      <Standard>{ns}</Standard>
      <TypeVersion>2.1</TypeVersion>
      <InstanceIdentifier>7f1c2a4e-interop-0001</InstanceIdentifier>
      <Type>{root}</Type>
      <CreationDateAndTime>{ts}</CreationDateAndTime>
    </DocumentIdentification>
    <BusinessScope>
      <Scope><Type>DOCUMENTID</Type><InstanceIdentifier>{DOCTYPE}</InstanceIdentifier><Identifier>busdox-docid-qns</Identifier></Scope>
      <Scope><Type>PROCESSID</Type><InstanceIdentifier>{PROCESS}</InstanceIdentifier><Identifier>cenbii-procid-ubl</Identifier></Scope>
      <Scope><Type>COUNTRY_C1</Type><InstanceIdentifier>DK</InstanceIdentifier></Scope>
    </BusinessScope>
  </StandardBusinessDocumentHeader>
  <Invoice xmlns="{ns}" xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
    <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>
    <cbc:ID>INV-42</cbc:ID>
    <cbc:Note>{note}</cbc:Note>
  </Invoice>
</StandardBusinessDocument>
"#,
        ts = timestamp_now(),
        note = "Layer Security interop ".repeat(200),
    )
    .into_bytes()
}

fn pdf_like() -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    v.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    v
}

struct World {
    /// Removed when the world is dropped; kept for inspection when a check failed.
    dir: ls_tests::TempDir,
    /// Sender C2 (RSA 3072), CN = its Peppol access point id.
    alice: ls_tests::Party,
    /// Receiver C3 (RSA 2048).
    bob: ls_tests::Party,
    /// A stranger, for wrong-key controls.
    carol: ls_tests::Party,
}

const ALICE: &str = "POP000901";
const BOB: &str = "POP000902";

fn world(name: &str) -> World {
    let dir = tempdir(name);
    World {
        alice: party(&dir, ALICE, KeyType::Rsa(3072)),
        bob: party(&dir, BOB, KeyType::Rsa(2048)),
        carol: party(&dir, "POP000903", KeyType::Rsa(2048)),
        dir,
    }
}

fn signed(
    signer: &Identity,
    messaging: Messaging,
    payloads: Vec<Payload>,
    to: Option<&Certificate>,
) -> Built {
    message::build(Outgoing {
        messaging,
        payloads,
        signer,
        encrypt_for: to,
        soap: SoapVersion::Soap12,
    })
    .unwrap()
}

fn user_messaging(um: UserMessage) -> Messaging {
    Messaging {
        user_messages: vec![um],
        signals: vec![],
    }
}

fn signal_messaging(signal: Signal) -> Messaging {
    Messaging {
        user_messages: vec![],
        signals: vec![SignalMessage {
            info: info(),
            signal,
        }],
    }
}

fn sbdh_payload(doc: &[u8]) -> Payload {
    Payload {
        content_id: "sbdh-1@interop.layersec".into(),
        mime_type: "application/xml".into(),
        data: doc.to_vec(),
        compress: true,
        properties: vec![],
    }
}

/// Bob reads (and so verifies and decrypts) with our own library, e.g. to answer with a receipt.
fn bob_reads(w: &World, sent: &Built) -> Incoming {
    let opts = ReadOptions {
        recipient: Some(&w.bob.identity),
        policy: VerifyPolicy {
            signer: Some(w.alice.identity.certificate()),
            ..Default::default()
        },
        ..Default::default()
    };
    message::read(&sent.content_type, &sent.body, &opts).unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// The same message with one character of the eb:MessageId text (inside eb:Messaging) changed.
fn flip_in_messaging(body: &[u8]) -> Vec<u8> {
    let start = ls_core::bytes::find(body, b"<eb:Messaging").expect("eb:Messaging");
    let end = ls_core::bytes::find(body, b"</eb:Messaging>").expect("/eb:Messaging");
    let at = start
        + ls_core::bytes::find(&body[start..end], b"<eb:MessageId>")
            .expect("eb:MessageId in eb:Messaging")
        + b"<eb:MessageId>".len();
    let mut v = body.to_vec();
    v[at] = if v[at] == b'0' { b'1' } else { b'0' };
    assert_ne!(v, body);
    v
}

// ---------------------------------------------------------------------------------------------
// xmlsec1

#[test]
fn xmlsec1_verifies_our_signed_messages_and_signals() {
    if !have_xmlsec1() {
        return;
    }
    let w = world("interop-as4-xmlsec1");
    let alice_cert = &w.alice.cert;

    // A UserMessage without payloads, a PullRequest, an Error signal: Messaging + Body.
    let mut cases: Vec<(&str, Built, &Path)> = vec![
        (
            "user-message",
            signed(
                &w.alice.identity,
                user_messaging(peppol_user_message(ALICE, BOB)),
                vec![],
                None,
            ),
            alice_cert,
        ),
        (
            "pull-request",
            signed(
                &w.alice.identity,
                signal_messaging(Signal::PullRequest {
                    mpc: "urn:layersec:mpc:interop".into(),
                }),
                vec![],
                None,
            ),
            alice_cert,
        ),
        (
            "error",
            signed(
                &w.bob.identity,
                signal_messaging(Signal::Error(vec![EbmsError::new("EBMS:0004")
                    .with_ref("m-1@interop.layersec")
                    .with_description("interop <&> \"test\"")])),
                vec![],
                None,
            ),
            &w.bob.cert,
        ),
    ];
    // Bob's NRR receipt for a full (signed + encrypted, attachment) UserMessage from Alice.
    let mut um = peppol_user_message(ALICE, BOB);
    um.conversation_id = "conv-receipt".into();
    let sent = signed(
        &w.alice.identity,
        user_messaging(um),
        vec![sbdh_payload(&sbdh_document())],
        Some(w.bob.identity.certificate()),
    );
    let receipt =
        message::build_receipt(&bob_reads(&w, &sent), &w.bob.identity, "interop.layersec").unwrap();
    cases.push(("nrr-receipt", receipt, &w.bob.cert));
    // A SOAP 1.1 Error signal (we answer SOAP 1.1 partners in their version).
    let soap11 = message::build(Outgoing {
        messaging: signal_messaging(Signal::Error(vec![EbmsError::new("EBMS:0101")])),
        payloads: vec![],
        signer: &w.bob.identity,
        encrypt_for: None,
        soap: SoapVersion::Soap11,
    })
    .unwrap();
    assert!(
        soap11.content_type.starts_with("text/xml"),
        "{}",
        soap11.content_type
    );
    cases.push(("error-soap11", soap11, &w.bob.cert));

    for (name, built, cert) in &cases {
        assert!(
            built.content_type.starts_with("application/soap+xml")
                || built.content_type.starts_with("text/xml"),
            "{name}: {}",
            built.content_type
        );
        assert_eq!(built.references.len(), 2, "{name}: Messaging and Body");
        let file = write(&w.dir, &format!("{name}.xml"), &built.body);
        assert_xmlsec1_ok(&file, cert, 2);

        // Negative controls: one character changed inside eb:Messaging; the right message
        // checked with someone else's key.
        let tampered = write(
            &w.dir,
            &format!("{name}.tampered.xml"),
            &flip_in_messaging(&built.body),
        );
        assert_xmlsec1_fails(
            &tampered,
            cert,
            "a character of eb:Messaging was changed",
            "data and digest do not match",
        );
        assert_xmlsec1_fails(
            &file,
            &w.carol.cert,
            "checked with another key",
            "signature verification failed",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// as4 (PyPI) 0.2.0

#[test]
fn as4_verifies_and_decrypts_our_peppol_user_message_and_accepts_our_receipt() {
    if !have_as4() {
        return;
    }
    let w = world("interop-as4-py");
    let doc = sbdh_document();
    let sent = signed(
        &w.alice.identity,
        user_messaging(peppol_user_message(ALICE, BOB)),
        vec![sbdh_payload(&doc)],
        Some(w.bob.identity.certificate()),
    );
    assert_eq!(sent.references.len(), 3, "Messaging, Body, the attachment");
    let ct = write(&w.dir, "um.content-type", sent.content_type.as_bytes());
    let body = write(&w.dir, "um.mime", &sent.body);
    let expect = write(&w.dir, "sbdh.xml", &doc);
    let cid = "sbdh-1@interop.layersec";
    let expect_arg = format!("{cid}={}", expect.display());

    // Our NRR receipt for it (Bob reads with our library and answers).
    let receipt =
        message::build_receipt(&bob_reads(&w, &sent), &w.bob.identity, "interop.layersec").unwrap();
    let receipt_file = write(&w.dir, "receipt.xml", &receipt.body);
    let their_receipt = w.dir.join("as4-receipt.xml");

    let common = |body: &Path, signer: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "user-message".into(),
            "--content-type".into(),
            ct.clone().into(),
            "--body".into(),
            body.into(),
            "--signer-cert".into(),
            signer.into(),
            "--recipient-cert".into(),
            w.bob.cert.clone().into(),
            "--recipient-key".into(),
            w.bob.key.clone().into(),
            "--recipient-id".into(),
            BOB.into(),
        ]
    };
    let call = |args: Vec<std::ffi::OsString>| {
        let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
        as4_verify(&refs)
    };

    let mut args = common(&body, &w.alice.cert);
    args.extend(["--peppol", "--expect", expect_arg.as_str(), "--receipt"].map(Into::into));
    args.push(receipt_file.clone().into());
    args.push("--receipt-signer".into());
    args.push(w.bob.cert.clone().into());
    args.push("--write-receipt".into());
    args.push(their_receipt.clone().into());
    let r = call(args);
    r.accepted();
    eprintln!("as4 on our Peppol UserMessage:\n{}", r.out);
    assert_eq!(r.value("core"), Some("accepted"));
    assert_eq!(r.value("message_id"), Some(sent.message_id.as_str()));
    assert_eq!(r.value("signer"), Some(format!("CN={ALICE}").as_str()));
    assert_eq!(r.value("addressed_to"), Some(BOB));
    assert_eq!(r.value(&format!("payload[{cid}]")), Some("matches"));
    let signed_refs = r.value("signed_references").unwrap();
    assert!(signed_refs.contains(&format!("cid:{cid}")), "{signed_refs}");
    assert_eq!(signed_refs.split(' ').count(), 3, "{signed_refs}");
    assert_eq!(r.value("peppol"), Some("accepted"));
    assert_eq!(r.value("peppol_sender"), Some(SENDER));
    assert_eq!(r.value("peppol_recipient"), Some(RECEIVER));
    assert_eq!(r.value("peppol_document_type"), Some(DOCTYPE));
    assert_eq!(r.value("peppol_process"), Some(PROCESS));
    assert_eq!(r.value("receipt"), Some("accepted"));
    assert_eq!(
        r.value("receipt_acknowledges").unwrap().split(' ').count(),
        3,
        "{}",
        r.out
    );

    // as4's own NRR receipt for our message passes our check_receipt.
    let theirs = std::fs::read(&their_receipt).unwrap();
    let alice_reads = ReadOptions {
        policy: VerifyPolicy {
            signer: Some(w.bob.identity.certificate()),
            ..Default::default()
        },
        ..Default::default()
    };
    let got = message::read("application/soap+xml; charset=utf-8", &theirs, &alice_reads)
        .unwrap_or_else(|e| panic!("our reader refuses as4's receipt: {e}"));
    message::check_receipt(&got, &sent)
        .unwrap_or_else(|e| panic!("as4's receipt for our message: {e}"));

    // Negative controls, each of which as4 must refuse.
    // 1. One character changed inside eb:Messaging.
    let t = write(
        &w.dir,
        "um.messaging-flipped.mime",
        &flip_in_messaging(&sent.body),
    );
    call(common(&t, &w.alice.cert)).rejected("DigestMismatchException");
    // 2. Signed by someone else than the pinned partner.
    call(common(&body, &w.carol.cert)).rejected("UntrustedSignerException");
    // 3. The attachment's plaintext changed and encrypted again with the same key: it decrypts,
    //    and only our attachment reference (cid:) digest can tell.
    let mut a = common(&body, &w.alice.cert);
    a.extend(["--tamper-plaintext", cid].map(Into::into));
    call(a).rejected("DigestMismatchException: Digest mismatch for signature reference cid:");
    // 4. One byte of the ciphertext changed: the GCM tag fails.
    let part_header = format!("Content-ID: <{cid}>\r\n\r\n");
    // Past the 12-byte GCM nonce, inside the ciphertext proper.
    let at =
        ls_core::bytes::find(&sent.body, part_header.as_bytes()).unwrap() + part_header.len() + 40;
    assert!(at + 16 < sent.body.len());
    let mut ct_t = sent.body.clone();
    ct_t[at] ^= 0x40;
    let t = write(&w.dir, "um.ciphertext-flipped.mime", &ct_t);
    call(common(&t, &w.alice.cert)).rejected("DecryptionFailedException");
    // 5. Our receipt for another message is not a receipt for this one.
    let mut other_um = peppol_user_message(ALICE, BOB);
    other_um.conversation_id = "conv-other".into();
    let other = signed(
        &w.alice.identity,
        user_messaging(other_um),
        vec![sbdh_payload(&sbdh_document())],
        Some(w.bob.identity.certificate()),
    );
    let other_receipt =
        message::build_receipt(&bob_reads(&w, &other), &w.bob.identity, "interop.layersec")
            .unwrap();
    let other_receipt_file = write(&w.dir, "receipt-other.xml", &other_receipt.body);
    let mut a = common(&body, &w.alice.cert);
    a.extend([
        "--receipt".into(),
        other_receipt_file.into(),
        "--receipt-signer".into(),
        w.bob.cert.clone().into(),
    ]);
    call(a).rejected("receipt:ReceiptVerificationError");
    // 6. Our receipt, tampered inside eb:Messaging.
    let t = write(
        &w.dir,
        "receipt.flipped.xml",
        &flip_in_messaging(&receipt.body),
    );
    let mut a = common(&body, &w.alice.cert);
    a.extend([
        "--receipt".into(),
        t.into(),
        "--receipt-signer".into(),
        w.bob.cert.clone().into(),
    ]);
    call(a).rejected("receipt:ReceiptVerificationError");
}

#[test]
fn as4_verifies_our_user_message_with_two_attachments() {
    // Not the Peppol profile (one payload only there): the core parser with a compressed XML and
    // an uncompressed binary attachment, both signed (cid:) and encrypted.
    if !have_as4() {
        return;
    }
    let w = world("interop-as4-py2");
    let doc = sbdh_document();
    let pdf = pdf_like();
    let mut um = peppol_user_message(ALICE, BOB);
    um.service = Service {
        value: "urn:layersec:documents".into(),
        r#type: None,
    };
    um.action = "Deliver".into();
    let sent = signed(
        &w.alice.identity,
        user_messaging(um),
        vec![
            sbdh_payload(&doc),
            Payload {
                content_id: "scan-2@interop.layersec".into(),
                mime_type: "application/pdf".into(),
                data: pdf.clone(),
                compress: false,
                properties: vec![Property::new("Note", "a scan")],
            },
        ],
        Some(w.bob.identity.certificate()),
    );
    assert_eq!(sent.references.len(), 4);
    let ct = write(&w.dir, "um2.content-type", sent.content_type.as_bytes());
    let body = write(&w.dir, "um2.mime", &sent.body);
    let e1 = write(&w.dir, "sbdh.xml", &doc);
    let e2 = write(&w.dir, "scan.pdf", &pdf);
    let r = as4_verify(&[
        &"user-message",
        &"--content-type",
        &ct,
        &"--body",
        &body,
        &"--signer-cert",
        &w.alice.cert,
        &"--recipient-cert",
        &w.bob.cert,
        &"--recipient-key",
        &w.bob.key,
        &"--recipient-id",
        &BOB,
        &"--expect",
        &format!("sbdh-1@interop.layersec={}", e1.display()),
        &"--expect",
        &format!("scan-2@interop.layersec={}", e2.display()),
    ]);
    r.accepted();
    assert_eq!(r.value("attachments"), Some("2"));
    assert_eq!(r.value("payload[scan-2@interop.layersec]"), Some("matches"));
    assert_eq!(r.value("payload[sbdh-1@interop.layersec]"), Some("matches"));
    assert_eq!(r.value("signed_references").unwrap().split(' ').count(), 4);
}

#[test]
fn as4_verifies_our_signed_error_signal() {
    // as4's signal verifier (what its sending side applies to the answer it gets).
    if !have_as4() {
        return;
    }
    let w = world("interop-as4-py3");
    let err = signed(
        &w.bob.identity,
        signal_messaging(Signal::Error(vec![EbmsError::new("EBMS:0103")
            .with_ref("m-1@interop.layersec")
            .with_description("policy")])),
        vec![],
        None,
    );
    let f = write(&w.dir, "error.xml", &err.body);
    let r = as4_verify(&[&"signal", &"--soap", &f, &"--signer-cert", &w.bob.cert]);
    r.accepted();
    assert_eq!(r.value("error_code"), Some("EBMS:0103"));
    assert_eq!(r.value("error_severity"), Some("failure"));
    // Negative controls: another signer expected; a character changed inside eb:Messaging.
    as4_verify(&[&"signal", &"--soap", &f, &"--signer-cert", &w.carol.cert])
        .rejected("ReceiptVerificationError");
    let t = write(&w.dir, "error.flipped.xml", &flip_in_messaging(&err.body));
    as4_verify(&[&"signal", &"--soap", &t, &"--signer-cert", &w.bob.cert])
        .rejected("ReceiptVerificationError");
}
