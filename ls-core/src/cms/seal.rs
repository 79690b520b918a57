//! Sender side: MIME entity → CompressedData → SignedData (or multipart/signed) →
//! (Auth)EnvelopedData, each inner layer carried as a binary `application/pkcs7-mime` entity as
//! S/MIME nests them (RFC 8551).

use super::crypto::{self, alg_id, ContentAlg, Digest, SigAlg};
use super::profile::describe_public_key;
use super::{
    Compression, ContentCipher, KeyTransport, OutputFormat, SealOptions, Sealed, SignatureFormat,
    SignatureScheme,
};
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
    let (all, extra_attrs, now) = prepare(signer, recipients, opts)?;

    // 1. The document as a MIME entity: its headers, then the document itself (kept as two
    //    slices so a large document is not copied just to be prefixed).
    let entity_header = document_entity_header(opts, "binary")?;

    // 2. Compression, when it pays.
    let compress = match opts.compression {
        Compression::Never => false,
        Compression::Always => true,
        Compression::Auto => worth_compressing(document),
    };
    let compressed = if compress {
        Some(compressed_data(
            &[&entity_header, document],
            opts.compression_level,
        )?)
    } else {
        None
    };

    // 3. Signature, then 4. encryption.
    let spec = SignSpec {
        econtent_type: oid::DATA,
        scheme: opts.signature,
        signing_time: opts.signing_time.unwrap_or(now),
        extra_attrs,
    };
    let (signed, (der, smime_type)) = match opts.signature_format {
        SignatureFormat::Opaque => {
            let compressed_header;
            let content: [&[u8]; 2] = match &compressed {
                Some(c) => {
                    compressed_header =
                        pkcs7_entity_header("compressed-data", "smime.p7z", "binary");
                    [&compressed_header, c]
                }
                None => [&entity_header, document],
            };
            // The SignedData is kept as signed (the evidence a receipt refers to) and
            // encrypted behind the header of its own S/MIME entity without being copied.
            let signed = signed_data(&content, signer, &spec)?;
            let signed_header = pkcs7_entity_header("signed-data", "smime.p7m", "binary");
            let env = enveloped(&[&signed_header, &signed], &all, opts)?;
            (signed, env)
        }
        SignatureFormat::MultipartSigned => {
            // The signed part is signed exactly as it is written, in canonical form (RFC 8551
            // §3.1): CRLF line ends only, which a base64 body guarantees. Readers of
            // multipart/signed (OpenSSL's among them) turn every line end of the part into
            // CRLF before digesting it, so a binary body with a bare LF or CR would not
            // verify there. The CRLF before the next delimiter belongs to the delimiter.
            let (part_header, part_body) = match compressed {
                Some(c) => (
                    pkcs7_entity_header("compressed-data", "smime.p7z", "base64"),
                    mime::base64_encode_mime(&c),
                ),
                None => (
                    document_entity_header(opts, "base64")?,
                    mime::base64_encode_mime(document),
                ),
            };
            let part = [part_header.as_slice(), part_body.as_slice()];
            let signature = detached_signature(&part, signer, &spec)?;
            let (head, tail) = multipart_signed(&part, &signature)?;
            let env = enveloped(&[&head, part[0], part[1], &tail], &all, opts)?;
            (signature, env)
        }
    };

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

/// Every recipient, the extra signed attributes and the time now (see [`prepare`]).
pub(super) type Prepared<'c> = (Vec<&'c Certificate>, Vec<Vec<u8>>, i64);

/// The checks every seal makes before it writes anything (the signer, the recipients, the
/// options) and what they give: every recipient (ourselves last with `encrypt_to_self`), the
/// extra signed attributes (a ReceiptRequest) and the time now.
pub(super) fn prepare<'c>(
    signer: &'c Identity,
    recipients: &'c [Certificate],
    opts: &SealOptions,
) -> Result<Prepared<'c>> {
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
    if let Some(profile) = opts.profile {
        profile.check_keys(signer, &all)?;
    }
    for r in &all {
        r.check_validity(now)?;
        let pk = r.public_key()?;
        if pk.id() != Id::RSA && opts.key_transport != KeyTransport::RsaOaepSha256 {
            // Only RSA-OAEP-SHA-256 has an EC counterpart (ECDH) that the partner can read.
            return Err(Error::InvalidArgument(format!(
                "{} key transport needs an RSA certificate (the one of {} is {})",
                key_transport_name(opts.key_transport),
                r.subject(),
                describe_public_key(&pk)
            )));
        }
        let usage = if pk.id() == Id::EC {
            key_usage::KEY_AGREEMENT
        } else {
            key_usage::KEY_ENCIPHERMENT
        };
        r.check_key_usage(usage, "encryption")?;
    }
    Ok((all, extra_attrs, now))
}

