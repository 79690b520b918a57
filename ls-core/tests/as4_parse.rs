//! The AS4 message layer's structure: ebMS3 headers, SOAP envelopes and SwA packages built and read
//! back, every envelope of ../shared/fixtures/as4 (phase4, Holodeck, Governikus, Domibus, Python
//! `as4`) read with its real values, hostile input refused with the right error, and no panics
//! on truncated or mutated messages.

use ls_core::as4::envelope::{self, SoapVersion, UNDERSTOOD};
use ls_core::as4::model::*;
use ls_core::as4::package::{gunzip, gzip, Attachment, Package};
use ls_core::as4::xml::{self, Limits, NS_EB, NS_SOAP11, NS_SOAP12};
use ls_core::{ErrorCode, Result};
use std::path::{Path, PathBuf};

const C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const SWA_CONTENT: &str = "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Signature-Transform";
const PEPPOL_AP: &str = "urn:fdc:peppol.eu:2017:identifiers:ap";
const PEPPOL_ACTION: &str = "busdox-docid-qns::urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0::2.1";

/// `../shared/fixtures/as4` beside the checkout (or `$LS_FIXTURES/as4`), or a skip message.
fn as4_fixtures() -> Option<PathBuf> {
    let base = std::env::var_os("LS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let dir = base.join("as4");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: {} not found (expected ../shared/fixtures beside the checkout, or LS_FIXTURES)", dir.display());
        None
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Read an envelope the way the message layer does: bounded XML, SOAP, then eb:Messaging.
fn messaging_of(soap: &[u8]) -> Result<(SoapVersion, Messaging)> {
    let doc = xml::parse_bytes(soap, &Limits::default())?;
    let env = envelope::read(&doc, UNDERSTOOD)?;
    let node = env
        .messaging
        .ok_or_else(|| ls_core::Error::InvalidEbms("no eb:Messaging".into()))?;
    Ok((env.version, Messaging::parse(node)?))
}

fn fixture_messaging(dir: &Path, file: &str) -> (SoapVersion, Messaging) {
    messaging_of(&read(dir, file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn only_user_message(m: &Messaging) -> &UserMessage {
    assert_eq!((m.user_messages.len(), m.signals.len()), (1, 0), "{m:?}");
    &m.user_messages[0]
}

fn only_signal(m: &Messaging) -> &SignalMessage {
    assert_eq!((m.user_messages.len(), m.signals.len()), (0, 1), "{m:?}");
    &m.signals[0]
}

fn nrr(s: &SignalMessage) -> &[ReceiptRef] {
    match &s.signal {
        Signal::Receipt { nrr, .. } => nrr,
        other => panic!("not a receipt: {other:?}"),
    }
}

/// Byte-exact equality without printing kilobytes of numbers on failure.
fn same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, expected {}; first difference at {at}",
            got.len(),
            want.len()
        );
    }
}

fn uris(refs: &[ReceiptRef]) -> Vec<&str> {
    refs.iter().map(|r| r.uri.as_str()).collect()
}

fn pid(value: &str, t: Option<&str>) -> PartyId {
    PartyId {
        value: value.into(),
        r#type: t.map(Into::into),
    }
}

fn prop(name: &str, t: Option<&str>, value: &str) -> Property {
    Property {
        name: name.into(),
        r#type: t.map(Into::into),
        value: value.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Build → parse

fn sample_user_message() -> UserMessage {
    UserMessage {
        info: MessageInfo {
            timestamp: timestamp_now(),
            message_id: new_message_id("layersec.example").unwrap(),
            ref_to_message_id: Some("earlier@partner".into()),
        },
        mpc: Some("urn:mpc:invoices & <co>".into()),
        from: Party {
            ids: vec![
                pid("PTE000001", Some(PEPPOL_AP)),
                pid("0088:5209999001264", None),
            ],
            role: "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator".into(),
        },
        to: Party {
            ids: vec![pid("PTE000002", Some(PEPPOL_AP))],
            role: "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder".into(),
        },
        agreement_ref: Some(AgreementRef {
            value: "urn:fdc:peppol.eu:2017:agreements:tia:ap_provider".into(),
            r#type: Some("t\"q\"".into()),
            pmode: Some("pm-1".into()),
        }),
        service: Service {
            value: "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0".into(),
            r#type: Some("cenbii-procid-ubl".into()),
        },
        action: PEPPOL_ACTION.into(),
        conversation_id: "conv-1".into(),
        properties: vec![
            prop("originalSender", Some("iso6523-actorid-upis"), "9915:alice"),
            prop(
                "finalRecipient",
                Some("iso6523-actorid-upis"),
                "9915:bob <&>",
            ),
        ],
        payloads: vec![
            PartInfo {
                href: Some("cid:invoice@layersec".into()),
                schema: Some(Schema {
                    location: "http://example.org/inv.xsd".into(),
                    version: Some("2.1".into()),
                    namespace: None,
                }),
                description: Some("The invoice".into()),
                properties: vec![
                    Property::new("MimeType", "application/xml"),
                    Property::new("CompressionType", "application/gzip"),
                    Property::new("CharacterSet", "UTF-8"),
                ],
            },
            PartInfo {
                href: Some("cid:scan@layersec".into()),
                schema: None,
                description: None,
                properties: vec![Property::new("MimeType", "application/pdf")],
            },
        ],
    }
}

fn signal(signal: Signal) -> SignalMessage {
    SignalMessage {
        info: MessageInfo {
            timestamp: "2026-11-27T15:25:35.123Z".into(),
            message_id: new_message_id("layersec.example").unwrap(),
            ref_to_message_id: Some("m1@partner".into()),
        },
        signal,
    }
}

/// Build the envelope (and, with attachments, the MIME package), then read it all back.
fn round_trip(m: &Messaging, version: SoapVersion, attachments: Vec<Attachment>) -> Messaging {
    let header = m.to_xml(version, "msg-1");
    let soap = envelope::build(version, &[&header], "body-1", "");
    let package = Package {
        soap: soap.into_bytes(),
        soap_content_type: version.content_type().into(),
        attachments,
    };
    let (content_type, body) = package.to_mime().unwrap();
    let back = Package::parse(&content_type, &body, &Limits::default()).unwrap();
    assert_eq!(
        back,
        Package {
            attachments: back.attachments.clone(),
            ..package.clone()
        }
    );
    for (a, b) in back.attachments.iter().zip(&package.attachments) {
        assert_eq!((&a.content_id, &a.data), (&b.content_id, &b.data));
    }

    let doc = xml::parse_bytes(&back.soap, &Limits::default()).unwrap();
    let env = envelope::read(&doc, UNDERSTOOD).unwrap();
    assert_eq!(env.version, version);
    let node = env.messaging.unwrap();
    assert_eq!(xml::id_of(node), Some("msg-1"));
    assert_eq!(xml::id_of(env.body), Some("body-1"));
    assert_eq!(
        node.attribute((version.namespace(), "mustUnderstand")),
        Some(version.must_understand_true())
    );
    // Deterministic: the same model writes the same bytes.
    assert_eq!(m.to_xml(version, "msg-1"), header);
    Messaging::parse(node).unwrap()
}

#[test]
fn user_message_round_trip_soap12() {
    let um = sample_user_message();
    assert_eq!(um.payloads[0].content_id(), Some("invoice@layersec"));
    assert!(um.payloads[0].is_gzip() && !um.payloads[1].is_gzip());
    let invoice = gzip(b"<Invoice>42</Invoice>");
    let attachments = vec![
        Attachment::new(
            "invoice@layersec",
            "application/octet-stream",
            invoice.clone(),
        ),
        Attachment::new(
            "scan@layersec",
            "application/pdf",
            b"%PDF-1.7\r\n\0\xff binary".to_vec(),
        ),
    ];
    let m = Messaging {
        user_messages: vec![um],
        signals: vec![],
    };
    let back = round_trip(&m, SoapVersion::Soap12, attachments);
    assert_eq!(back, m);
    let um = only_user_message(&back);
    assert_eq!(um.property("finalRecipient"), Some("9915:bob <&>"));
    assert_eq!(um.payloads[1].property("MimeType"), Some("application/pdf"));
    assert_eq!(gunzip(&invoice, 1000).unwrap(), b"<Invoice>42</Invoice>");
}

#[test]
fn signals_round_trip_soap12() {
    let refs = vec![
        ReceiptRef {
            uri: "#msg-1".into(),
            transforms: vec![Transform {
                algorithm: C14N.into(),
                inclusive_prefixes: Some("S12 eb".into()),
            }],
            digest_method: SHA256.into(),
            digest_value: "oIh7yNKoasQ6p5MN/n7xCtrcZ0NNqjBm2j5GDoeBgH8=".into(),
        },
        ReceiptRef {
            uri: "#body-1".into(),
            transforms: vec![Transform {
                algorithm: C14N.into(),
                inclusive_prefixes: None,
            }],
            digest_method: SHA256.into(),
            digest_value: "UvmB8GV6dfPXLWE6KiZ21jWhJSYwxfn6p0k5NTSgO0A=".into(),
        },
        ReceiptRef {
            uri: "cid:invoice@layersec".into(),
            transforms: vec![Transform {
                algorithm: SWA_CONTENT.into(),
                inclusive_prefixes: None,
            }],
            digest_method: SHA256.into(),
            digest_value: "5lPGsYkVCwAcvC3VbzAfez3nffzw59rtK/SvFM9W1eI=".into(),
        },
    ];
    let mut detailed = EbmsError::new("EBMS:0303")
        .with_ref("m1@partner")
        .with_description("gzip CRC mismatch");
    detailed.error_detail = Some("part cid:invoice@layersec".into());
    let cases = vec![
        Signal::PullRequest {
            mpc: "urn:mpc:invoices".into(),
        },
        Signal::PullRequest {
            mpc: DEFAULT_MPC.into(),
        },
        Signal::Receipt {
            nrr: refs,
            user_message: false,
            raw_other: None,
        },
        Signal::plain_receipt(&sample_user_message()),
        Signal::Error(vec![
            EbmsError::new("EBMS:0006").with_ref("pull-1@x"),
            detailed,
        ]),
    ];
    for s in cases {
        let m = Messaging {
            user_messages: vec![],
            signals: vec![signal(s)],
        };
        let back = round_trip(&m, SoapVersion::Soap12, vec![]);
        assert_eq!(back, m);
    }
    // The plain receipt's copy is a real eb:UserMessage.
    if let Signal::Receipt {
        user_message,
        raw_other,
        nrr,
    } = Signal::plain_receipt(&sample_user_message())
    {
        assert!(user_message && nrr.is_empty());
        assert!(raw_other.unwrap().starts_with("<eb:UserMessage mpc="));
    }
    let warning = EbmsError::new("EBMS:0006");
    assert_eq!(
        (warning.severity, warning.category.as_deref()),
        (Severity::Warning, Some("Communication"))
    );
}

#[test]
fn soap11_build_and_parse() {
    let m = Messaging {
        user_messages: vec![sample_user_message()],
        signals: vec![signal(Signal::Error(vec![EbmsError::new("EBMS:0004")]))],
    };
    let back = round_trip(&m, SoapVersion::Soap11, vec![]);
    assert_eq!(back, m);
    let header = m.to_xml(SoapVersion::Soap11, "x");
    assert!(
        header.contains(&format!("xmlns:S11=\"{NS_SOAP11}\" "))
            && header.contains("S11:mustUnderstand=\"1\"")
    );
    let soap = envelope::build(SoapVersion::Soap11, &[&header], "b", "<Payload/>");
    assert!(soap.starts_with(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><S11:Envelope xmlns:S11=\"{NS_SOAP11}\"><S11:Header>")));
    // A SOAP 1.2 mustUnderstand on a 1.1 envelope is not a 1.1 mustUnderstand.
    let foreign =
        format!("<f:Foo xmlns:f=\"urn:f\" xmlns:x=\"{NS_SOAP12}\" x:mustUnderstand=\"true\"/>");
    let soap = envelope::build(SoapVersion::Soap11, &[&header, &foreign], "b", "");
    assert_eq!(
        messaging_of(soap.as_bytes()).unwrap().0,
        SoapVersion::Soap11
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn phase4_soap11_samples() {
    let Some(dir) = as4_fixtures() else { return };
    let (v, m) = fixture_messaging(&dir, "phase4/soap11test/UserMessage.xml");
    assert_eq!(v, SoapVersion::Soap11);
    let um = only_user_message(&m);
    assert_eq!(um.info.message_id, "UUID-1@requester.example.com");
    assert_eq!(um.info.timestamp, "2006-07-25T12:19:05");
    assert_eq!(um.from.ids, [pid("uri:requester.example.com", None)]);
    assert_eq!(um.from.role, "http://example.org/roles/Buyer");
    assert_eq!(um.to.ids, [pid("QRS543", Some("someType"))]);
    assert_eq!(
        um.agreement_ref.as_ref().unwrap().value,
        "http://registry.example.com/cpa/123456"
    );
    assert_eq!(
        um.service,
        Service {
            value: "QuoteToCollect".into(),
            r#type: Some("MyServiceTypes".into())
        }
    );
    assert_eq!(
        (um.action.as_str(), um.conversation_id.as_str()),
        ("NewPurchaseOrder", "4321")
    );
    assert_eq!(um.property("ProcessInst"), Some("PurchaseOrder:123456"));
    assert_eq!(um.property("ContextID"), Some("987654321"));
    let p = &um.payloads[0];
    assert_eq!(p.href.as_deref(), Some("cid:part@example.com"));
    assert_eq!(
        p.schema.as_ref().unwrap().location,
        "http://registry.example.org/po.xsd"
    );
    assert_eq!(p.schema.as_ref().unwrap().version.as_deref(), Some("2.0"));
    assert_eq!(
        p.property("Description"),
        Some("Purchase Order for 11 Widgets")
    );
    assert_eq!(p.property("MimeType"), Some("application/xml"));

    let (_, m) = fixture_messaging(&dir, "phase4/soap11test/PullRequest.xml");
    let s = only_signal(&m);
    assert_eq!(s.info.message_id, "UUID-2@initiator.example.com");
    assert_eq!(
        s.signal,
        Signal::PullRequest {
            mpc: "http://msh.example.com/mpc123".into()
        }
    );

    // The ebMS core spec's receipt example: ds:Reference next to an empty MessagePartIdentifier.
    let (_, m) = fixture_messaging(&dir, "phase4/soap11test/ReceiptMessage.xml");
    let s = only_signal(&m);
    assert_eq!(s.info.message_id, "uiwtoruiopwr2543890@b.example.com");
    assert_eq!(
        s.info.ref_to_message_id.as_deref(),
        Some("uiopfdsmnf4898965563434@a.example.com")
    );
    assert_eq!(
        uris(nrr(s)),
        [
            "http://b.example.com/doc45/#b",
            "http:/a.example.com/doc23/#a"
        ]
    );
    assert_eq!(
        nrr(s)[0].digest_method,
        "http://www.w3.org/2000/09/xmldsig#sha1"
    );
    assert_eq!(nrr(s)[0].digest_value, "fX/iNylcUHNLV4lCE0eC7aEGP28=");
    assert!(nrr(s)[0].transforms.is_empty());

    let (_, m) = fixture_messaging(&dir, "phase4/soap11test/ErrorMessage.xml");
    let s = only_signal(&m);
    assert_eq!(s.info.message_id, "UUID-2@receiver.example.com");
    let Signal::Error(errors) = &s.signal else {
        panic!("{s:?}")
    };
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].code, "EBMS:0001");
    assert_eq!(errors[0].severity, Severity::Failure);
    assert_eq!(errors[0].category.as_deref(), Some("Content"));
    assert_eq!(errors[0].origin.as_deref(), Some("ebMS"));
    assert_eq!(
        errors[0].ref_to_message_in_error.as_deref(),
        Some("UUID-1@sender.example.com")
    );
    assert_eq!(
        errors[0].description.as_deref(),
        Some("Value not recognized")
    );
    // The spec example writes the second code without its EBMS: prefix; kept as written.
    assert_eq!(errors[1].code, "0101");
    assert_eq!(errors[1].origin.as_deref(), Some("Security"));
    assert_eq!(
        errors[1].description.as_deref(),
        Some("Failed Authentication")
    );
}

#[test]
fn phase4_soap12_samples() {
    let Some(dir) = as4_fixtures() else { return };
    let (v, m) = fixture_messaging(&dir, "phase4/soap12test/UserMessage12.xml");
    assert_eq!(v, SoapVersion::Soap12);
    let um = only_user_message(&m);
    assert_eq!(um.info.message_id, "2011-921@5209999001264.example.com");
    let iso = Some("urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088");
    // Values are trimmed: the sample breaks lines inside PartyId, Service and Action.
    assert_eq!(um.from.ids, [pid("5209999001264", iso)]);
    assert_eq!(um.to.ids, [pid("5209999001295", iso)]);
    assert_eq!(
        (um.from.role.as_str(), um.to.role.as_str()),
        ("Seller", "Buyer")
    );
    assert_eq!(
        um.service.value,
        "http://docs.oasis-open.org/ebxml-msg/as4/200902/service"
    );
    assert_eq!(
        um.action,
        "http://docs.oasis-open.org/ebxml-msg/as4/200902/action"
    );
    assert_eq!(
        um.payloads[0].href.as_deref(),
        Some("#_f8aa8b55-b31c-4364-94d0-3615ca65aa40")
    );
    assert_eq!(um.payloads[0].content_id(), None);

    let (_, m) = fixture_messaging(&dir, "phase4/soap12test/test-2023-03-15.xml");
    let um = only_user_message(&m);
    assert_eq!(um.info.message_id, "49267c79-d822-45d9-aa91-c57b3ca508db");
    assert_eq!(um.info.timestamp, "2023-03-09T10:23:26.8542515+01:00");
    assert_eq!(um.info.ref_to_message_id, None);
    assert_eq!(um.from.ids, [pid("PDE000556", Some(PEPPOL_AP))]);
    assert_eq!(um.service.r#type.as_deref(), Some("cenbii-procid-ubl"));
    assert_eq!(um.action, PEPPOL_ACTION);
    assert_eq!(
        um.properties[0],
        prop(
            "originalSender",
            Some("iso6523-actorid-upis"),
            "9930:de322532962"
        )
    );
    assert_eq!(um.payloads[0].href.as_deref(), Some("cid:sbdhID"));
    assert!(um.payloads[0].is_gzip());

    // The AS4 spec's PullRequest sample breaks the wsse namespace URI across two lines, so its
    // `wsse:Security S12:mustUnderstand="true"` is a header in an unknown namespace.
    let e = messaging_of(&read(&dir, "phase4/soap12test/PullRequest12.xml")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MustUnderstand, "{e}");
    assert!(e.to_string().contains("secext- 1.0.xsd}Security"), "{e}");
    // Its eb:Messaging itself is fine.
    let raw = read(&dir, "phase4/soap12test/PullRequest12.xml");
    let doc = xml::parse_bytes(&raw, &Limits::default()).unwrap();
    let node = doc
        .descendants()
        .find(|n| xml::is(*n, NS_EB, "Messaging"))
        .unwrap();
    let m = Messaging::parse(node).unwrap();
    assert_eq!(
        only_signal(&m).info.message_id,
        "msg123@smallco.example.com"
    );
    assert_eq!(
        only_signal(&m).signal,
        Signal::PullRequest {
            mpc: "http://as4.bigco.example.com/queues/q_456".into()
        }
    );
    assert_eq!(xml::id_of(node), Some("_ebmessaging"));

    // The compressed-payload sample is not well-formed (unclosed eb:Property).
    let e = messaging_of(&read(
        &dir,
        "phase4/soap12test/UserMessageWithCompressedPayload12.xml",
    ))
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
}

#[test]
fn phase4_receipts() {
    let Some(dir) = as4_fixtures() else { return };
    let (v, m) = fixture_messaging(&dir, "phase4/testfiles/TestReceipt12.xml");
    assert_eq!(v, SoapVersion::Soap12);
    let s = only_signal(&m);
    assert_eq!(
        s.info.message_id,
        "d36e26c0-5d4d-4950-ad81-dc620681b5f9@phase4"
    );
    assert_eq!(
        s.info.ref_to_message_id.as_deref(),
        Some("035e0a83-6dc5-427b-bcee-483475c65153@phase4")
    );
    let refs = nrr(s);
    assert_eq!(
        uris(refs),
        [
            "#phase4-msg-3adda884-f9be-419a-b918-f4fb3e97f9c4",
            "#id-ed836bb0-6951-469a-9ffb-320390ae439d",
            "cid:phase4-att-a9297596-e9df-4740-9245-2c069712326f@cid"
        ]
    );
    assert_eq!(
        refs[0].transforms,
        [Transform {
            algorithm: C14N.into(),
            inclusive_prefixes: Some("S12".into())
        }]
    );
    assert_eq!(refs[2].transforms[0].algorithm, SWA_CONTENT);
    assert_eq!(
        refs[2].digest_value,
        "5lPGsYkVCwAcvC3VbzAfez3nffzw59rtK/SvFM9W1eI="
    );
    // phase4 adds its own element after the NRR information.
    let Signal::Receipt {
        user_message,
        raw_other,
        ..
    } = &s.signal
    else {
        unreachable!()
    };
    assert!(!user_message);
    assert!(raw_other
        .as_deref()
        .unwrap()
        .starts_with("<phase4 xmlns=\"urn:fdc:com.helger.phase4:ns:info\""));

    // SOAP 1.1, reception awareness: the receipt carries a whole S11:Envelope with the UserMessage.
    let (v, m) = fixture_messaging(&dir, "phase4/testfiles/TestReceipt11.xml");
    assert_eq!(v, SoapVersion::Soap11);
    let s = only_signal(&m);
    assert_eq!(
        s.info.message_id,
        "ph-as4@8e086db6-b26e-4c15-95c5-973f3bedbd96"
    );
    assert_eq!(
        s.info.ref_to_message_id.as_deref(),
        Some("ph-as4@2babaddd-282e-461e-b645-730c5abebcce")
    );
    let Signal::Receipt {
        nrr,
        user_message,
        raw_other,
    } = &s.signal
    else {
        panic!("{s:?}")
    };
    assert!(nrr.is_empty() && *user_message);
    let raw = raw_other.as_deref().unwrap();
    assert!(
        raw.starts_with("<S11:Envelope>")
            && raw.contains("ph-as4@2babaddd-282e-461e-b645-730c5abebcce"),
        "{raw}"
    );
}

#[test]
fn derived_and_holodeck_envelopes() {
    let Some(dir) = as4_fixtures() else { return };
    // (file, MessageId, RefToMessageId, receipt reference URIs)
    let receipts = [
        (
            "derived/helger.soap.xml",
            "1384cf77-2de9-4303-a4e7-ca935a20f4fd@phase4",
            "3b3775c9-e88d-47f9-be5a-8e045ca2bc07@phase4",
            "cid:phase4-att-8f153eee-52ce-4a39-96a6-2a13296991bb@cid",
        ),
        (
            "derived/governikus.soap.xml",
            "03528358-a714-49bc-bce8-9bfabb01fa78@vt-peppol-c3",
            "6b52b4c0-de6a-46b8-8286-27bac7d1a463@phase4",
            "cid:phase4-att-a9c35290-9a50-4496-98c5-16d4741b4d99@cid",
        ),
        (
            "derived/dataport1-mustunderstand.soap.xml",
            "18acfd2d-1fb6-44dd-a196-a077132cf999@lppapqa002.dpaorinp.de",
            "669beff6-bf89-4776-9a27-eddece68083d@phase4",
            "cid:phase4-att-558f9b48-17d0-43f9-bfb6-e0c9574c26b0@cid",
        ),
    ];
    for (file, id, ref_to, cid) in receipts {
        let (v, m) = fixture_messaging(&dir, file);
        assert_eq!(v, SoapVersion::Soap12, "{file}");
        let s = only_signal(&m);
        assert_eq!(s.info.message_id, id, "{file}");
        assert_eq!(s.info.ref_to_message_id.as_deref(), Some(ref_to), "{file}");
        let refs = nrr(s);
        assert_eq!(refs.len(), 3, "{file}");
        assert_eq!(refs[2].uri, cid, "{file}");
        assert!(refs.iter().all(|r| r.digest_method == SHA256), "{file}");
    }

    let (_, m) = fixture_messaging(&dir, "derived/dump-raw.soap.xml");
    let um = only_user_message(&m);
    assert_eq!(
        um.info.message_id,
        "17a7c374-efe3-41e2-ac0d-8a8f47529e47@phase4"
    );
    assert_eq!(um.from.ids, [pid("POP000306", Some(PEPPOL_AP))]);
    assert_eq!(um.conversation_id, "phase4@Conv-4045816466640743733");
    assert_eq!(um.property("finalRecipient"), Some("9915:helger"));
    assert_eq!(
        um.payloads[0].href.as_deref(),
        Some("cid:phase4-att-ff0f8ad5-f982-48ba-b8e2-26997600f496@cid")
    );

    let (_, m) = fixture_messaging(&dir, "derived/from-holodeck-1.nocomment.xml");
    let um = only_user_message(&m);
    assert_eq!(
        um.info.message_id,
        "1d2726f5-e0f2-4a7d-b984-d073d630df29@PC65063.brzg.local"
    );
    assert_eq!(um.from.ids, [pid("APP_1000000101", None)]);
    assert_eq!(
        um.service,
        Service {
            value: "urn:www.cenbii.eu:profile:bii04:ver2.0".into(),
            r#type: Some("cenbii-procid-ubl".into())
        }
    );
    assert_eq!(um.agreement_ref, None);
    assert_eq!(
        um.payloads[0].content_id(),
        Some("1d2726f5-e0f2-4a7d-b984-d073d630df2-197002057@PC65063.brzg.local")
    );
    assert_eq!(
        um.payloads[0].property("CompressionType"),
        Some("application/gzip")
    );
    // The original starts with a comment before the XML declaration: not well-formed.
    let e = messaging_of(&read(&dir, "phase4/holodeck/from-holodeck-1.xml")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Malformed, "{e}");
}

#[test]
fn domibus_samples() {
    let Some(dir) = as4_fixtures() else { return };
    for (file, id) in [
        (
            "bst_x509v3_incoming_message.xml",
            "8a5572f6-4f37-4d1a-8202-2deef36e44a3@domibus.eu",
        ),
        (
            "bst_X509PKIPathv1_incoming_message.xml",
            "bb56ec56-c2d8-46ce-b749-a12f49c83588@domibus.eu",
        ),
        (
            "is_incoming_message.xml",
            "8307d3b0-a40e-4c33-af57-ea4fa17f6ca0@domibus.eu",
        ),
        (
            "ski_incoming_message.xml",
            "73a424e9-4b70-484d-8122-1aaedca6ffdf@domibus.eu",
        ),
    ] {
        let (v, m) = fixture_messaging(&dir, &format!("domibus/dataset-as4/{file}"));
        assert_eq!(v, SoapVersion::Soap12);
        let um = only_user_message(&m);
        assert_eq!(um.info.message_id, id, "{file}");
        assert_eq!(um.mpc.as_deref(), Some(DEFAULT_MPC), "{file}");
        let unregistered = Some("urn:oasis:names:tc:ebcore:partyid-type:unregistered");
        assert_eq!(um.from.ids, [pid("domibus-blue", unregistered)], "{file}");
        assert_eq!(um.to.ids, [pid("domibus-red", unregistered)], "{file}");
        assert_eq!(
            um.service,
            Service {
                value: "bdx:noprocess".into(),
                r#type: Some("tc1".into())
            },
            "{file}"
        );
        assert_eq!(um.action, "TC1Leg1", "{file}");
        // Pretty-printed: the property value's trailing line break is trimmed.
        assert_eq!(
            um.property("originalSender"),
            Some("urn:oasis:names:tc:ebcore:partyid-type:unregistered:C1")
        );
        assert_eq!(
            um.payloads[0].href.as_deref(),
            Some("cid:message"),
            "{file}"
        );
        assert_eq!(
            um.payloads[0].property("MimeType"),
            Some("text/xml"),
            "{file}"
        );
    }
}

/// The Content-Type of the Python capture's headers.json (a flat JSON object of strings).
fn json_content_type(json: &str) -> String {
    let at = json
        .find("\"Content-Type\"")
        .expect("Content-Type in headers.json");
    let rest = &json[at + "\"Content-Type\"".len()..];
    let rest = &rest[rest.find('"').unwrap() + 1..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

#[test]
fn python_as4_messages() {
    let Some(dir) = as4_fixtures() else { return };
    let ct = json_content_type(
        &String::from_utf8(read(
            &dir,
            "as4-pypi-generated/as4py-usermessage.headers.json",
        ))
        .unwrap(),
    );
    assert!(ct.starts_with("multipart/related;"), "{ct}");
    // No `start` parameter and no Content-ID on the SOAP part: the first part is the envelope.
    let p = Package::parse(
        &ct,
        &read(&dir, "as4-pypi-generated/as4py-usermessage.mime"),
        &Limits::default(),
    )
    .unwrap();
    same_bytes(
        &p.soap,
        &read(&dir, "as4-pypi-generated/as4py-soap.xml"),
        "as4py envelope",
    );
    assert_eq!(p.soap_content_type, "application/soap+xml");
    assert_eq!(p.attachments.len(), 1);
    let att = &p.attachments[0];
    assert_eq!(
        att.content_id,
        "as4-att-6ba1f5b6-e827-4ceb-b1e1-383f6df8b270@cid"
    );
    assert_eq!(att.content_type, "application/octet-stream");
    same_bytes(
        &att.data,
        &read(&dir, "as4-pypi-generated/as4py-att.bin"),
        "as4py attachment",
    );

    let (_, m) = messaging_of(&p.soap).unwrap();
    let um = only_user_message(&m);
    assert_eq!(
        um.info.message_id,
        "f49b8d15-83fa-4d85-a59e-89282501b41f@as4"
    );
    assert_eq!(um.from.ids, [pid("PTE000001", Some(PEPPOL_AP))]);
    assert_eq!(um.to.ids, [pid("PTE000002", Some(PEPPOL_AP))]);
    assert_eq!(
        um.service.value,
        "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
    );
    assert_eq!(um.action, PEPPOL_ACTION);
    assert_eq!(um.property("originalSender"), Some("9915:alice"));
    assert_eq!(
        um.properties[1],
        prop("finalRecipient", Some("iso6523-actorid-upis"), "9915:bob")
    );
    let part = &um.payloads[0];
    assert!(part.is_gzip());
    // The payload reference resolves to the attachment.
    assert_eq!(
        p.attachment(part.href.as_deref().unwrap()).unwrap().data,
        att.data
    );

    // The receiver's NRR receipt points at that very message: its Messaging, Body and attachment.
    let (_, r) = fixture_messaging(&dir, "as4-pypi-generated/as4py-receipt.xml");
    let s = only_signal(&r);
    assert_eq!(
        s.info.message_id,
        "671628ce-4be5-44cf-ae79-d347593e2164@as4"
    );
    assert_eq!(
        s.info.ref_to_message_id.as_deref(),
        Some(um.info.message_id.as_str())
    );
    let doc = xml::parse_bytes(&p.soap, &Limits::default()).unwrap();
    let env = envelope::read(&doc, UNDERSTOOD).unwrap();
    let expected = [
        format!("#{}", xml::id_of(env.messaging.unwrap()).unwrap()),
        format!("#{}", xml::id_of(env.body).unwrap()),
        part.href.clone().unwrap(),
    ];
    assert_eq!(uris(nrr(s)), expected);
    // An Id starting with a digit (not an NCName) is found all the same.
    assert_eq!(expected[1], "#18af090e-d883-41e2-b9d0-3a069e13cf5d");
}

#[test]
fn phase4_http_captures() {
    let Some(dir) = as4_fixtures() else { return };
    for (file, id, cid) in [
        (
            "dataport1-mustunderstand.as4in",
            "18acfd2d-1fb6-44dd-a196-a077132cf999@lppapqa002.dpaorinp.de",
            "cid:phase4-att-558f9b48-17d0-43f9-bfb6-e0c9574c26b0@cid",
        ),
        (
            "dataport1.as4in",
            "18acfd2d-1fb6-44dd-a196-a077132cf999@lppapqa002.dpaorinp.de",
            "cid:phase4-att-558f9b48-17d0-43f9-bfb6-e0c9574c26b0@cid",
        ),
        (
            "governikus.as4in",
            "03528358-a714-49bc-bce8-9bfabb01fa78@vt-peppol-c3",
            "cid:phase4-att-a9c35290-9a50-4496-98c5-16d4741b4d99@cid",
        ),
        (
            "helger.as4in",
            "1384cf77-2de9-4303-a4e7-ca935a20f4fd@phase4",
            "cid:phase4-att-8f153eee-52ce-4a39-96a6-2a13296991bb@cid",
        ),
    ] {
        // The captures say `Transfer-Encoding: chunked` but store the body de-chunked.
        let p = Package::parse_http(
            &read(&dir, &format!("phase4/verify/{file}")),
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.soap_content_type, "application/soap+xml", "{file}");
        assert!(p.attachments.is_empty(), "{file}");
        let (_, m) = messaging_of(&p.soap).unwrap_or_else(|e| panic!("{file}: {e}"));
        let s = only_signal(&m);
        assert_eq!(s.info.message_id, id, "{file}");
        assert_eq!(nrr(s)[2].uri, cid, "{file}");
        assert_eq!(nrr(s)[2].transforms[0].algorithm, SWA_CONTENT, "{file}");
    }
    // The same envelope as the derived copy (which has a line end added).
    let p = Package::parse_http(
        &read(&dir, "phase4/verify/helger.as4in"),
        &Limits::default(),
    )
    .unwrap();
    let derived = read(&dir, "derived/helger.soap.xml");
    same_bytes(
        &p.soap,
        derived.strip_suffix(b"\n").unwrap(),
        "helger envelope",
    );
}

#[test]
fn phase4_mime_dump() {
    let Some(dir) = as4_fixtures() else { return };
    let p = Package::parse_http(&read(&dir, "phase4/dump-raw.as4out"), &Limits::default()).unwrap();
    same_bytes(
        &p.soap,
        &read(&dir, "derived/dump-raw.soap.xml"),
        "dump-raw envelope",
    );
    assert_eq!(p.attachments.len(), 1);
    let att = &p.attachments[0];
    assert_eq!(
        att.content_id,
        "phase4-att-ff0f8ad5-f982-48ba-b8e2-26997600f496@cid"
    );
    assert_eq!(att.content_type, "application/octet-stream");
    assert!(att
        .headers
        .contains(&("content-description".into(), "Attachment".into())));
    same_bytes(
        &att.data,
        &read(&dir, "derived/dump-raw.att-encrypted.bin"),
        "dump-raw attachment",
    );
    let (_, m) = messaging_of(&p.soap).unwrap();
    let um = only_user_message(&m);
    assert_eq!(
        um.info.message_id,
        "17a7c374-efe3-41e2-ac0d-8a8f47529e47@phase4"
    );
    assert_eq!(
        p.attachment(um.payloads[0].href.as_deref().unwrap())
            .unwrap()
            .content_id,
        att.content_id
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken input

fn envelope_with(header: &str) -> String {
    format!("<S12:Envelope xmlns:S12=\"{NS_SOAP12}\"><S12:Header>{header}</S12:Header><S12:Body/></S12:Envelope>")
}

#[test]
fn unknown_must_understand_header_is_refused() {
    let m = Messaging {
        user_messages: vec![sample_user_message()],
        signals: vec![],
    }
    .to_xml(SoapVersion::Soap12, "m");
    let extra = format!("<r:Routing xmlns:r=\"urn:routing\" xmlns:mustUnderstand=\"{NS_SOAP12}\" mustUnderstand:mustUnderstand=\"1\"/>");
    let e = messaging_of(envelope_with(&format!("{m}{extra}")).as_bytes()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MustUnderstand);
    assert!(e.to_string().contains("{urn:routing}Routing"), "{e}");
    // The same block without mustUnderstand is ignored.
    let extra = "<r:Routing xmlns:r=\"urn:routing\"/>";
    assert!(messaging_of(envelope_with(&format!("{m}{extra}")).as_bytes()).is_ok());
    // Two eb:Messaging blocks.
    let e = messaging_of(envelope_with(&format!("{m}{m}")).as_bytes()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEbms);
}

#[test]
fn missing_message_id_or_service_is_invalid_ebms() {
    let good = Messaging {
        user_messages: vec![sample_user_message()],
        signals: vec![],
    }
    .to_xml(SoapVersion::Soap12, "m");
    let id = sample_user_message_id(&good);
    let service = "<eb:Service type=\"cenbii-procid-ubl\">urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</eb:Service>";
    for (what, broken) in [
        ("MessageId", good.replace(&format!("<eb:MessageId>{id}</eb:MessageId>"), "")),
        ("MessageId", good.replace(&format!("<eb:MessageId>{id}</eb:MessageId>"), "<eb:MessageId>  </eb:MessageId>")),
        ("Service", good.replace(service, "")),
        ("Action", good.replace(&format!("<eb:Action>{PEPPOL_ACTION}</eb:Action>"), "")),
        ("PartyId", good.replace("<eb:PartyId type=\"urn:fdc:peppol.eu:2017:identifiers:ap\">PTE000002</eb:PartyId>", "")),
        ("Role", good.replace("<eb:Role>http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator</eb:Role>", "")),
    ] {
        assert_ne!(broken, good, "{what}: the replacement did not apply");
        let e = messaging_of(envelope_with(&broken).as_bytes()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidEbms, "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
}

fn sample_user_message_id(xml: &str) -> String {
    let s = &xml[xml.find("<eb:MessageId>").unwrap() + 14..];
    s[..s.find('<').unwrap()].to_string()
}

#[test]
fn dtd_is_malformed() {
    let m = Messaging {
        user_messages: vec![sample_user_message()],
        signals: vec![],
    }
    .to_xml(SoapVersion::Soap12, "m");
    let with_dtd = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
        envelope_with(&m)
    );
    let e = messaging_of(with_dtd.as_bytes()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Malformed);
    // Also inside a package read from an HTTP capture.
    let raw = format!("HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n\r\n{with_dtd}");
    let p = Package::parse_http(raw.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(
        messaging_of(&p.soap).unwrap_err().code(),
        ErrorCode::Malformed
    );
}

#[test]
fn too_many_parts_and_missing_boundary() {
    let many: Vec<Attachment> = (0..100)
        .map(|i| Attachment::new(&format!("a{i}@x"), "text/plain", b"x".to_vec()))
        .collect();
    let p = Package {
        soap: b"<E/>".to_vec(),
        soap_content_type: "application/soap+xml".into(),
        attachments: many,
    };
    let (ct, body) = p.to_mime().unwrap();
    let e = Package::parse(&ct, &body, &Limits::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    let roomy = Limits {
        max_parts: 101,
        ..Default::default()
    };
    assert_eq!(
        Package::parse(&ct, &body, &roomy)
            .unwrap()
            .attachments
            .len(),
        100
    );
    // Beyond split_multipart's own cap too: still TooLarge, not a MIME error.
    let mut huge = Vec::new();
    for _ in 0..1500 {
        huge.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    let e = Package::parse("multipart/related; boundary=b", &huge, &Limits::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge);

    let e = Package::parse(
        "multipart/related; type=\"application/soap+xml\"",
        &body,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMime);
    let e = Package::parse(
        "multipart/related; boundary=\"\"",
        &body,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMime);
    // A boundary that never occurs.
    let e = Package::parse(
        "multipart/related; boundary=nope",
        &body,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMime);
}

#[test]
fn gzip_bomb_stops_at_the_limit() {
    // 16 MiB of zeros gzip to about 16 KiB.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let e = gunzip(&bomb, 1 << 20).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ExpansionTooLarge, "{e}");
    assert!(e.to_string().contains("decompression bomb"), "{e}");
    assert_eq!(gunzip(&bomb, 16 << 20).unwrap().len(), 16 << 20);
    // Exactly at the limit is fine.
    assert_eq!(gunzip(&gzip(b"12345"), 5).unwrap(), b"12345");
}

#[test]
fn gzip_interop_with_the_gzip_tool() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |args: &[&str], input: &[u8]| -> Option<Vec<u8>> {
        let mut child = Command::new("gzip")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let data = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().ok()?;
        writer.join().ok()?.ok()?;
        assert!(out.status.success(), "gzip {args:?} failed");
        Some(out.stdout)
    };
    let data: Vec<u8> = (0..50_000u32)
        .flat_map(|i| format!("<Line n=\"{i}\">{}</Line>\n", i * 7919 % 10007).into_bytes())
        .collect();
    let Some(theirs) = run(&["-d", "-c"], &gzip(&data)) else {
        eprintln!("SKIPPED: the gzip tool is not installed");
        return;
    };
    assert_eq!(theirs, data, "gzip -d reads ours");
    for level in ["-1", "-9"] {
        let z = run(&["-c", "-n", level], &data).unwrap();
        assert_eq!(
            gunzip(&z, data.len() as u64).unwrap(),
            data,
            "ours reads gzip -c {level}"
        );
    }
    // With a file name in the header (gzip without -n on a named file is the same as -N here).
    let z = run(&["-c", "-N"], b"named").unwrap();
    assert_eq!(gunzip(&z, 100).unwrap(), b"named");
}

/// xorshift64*: reproducible pseudo-random mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Everything the message layer does with a received capture; errors are fine, panics are not.
fn digest_capture(bytes: &[u8], limits: &Limits) {
    if let Ok(p) = Package::parse_http(bytes, limits) {
        let _ = messaging_of(&p.soap);
        for a in &p.attachments {
            let _ = gunzip(&a.data, 1 << 20);
        }
    }
    let _ = messaging_of(bytes);
}

#[test]
fn truncated_and_mutated_fixtures_never_panic() {
    let Some(dir) = as4_fixtures() else { return };
    let limits = Limits {
        max_parts: 8,
        ..Default::default()
    };
    let files = [
        "phase4/verify/dataport1-mustunderstand.as4in",
        "phase4/verify/helger.as4in",
        "phase4/dump-raw.as4out",
        "phase4/soap11test/ErrorMessage.xml",
        "phase4/soap11test/ReceiptMessage.xml",
        "phase4/testfiles/TestReceipt11.xml",
        "derived/from-holodeck-1.nocomment.xml",
        "as4-pypi-generated/as4py-receipt.xml",
    ];
    let seed = std::env::var("LS_MUTATION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = Rng(seed | 1);
    // LS_MUTATIONS=n runs a longer campaign (default 300 mutants per file).
    let rounds: usize = std::env::var("LS_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for file in files {
        let orig = read(&dir, file);
        // Every truncation point near the interesting places, and a sample elsewhere.
        let step = (orig.len() / 200).max(1);
        for cut in (0..orig.len()).step_by(step) {
            digest_capture(&orig[..cut], &limits);
        }
        for _ in 0..rounds {
            let mut m = orig.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                match rng.below(4) {
                    0 => m[at] = rng.next() as u8,
                    1 => m[at] = b"<>\"'/:=&;\r\n-"[rng.below(12)],
                    2 => {
                        m.remove(at);
                    }
                    _ => {
                        let len = rng.below(64).min(m.len() - at);
                        let chunk = m[at..at + len].to_vec();
                        let to = rng.below(m.len());
                        m.splice(to..to, chunk);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            digest_capture(&m, &limits);
        }
    }
    // The MIME capture with the delimiter lines mangled in every way that fits one byte.
    let dump = read(&dir, "phase4/dump-raw.as4out");
    for (i, _) in dump
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"--")
        .take(40)
    {
        for b in [b'\r', b'\n', b'-', b'x', 0] {
            let mut m = dump.clone();
            m[i] = b;
            digest_capture(&m, &limits);
        }
    }
    // And gzip data cut and flipped anywhere.
    let z = gzip(&read(&dir, "derived/dump-raw.soap.xml"));
    for i in 0..z.len() {
        let _ = gunzip(&z[..i], 1 << 20);
        let mut m = z.clone();
        m[i] ^= 1 << (i % 8);
        let _ = gunzip(&m, 1 << 20);
    }
}
