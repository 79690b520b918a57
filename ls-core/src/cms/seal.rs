//! Sender side: MIME entity → CompressedData → SignedData → (Auth)EnvelopedData, each inner layer
//! carried as a binary `application/pkcs7-mime` entity as S/MIME nests them (RFC 8551).

use super::crypto::{self, alg_id, ContentAlg, Digest, SigAlg};
use super::{Compression, ContentCipher, OutputFormat, SealOptions, Sealed, SignatureScheme};
use crate::asn1::{self, tag};
use crate::cert::{key_usage, Certificate};
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::{mime, oid, time};
use openssl::pkey::Id;

/// The longest signedContentIdentifier a ReceiptRequest may carry.
pub(crate) const MAX_CONTENT_IDENTIFIER: usize = 1024;

pub(crate) fn seal(
    document: &[u8],
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<Sealed> {
    if recipients.is_empty() && !opts.encrypt_to_self {
        return Err(Error::InvalidArgument(
            "at least one recipient certificate is needed".into(),
        ));
    }
    let now = time::now_unix();
    signer.check_can_sign()?;
    signer.certificate().check_validity(now)?;
    if let Some(t) = opts.signing_time {
        // Receivers check the stated time against the certificate too: refuse to make a
        // message every receiver would refuse.
        signer.certificate().check_validity(t)?;
    }
    let mut extra_attrs = Vec::new();
    if let Some(id) = &opts.receipt_request {
        if id.is_empty() || id.len() > MAX_CONTENT_IDENTIFIER {
            return Err(Error::InvalidArgument(format!(
                "a receipt request's content identifier must have 1 to \
                 {MAX_CONTENT_IDENTIFIER} bytes, not {}",
                id.len()
            )));
        }
        extra_attrs.push(super::receipt::receipt_request_attribute(
            id,
            signer.certificate(),
        )?);
    }
    let mut all: Vec<&Certificate> = recipients.iter().collect();
    if opts.encrypt_to_self && !all.contains(&signer.certificate()) {
        all.push(signer.certificate());
    }
    for r in &all {
        r.check_validity(now)?;
        let usage = if r.public_key()?.id() == Id::EC {
            key_usage::KEY_AGREEMENT
        } else {
            key_usage::KEY_ENCIPHERMENT
        };
        r.check_key_usage(usage, "encryption")?;
    }

    // 1. The document as a MIME entity: its headers, then the document itself (kept as two
    //    slices so a large document is not copied just to be prefixed).
    let entity_header = document_entity_header(opts)?;

    // 2. Compression, when it pays.
    let compress = match opts.compression {
        Compression::Never => false,
        Compression::Always => true,
        Compression::Auto => worth_compressing(document),
    };
    let compressed;
    let compressed_header;
    let content: [&[u8]; 2] = if compress {
        let mut entity = Vec::with_capacity(entity_header.len() + document.len());
        entity.extend_from_slice(&entity_header);
        entity.extend_from_slice(document);
        compressed = compressed_data(&entity, opts.compression_level)?;
        compressed_header = pkcs7_entity_header("compressed-data", "smime.p7z");
        [&compressed_header, &compressed]
    } else {
        [&entity_header, document]
    };

    // 3. Signature. The SignedData is kept as signed (the evidence a receipt refers to) and
    //    encrypted behind the header of its own S/MIME entity without being copied into it.
    let signed = signed_data(
        &content,
        signer,
        &SignSpec {
            econtent_type: oid::DATA,
            scheme: opts.signature,
            signing_time: opts.signing_time.unwrap_or(now),
            extra_attrs,
        },
    )?;

    // 4. Encryption.
    let signed_header = pkcs7_entity_header("signed-data", "smime.p7m");
    let (der, smime_type) = enveloped(&[&signed_header, &signed], &all, opts.cipher)?;

    let sealed = match opts.output {
        OutputFormat::Der => der,
        OutputFormat::Pem => mime::pem_encode("CMS", &der),
        OutputFormat::Smime => {
            let mut out = format!(
                "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
                 Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
            )
            .into_bytes();
            out.extend_from_slice(&mime::base64_encode_mime(&der));
            out
        }
    };
    Ok(Sealed {
        sealed,
        signed_data: signed,
    })
}

fn document_entity_header(opts: &SealOptions) -> Result<Vec<u8>> {
    let mime_type = match (&opts.mime_type, &opts.filename) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => mime::guess_type(f).to_string(),
        (None, None) => "application/octet-stream".into(),
    };
    if mime_type.is_empty()
        || !mime_type.contains('/')
        || mime_type
            .chars()
            .any(|c| c.is_control() || c == ';' || c.is_whitespace())
    {
        return Err(Error::InvalidArgument(format!(
            "{mime_type:?} is not a MIME type"
        )));
    }
    let mut h = String::with_capacity(256);
    h.push_str("Content-Type: ");
    h.push_str(&mime_type);
    if let Some(f) = &opts.filename {
        if f.is_empty() || f.chars().any(|c| c.is_control()) || f.len() > 255 {
            return Err(Error::InvalidArgument(
                "the file name is empty, too long or has control characters".into(),
            ));
        }
        h.push_str("; ");
        h.push_str(&mime::format_param("name", f));
        h.push_str("\r\nContent-Disposition: attachment; ");
        h.push_str(&mime::format_param("filename", f));
    }
    h.push_str("\r\nContent-Transfer-Encoding: binary\r\n\r\n");
    Ok(h.into_bytes())
}

