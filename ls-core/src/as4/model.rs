//! The ebMS3 header (`eb:Messaging`): UserMessage and SignalMessage (PullRequest, Receipt, Error),
//! written compactly and read by namespace, with the checks the ebMS3 schema and AS4 ask for.

use super::envelope::SoapVersion;
use super::xml::{escape_attr, escape_text, is, text, NS_DS, NS_EB, NS_EBBP, NS_EC, NS_WSU};
use crate::error::{Error, Result};
use roxmltree::Node;
use std::time::{SystemTime, UNIX_EPOCH};

/// The default message partition channel (a PullRequest without `mpc` pulls from it).
pub const DEFAULT_MPC: &str =
    "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/defaultMPC";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// xsd:dateTime as written by the sender.
    pub timestamp: String,
    pub message_id: String,
    pub ref_to_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyId {
    pub value: String,
    pub r#type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// At least one.
    pub ids: Vec<PartyId>,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementRef {
    pub value: String,
    pub r#type: Option<String>,
    pub pmode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub value: String,
    pub r#type: Option<String>,
}

/// `eb:Property`, in MessageProperties or PartProperties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub r#type: Option<String>,
    pub value: String,
}

impl Property {
    pub fn new(name: &str, value: &str) -> Property {
        Property {
            name: name.into(),
            r#type: None,
            value: value.into(),
        }
    }
}

/// `eb:Schema` of a payload part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub location: String,
    pub version: Option<String>,
    pub namespace: Option<String>,
}

/// One payload: `href` is `cid:…` for an attachment, `#id` or `None` for the SOAP Body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartInfo {
    pub href: Option<String>,
    pub schema: Option<Schema>,
    /// `eb:Description` (written with `xml:lang="en"`).
    pub description: Option<String>,
    /// PartProperties: `MimeType`, `CompressionType`, `CharacterSet`, and any agreed others.
    pub properties: Vec<Property>,
}

impl PartInfo {
    /// The value of the part property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        find_property(&self.properties, name)
    }

    /// The Content-ID this part refers to (`href` without `cid:`), if it is an attachment.
    pub fn content_id(&self) -> Option<&str> {
        let h = self.href.as_deref()?;
        match h.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("cid:") => Some(&h[4..]),
            _ => None,
        }
    }

    /// Whether the part is gzip-compressed (`CompressionType=application/gzip`).
    pub fn is_gzip(&self) -> bool {
        self.property("CompressionType")
            .is_some_and(|v| v.eq_ignore_ascii_case("application/gzip"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserMessage {
    pub info: MessageInfo,
    pub mpc: Option<String>,
    pub from: Party,
    pub to: Party,
    pub agreement_ref: Option<AgreementRef>,
    pub service: Service,
    pub action: String,
    pub conversation_id: String,
    /// MessageProperties (Peppol: `originalSender`, `finalRecipient`).
    pub properties: Vec<Property>,
    pub payloads: Vec<PartInfo>,
}

impl UserMessage {
    /// The value of the message property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        find_property(&self.properties, name)
    }

    /// The `eb:UserMessage` element, using the prefix `eb` (bound by the caller).
    pub fn to_xml(&self) -> String {
        let mut w = String::with_capacity(1024);
        self.write(&mut w);
        w
    }
}

/// A `ds:Reference` of a non-repudiation receipt (`ebbp:MessagePartNRInformation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRef {
    pub uri: String,
    pub transforms: Vec<Transform>,
    pub digest_method: String,
    /// Base64, white space removed.
    pub digest_value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    pub algorithm: String,
    /// `ec:InclusiveNamespaces/@PrefixList`.
    pub inclusive_prefixes: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Failure,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Failure => "failure",
            Severity::Warning => "warning",
        }
    }
}

/// One `eb:Error` of an error signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbmsError {
    /// `EBMS:0004`; kept as the sender wrote it (some write `0101`).
    pub code: String,
    pub severity: Severity,
    pub category: Option<String>,
    pub short_description: Option<String>,
    pub description: Option<String>,
    pub ref_to_message_in_error: Option<String>,
    pub origin: Option<String>,
    pub error_detail: Option<String>,
}

