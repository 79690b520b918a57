//! Signed statements: a small document (a JSON object, say) encapsulated in a SignedData
//! ContentInfo (DER) signed by one identity, and verified against the one certificate (or the
//! few) expected to have signed it — never against a certificate the SignedData carries. The
//! service's directory answers and the requests they answer are made of these
//! ([`crate::directory`]).
//!
//! The content type is id-data; what the content is, is the content's own business (the
//! directory's JSON names its `type`), so a statement of one kind cannot pass for another.

use super::receipt::{cms_der, parse_signed_data, verify_single_signer};
use super::seal::{self, SignSpec};
use super::SignatureScheme;
use crate::asn1::tag;
use crate::cert::{key_usage, Certificate};
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::{oid, time};

/// What [`verify_statement`] checked.
#[derive(Clone, Debug)]
pub struct VerifiedStatement {
    /// The encapsulated content.
    pub content: Vec<u8>,
    /// The expected certificate the signature verified against.
    pub signer: Certificate,
    /// The signing time the signer stated (Unix seconds).
    pub signing_time: Option<i64>,
}

/// `content` signed by `signer` (SHA-256; RSA PKCS#1 v1.5 or ECDSA; the signer's certificate
/// and chain included), as a SignedData ContentInfo (DER) encapsulating it.
pub fn sign_statement(content: &[u8], signer: &Identity) -> Result<Vec<u8>> {
    let now = time::now_unix();
    signer.check_can_sign()?;
    signer.certificate().check_validity(now)?;
    seal::signed_data(
        &[content],
        signer,
        &SignSpec {
            econtent_type: oid::DATA,
            scheme: SignatureScheme::Pkcs1v15,
            signing_time: now,
            extra_attrs: Vec::new(),
        },
    )
}

/// The content of a signed statement, NOT verified: only to find out whom to verify it
/// against (the signer it claims to come from). `Malformed` when it is not one.
pub fn peek_statement(input: &[u8]) -> Result<Vec<u8>> {
    let der = cms_der(input, "the signed statement")?;
    let sd = parse_signed_data(&der, "the signed statement")?;
    econtent(&sd.econtent, sd.econtent_type)
}

/// Verify a signed statement against the certificate(s) that may have signed it: exactly one
/// signature, by one of `expected` (`SignerMismatch` otherwise), over id-data content, valid
/// (`BadSignature`, `DigestMismatch`), no SHA-1; the certificate valid now and at the stated
/// signing time, and allowed to sign. Returns the content.
pub fn verify_statement(input: &[u8], expected: &[Certificate]) -> Result<VerifiedStatement> {
    if expected.is_empty() {
        return Err(Error::InvalidArgument(
            "no certificate was given to verify the signed statement against".into(),
        ));
    }
    let der = cms_der(input, "the signed statement")?;
    let sd = parse_signed_data(&der, "the signed statement")?;
    let content = econtent(&sd.econtent, sd.econtent_type)?;
    let (signer, attrs, _) = verify_single_signer(&sd, &content, expected, "the signed statement")?;
    signer.check_validity(time::now_unix())?;
    if let Some(t) = attrs.signing_time {
        signer.check_validity(t)?;
    }
    signer.check_key_usage(
        key_usage::DIGITAL_SIGNATURE | key_usage::NON_REPUDIATION,
        "signing",
    )?;
    Ok(VerifiedStatement {
        content,
        signer: signer.clone(),
        signing_time: attrs.signing_time,
    })
}

fn econtent(econtent: &Option<crate::asn1::Tlv>, econtent_type: &[u8]) -> Result<Vec<u8>> {
    if econtent_type != oid::DATA {
        return Err(Error::Malformed(format!(
            "the signed statement's content is {}, not id-data",
            oid::name(econtent_type)
        )));
    }
    Ok(econtent
        .ok_or_else(|| Error::Malformed("the signed statement carries no content".into()))?
        .children()?
        .req("eContent")?
        .expect(tag::OCTET_STRING, "eContent")?
        .octets()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::keys::KeyType;

    fn id(name: &str, kt: KeyType) -> Identity {
        Identity::generate(name, kt, 2, None).unwrap().identity
    }

    #[test]
    fn a_statement_verifies_against_its_signer_only() {
        for kt in [KeyType::EcP256, KeyType::Rsa(2048)] {
            let svc = id("service", kt);
            let other = id("other", KeyType::EcP256);
            let s = sign_statement(b"{\"a\":1}", &svc).unwrap();
            assert_eq!(peek_statement(&s).unwrap(), b"{\"a\":1}");
            let v = verify_statement(
                &s,
                &[other.certificate().clone(), svc.certificate().clone()],
            )
            .unwrap();
            assert_eq!(v.content, b"{\"a\":1}");
            assert_eq!(v.signer, *svc.certificate());
            assert!(v.signing_time.is_some());
            let e = verify_statement(&s, &[other.certificate().clone()]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::SignerMismatch);
        }
    }

    #[test]
    fn an_altered_statement_is_refused() {
        let svc = id("service", KeyType::EcP256);
        let s = sign_statement(b"{\"party_id\":\"globex\"}", &svc).unwrap();
        let at = crate::bytes::find(&s, b"globex").unwrap();
        let mut t = s.clone();
        t[at] = b'G';
        let e = verify_statement(&t, &[svc.certificate().clone()]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::DigestMismatch);
        // Not a statement at all.
        let e = verify_statement(b"{}", &[svc.certificate().clone()]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Malformed);
        assert_eq!(
            peek_statement(b"").unwrap_err().code(),
            ErrorCode::Truncated
        );
    }
}
