//! The AS4 inspect report: typed, serialised to the JSON documented in docs/CLI.md (AS4
//! messages). Field order is the order of the JSON.

use crate::error::ErrorReport;
use serde::Serialize;

/// What `inspect` read of an AS4 message, as far as it could be read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct As4Report {
    /// Always `as4`.
    pub kind: &'static str,
    /// `http` (headers and body), `body` (a MIME body) or `soap` (a lone envelope).
    pub input: Option<&'static str>,
    pub content_type: Option<String>,
    /// `1.1` or `1.2`.
    pub soap_version: Option<&'static str>,
    /// The SOAP part of a MIME message (`None` for a lone envelope).
    pub envelope: Option<EnvelopePart>,
    pub messaging: Option<MessagingReport>,
    pub parts: Vec<PartReport>,
    pub security: Option<SecurityReport>,
    pub decryption: Option<DecryptionReport>,
    pub verification: Option<VerificationReport>,
    /// `verification.verified`; `None` without a certificate to verify against.
    pub verified: Option<bool>,
    pub warnings: Vec<String>,
    /// What stopped the reading.
    pub error: Option<ErrorReport>,
}

impl As4Report {
    /// The report as the CLI prints it (pretty JSON, two-space indentation).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvelopePart {
    pub content_type: String,
    pub size: usize,
}