/// The headers of a binary `application/pkcs7-mime` entity around a CMS object.
fn pkcs7_entity_header(smime_type: &str, name: &str) -> Vec<u8> {
    format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"{name}\"\r\n\
         Content-Transfer-Encoding: binary\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes()
}

/// Formats that do not shrink: compressing them costs time and gains nothing.
fn already_compressed(doc: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"%PDF",
        b"PK\x03\x04",
        b"\x1f\x8b",
        b"\x89PNG",
        b"\xff\xd8\xff",
        b"7z\xbc\xaf",
        b"\xfd7zXZ",
        b"BZh",
        b"\x28\xb5\x2f\xfd",
        b"Rar!",
        b"GIF8",
    ];
    MAGIC.iter().any(|m| doc.starts_with(m))
}

fn worth_compressing(doc: &[u8]) -> bool {
    if doc.len() < 256 || already_compressed(doc) {
        return false;
    }
    // Trial-compress a sample: keep compression if it saves at least 10%.
    let sample = &doc[..doc.len().min(64 * 1024)];
    let c = miniz_oxide::deflate::compress_to_vec(sample, 1);
    c.len() * 10 < sample.len() * 9
}

/// ContentInfo of `content_type` around `content` (already DER).
pub(crate) fn content_info(content_type: &[u8], content: &[u8]) -> Vec<u8> {
    let inner_len = content.len();
    let oid = asn1::oid(content_type);
    let explicit_len = asn1::header_len(inner_len) + inner_len;
    let total = oid.len() + explicit_len;
    let mut out = Vec::with_capacity(asn1::header_len(total) + total);
    asn1::write_header(&mut out, tag::SEQUENCE, total);
    out.extend_from_slice(&oid);
    asn1::write_header(&mut out, tag::ctx(0), inner_len);
    out.extend_from_slice(content);
    out
}

/// ContentInfo(CompressedData) with zlib (RFC 3274).
pub(crate) fn compressed_data(entity: &[u8], level: u8) -> Result<Vec<u8>> {
    let z = miniz_oxide::deflate::compress_to_vec_zlib(entity, level.min(10));
    let eci = asn1::seq(&[
        &asn1::oid(oid::DATA),
        &asn1::tlv(tag::ctx(0), &asn1::octet_string(&z)),
    ]);
    let cd = asn1::seq(&[&asn1::uint(0), &alg_id(oid::ZLIB, None), &eci]);
    Ok(content_info(oid::COMPRESSED_DATA, &cd))
}

fn issuer_and_serial(cert: &Certificate) -> Vec<u8> {
    asn1::seq(&[cert.issuer_der(), &asn1::uint_bytes(cert.serial())])
}

/// A signed attribute with one value.
pub(crate) fn attribute(attr_oid: &[u8], value: &[u8]) -> Vec<u8> {
    asn1::seq(&[&asn1::oid(attr_oid), &asn1::cons(tag::SET, &[value])])
}

/// What a SignedData states besides its content.
pub(crate) struct SignSpec<'a> {
    /// eContentType, also the value of the contentType signed attribute.
    pub econtent_type: &'a [u8],
    /// For RSA keys (EC keys sign with ECDSA).
    pub scheme: SignatureScheme,
    pub signing_time: i64,
    /// Signed attributes besides contentType, signingTime and messageDigest (each a DER
    /// Attribute); all are DER-sorted together.
    pub extra_attrs: Vec<Vec<u8>>,
}