/// The headers of the document's MIME entity, with this Content-Transfer-Encoding.
pub(super) fn document_entity_header(opts: &SealOptions, cte: &str) -> Result<Vec<u8>> {
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
    h.push_str("\r\nContent-Transfer-Encoding: ");
    h.push_str(cte);
    h.push_str("\r\n\r\n");
    Ok(h.into_bytes())
}

/// The headers of an `application/pkcs7-mime` entity around a CMS object, with this
/// Content-Transfer-Encoding.
pub(super) fn pkcs7_entity_header(smime_type: &str, name: &str, cte: &str) -> Vec<u8> {
    format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"{name}\"\r\n\
         Content-Transfer-Encoding: {cte}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes()
}

/// The name of a key transport in errors and reports.
pub(crate) fn key_transport_name(k: KeyTransport) -> &'static str {
    match k {
        KeyTransport::RsaOaepSha256 => "RSA-OAEP-SHA-256",
        KeyTransport::RsaOaepSha1 => "RSA-OAEP-SHA-1",
        KeyTransport::RsaPkcs1v15 => "RSA PKCS#1 v1.5",
    }
}

/// What goes before and after the signed part of a `multipart/signed` entity (RFC 1847,
/// RFC 8551 §3.5.3): its headers and first delimiter, then the delimiter, the signature part
/// (`application/pkcs7-signature`, base64) and the close delimiter.
fn multipart_signed(content: &[&[u8]; 2], signature: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let boundary = loop {
        let b = format!(
            "----=_LayerSecurity_{}",
            crate::bytes::hex(&crypto::random(16)?)
        );
        // The part is our headers and base64, which never hold `----=_`; checked all the
        // same, as the boundary must not occur in it (RFC 2046 §5.1.1).
        if !content
            .iter()
            .any(|c| crate::bytes::find(c, b.as_bytes()).is_some())
        {
            break b;
        }
    };
    let head = format!(
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; \
         micalg=sha-256; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
    )
    .into_bytes();
    let mut tail = format!(
        "\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
    )
    .into_bytes();
    tail.extend_from_slice(&mime::base64_encode_mime(signature));
    tail.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((head, tail))
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

pub(super) fn worth_compressing(doc: &[u8]) -> bool {
    if doc.len() < 256 || already_compressed(doc) {
        return false;
    }
    // Trial-compress a sample: keep compression if it saves at least 10%.
    let sample = &doc[..doc.len().min(64 * 1024)];
    match crate::deflate::trial_size(sample) {
        Ok(c) => c * 10 < sample.len() * 9,
        Err(_) => true,
    }
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

/// ContentInfo(CompressedData) with zlib (RFC 3274) of the entity written as `parts` (its
/// header and the document, not copied together), compressed on all cores (`deflate.rs`).
pub(crate) fn compressed_data(parts: &[&[u8]], level: u8) -> Result<Vec<u8>> {
    let z = crate::deflate::zlib(parts, level)?;
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
    signed_data_of(content, signer, spec, true)
}

/// The same without the content (a detached signature, for multipart/signed): the
/// encapContentInfo states the content type only.
pub(crate) fn detached_signature(
    content: &[&[u8]],
    signer: &Identity,
    spec: &SignSpec,
) -> Result<Vec<u8>> {
    signed_data_of(content, signer, spec, false)
}

/// The signature algorithm for `key` (and its AlgorithmIdentifier).
fn signature_alg(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
    scheme: SignatureScheme,
) -> Result<(SigAlg, Vec<u8>)> {
    let d = Digest::Sha256;
    Ok(match (key.id(), scheme) {
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
    })
}

/// The SignerInfo of `signer` over content whose SHA-256 is `md`, and the certificates field
/// (`[0]`: its certificate and chain) of the SignedData.
pub(super) fn signer_info_and_certs(
    signer: &Identity,
    spec: &SignSpec,
    md: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = signer.private_key();
    let d = Digest::Sha256;
    let (sig_alg, sig_alg_id) = signature_alg(key.public_key(), spec.scheme)?;
    let mut attrs = vec![
        attribute(oid::ATTR_CONTENT_TYPE, &asn1::oid(spec.econtent_type)),
        attribute(
            oid::ATTR_SIGNING_TIME,
            &time::encode_signing_time(spec.signing_time),
        ),
        attribute(oid::ATTR_MESSAGE_DIGEST, &asn1::octet_string(md)),
    ];
    attrs.extend(spec.extra_attrs.iter().cloned());
    let signed_attrs_set = asn1::set_of(attrs);
    let signature = key.sign(sig_alg, d, &signed_attrs_set)?;
    let mut signed_attrs = signed_attrs_set;
    signed_attrs[0] = tag::ctx(0); // [0] IMPLICIT in the SignerInfo

    let signer_info = asn1::seq(&[
        &asn1::uint(1),
        &issuer_and_serial(signer.certificate()),
        &alg_id(oid::SHA256, None),
        &signed_attrs,
        &sig_alg_id,
        &asn1::octet_string(&signature),
    ]);
    let mut certs: Vec<&[u8]> = vec![signer.certificate().der()];
    certs.extend(signer.chain().iter().map(|c| c.der()));
    Ok((signer_info, asn1::cons(tag::ctx(0), &certs)))
}

fn signed_data_of(
    content: &[&[u8]],
    signer: &Identity,
    spec: &SignSpec,
    attached: bool,
) -> Result<Vec<u8>> {
    let md = crypto::digest_parts(Digest::Sha256, content)?;
    let content_len: usize = if attached {
        content.iter().map(|c| c.len()).sum()
    } else {
        0
    };
    let (signer_info, certs) = signer_info_and_certs(signer, spec, &md)?;
    let digest_alg = alg_id(oid::SHA256, None);

    // encapContentInfo is written around the (possibly large) content without an extra copy.
    let ect_oid = asn1::oid(spec.econtent_type);
    let oct_len = asn1::header_len(content_len) + content_len;
    let explicit_len = asn1::header_len(oct_len) + oct_len;
    let eci_len = ect_oid.len() + if attached { explicit_len } else { 0 };
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
    if attached {
        asn1::write_header(&mut out, tag::ctx(0), oct_len);
        asn1::write_header(&mut out, tag::OCTET_STRING, content_len);
        for c in content {
            out.extend_from_slice(c);
        }
    }
    out.extend_from_slice(&certs);
    out.extend_from_slice(&signer_infos);
    debug_assert_eq!(out.len(), out.capacity());
    Ok(out)
}

pub(super) fn recipient_info(
    cert: &Certificate,
    cek: &[u8],
    alg: ContentAlg,
    key_transport: KeyTransport,
) -> Result<(Vec<u8>, bool)> {
    let pk = cert.public_key()?;
    match pk.id() {
        Id::RSA => {
            let (enc, kalg) = crypto::rsa_encrypt_key(&pk, cek, key_transport)?;
            let ktri = asn1::seq(&[
                &asn1::uint(0),
                &issuer_and_serial(cert),
                &kalg,
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

/// What an (Auth)EnvelopedData states before its content: the content key and IV (random),
/// the RecipientInfos (in the order of `recipients`: a BER SET OF, as some AS2 software,
/// pyas2lib among them, tries only the first, so the partner comes before our own copy), the
/// content-encryption AlgorithmIdentifier, the version, the content type and the smime-type.
pub(super) struct Envelope {
    pub alg: ContentAlg,
    pub cek: crypto::Secret,
    pub iv: Vec<u8>,
    pub ris: Vec<u8>,
    pub cea: Vec<u8>,
    pub version: Vec<u8>,
    pub ct_oid: &'static [u8],
    pub smime_type: &'static str,
}

pub(super) fn envelope(recipients: &[&Certificate], opts: &SealOptions) -> Result<Envelope> {
    let alg = match opts.cipher {
        ContentCipher::Aes256Gcm => ContentAlg::AesGcm(32),
        ContentCipher::Aes256Cbc => ContentAlg::AesCbc(32),
    };
    let cek = crypto::random_key(alg.key_len())?;
    let iv = crypto::random(if alg.is_aead() { 12 } else { 16 })?;
    let mut ris = Vec::new();
    let mut any_kari = false;
    for r in recipients {
        let (ri, kari) = recipient_info(r, &cek, alg, opts.key_transport)?;
        any_kari |= kari;
        ris.push(ri);
    }
    let ris = asn1::cons(tag::SET, &ris.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let cea = crypto::content_alg_id(alg, &iv);
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
    Ok(Envelope {
        alg,
        cek,
        iv,
        ris,
        cea,
        version,
        ct_oid,
        smime_type,
    })
}

/// ContentInfo(AuthEnvelopedData | EnvelopedData) of the concatenation of `content`; also
/// returns the smime-type. The RecipientInfos are in the order of `recipients` (a BER SET OF:
/// some AS2 software, pyas2lib among them, tries only the first, so the partner comes before
/// our own copy).
pub(crate) fn enveloped(
    content: &[&[u8]],
    recipients: &[&Certificate],
    opts: &SealOptions,
) -> Result<(Vec<u8>, &'static str)> {
    let Envelope {
        alg,
        cek,
        iv,
        ris,
        cea,
        version,
        ct_oid,
        smime_type,
    } = envelope(recipients, opts)?;
    let data_oid = asn1::oid(oid::DATA);

    // Encrypt straight after the headers we can size in advance (ciphertext length is known).
    let content_len: usize = content.iter().map(|c| c.len()).sum();
    let ct_len = if alg.is_aead() {
        content_len
    } else {
        (content_len / 16 + 1) * 16
    };
    let eci_len = data_oid.len() + cea.len() + asn1::header_len(ct_len) + ct_len;
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