/// `(code, short description, severity, category, origin)` of the ebMS3 core and AS4 errors.
const ERRORS: &[(&str, &str, Severity, &str, &str)] = &[
    (
        "EBMS:0001",
        "ValueNotRecognized",
        Severity::Failure,
        "Content",
        "ebMS",
    ),
    (
        "EBMS:0002",
        "FeatureNotSupported",
        Severity::Warning,
        "Content",
        "ebMS",
    ),
    (
        "EBMS:0003",
        "ValueInconsistent",
        Severity::Failure,
        "Content",
        "ebMS",
    ),
    ("EBMS:0004", "Other", Severity::Failure, "Content", "ebMS"),
    (
        "EBMS:0005",
        "ConnectionFailure",
        Severity::Failure,
        "Communication",
        "ebMS",
    ),
    (
        "EBMS:0006",
        "EmptyMessagePartitionChannel",
        Severity::Warning,
        "Communication",
        "ebMS",
    ),
    (
        "EBMS:0007",
        "MimeInconsistency",
        Severity::Failure,
        "Unpackaging",
        "ebMS",
    ),
    (
        "EBMS:0008",
        "FeatureNotSupported",
        Severity::Failure,
        "Unpackaging",
        "ebMS",
    ),
    (
        "EBMS:0009",
        "InvalidHeader",
        Severity::Failure,
        "Unpackaging",
        "ebMS",
    ),
    (
        "EBMS:0010",
        "ProcessingModeMismatch",
        Severity::Failure,
        "Processing",
        "ebMS",
    ),
    (
        "EBMS:0011",
        "ExternalPayloadError",
        Severity::Failure,
        "Content",
        "ebMS",
    ),
    (
        "EBMS:0101",
        "FailedAuthentication",
        Severity::Failure,
        "Processing",
        "security",
    ),
    (
        "EBMS:0102",
        "FailedDecryption",
        Severity::Failure,
        "Processing",
        "security",
    ),
    (
        "EBMS:0103",
        "PolicyNoncompliance",
        Severity::Failure,
        "Processing",
        "security",
    ),
    (
        "EBMS:0201",
        "DysfunctionalReliability",
        Severity::Failure,
        "Processing",
        "reliability",
    ),
    (
        "EBMS:0202",
        "DeliveryFailure",
        Severity::Failure,
        "Communication",
        "reliability",
    ),
    (
        "EBMS:0301",
        "MissingReceipt",
        Severity::Failure,
        "Communication",
        "ebMS",
    ),
    (
        "EBMS:0302",
        "InvalidReceipt",
        Severity::Failure,
        "Communication",
        "ebMS",
    ),
    (
        "EBMS:0303",
        "DecompressionFailure",
        Severity::Failure,
        "Communication",
        "ebMS",
    ),
];

impl EbmsError {
    /// An error with the short description, severity, category and origin the ebMS3 core
    /// specification and the AS4 profile give `code`. An unknown code is a failure with none.
    pub fn new(code: &str) -> EbmsError {
        let known = ERRORS.iter().find(|e| e.0 == code);
        EbmsError {
            code: code.to_string(),
            severity: known.map_or(Severity::Failure, |e| e.2),
            category: known.map(|e| e.3.to_string()),
            short_description: known.map(|e| e.1.to_string()),
            description: None,
            ref_to_message_in_error: None,
            origin: known.map(|e| e.4.to_string()),
            error_detail: None,
        }
    }

    pub fn with_ref(mut self, message_id: &str) -> EbmsError {
        self.ref_to_message_in_error = Some(message_id.to_string());
        self
    }

