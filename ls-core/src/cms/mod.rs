//! The document layer: seal a document for its recipients, open what a partner sealed for us,
//! and describe any CMS/S-MIME object.

pub(crate) mod crypto;
pub mod inspect;
pub(crate) mod open;
mod profile;
pub mod receipt;
pub(crate) mod seal;
mod seal_stream;
pub mod signed;
pub(crate) mod stream;

use crate::cert::{CertStore, Certificate};
use crate::error::Result;
use crate::keys::Identity;

pub use inspect::{inspect, InspectReport};
pub use profile::{InboundPolicy, Profile};

/// Whether to compress the document before signing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Compress unless the content is already compressed (PDF, ZIP, images…) or does not shrink.
    #[default]
    Auto,
    Never,
    Always,
}

/// The content cipher of the outer layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentCipher {
    /// AuthEnvelopedData with AES-256-GCM (RFC 5083/5084).
    #[default]
    Aes256Gcm,
    /// EnvelopedData with AES-256-CBC, for partners that cannot read AuthEnvelopedData.
    Aes256Cbc,
}

/// The signature scheme for RSA keys (EC keys always sign with ECDSA-SHA256).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureScheme {
    /// RSA PKCS#1 v1.5 with SHA-256.
    #[default]
    Pkcs1v15,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPss,
}

/// How the content key is sent to an RSA recipient (EC recipients always get ECDH P-256 key
/// agreement, which the legacy choices cannot serve: sealing refuses an EC recipient with them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyTransport {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 8017, RFC 4055 parameters).
    #[default]
    RsaOaepSha256,
    /// RSAES-OAEP with the default parameters, SHA-1 and MGF1-SHA-1 (what AS2-era software that
    /// does OAEP at all can read, e.g. pyas2lib's `rsaes_oaep`). OAEP with SHA-1 is not broken;
    /// it is the hash the older libraries hard-code.
    RsaOaepSha1,
    /// RSAES-PKCS1-v1_5 (`rsaEncryption`): what every AS2 product reads, and what a receiver can
    /// only decrypt safely if it never tells a padding failure apart (docs/SECURITY.md).
    RsaPkcs1v15,
}

/// How the signature is carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureFormat {
    /// SignedData with the content inside it (`application/pkcs7-mime; smime-type=signed-data`).
    #[default]
    Opaque,
    /// A `multipart/signed` MIME entity (RFC 8551 §3.5.3): the content as its first part, byte
    /// for byte as signed, and a detached SignedData as `application/pkcs7-signature` (RFC 1847);
    /// what AS2 software reads (RFC 4130).
    MultipartSigned,
}

/// The encoding of a sealed object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// A DER ContentInfo.
    #[default]
    Der,
    /// A complete S/MIME entity (`application/pkcs7-mime`, base64).
    Smime,
    /// PEM (`-----BEGIN CMS-----`).
    Pem,
}

#[derive(Clone, Debug)]
pub struct SealOptions {
    /// The document's file name, carried in Content-Disposition.
    pub filename: Option<String>,
    /// The document's MIME type; guessed from the file name when absent.
    pub mime_type: Option<String>,
    pub compression: Compression,
    /// zlib level 1 (fastest) to 9; the default, 6, compresses business text to gzip -6's size,
    /// at several hundred MB/s on all cores (docs/ARCHITECTURE.md, "Compression").
    pub compression_level: u8,
    pub cipher: ContentCipher,
    /// For RSA recipients.
    pub key_transport: KeyTransport,
    pub signature: SignatureScheme,
    pub signature_format: SignatureFormat,
    pub output: OutputFormat,
    /// Also encrypt to the sender's own certificate, so its archive copy stays readable.
    pub encrypt_to_self: bool,
    /// The signing time to state (Unix seconds); now when absent.
    pub signing_time: Option<i64>,
    /// Ask for a signed receipt (RFC 2634): a ReceiptRequest signed attribute with this
    /// signedContentIdentifier (1 to 1024 bytes, unique per document; receipts from all
    /// recipients (allOrFirstTier = allReceipts), to one GeneralNames naming the signer: its
    /// certificate's subject as directoryName, then the rfc822Names of its subjectAltName).
    /// The receipt is bound to the signature, not to this identifier alone.
    pub receipt_request: Option<Vec<u8>>,
    /// The profile these options were set from ([`Profile::seal_options`], [`Profile::apply`]),
    /// if any. It changes no algorithm itself (the fields above are what is used); it states
    /// what the partner can read that the fields cannot say: with [`Profile::LegacyAs2`],
    /// sealing refuses an EC signing identity or recipient certificate, since AS2-era software
    /// verifies and decrypts with RSA only.
    pub profile: Option<Profile>,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            filename: None,
            mime_type: None,
            compression: Compression::Auto,
            compression_level: crate::deflate::DEFAULT_LEVEL,
            cipher: ContentCipher::Aes256Gcm,
            key_transport: KeyTransport::RsaOaepSha256,
            signature: SignatureScheme::Pkcs1v15,
            signature_format: SignatureFormat::Opaque,
            output: OutputFormat::Der,
            encrypt_to_self: false,
            signing_time: None,
            receipt_request: None,
            profile: None,
        }
    }
}