/// ContentInfo(SignedData) encapsulating the concatenation of `content`, signed by `signer`
/// with SHA-256, its certificate and chain included.
pub(crate) fn signed_data(
    content: &[&[u8]],
    signer: &Identity,
    spec: &SignSpec,
) -> Result<Vec<u8>> {
    let key = signer.private_key();
    let d = Digest::Sha256;
    let (sig_alg, sig_alg_id) = match (key.id(), spec.scheme) {
        (Id::EC, SignatureScheme::RsaPss) => {
            return Err(Error::InvalidArgument(
                "RSA-PSS was asked for, but the signing key is an EC key".into(),
            ))
        }
        (Id::EC, _) => (SigAlg::Ecdsa, alg_id(oid::ECDSA_SHA256, None)),
        (Id::RSA, SignatureScheme::RsaPss) | (Id::RSA_PSS, _) => (
            SigAlg::RsaPss {
                hash: d,
                mgf: d,
                salt: 32,
            },
            crypto::pss_sha256_alg_id(),
        ),
        (Id::RSA, _) => (
            SigAlg::RsaPkcs1,
            alg_id(oid::SHA256_WITH_RSA, Some(&asn1::null())),
        ),
        (other, _) => {
            return Err(Error::UnsupportedKey(format!(
                "cannot sign with a {other:?} key"
            )))
        }
    };
    let md = crypto::digest_parts(d, content)?;
    let content_len: usize = content.iter().map(|c| c.len()).sum();
    let mut attrs = vec![
        attribute(oid::ATTR_CONTENT_TYPE, &asn1::oid(spec.econtent_type)),
        attribute(
            oid::ATTR_SIGNING_TIME,
            &time::encode_signing_time(spec.signing_time),
        ),
        attribute(oid::ATTR_MESSAGE_DIGEST, &asn1::octet_string(&md)),
    ];
    attrs.extend(spec.extra_attrs.iter().cloned());
    let signed_attrs_set = asn1::set_of(attrs);
    let signature = crypto::sign(key, sig_alg, d, &signed_attrs_set)?;
    let mut signed_attrs = signed_attrs_set;
    signed_attrs[0] = tag::ctx(0); // [0] IMPLICIT in the SignerInfo

    let digest_alg = alg_id(oid::SHA256, None);
    let signer_info = asn1::seq(&[
        &asn1::uint(1),
        &issuer_and_serial(signer.certificate()),
        &digest_alg,
        &signed_attrs,
        &sig_alg_id,
        &asn1::octet_string(&signature),
    ]);
    let mut certs: Vec<&[u8]> = vec![signer.certificate().der()];
    certs.extend(signer.chain().iter().map(|c| c.der()));
    let certs = asn1::cons(tag::ctx(0), &certs);

    // encapContentInfo is written around the (possibly large) content without an extra copy.
    let ect_oid = asn1::oid(spec.econtent_type);
    let oct_len = asn1::header_len(content_len) + content_len;
    let explicit_len = asn1::header_len(oct_len) + oct_len;
    let eci_len = ect_oid.len() + explicit_len;
    // RFC 5652 5.1: version 3 when the eContentType is not id-data.
    let version = asn1::uint(if spec.econtent_type == oid::DATA {
        1
    } else {
        3
    });
    let digest_algs = asn1::cons(tag::SET, &[&digest_alg]);
    let signer_infos = asn1::cons(tag::SET, &[&signer_info]);
    let sd_len = version.len()
        + digest_algs.len()
        + asn1::header_len(eci_len)
        + eci_len
        + certs.len()
        + signer_infos.len();
    let ci_oid = asn1::oid(oid::SIGNED_DATA);
    let ci_inner = asn1::header_len(sd_len) + sd_len;
    let ci_len = ci_oid.len() + asn1::header_len(ci_inner) + ci_inner;
    let mut out = Vec::with_capacity(asn1::header_len(ci_len) + ci_len);
    asn1::write_header(&mut out, tag::SEQUENCE, ci_len);
    out.extend_from_slice(&ci_oid);
    asn1::write_header(&mut out, tag::ctx(0), ci_inner);
    asn1::write_header(&mut out, tag::SEQUENCE, sd_len);
    out.extend_from_slice(&version);
    out.extend_from_slice(&digest_algs);
    asn1::write_header(&mut out, tag::SEQUENCE, eci_len);
    out.extend_from_slice(&ect_oid);
    asn1::write_header(&mut out, tag::ctx(0), oct_len);
    asn1::write_header(&mut out, tag::OCTET_STRING, content_len);
    for c in content {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&certs);
    out.extend_from_slice(&signer_infos);
    debug_assert_eq!(out.len(), out.capacity());
    Ok(out)
}