    pub fn with_description(mut self, description: &str) -> EbmsError {
        self.description = Some(description.to_string());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `mpc` is [`DEFAULT_MPC`] when the request names none.
    PullRequest {
        mpc: String,
    },
    Receipt {
        /// `ebbp:NonRepudiationInformation/MessagePartNRInformation/ds:Reference`, in order.
        nrr: Vec<ReceiptRef>,
        /// Whether the other content holds an `eb:UserMessage` (the reception-awareness receipt).
        user_message: bool,
        /// The Receipt's element children other than the NonRepudiationInformation, as source
        /// text (prefixes as bound in the message they came from). Written back verbatim.
        raw_other: Option<String>,
    },
    Error(Vec<EbmsError>),
}

impl Signal {
    /// The reception-awareness receipt for `m`: a Receipt carrying a copy of its UserMessage.
    pub fn plain_receipt(m: &UserMessage) -> Signal {
        Signal::Receipt {
            nrr: Vec::new(),
            user_message: true,
            raw_other: Some(m.to_xml()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalMessage {
    pub info: MessageInfo,
    pub signal: Signal,
}

/// The `eb:Messaging` header block.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Messaging {
    pub user_messages: Vec<UserMessage>,
    pub signals: Vec<SignalMessage>,
}

/// A new MessageId: a random (version 4) UUID `@domain`.
pub fn new_message_id(domain: &str) -> Result<String> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::bytes::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}@{domain}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// The current time as xsd:dateTime in UTC with milliseconds: `2026-11-27T15:25:35.123Z`.
pub fn timestamp_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, mo, da, h, mi, s) = crate::time::parts_from_unix(d.as_secs() as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Text content: escaped, `\r` kept, characters XML cannot carry replaced by U+FFFD.
fn t(s: &str) -> String {
    escape_text(&xml_chars(s)).replace('\r', "&#13;")
}

/// An attribute value (double-quoted): also keeps tabs and line ends through normalisation.
fn a(s: &str) -> String {
    escape_attr(&xml_chars(s))
        .replace('\t', "&#9;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
}

fn xml_chars(s: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
    };
    if s.chars().all(ok) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(
            s.chars()
                .map(|c| if ok(c) { c } else { '\u{fffd}' })
                .collect(),
        )
    }
}

fn opt_attr(w: &mut String, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        w.push_str(&format!(" {name}=\"{}\"", a(v)));
    }
}

fn leaf(w: &mut String, name: &str, v: &str) {
    w.push_str(&format!("<eb:{name}>{}</eb:{name}>", t(v)));
}

fn write_info(w: &mut String, i: &MessageInfo) {
    w.push_str("<eb:MessageInfo>");
    leaf(w, "Timestamp", &i.timestamp);
    leaf(w, "MessageId", &i.message_id);
    if let Some(r) = &i.ref_to_message_id {
        leaf(w, "RefToMessageId", r);
    }
    w.push_str("</eb:MessageInfo>");
}

fn write_party(w: &mut String, name: &str, p: &Party) {
    w.push_str(&format!("<eb:{name}>"));
    for id in &p.ids {
        w.push_str("<eb:PartyId");
        opt_attr(w, "type", &id.r#type);
        w.push_str(&format!(">{}</eb:PartyId>", t(&id.value)));
    }
    leaf(w, "Role", &p.role);
    w.push_str(&format!("</eb:{name}>"));
}

fn write_properties(w: &mut String, wrapper: &str, props: &[Property]) {
    if props.is_empty() {
        return;
    }
    w.push_str(&format!("<eb:{wrapper}>"));
    for p in props {
        w.push_str(&format!("<eb:Property name=\"{}\"", a(&p.name)));
        opt_attr(w, "type", &p.r#type);
        w.push_str(&format!(">{}</eb:Property>", t(&p.value)));
    }
    w.push_str(&format!("</eb:{wrapper}>"));
}

impl UserMessage {
    fn write(&self, w: &mut String) {
        w.push_str("<eb:UserMessage");
        opt_attr(w, "mpc", &self.mpc);
        w.push('>');
        write_info(w, &self.info);
        w.push_str("<eb:PartyInfo>");
        write_party(w, "From", &self.from);
        write_party(w, "To", &self.to);
        w.push_str("</eb:PartyInfo><eb:CollaborationInfo>");
        if let Some(ar) = &self.agreement_ref {
            w.push_str("<eb:AgreementRef");
            opt_attr(w, "type", &ar.r#type);
            opt_attr(w, "pmode", &ar.pmode);
            w.push_str(&format!(">{}</eb:AgreementRef>", t(&ar.value)));
        }
        w.push_str("<eb:Service");
        opt_attr(w, "type", &self.service.r#type);
        w.push_str(&format!(">{}</eb:Service>", t(&self.service.value)));
        leaf(w, "Action", &self.action);
        leaf(w, "ConversationId", &self.conversation_id);
        w.push_str("</eb:CollaborationInfo>");
        write_properties(w, "MessageProperties", &self.properties);
        if !self.payloads.is_empty() {
            w.push_str("<eb:PayloadInfo>");
            for p in &self.payloads {
                w.push_str("<eb:PartInfo");
                opt_attr(w, "href", &p.href);
                w.push('>');
                if let Some(s) = &p.schema {
                    w.push_str(&format!("<eb:Schema location=\"{}\"", a(&s.location)));
                    opt_attr(w, "version", &s.version);
                    opt_attr(w, "namespace", &s.namespace);
                    w.push_str("/>");
                }
                if let Some(d) = &p.description {
                    w.push_str(&format!(
                        "<eb:Description xml:lang=\"en\">{}</eb:Description>",
                        t(d)
                    ));
                }
                write_properties(w, "PartProperties", &p.properties);
                w.push_str("</eb:PartInfo>");
            }
            w.push_str("</eb:PayloadInfo>");
        }
        w.push_str("</eb:UserMessage>");
    }
}

impl SignalMessage {
    fn write(&self, w: &mut String) {
        w.push_str("<eb:SignalMessage>");
        write_info(w, &self.info);
        match &self.signal {
            Signal::PullRequest { mpc } => {
                w.push_str(&format!("<eb:PullRequest mpc=\"{}\"/>", a(mpc)))
            }
            Signal::Receipt { nrr, raw_other, .. } => {
                w.push_str("<eb:Receipt>");
                if !nrr.is_empty() {
                    w.push_str(&format!(
                        "<ebbp:NonRepudiationInformation xmlns:ebbp=\"{NS_EBBP}\" xmlns:ds=\"{NS_DS}\">"
                    ));
                    for r in nrr {
                        write_reference(w, r);
                    }
                    w.push_str("</ebbp:NonRepudiationInformation>");
                }
                if let Some(raw) = raw_other {
                    w.push_str(raw);
                }
                w.push_str("</eb:Receipt>");
            }
            Signal::Error(errors) => {
                for e in errors {
                    w.push_str("<eb:Error");
                    opt_attr(w, "category", &e.category);
                    w.push_str(&format!(" errorCode=\"{}\"", a(&e.code)));
                    opt_attr(w, "origin", &e.origin);
                    opt_attr(w, "refToMessageInError", &e.ref_to_message_in_error);
                    w.push_str(&format!(" severity=\"{}\"", e.severity.as_str()));
                    opt_attr(w, "shortDescription", &e.short_description);
                    if e.description.is_none() && e.error_detail.is_none() {
                        w.push_str("/>");
                        continue;
                    }
                    w.push('>');
                    if let Some(d) = &e.description {
                        w.push_str(&format!(
                            "<eb:Description xml:lang=\"en\">{}</eb:Description>",
                            t(d)
                        ));
                    }
                    if let Some(d) = &e.error_detail {
                        leaf(w, "ErrorDetail", d);
                    }
                    w.push_str("</eb:Error>");
                }
            }
        }
        w.push_str("</eb:SignalMessage>");
    }
}

fn write_reference(w: &mut String, r: &ReceiptRef) {
    w.push_str(&format!(
        "<ebbp:MessagePartNRInformation><ds:Reference URI=\"{}\">",
        a(&r.uri)
    ));
    if !r.transforms.is_empty() {
        w.push_str("<ds:Transforms>");
        for tr in &r.transforms {
            w.push_str(&format!("<ds:Transform Algorithm=\"{}\"", a(&tr.algorithm)));
            match &tr.inclusive_prefixes {
                Some(p) => w.push_str(&format!(
                    "><ec:InclusiveNamespaces xmlns:ec=\"{NS_EC}\" PrefixList=\"{}\"/></ds:Transform>",
                    a(p)
                )),
                None => w.push_str("/>"),
            }
        }
        w.push_str("</ds:Transforms>");
    }
    w.push_str(&format!(
        "<ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference></ebbp:MessagePartNRInformation>",
        a(&r.digest_method),
        t(&r.digest_value)
    ));
}

impl Messaging {
    /// The `eb:Messaging` header block: its own namespace declarations, mustUnderstand in
    /// `soap`'s namespace, `wsu:Id` (unless empty), signals then user messages (schema order). Compact and
    /// deterministic; values are escaped.
    pub fn to_xml(&self, soap: SoapVersion, wsu_id: &str) -> String {
        let p = soap.prefix();
        let mut w = String::with_capacity(2048);
        w.push_str(&format!(
            "<eb:Messaging xmlns:eb=\"{NS_EB}\" xmlns:{p}=\"{}\" xmlns:wsu=\"{NS_WSU}\" {p}:mustUnderstand=\"{}\"",
            soap.namespace(),
            soap.must_understand_true(),
        ));
        if !wsu_id.is_empty() {
            w.push_str(&format!(" wsu:Id=\"{}\"", a(wsu_id)));
        }
        w.push('>');
        for s in &self.signals {
            s.write(&mut w);
        }
        for u in &self.user_messages {
            u.write(&mut w);
        }
        w.push_str("</eb:Messaging>");
        w
    }

    /// Read an `eb:Messaging` element. Required content missing, unexpected ebMS elements or
    /// ambiguous repetitions are [`Error::InvalidEbms`] naming the element; elements of other
    /// namespaces are skipped where the schema allows extensions.
    pub fn parse(node: Node) -> Result<Messaging> {
        if !is(node, NS_EB, "Messaging") {
            return Err(invalid(format!(
                "expected eb:Messaging, found {}",
                node.tag_name().name()
            )));
        }
        allow(node, &["SignalMessage", "UserMessage"], true)?;
        let mut m = Messaging::default();
        for c in elements(node) {
            if is(c, NS_EB, "UserMessage") {
                m.user_messages.push(parse_user_message(c)?);
            } else if is(c, NS_EB, "SignalMessage") {
                m.signals.push(parse_signal_message(c)?);
            }
        }
        if m.user_messages.is_empty() && m.signals.is_empty() {
            return Err(invalid(
                "eb:Messaging holds neither a UserMessage nor a SignalMessage",
            ));
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidEbms(msg.into())
}

fn find_property<'p>(props: &'p [Property], name: &str) -> Option<&'p str> {
    props
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.as_str())
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

/// Every element child of `n` is one of the ebMS elements `names`, or (where the schema has an
/// `##other` wildcard) of another namespace.
fn allow(n: Node, names: &[&str], others: bool) -> Result<()> {
    for c in elements(n) {
        let ns = c.tag_name().namespace();
        let ok = if ns == Some(NS_EB) {
            names.contains(&c.tag_name().name())
        } else {
            others
        };
        if !ok {
            return Err(invalid(format!(
                "unexpected element {}{} in eb:{}",
                ns.map(|ns| format!("{{{ns}}}")).unwrap_or_default(),
                c.tag_name().name(),
                n.tag_name().name()
            )));
        }
    }
    Ok(())
}

/// The optional ebMS child `local` of `n`; twice is an error.
fn opt<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Result<Option<Node<'a, 'i>>> {
    let mut it = elements(n).filter(|c| is(*c, NS_EB, local));
    let first = it.next();
    if first.is_some() && it.next().is_some() {
        return Err(invalid(format!(
            "eb:{} has two eb:{local} elements",
            n.tag_name().name()
        )));
    }
    Ok(first)
}

/// The required ebMS child `local` of `n`.
fn one<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Result<Node<'a, 'i>> {
    opt(n, local)?.ok_or_else(|| invalid(format!("eb:{} has no eb:{local}", n.tag_name().name())))
}

/// The text of a simple element (trimmed); child elements are an error.
fn value(n: Node) -> Result<String> {
    if let Some(c) = n.children().find(|c| c.is_element()) {
        return Err(invalid(format!(
            "eb:{} holds an element ({}) where text belongs",
            n.tag_name().name(),
            c.tag_name().name()
        )));
    }
    Ok(text(n))
}

fn non_empty(n: Node) -> Result<String> {
    let v = value(n)?;
    if v.is_empty() {
        return Err(invalid(format!("eb:{} is empty", n.tag_name().name())));
    }
    Ok(v)
}

fn attr(n: Node, name: &str) -> Option<String> {
    n.attribute(name).map(|v| v.trim().to_string())
}

fn required_attr(n: Node, name: &str) -> Result<String> {
    attr(n, name).ok_or_else(|| {
        invalid(format!(
            "eb:{} has no {name} attribute",
            n.tag_name().name()
        ))
    })
}

fn parse_info(n: Node) -> Result<MessageInfo> {
    allow(n, &["Timestamp", "MessageId", "RefToMessageId"], false)?;
    let ref_to = match opt(n, "RefToMessageId")? {
        Some(r) => Some(value(r)?).filter(|v| !v.is_empty()),
        None => None,
    };
    Ok(MessageInfo {
        timestamp: non_empty(one(n, "Timestamp")?)?,
        message_id: non_empty(one(n, "MessageId")?)?,
        ref_to_message_id: ref_to,
    })
}

fn parse_party(n: Node) -> Result<Party> {
    allow(n, &["PartyId", "Role"], false)?;
    let ids = elements(n)
        .filter(|c| is(*c, NS_EB, "PartyId"))
        .map(|c| {
            Ok(PartyId {
                value: non_empty(c)?,
                r#type: attr(c, "type"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(invalid(format!(
            "eb:{} has no eb:PartyId",
            n.tag_name().name()
        )));
    }
    Ok(Party {
        ids,
        role: non_empty(one(n, "Role")?)?,
    })
}

fn parse_properties(n: Node) -> Result<Vec<Property>> {
    allow(n, &["Property"], false)?;
    elements(n)
        .map(|p| {
            Ok(Property {
                name: required_attr(p, "name")?,
                r#type: attr(p, "type"),
                value: value(p)?,
            })
        })
        .collect()
}

fn parse_part_info(n: Node) -> Result<PartInfo> {
    allow(n, &["Schema", "Description", "PartProperties"], false)?;
    let schema = match opt(n, "Schema")? {
        Some(s) => Some(Schema {
            location: required_attr(s, "location")?,
            version: attr(s, "version"),
            namespace: attr(s, "namespace"),
        }),
        None => None,
    };
    let description = opt(n, "Description")?.map(value).transpose()?;
    let properties = opt(n, "PartProperties")?
        .map(parse_properties)
        .transpose()?
        .unwrap_or_default();
    Ok(PartInfo {
        href: attr(n, "href").filter(|h| !h.is_empty()),
        schema,
        description,
        properties,
    })
}

fn parse_user_message(n: Node) -> Result<UserMessage> {
    allow(
        n,
        &[
            "MessageInfo",
            "PartyInfo",
            "CollaborationInfo",
            "MessageProperties",
            "PayloadInfo",
        ],
        false,
    )?;
    let info = parse_info(one(n, "MessageInfo")?)?;
    let party_info = one(n, "PartyInfo")?;
    allow(party_info, &["From", "To"], false)?;
    let ci = one(n, "CollaborationInfo")?;
    allow(
        ci,
        &["AgreementRef", "Service", "Action", "ConversationId"],
        false,
    )?;
    let agreement_ref = match opt(ci, "AgreementRef")? {
        Some(ar) => Some(AgreementRef {
            value: non_empty(ar)?,
            r#type: attr(ar, "type"),
            pmode: attr(ar, "pmode"),
        }),
        None => None,
    };
    let service = one(ci, "Service")?;
    let payloads = match opt(n, "PayloadInfo")? {
        Some(pi) => {
            allow(pi, &["PartInfo"], false)?;
            elements(pi)
                .map(parse_part_info)
                .collect::<Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    for (i, p) in payloads.iter().enumerate() {
        if payloads[..i].iter().any(|q| q.href == p.href) {
            return Err(invalid(format!(
                "two eb:PartInfo elements refer to {}",
                p.href.as_deref().unwrap_or("the SOAP Body")
            )));
        }
    }
    Ok(UserMessage {
        info,
        mpc: attr(n, "mpc").filter(|m| !m.is_empty()),
        from: parse_party(one(party_info, "From")?)?,
        to: parse_party(one(party_info, "To")?)?,
        agreement_ref,
        service: Service {
            value: non_empty(service)?,
            r#type: attr(service, "type"),
        },
        action: non_empty(one(ci, "Action")?)?,
        conversation_id: value(one(ci, "ConversationId")?)?,
        properties: opt(n, "MessageProperties")?
            .map(parse_properties)
            .transpose()?
            .unwrap_or_default(),
        payloads,
    })
}

fn parse_signal_message(n: Node) -> Result<SignalMessage> {
    allow(n, &["MessageInfo", "PullRequest", "Receipt", "Error"], true)?;
    let info = parse_info(one(n, "MessageInfo")?)?;
    let pull = opt(n, "PullRequest")?;
    let receipt = opt(n, "Receipt")?;
    let errors: Vec<Node> = elements(n).filter(|c| is(*c, NS_EB, "Error")).collect();
    let kinds = pull.is_some() as u8 + receipt.is_some() as u8 + !errors.is_empty() as u8;
    if kinds != 1 {
        return Err(invalid(format!(
            "eb:SignalMessage {} carries {} of PullRequest, Receipt and Error (expected one)",
            info.message_id, kinds
        )));
    }
    let signal = if let Some(p) = pull {
        allow(p, &[], true)?;
        Signal::PullRequest {
            mpc: attr(p, "mpc")
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| DEFAULT_MPC.into()),
        }
    } else if let Some(r) = receipt {
        parse_receipt(r)?
    } else {
        Signal::Error(
            errors
                .into_iter()
                .map(parse_error)
                .collect::<Result<Vec<_>>>()?,
        )
    };
    Ok(SignalMessage { info, signal })
}

fn parse_receipt(n: Node) -> Result<Signal> {
    let src = n.document().input_text();
    let mut nrr = Vec::new();
    let mut seen_nri = false;
    let mut raw = String::new();
    let mut user_message = false;
    for c in elements(n) {
        if is(c, NS_EBBP, "NonRepudiationInformation") {
            if seen_nri {
                return Err(invalid(
                    "eb:Receipt has two ebbp:NonRepudiationInformation elements",
                ));
            }
            seen_nri = true;
            for part in elements(c) {
                if !is(part, NS_EBBP, "MessagePartNRInformation") {
                    return Err(invalid(format!(
                        "unexpected element {} in ebbp:NonRepudiationInformation",
                        part.tag_name().name()
                    )));
                }
                // A part named only by ebbp:MessagePartIdentifier carries no digest to check.
                for r in elements(part).filter(|r| is(*r, NS_DS, "Reference")) {
                    nrr.push(parse_reference(r)?);
                }
            }
        } else {
            user_message |= c.descendants().any(|d| is(d, NS_EB, "UserMessage"));
            raw.push_str(&src[c.range()]);
        }
    }
    Ok(Signal::Receipt {
        nrr,
        user_message,
        raw_other: Some(raw).filter(|r| !r.is_empty()),
    })
}

fn parse_reference(r: Node) -> Result<ReceiptRef> {
    let uri = r
        .attribute("URI")
        .ok_or_else(|| invalid("a ds:Reference of the receipt has no URI"))?;
    let algorithm = |n: Node| {
        n.attribute("Algorithm")
            .map(|v| v.trim().to_string())
            .ok_or_else(|| {
                invalid(format!(
                    "ds:{} of the receipt reference {uri} has no Algorithm",
                    n.tag_name().name()
                ))
            })
    };
    let ds = |local: &str| elements(r).find(|c| is(*c, NS_DS, local));
    let transforms = match ds("Transforms") {
        Some(ts) => elements(ts)
            .filter(|t| is(*t, NS_DS, "Transform"))
            .map(|t| {
                Ok(Transform {
                    algorithm: algorithm(t)?,
                    inclusive_prefixes: elements(t)
                        .find(|i| is(*i, NS_EC, "InclusiveNamespaces"))
                        .and_then(|i| i.attribute("PrefixList"))
                        .map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let dm = ds("DigestMethod").ok_or_else(|| {
        invalid(format!(
            "the receipt reference {uri} has no ds:DigestMethod"
        ))
    })?;
    let dv = ds("DigestValue")
        .ok_or_else(|| invalid(format!("the receipt reference {uri} has no ds:DigestValue")))?;
    Ok(ReceiptRef {
        uri: uri.to_string(),
        transforms,
        digest_method: algorithm(dm)?,
        digest_value: text(dv).split_whitespace().collect(),
    })
}

fn parse_error(n: Node) -> Result<EbmsError> {
    allow(n, &["Description", "ErrorDetail"], true)?;
    let severity = match required_attr(n, "severity")?.to_ascii_lowercase().as_str() {
        "failure" => Severity::Failure,
        "warning" => Severity::Warning,
        other => {
            return Err(invalid(format!(
                "eb:Error has severity {other:?} (failure or warning)"
            )))
        }
    };
    let code = required_attr(n, "errorCode")?;
    if code.is_empty() {
        return Err(invalid("eb:Error has an empty errorCode"));
    }
    Ok(EbmsError {
        code,
        severity,
        category: attr(n, "category"),
        short_description: attr(n, "shortDescription"),
        description: opt(n, "Description")?.map(value).transpose()?,
        ref_to_message_in_error: attr(n, "refToMessageInError").filter(|r| !r.is_empty()),
        origin: attr(n, "origin"),
        error_detail: opt(n, "ErrorDetail")?.map(value).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::as4::xml::{parse, Limits};
    use crate::ErrorCode;

    fn user_message() -> UserMessage {
        UserMessage {
            info: MessageInfo {
                timestamp: "2026-11-27T15:25:35.123Z".into(),
                message_id: "m1@example.com".into(),
                ref_to_message_id: None,
            },
            mpc: None,
            from: Party {
                ids: vec![PartyId {
                    value: "A & B".into(),
                    r#type: Some("t<\"1\">".into()),
                }],
                role: "r1".into(),
            },
            to: Party {
                ids: vec![PartyId {
                    value: "C".into(),
                    r#type: None,
                }],
                role: "r2".into(),
            },
            agreement_ref: None,
            service: Service {
                value: "s".into(),
                r#type: None,
            },
            action: "a".into(),
            conversation_id: "c".into(),
            properties: vec![Property::new("p", "line1\nline2")],
            payloads: vec![PartInfo {
                href: Some("cid:x@y".into()),
                ..Default::default()
            }],
        }
    }

    fn reparse(m: &Messaging) -> Result<Messaging> {
        let x = m.to_xml(SoapVersion::Soap12, "id-1");
        let doc = parse(&x, &Limits::default()).unwrap();
        Messaging::parse(doc.root_element())
    }

    #[test]
    fn escaping_round_trips() {
        let m = Messaging {
            user_messages: vec![user_message()],
            signals: vec![],
        };
        assert_eq!(reparse(&m).unwrap(), m);
        assert!(m
            .to_xml(SoapVersion::Soap12, "id-1")
            .contains(" wsu:Id=\"id-1\">"));
        assert!(!m.to_xml(SoapVersion::Soap12, "").contains("wsu:Id"));
        // Attribute white space survives normalisation; control characters cannot be carried.
        let mut u = user_message();
        u.from.ids[0].r#type = Some("a\tb\nc".into());
        u.action = "x\u{1}y".into();
        let back = reparse(&Messaging {
            user_messages: vec![u],
            signals: vec![],
        })
        .unwrap();
        assert_eq!(
            back.user_messages[0].from.ids[0].r#type.as_deref(),
            Some("a\tb\nc")
        );
        assert_eq!(back.user_messages[0].action, "x\u{fffd}y");
    }

    #[test]
    fn error_table() {
        let e = EbmsError::new("EBMS:0006");
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(
            e.short_description.as_deref(),
            Some("EmptyMessagePartitionChannel")
        );
        assert_eq!(e.category.as_deref(), Some("Communication"));
        let e = EbmsError::new("EBMS:0303");
        assert_eq!(
            (e.severity, e.short_description.as_deref()),
            (Severity::Failure, Some("DecompressionFailure"))
        );
        assert_eq!(
            EbmsError::new("EBMS:0101").origin.as_deref(),
            Some("security")
        );
        assert_eq!(EbmsError::new("X").short_description, None);
        for (code, ..) in ERRORS {
            assert_eq!(ERRORS.iter().filter(|e| e.0 == *code).count(), 1, "{code}");
        }
    }

    #[test]
    fn ids_and_timestamps() {
        let id = new_message_id("example.com").unwrap();
        let (uuid, domain) = id.split_once('@').unwrap();
        assert_eq!(domain, "example.com");
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "4");
        assert!("89ab".contains(&uuid[19..20]));
        assert_ne!(new_message_id("x").unwrap(), new_message_id("x").unwrap());
        let ts = timestamp_now();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(
            ts.ends_with('Z') && &ts[19..20] == "." && &ts[10..11] == "T",
            "{ts}"
        );
    }

    #[test]
    fn strictness() {
        let wrap =
            |inner: &str| format!("<eb:Messaging xmlns:eb=\"{NS_EB}\">{inner}</eb:Messaging>");
        let ok_info = "<eb:MessageInfo><eb:Timestamp>t</eb:Timestamp><eb:MessageId>m</eb:MessageId></eb:MessageInfo>";
        let cases = [
            wrap(""),
            wrap("<eb:Foo/>"),
            wrap(&format!("<eb:SignalMessage>{ok_info}</eb:SignalMessage>")),
            wrap(&format!("<eb:SignalMessage>{ok_info}<eb:PullRequest/><eb:Receipt/></eb:SignalMessage>")),
            wrap("<eb:SignalMessage><eb:MessageInfo><eb:Timestamp>t</eb:Timestamp><eb:MessageId> </eb:MessageId></eb:MessageInfo><eb:PullRequest/></eb:SignalMessage>"),
            wrap(&format!("<eb:SignalMessage>{ok_info}<eb:Error severity=\"fatal\" errorCode=\"EBMS:0004\"/></eb:SignalMessage>")),
            wrap(&format!("<eb:SignalMessage>{ok_info}<eb:Error severity=\"failure\"/></eb:SignalMessage>")),
            wrap("<eb:SignalMessage><eb:MessageInfo><eb:Timestamp>t</eb:Timestamp><eb:MessageId>m</eb:MessageId><eb:MessageId>n</eb:MessageId></eb:MessageInfo><eb:PullRequest/></eb:SignalMessage>"),
            wrap("<eb:SignalMessage><eb:MessageInfo><eb:Timestamp>t</eb:Timestamp><eb:MessageId>m<eb:X/></eb:MessageId></eb:MessageInfo><eb:PullRequest/></eb:SignalMessage>"),
        ];
        for c in &cases {
            let doc = parse(c, &Limits::default()).unwrap();
            let e = Messaging::parse(doc.root_element()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidEbms, "{c}");
        }
        // Extensions in other namespaces are fine where the schema has a wildcard.
        let ext = wrap(&format!("<x:Ext xmlns:x=\"urn:x\"/><eb:SignalMessage>{ok_info}<eb:PullRequest><x:A xmlns:x=\"urn:x\"/></eb:PullRequest><x:B xmlns:x=\"urn:x\"/></eb:SignalMessage>"));
        let doc = parse(&ext, &Limits::default()).unwrap();
        let m = Messaging::parse(doc.root_element()).unwrap();
        assert_eq!(
            m.signals[0].signal,
            Signal::PullRequest {
                mpc: DEFAULT_MPC.into()
            }
        );
    }
}