/// A symmetric key-encryption key (KEKRecipientInfo), for partners that pre-share keys.
#[derive(Clone)]
pub struct Kek {
    pub id: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How much larger than the document (`OpenOptions::max_output`) the layers around it may be:
/// MIME headers, signatures, certificates.
pub const WRAPPING_ALLOWANCE: u64 = 512 << 10;

/// What `open` needs to know: our keys, whom we expect, and what we tolerate.
#[derive(Clone, Debug)]
pub struct OpenOptions<'a> {
    /// Our identity, to decrypt. Not needed for signed-only input.
    pub recipient: Option<&'a Identity>,
    /// Our earlier identities (a key rollover's overlap): content encrypted for one of their
    /// certificates is opened with its key. Tried after `recipient`.
    pub earlier_recipients: &'a [Identity],
    /// A pre-shared key-encryption key.
    pub kek: Option<&'a Kek>,
    /// The partner who must have signed. A valid signature by anyone else is rejected.
    pub sender: Option<&'a Certificate>,
    /// Or: any partner of this store (or a certificate chaining to its trust anchors).
    pub partners: Option<&'a CertStore>,
    /// Accept a document that carries no signature (then `Opened::signer` is `None`).
    pub allow_unsigned: bool,
    /// Accept a signer certificate outside its validity period.
    pub allow_expired: bool,
    /// Which legacy algorithms and forms are accepted: a partner's [`Profile::inbound_policy`],
    /// or set one by one. Default: [`InboundPolicy::ANY`], everything legacy partners send
    /// (AES-CBC, 3DES, RSA PKCS#1 v1.5 key transport, multipart/signed), as `open` always did.
    pub policy: InboundPolicy,
    /// Accept SHA-1 signatures (off by default).
    pub allow_sha1: bool,
    /// Limit on the opened document's size. The layers around it may be up to
    /// [`WRAPPING_ALLOWANCE`] larger; encrypted content larger than that is refused before it
    /// is decrypted, and compressed content is refused as soon as it expands beyond it,
    /// without being held in memory (decompression bombs). Default 1 GiB.
    pub max_output: u64,
    /// Limit on the number of nested layers. Default 8.
    pub max_depth: u32,
}

impl Default for OpenOptions<'_> {
    fn default() -> Self {
        OpenOptions {
            recipient: None,
            earlier_recipients: &[],
            kek: None,
            sender: None,
            partners: None,
            allow_unsigned: false,
            allow_expired: false,
            policy: InboundPolicy::ANY,
            allow_sha1: false,
            max_output: 1 << 30,
            max_depth: 8,
        }
    }
}

/// An opened document and the proof of who sent it.
#[derive(Clone, Debug, Default)]
pub struct Opened {
    /// The document ([`open`]); empty when it was written to a stream ([`open_stream`],
    /// [`open_file`]).
    pub document: Vec<u8>,
    /// The document's size in bytes.
    pub size: u64,
    pub filename: Option<String>,
    pub mime_type: String,
    /// The verified signer (the partner certificate it was checked against).
    pub signer: Option<Certificate>,
    /// The signing time the signer stated (Unix seconds).
    pub signing_time: Option<i64>,
    /// Whether an encryption layer was removed.
    pub encrypted: bool,
    /// The layers peeled, outermost first, for logs and `inspect`.
    pub layers: Vec<String>,
    /// The SignedData (ContentInfo, DER, as received) whose signature was verified — the
    /// innermost one when several were — for a signed receipt ([`receipt::sign_receipt`]).
    /// Kept only when that signature asks for a receipt (`receipt_request` is `Some`), and
    /// then copied once: it is as large as the signed content (the compressed document, or
    /// the document itself when it was not compressed), so opening such a document holds that
    /// much more memory, up to about twice the document instead of once. For the detached
    /// signature of a multipart/signed entity it is the signature's ContentInfo alone; for a
    /// SignedData that came as the bare content of an outer layer, the same wrapped in a
    /// ContentInfo.
    pub signed_data: Option<Vec<u8>>,
    /// The ReceiptRequest of that signature, if its signer asked for a receipt — and the
    /// receipt would answer it: a receipt answers the first SignerInfo asking for one, so a
    /// request is reported only when that is the SignerInfo verified. A request that cannot
    /// be read is ignored (the document opens; no receipt is offered).
    pub receipt_request: Option<receipt::ReceiptRequest>,
}

impl Opened {
    /// The file name reduced to a safe base name (no directories, no control characters), for
    /// writing the document into a folder.
    pub fn safe_filename(&self) -> Option<String> {
        crate::mime::safe_filename(self.filename.as_deref()?)
    }
}