// ------------------------------------------------------------------------------------------------
// The ebMS header

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessagingReport {
    pub user_messages: Vec<UserMessageReport>,
    pub signals: Vec<SignalReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserMessageReport {
    pub message_id: String,
    pub ref_to_message_id: Option<String>,
    pub timestamp: String,
    pub mpc: Option<String>,
    pub from: PartyReport,
    pub to: PartyReport,
    pub agreement_ref: Option<AgreementRefReport>,
    pub service: ValueType,
    pub action: String,
    pub conversation_id: String,
    pub message_properties: Vec<PropertyReport>,
    pub payloads: Vec<PayloadReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartyReport {
    pub party_ids: Vec<ValueType>,
    pub role: String,
}

/// A value with its optional `type` attribute (PartyId, Service).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueType {
    pub value: String,
    #[serde(rename = "type")]
    pub r#type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgreementRefReport {
    pub value: String,
    #[serde(rename = "type")]
    pub r#type: Option<String>,
    pub pmode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PropertyReport {
    pub name: String,
    #[serde(rename = "type")]
    pub r#type: Option<String>,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PayloadReport {
    pub href: Option<String>,
    pub schema: Option<SchemaReport>,
    pub description: Option<String>,
    pub part_properties: Vec<PropertyReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchemaReport {
    pub location: String,
    pub version: Option<String>,
    pub namespace: Option<String>,
}

/// A SignalMessage: its MessageInfo, then what it signals (tagged by `type`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalReport {
    pub message_id: String,
    pub ref_to_message_id: Option<String>,
    pub timestamp: String,
    #[serde(flatten)]
    pub signal: SignalKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignalKind {
    PullRequest {
        mpc: String,
    },
    Receipt {
        /// Whether the receipt carries a copy of the UserMessage.
        user_message: bool,
        /// The references the receipt returns.
        non_repudiation: Vec<NrrReport>,
    },
    Error {
        errors: Vec<EbmsErrorReport>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NrrReport {
    pub uri: String,
    pub transforms: Vec<String>,
    pub digest_method: String,
    pub digest_value: String,
}

/// One `eb:Error` of an error signal, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EbmsErrorReport {
    pub code: String,
    pub severity: &'static str,
    pub category: Option<String>,
    pub short_description: Option<String>,
    pub description: Option<String>,
    pub ref_to_message_in_error: Option<String>,
    pub origin: Option<String>,
    pub error_detail: Option<String>,
}

// ------------------------------------------------------------------------------------------------
// The MIME parts

/// A MIME part besides the envelope, as received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartReport {
    pub content_id: String,
    pub content_type: String,
    pub size: usize,
    /// An `eb:PartInfo` describes it.
    pub part_info: bool,
    pub mime_type: Option<String>,
    pub compression: Option<String>,
    /// A signature reference covers it.
    pub signed: bool,
    /// An `xenc:EncryptedData` names it.
    pub encrypted: bool,
    pub decrypted_size: Option<usize>,
    pub decompressed_size: Option<usize>,
    pub error: Option<ErrorReport>,
}

// ------------------------------------------------------------------------------------------------
// The security header

/// The `wsse:Security` header addressed to us.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecurityReport {
    pub tokens: Vec<TokenReport>,
    pub timestamp: Option<TimestampReport>,
    pub signature: Option<SignatureReport>,
    pub encrypted_keys: Vec<EncryptedKeyReport>,
    pub encrypted_data: Vec<EncryptedDataReport>,
}

/// A BinarySecurityToken and the certificates it holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenReport {
    pub id: Option<String>,
    pub value_type: String,
    pub certificates: Vec<CertReport>,
    pub error: Option<ErrorReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimestampReport {
    pub created: Option<String>,
    pub expires: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CertReport {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// As of now.
    pub expired: bool,
    pub not_yet_valid: bool,
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignatureReport {
    pub id: Option<String>,
    pub signature_method: Option<String>,
    pub canonicalization: Option<String>,
    pub inclusive_prefixes: Option<String>,
    pub key_info: Option<KeyInfoReport>,
    /// The certificate the KeyInfo resolves to, else why not (`signer_error`).
    pub signer: Option<CertReport>,
    pub signer_error: Option<ErrorReport>,
    pub references: Vec<ReferenceReport>,
}

/// How a `ds:KeyInfo` names its certificate, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyInfoReport {
    TokenReference {
        uri: Option<String>,
        value_type: Option<String>,
    },
    KeyIdentifier {
        value_type: Option<String>,
        value: String,
    },
    IssuerSerial {
        issuer: Option<String>,
        serial: Option<String>,
    },
    Certificate,
    Unknown,
}

/// A `ds:Reference` as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferenceReport {
    pub uri: String,
    /// What the URI names: the element's qualified name as written, or `attachment`.
    pub target: Option<String>,
    pub transforms: Vec<String>,
    pub inclusive_prefixes: Option<String>,
    pub digest_method: String,
    pub digest_value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncryptedKeyReport {
    pub id: Option<String>,
    pub algorithm: Option<String>,
    pub digest_method: Option<String>,
    pub mgf: Option<String>,
    pub key_info: Option<KeyInfoReport>,
    pub recipient: Option<CertReport>,
    pub recipient_error: Option<ErrorReport>,
    /// With a key to decrypt: whether the key is encrypted for it.
    pub for_us: Option<bool>,
    /// The parts it encrypts (Content-IDs, or the URIs that name no part).
    pub parts: Vec<Option<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncryptedDataReport {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub r#type: Option<String>,
    pub algorithm: Option<String>,
    pub mime_type: Option<String>,
    pub cipher_reference: Option<String>,
}

// ------------------------------------------------------------------------------------------------
// Decryption and verification

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecryptionReport {
    /// Content-IDs of the parts decrypted.
    pub decrypted: Vec<String>,
    pub error: Option<ErrorReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerificationReport {
    pub certificate: CertReport,
    /// Reported only: an expired partner certificate does not fail the verification.
    pub certificate_expired: bool,
    /// Whether the given certificate is the one the message names (`None`: no KeyInfo).
    pub signer_matches: Option<bool>,
    pub references: Vec<ReferenceResult>,
    /// `ok`, `bad signature`, `ok with the certificate the message names (not the given one)`
    /// or `not checked: …`.
    pub signature_value: String,
    /// `true`: everything checked and valid; `false`: something failed (`error`); `None`:
    /// nothing failed but a signed attachment could not be checked.
    pub verified: Option<bool>,
    pub error: Option<ErrorReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferenceResult {
    pub uri: String,
    pub target: Option<String>,
    /// `ok`, `digest mismatch` or `not checked: …`.
    pub result: String,
}
