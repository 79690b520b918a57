//! `inspect`: the structure of any CMS/S-MIME object — layers, algorithms, recipients,
//! signers — decrypting and verifying only when given the keys to do so, as a typed report that
//! serialises to the JSON documented in docs/CLI.md.

use super::OpenOptions;
use crate::error::ErrorReport;
use serde::Serialize;

/// Describe `input`. With `opts.recipient` it looks inside layers encrypted for us; with
/// `opts.sender`/`opts.partners` it verifies signatures (reported, not fatal). Never fails: a
/// problem ends the walk and is reported in [`InspectReport::error`].
pub fn inspect(input: &[u8], opts: &OpenOptions) -> InspectReport {
    let mut o = opts.clone();
    // An old message is still worth looking at; `verified` reports the signature itself.
    o.allow_expired = true;
    o.allow_unsigned = true;
    super::open::inspect(input, &o)
}

/// What `inspect` found, outermost layer first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectReport {
    pub layers: Vec<Layer>,
    /// The walk reached the document.
    pub complete: bool,
    /// `Some` when a certificate was given and a signature layer was reached: `false` if any
    /// signature layer failed to verify.
    pub verified: Option<bool>,
    /// Present when complete: whether a layer carried a signature (verified or not)…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    /// …and whether a layer was encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The problem that ended the walk.
    pub error: Option<ErrorReport>,
}

impl InspectReport {
    /// The report as the CLI prints it (pretty JSON, two-space indentation).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The first signature layer that failed to verify, and why.
    pub fn verification_error(&self) -> Option<&ErrorReport> {
        self.layers.iter().find_map(|l| match l {
            Layer::SignedData(s) => s.verification_error.as_ref(),
            _ => None,
        })
    }

    /// Whether some layer carried a signature, verified or not.
    pub fn has_signature(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l, Layer::SignedData(_)))
    }
}

/// One layer, tagged by `layer`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "layer")]
pub enum Layer {
    #[serde(rename = "authEnvelopedData")]
    AuthEnvelopedData(EnvelopedLayer),
    #[serde(rename = "envelopedData")]
    EnvelopedData(EnvelopedLayer),
    /// An S/MIME entity (`application/pkcs7-mime`) around a CMS object.
    #[serde(rename = "mime")]
    Mime {
        content_type: String,
        smime_type: Option<String>,
        transfer_encoding: Option<String>,
    },
    #[serde(rename = "multipart/signed")]
    MultipartSigned {
        micalg: Option<String>,
        signed_part_size: usize,
    },
    #[serde(rename = "signedData")]
    SignedData(SignedLayer),
    /// The content of an ESS signed receipt (RFC 2634), last: it answers a signed message.
    #[serde(rename = "receipt")]
    Receipt(ReceiptLayer),
    #[serde(rename = "compressedData")]
    CompressedData {
        algorithm: String,
        compressed_size: usize,
        size: usize,
    },
    /// The document itself, last.
    #[serde(rename = "document")]
    Document {
        mime_type: String,
        filename: Option<String>,
        size: usize,
    },
}

/// An EnvelopedData or AuthEnvelopedData layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnvelopedLayer {
    pub content_encryption: String,
    pub content_type: String,
    pub encrypted_size: usize,
    pub authenticated_attributes: bool,
    pub recipients: Vec<Recipient>,
}

/// A RecipientInfo, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Recipient {
    #[serde(rename = "key transport")]
    KeyTransport { id: String, algorithm: String },
    #[serde(rename = "key agreement")]
    KeyAgreement { ids: Vec<String>, algorithm: String },
    #[serde(rename = "key-encryption key")]
    Kek { id: String, algorithm: String },
    #[serde(rename = "password")]
    Password,
    #[serde(rename = "other")]
    Other,
}

/// A SignedData layer (encapsulated, or the signature part of multipart/signed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignedLayer {
    pub content_type: String,
    pub detached: bool,
    pub content_size: usize,
    /// Subjects of the certificates the message carries.
    pub certificates: Vec<String>,
    pub signers: Vec<Signer>,
    /// `None` when no certificate was given to verify against.
    pub verified: Option<bool>,
    /// Why it did not verify (with `verified: false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_error: Option<ErrorReport>,
}