/// A sealed document and the evidence a receipt will refer to.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// What [`seal`] returns.
    pub sealed: Vec<u8>,
    /// The SignedData (ContentInfo, DER) exactly as signed, inside `sealed`: what the
    /// recipient's receipt refers to ([`receipt::verify_receipt`]). As large as the signed
    /// content (the compressed document, or the document when it was not compressed): it is
    /// the buffer that was signed and then encrypted, kept instead of dropped, so asking for it
    /// costs no copy and no higher peak, only the memory held until the caller drops it. With
    /// [`SignatureFormat::MultipartSigned`] it is the detached signature alone (a few KiB), as
    /// [`Opened::signed_data`] is on the receiving side.
    pub signed_data: Vec<u8>,
}

/// [`seal`], also returning the SignedData as signed (the sender's evidence, and what a
/// signed receipt for the document refers to: [`SealOptions::receipt_request`]).
pub fn seal_with_evidence(
    document: &[u8],
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<Sealed> {
    seal::seal(document, signer, recipients, opts)
}

/// Seal `document`: MIME-wrap, compress (if it pays), sign with `signer`, encrypt to `recipients`.
pub fn seal(
    document: &[u8],
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<Vec<u8>> {
    seal_with_evidence(document, signer, recipients, opts).map(|s| s.sealed)
}

/// [`open`] in constant memory: the layers are peeled as `input` is read and the document is
/// written to `output` as it appears (the returned [`Opened`] has an empty `document` and its
/// `size`). **What was written is not authentic until this returns `Ok`**: the signature and
/// the authentication tag come after the content they cover; on `Err`, discard everything
/// written ([`open_file`] does). Reads DER and BER (any length forms), PEM and S/MIME; a
/// `multipart/signed` or quoted-printable entity is read in memory (bounded by
/// `max_output` plus [`WRAPPING_ALLOWANCE`]). Memory stays at a few hundred KiB otherwise.
///
/// It decides as [`open`] does (the differential fuzz target `cms_open` holds it to that),
/// with these differences: `layers` lists the SignedData layers in the order they were
/// verified (innermost first: a signature follows its content); `signed_data` is the
/// SignedData without its content (what a signed receipt needs); refused with
/// `UnsupportedAlgorithm` where `open` accepts: AuthEnvelopedData with authenticated
/// attributes, a signature without signed attributes, a signer's digest that
/// digestAlgorithms does not list (other than SHA-256); refused with `TooLarge`: a
/// certificates, CRLs, RecipientInfos or SignerInfos field over 1 MiB.
pub fn open_stream(
    input: &mut dyn std::io::Read,
    output: &mut dyn std::io::Write,
    opts: &OpenOptions,
) -> Result<Opened> {
    open::open_stream(input, output, opts)
}

/// [`open_stream`] from the file `input` to the file `output`, which appears (renamed from a
/// temporary file beside it, mode 0600) only once the document is verified and complete: a
/// refused document leaves no file behind.
pub fn open_file(
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &OpenOptions,
) -> Result<Opened> {
    open::open_file(input, output, opts)
}

/// What [`seal_stream`] and [`seal_file`] wrote.
#[derive(Clone, Debug)]
pub struct SealedStream {
    /// The document's size, as read.
    pub document_size: u64,
    /// The sealed object's size, as written.
    pub sealed_size: u64,
    /// The SignedData as signed, without its content (a detached signature over the signed
    /// content, ContentInfo, DER, a few KiB): what a signed receipt for the document refers to
    /// ([`receipt::verify_receipt`] and [`receipt::sign_receipt`] take it as they take
    /// [`Sealed::signed_data`]).
    pub signed_data: Vec<u8>,
}

/// [`seal`] in constant memory: the document is read from `input` and the sealed object
/// written to `output` as it is made, as indefinite-length BER (as `openssl cms -stream`
/// writes it; every CMS reader reads it), in PEM or S/MIME around it when asked. Memory stays
/// at a few MiB whatever the document's size (the compressor's chunks in flight, 64 KiB
/// segments), except with [`SignatureFormat::MultipartSigned`], which reads the document
/// whole. On error, what was written to `output` is incomplete and must be discarded
/// ([`seal_file`] does).
pub fn seal_stream(
    input: &mut dyn std::io::Read,
    output: &mut dyn std::io::Write,
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<SealedStream> {
    seal_stream::seal_stream(input, output, signer, recipients, opts)
}

/// [`seal_stream`] from the file `input` to the file `output`, which appears (renamed from a
/// temporary file beside it) only once complete.
pub fn seal_file(
    input: &std::path::Path,
    output: &std::path::Path,
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<SealedStream> {
    seal_stream::seal_file(input, output, signer, recipients, opts)
}

/// Open a sealed object (DER, BER, PEM or S/MIME), verifying its signature(s) against the expected
/// partner and undoing every layer.
pub fn open(input: &[u8], opts: &OpenOptions) -> Result<Opened> {
    open::open(input, opts)
}
