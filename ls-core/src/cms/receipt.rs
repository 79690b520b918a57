//! Signed receipts of signed CMS messages (RFC 2634, Enhanced Security Services, §2): the
//! sender's SignedData asks for one with a ReceiptRequest signed attribute; the recipient answers
//! with a SignedData whose content is an ESS `Receipt` (content type id-ct-receipt) and whose
//! signed attributes carry msgSigDigest (the digest of the original signer's signed attributes),
//! binding the receipt to exactly that signature. Interoperable with `openssl cms
//! -sign_receipt` / `-verify_receipt`.

use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::keys::Identity;

/// A ReceiptRequest found on a verified signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRequest {
    /// signedContentIdentifier: what the receipt must quote.
    pub content_identifier: Vec<u8>,
    /// receiptsFrom: `true` for allOrFirstTier = allReceipts (or firstTierRecipients), `false`
    /// when a receiptList names who should answer (then `receipts_from` lists them).
    pub from_all: bool,
    /// receiptList, as text (the GeneralNames' rfc822Name/URI/directoryName), when given.
    pub receipts_from: Vec<String>,
    /// receiptsTo, as text.
    pub receipts_to: Vec<String>,
}

/// How to sign a receipt.
#[derive(Clone, Debug, Default)]
pub struct ReceiptOptions {
    /// The signing time to state (Unix seconds); now when absent.
    pub signing_time: Option<i64>,
}

/// A receipt whose signature, msgSigDigest and quoted signature were checked against the
/// original SignedData and the partner's certificate.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    /// The partner certificate the receipt's signature verified against.
    pub signer: Certificate,
    /// The signing time the receipt states (Unix seconds).
    pub signing_time: Option<i64>,
    /// The signedContentIdentifier the receipt quotes (equal to the original's request).
    pub content_identifier: Vec<u8>,
}

/// Sign a receipt for `original` (a SignedData ContentInfo, DER, exactly as the sender signed
/// it — [`super::Opened::signed_data`]) with `signer`: a SignedData ContentInfo (DER) of
/// content type id-ct-receipt, with contentType, messageDigest, msgSigDigest and signingTime
/// signed attributes and the signer's certificate. `Err` when `original` carries no
/// ReceiptRequest or is not a SignedData.
pub fn sign_receipt(original: &[u8], signer: &Identity, opts: &ReceiptOptions) -> Result<Vec<u8>> {
    let _ = (original, signer, opts);
    Err(Error::Internal(
        "signed receipts are not implemented yet".into(),
    ))
}

/// Verify `receipt` (a SignedData ContentInfo of content type id-ct-receipt, DER) against the
/// `original` SignedData (DER, as we signed it) and the partner certificate(s) that must have
/// signed it: the receipt's signature, its msgSigDigest (the digest of the original signer's
/// signed attributes), the original signature value and content type it quotes, and its
/// signedContentIdentifier (the original's ReceiptRequest). A receipt signed by anyone else is
/// `SignerMismatch`; one for another message `ReceiptMismatch`; a broken one `BadSignature`,
/// `DigestMismatch` or `Malformed`.
pub fn verify_receipt(
    receipt: &[u8],
    original: &[u8],
    partners: &[Certificate],
) -> Result<VerifiedReceipt> {
    let _ = (receipt, original, partners);
    Err(Error::Internal(
        "signed receipts are not implemented yet".into(),
    ))
}