/// A SignerInfo as written (not verified by itself).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Signer {
    pub id: String,
    /// The subject of the signer's certificate, when the message carries it.
    pub subject: Option<String>,
    pub digest: String,
    pub signature: String,
    pub signed_attributes: bool,
    /// ISO 8601, as the signer stated it.
    pub signing_time: Option<String>,
    /// The signer asks for a signed receipt (an ESS ReceiptRequest attribute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_request: Option<ReceiptRequestReport>,
    /// On a signed receipt: the digest of the signed attributes of the signature it answers
    /// (ESS msgSigDigest), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_sig_digest: Option<String>,
}

/// An ESS ReceiptRequest as `inspect` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReceiptRequestReport {
    /// signedContentIdentifier, hex.
    pub content_identifier: String,
    /// `"all"` (allOrFirstTier) or the names of receiptList.
    pub receipts_from: serde_json::Value,
    pub receipts_to: Vec<String>,
}

impl From<&super::receipt::ReceiptRequest> for ReceiptRequestReport {
    fn from(r: &super::receipt::ReceiptRequest) -> Self {
        ReceiptRequestReport {
            content_identifier: crate::bytes::hex(&r.content_identifier),
            receipts_from: if r.from_all {
                serde_json::Value::from("all")
            } else {
                serde_json::Value::from(r.receipts_from.clone())
            },
            receipts_to: r.receipts_to.clone(),
        }
    }
}

/// The content of a signed receipt: which signed message it answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReceiptLayer {
    /// The content type of the message it answers.
    pub content_type: String,
    /// signedContentIdentifier, hex.
    pub content_identifier: String,
    /// The size of the quoted signature value of the message it answers.
    pub originator_signature_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Identity, KeyType};
    use crate::{seal, SealOptions};

    #[test]
    fn a_walk_that_ends_in_an_error_serialises_as_documented() {
        let r = inspect(b"not CMS at all", &OpenOptions::default());
        assert_eq!(
            r.to_json_pretty(),
            r#"{
  "layers": [],
  "complete": false,
  "verified": null,
  "error": {
    "code": 400,
    "name": "LS_ERR_MALFORMED",
    "family": "format",
    "message": "malformed input: the input is neither a CMS object (DER/BER/PEM) nor an S/MIME entity",
    "transient": false
  }
}"#
        );
    }

    /// The members of each layer object, in the order printed.
    fn layer_keys(pretty: &str) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for line in pretty.lines() {
            if line == "    {" {
                out.push(Vec::new());
            } else if let Some(rest) = line.strip_prefix("      \"") {
                if let (Some(k), Some(last)) = (rest.split('"').next(), out.last_mut()) {
                    last.push(k.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn layers_serialise_in_the_documented_order() {
        let alice = Identity::generate("alice", KeyType::EcP256, 2, None).unwrap();
        let bob = Identity::generate("bob", KeyType::Rsa(2048), 2, None).unwrap();
        let sealed = seal(
            &b"<Invoice/>".repeat(100),
            &alice.identity,
            &[bob.identity.certificate().clone()],
            &SealOptions {
                filename: Some("invoice.xml".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let r = inspect(
            &sealed,
            &OpenOptions {
                recipient: Some(&bob.identity),
                sender: Some(bob.identity.certificate()),
                ..Default::default()
            },
        );
        let text = r.to_json_pretty();
        let keys = layer_keys(&text);
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            keys,
            [
                k(&[
                    "layer",
                    "content_encryption",
                    "content_type",
                    "encrypted_size",
                    "authenticated_attributes",
                    "recipients"
                ]),
                k(&["layer", "content_type", "smime_type", "transfer_encoding"]),
                k(&[
                    "layer",
                    "content_type",
                    "detached",
                    "content_size",
                    "certificates",
                    "signers",
                    "verified",
                    "verification_error"
                ]),
                k(&["layer", "content_type", "smime_type", "transfer_encoding"]),
                k(&["layer", "algorithm", "compressed_size", "size"]),
                k(&["layer", "mime_type", "filename", "size"]),
            ],
            "{text}"
        );
        // Signed by alice, verified against bob's certificate: the layer says why not.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["verified"], false);
        assert_eq!(v["signed"], true);
        assert_eq!(v["encrypted"], true);
        assert_eq!(v["layers"][2]["verification_error"]["code"], 204);
        assert_eq!(v["layers"][2]["verification_error"]["family"], "crypto");
        assert_eq!(v["layers"][0]["recipients"][0]["type"], "key transport");
        let top: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
            .collect();
        assert_eq!(
            top,
            [
                "layers",
                "complete",
                "verified",
                "signed",
                "encrypted",
                "error"
            ]
        );
    }
}