fn recipient_info(cert: &Certificate, cek: &[u8], alg: ContentAlg) -> Result<(Vec<u8>, bool)> {
    let pk = cert.public_key()?;
    match pk.id() {
        Id::RSA => {
            let enc = crypto::rsa_oaep_encrypt(&pk, cek)?;
            let ktri = asn1::seq(&[
                &asn1::uint(0),
                &issuer_and_serial(cert),
                &alg_id(oid::RSAES_OAEP, Some(&crypto::oaep_params_sha256())),
                &asn1::octet_string(&enc),
            ]);
            Ok((ktri, false))
        }
        Id::EC => {
            let ec = pk.ec_key()?;
            let eph = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(ec.group())?)?;
            let z = crypto::ecdh(&eph, &pk)?;
            let wrap_oid = alg.wrap_oid();
            let kek = crypto::x963_kdf(Digest::Sha256, &z, wrap_oid, None, alg.key_len())?;
            let wrapped = crypto::aes_wrap(&kek, cek)?;
            let point = crypto::ec_point_bytes(&eph)?;
            let originator_key = asn1::cons(
                tag::ctx(1),
                &[&alg_id(oid::EC_PUBLIC_KEY, None), &asn1::bit_string(&point)],
            );
            let originator = asn1::tlv(tag::ctx(0), &originator_key);
            let kea = alg_id(oid::ECDH_STD_SHA256KDF, Some(&alg_id(wrap_oid, None)));
            let rek = asn1::seq(&[&asn1::seq(&[
                &issuer_and_serial(cert),
                &asn1::octet_string(&wrapped),
            ])]);
            let kari = asn1::cons(tag::ctx(1), &[&asn1::uint(3), &originator, &kea, &rek]);
            Ok((kari, true))
        }
        other => Err(Error::UnsupportedKey(format!(
            "cannot encrypt to a {other:?} key ({})",
            cert.subject()
        ))),
    }
}

/// ContentInfo(AuthEnvelopedData | EnvelopedData) of the concatenation of `content`; also
/// returns the smime-type.
pub(crate) fn enveloped(
    content: &[&[u8]],
    recipients: &[&Certificate],
    cipher: ContentCipher,
) -> Result<(Vec<u8>, &'static str)> {
    let alg = match cipher {
        ContentCipher::Aes256Gcm => ContentAlg::AesGcm(32),
        ContentCipher::Aes256Cbc => ContentAlg::AesCbc(32),
    };
    let cek = crypto::random_key(alg.key_len())?;
    let iv = crypto::random(if alg.is_aead() { 12 } else { 16 })?;
    let mut ris = Vec::new();
    let mut any_kari = false;
    for r in recipients {
        let (ri, kari) = recipient_info(r, &cek, alg)?;
        any_kari |= kari;
        ris.push(ri);
    }
    let ris = asn1::set_of(ris);
    let cea = crypto::content_alg_id(alg, &iv);
    let data_oid = asn1::oid(oid::DATA);

    // Encrypt straight after the headers we can size in advance (ciphertext length is known).
    let content_len: usize = content.iter().map(|c| c.len()).sum();
    let ct_len = if alg.is_aead() {
        content_len
    } else {
        (content_len / 16 + 1) * 16
    };
    let eci_len = data_oid.len() + cea.len() + asn1::header_len(ct_len) + ct_len;
    let (version, ct_oid, smime_type) = if alg.is_aead() {
        (
            asn1::uint(0),
            oid::AUTH_ENVELOPED_DATA,
            "authEnveloped-data",
        )
    } else {
        (
            asn1::uint(if any_kari { 2 } else { 0 }),
            oid::ENVELOPED_DATA,
            "enveloped-data",
        )
    };
    let mac_len = if alg.is_aead() { 2 + 16 } else { 0 };
    let body_len = version.len() + ris.len() + asn1::header_len(eci_len) + eci_len + mac_len;
    let ci_oid = asn1::oid(ct_oid);
    let ci_inner = asn1::header_len(body_len) + body_len;
    let ci_len = ci_oid.len() + asn1::header_len(ci_inner) + ci_inner;
    let mut out = Vec::with_capacity(asn1::header_len(ci_len) + ci_len + 32);
    asn1::write_header(&mut out, tag::SEQUENCE, ci_len);
    out.extend_from_slice(&ci_oid);
    asn1::write_header(&mut out, tag::ctx(0), ci_inner);
    asn1::write_header(&mut out, tag::SEQUENCE, body_len);
    out.extend_from_slice(&version);
    out.extend_from_slice(&ris);
    asn1::write_header(&mut out, tag::SEQUENCE, eci_len);
    out.extend_from_slice(&data_oid);
    out.extend_from_slice(&cea);
    asn1::write_header(&mut out, tag::ctx_prim(0), ct_len);
    let before = out.len();
    let t = crypto::encrypt_content(alg, &cek, &iv, content, &mut out)?;
    if out.len() - before != ct_len {
        return Err(Error::Internal(
            "ciphertext length differs from the precomputed one".into(),
        ));
    }
    if alg.is_aead() {
        out.extend_from_slice(&asn1::octet_string(&t));
    }
    Ok((out, smime_type))
}
