//! Sealing from a reader to a writer in constant memory: the same layers as [`super::seal`]
//! (MIME entity → CompressedData → SignedData → (Auth)EnvelopedData, each inner layer an
//! `application/pkcs7-mime` entity), written as indefinite-length BER the way
//! `openssl cms -stream` writes it: every content a constructed OCTET STRING of 64 KiB
//! segments, compressed, hashed and encrypted as it passes, the signature and the
//! authentication tag after the content they cover.
//!
//! Memory: a segment per layer, the compressor's chunks in flight (`deflate.rs`), the
//! certificates and the RecipientInfos; not the document.
//!
//! A `multipart/signed` seal (the legacy AS2 profile) is made in memory: its signed part is
//! base64 inside a MIME multipart whose boundary must not occur in it, and AS2 documents are
//! small; the document is read whole for it.

use super::crypto::alg_id;
use super::seal::{self as sealing, Envelope, SignSpec};
use super::stream::{
    close_indefinite, from_io, open_indefinite, segment, to_io, Base64Lines, Digester, Segmenter,
    BUF,
};
use super::{Compression, OutputFormat, SealOptions, SealedStream, SignatureFormat};
use crate::asn1::{self, tag};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::keys::Identity;
use crate::oid;
use openssl::symm::{Crypter, Mode};
use std::io::{self, Read, Write};

/// The (Auth)EnvelopedData around what is written: the content encrypted segment by segment.
struct Encrypting<W: Write> {
    out: W,
    crypter: Crypter,
    seg: Segmenter,
    scratch: Vec<u8>,
    aead: bool,
}

impl<W: Write> Encrypting<W> {
    fn start(mut out: W, env: &Envelope) -> Result<Encrypting<W>> {
        let mut crypter = Crypter::new(env.alg.cipher(), Mode::Encrypt, &env.cek, Some(&env.iv))?;
        crypter.pad(!env.alg.is_aead());
        let mut head = Vec::with_capacity(env.ris.len() + 128);
        open_indefinite(&mut head, tag::SEQUENCE); // ContentInfo
        head.extend_from_slice(&asn1::oid(env.ct_oid));
        open_indefinite(&mut head, tag::ctx(0));
        open_indefinite(&mut head, tag::SEQUENCE); // (Auth)EnvelopedData
        head.extend_from_slice(&env.version);
        head.extend_from_slice(&env.ris);
        open_indefinite(&mut head, tag::SEQUENCE); // EncryptedContentInfo
        head.extend_from_slice(&asn1::oid(oid::DATA));
        head.extend_from_slice(&env.cea);
        open_indefinite(&mut head, tag::ctx(0)); // [0] IMPLICIT OCTET STRING, constructed
        out.write_all(&head)
            .map_err(|e| from_io(e, "writing the sealed output"))?;
        Ok(Encrypting {
            out,
            crypter,
            seg: Segmenter::new(),
            scratch: vec![0u8; super::stream::SEGMENT + 32],
            aead: env.alg.is_aead(),
        })
    }

    fn finish(mut self) -> Result<W> {
        let io = |e| from_io(e, "writing the sealed output");
        {
            let Encrypting {
                out,
                crypter,
                seg,
                scratch,
                ..
            } = &mut self;
            seg.finish(&mut |c| {
                let n = crypter.update(c, scratch).map_err(|e| to_io(e.into()))?;
                segment(out, &scratch[..n])
            })
            .map_err(io)?;
        }
        let n = self.crypter.finalize(&mut self.scratch)?;
        segment(&mut self.out, &self.scratch[..n]).map_err(io)?;
        close_indefinite(&mut self.out, 2).map_err(io)?; // [0], EncryptedContentInfo
        if self.aead {
            let mut t = vec![0u8; 16];
            self.crypter.get_tag(&mut t)?;
            self.out.write_all(&asn1::octet_string(&t)).map_err(io)?;
        }
        close_indefinite(&mut self.out, 3).map_err(io)?; // (Auth)EnvelopedData, [0], ContentInfo
        Ok(self.out)
    }
}

impl<W: Write> Write for Encrypting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Encrypting {
            out,
            crypter,
            seg,
            scratch,
            ..
        } = self;
        seg.write(data, &mut |c| {
            let n = crypter.update(c, scratch).map_err(|e| to_io(e.into()))?;
            segment(out, &scratch[..n])
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The SignedData around what is written: the content hashed as it passes, the SignerInfo
/// after it.
struct Signing<W: Write> {
    out: W,
    hasher: Digester<openssl::sha::Sha256>,
    seg: Segmenter,
    version: Vec<u8>,
    digest_algs: Vec<u8>,
}

impl<W: Write> Signing<W> {
    fn start(mut out: W, econtent_type: &[u8]) -> Result<Signing<W>> {
        // RFC 5652 5.1: version 3 when the eContentType is not id-data.
        let version = asn1::uint(if econtent_type == oid::DATA { 1 } else { 3 });
        let digest_algs = asn1::cons(tag::SET, &[&alg_id(oid::SHA256, None)]);
        let mut head = Vec::with_capacity(64);
        open_indefinite(&mut head, tag::SEQUENCE); // ContentInfo
        head.extend_from_slice(&asn1::oid(oid::SIGNED_DATA));
        open_indefinite(&mut head, tag::ctx(0));
        open_indefinite(&mut head, tag::SEQUENCE); // SignedData
        head.extend_from_slice(&version);
        head.extend_from_slice(&digest_algs);
        open_indefinite(&mut head, tag::SEQUENCE); // EncapsulatedContentInfo
        head.extend_from_slice(&asn1::oid(econtent_type));
        open_indefinite(&mut head, tag::ctx(0));
        open_indefinite(&mut head, 0x24); // OCTET STRING, constructed
        out.write_all(&head)
            .map_err(|e| from_io(e, "writing the sealed output"))?;
        Ok(Signing {
            out,
            hasher: Digester::new(openssl::sha::Sha256::new()),
            seg: Segmenter::new(),
            version,
            digest_algs,
        })
    }

    /// The signature; returns the writer and the SignedData without its content (a detached
    /// signature: what a signed receipt refers to, [`SealedStream::signed_data`]).
    fn finish(mut self, signer: &Identity, spec: &SignSpec) -> Result<(W, Vec<u8>)> {
        let io = |e| from_io(e, "writing the sealed output");
        {
            let Signing {
                out, hasher, seg, ..
            } = &mut self;
            seg.finish(&mut |c| {
                hasher.update(c).map_err(to_io)?;
                segment(out, c)
            })
            .map_err(io)?;
        }
        close_indefinite(&mut self.out, 3).map_err(io)?; // OCTET STRING, [0], encapContentInfo
        let md = self.hasher.finish()?.finish();
        let (signer_info, certs) = sealing::signer_info_and_certs(signer, spec, &md)?;
        let signer_infos = asn1::cons(tag::SET, &[&signer_info]);
        self.out.write_all(&certs).map_err(io)?;
        self.out.write_all(&signer_infos).map_err(io)?;
        close_indefinite(&mut self.out, 3).map_err(io)?; // SignedData, [0], ContentInfo
        let detached = asn1::seq(&[
            &self.version,
            &self.digest_algs,
            &asn1::seq(&[&asn1::oid(spec.econtent_type)]),
            &certs,
            &signer_infos,
        ]);
        Ok((self.out, sealing::content_info(oid::SIGNED_DATA, &detached)))
    }
}

impl<W: Write> Write for Signing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Signing {
            out, hasher, seg, ..
        } = self;
        seg.write(data, &mut |c| {
            hasher.update(c).map_err(to_io)?;
            segment(out, c)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The CompressedData (zlib, RFC 3274) around what is written.
struct Compressing<W: Write> {
    out: W,
    enc: crate::deflate::ZlibEncoder,
    z: Vec<u8>,
    seg: Segmenter,
}

impl<W: Write> Compressing<W> {
    fn start(mut out: W, level: u8) -> Result<Compressing<W>> {
        let mut head = Vec::with_capacity(64);
        open_indefinite(&mut head, tag::SEQUENCE); // ContentInfo
        head.extend_from_slice(&asn1::oid(oid::COMPRESSED_DATA));
        open_indefinite(&mut head, tag::ctx(0));
        open_indefinite(&mut head, tag::SEQUENCE); // CompressedData
        head.extend_from_slice(&asn1::uint(0));
        head.extend_from_slice(&alg_id(oid::ZLIB, None));
        open_indefinite(&mut head, tag::SEQUENCE); // EncapsulatedContentInfo
        head.extend_from_slice(&asn1::oid(oid::DATA));
        open_indefinite(&mut head, tag::ctx(0));
        open_indefinite(&mut head, 0x24);
        out.write_all(&head)
            .map_err(|e| from_io(e, "writing the sealed output"))?;
        Ok(Compressing {
            out,
            enc: crate::deflate::ZlibEncoder::new(level),
            z: Vec::with_capacity(BUF),
            seg: Segmenter::new(),
        })
    }

    fn finish(self) -> Result<W> {
        let io = |e| from_io(e, "writing the sealed output");
        let Compressing {
            mut out,
            enc,
            mut z,
            mut seg,
        } = self;
        enc.finish(&mut z)?;
        seg.write(&z, &mut |c| segment(&mut out, c)).map_err(io)?;
        seg.finish(&mut |c| segment(&mut out, c)).map_err(io)?;
        // OCTET STRING, [0], encapContentInfo, CompressedData, [0], ContentInfo
        close_indefinite(&mut out, 6).map_err(io)?;
        Ok(out)
    }
}

impl<W: Write> Write for Compressing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Compressing { out, enc, z, seg } = self;
        enc.update(data, z).map_err(to_io)?;
        if z.len() >= super::stream::SEGMENT {
            seg.write(z, &mut |c| segment(out, c))?;
            z.clear();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Read up to `n` bytes (fewer only at the end of the input).
fn read_up_to(input: &mut dyn Read, n: usize) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(n);
    input
        .take(n as u64)
        .read_to_end(&mut v)
        .map_err(|e| from_io(e, "reading the document"))?;
    Ok(v)
}

/// Copy the rest of `input` into `out`; returns how many bytes.
fn pump(input: &mut dyn Read, out: &mut dyn Write) -> Result<u64> {
    let mut buf = vec![0u8; 4 * BUF];
    let mut n = 0u64;
    loop {
        let k = match input.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_io(e, "reading the document")),
        };
        out.write_all(&buf[..k])
            .map_err(|e| from_io(e, "writing the sealed output"))?;
        n += k as u64;
    }
}

/// Seal what `input` yields into `output` (see the module's documentation).
pub(crate) fn seal_stream(
    input: &mut dyn Read,
    output: &mut dyn Write,
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<SealedStream> {
    let (all, extra_attrs, now) = sealing::prepare(signer, recipients, opts)?;
    let io = |e| from_io(e, "writing the sealed output");

    if opts.signature_format == SignatureFormat::MultipartSigned {
        let mut doc = Vec::new();
        input
            .read_to_end(&mut doc)
            .map_err(|e| from_io(e, "reading the document"))?;
        let s = sealing::seal(&doc, signer, recipients, opts)?;
        output.write_all(&s.sealed).map_err(io)?;
        output.flush().map_err(io)?;
        return Ok(SealedStream {
            document_size: doc.len() as u64,
            sealed_size: s.sealed.len() as u64,
            signed_data: s.signed_data,
        });
    }

    // Whether to compress is decided on the first 64 KiB, as the in-memory seal decides.
    let sample = read_up_to(input, 64 * 1024)?;
    let compress = match opts.compression {
        Compression::Never => false,
        Compression::Always => true,
        Compression::Auto => sealing::worth_compressing(&sample),
    };
    let entity_header = sealing::document_entity_header(opts, "binary")?;
    let env = sealing::envelope(&all, opts)?;
    let spec = SignSpec {
        econtent_type: oid::DATA,
        scheme: opts.signature,
        signing_time: opts.signing_time.unwrap_or(now),
        extra_attrs,
    };

    let mut counted = super::stream::Counting {
        inner: output,
        count: 0,
    };
    let mut layers = |sink: &mut dyn Write| -> Result<(u64, Vec<u8>)> {
        let mut enc = Encrypting::start(sink, &env)?;
        enc.write_all(&sealing::pkcs7_entity_header(
            "signed-data",
            "smime.p7m",
            "binary",
        ))
        .map_err(io)?;
        let mut signing = Signing::start(enc, oid::DATA)?;
        let document_size;
        if compress {
            signing
                .write_all(&sealing::pkcs7_entity_header(
                    "compressed-data",
                    "smime.p7z",
                    "binary",
                ))
                .map_err(io)?;
            let mut comp = Compressing::start(signing, opts.compression_level)?;
            comp.write_all(&entity_header).map_err(io)?;
            comp.write_all(&sample).map_err(io)?;
            document_size = sample.len() as u64 + pump(input, &mut comp)?;
            signing = comp.finish()?;
        } else {
            signing.write_all(&entity_header).map_err(io)?;
            signing.write_all(&sample).map_err(io)?;
            document_size = sample.len() as u64 + pump(input, &mut signing)?;
        }
        let (enc, signed_data) = signing.finish(signer, &spec)?;
        enc.finish()?;
        Ok((document_size, signed_data))
    };
    let (document_size, signed_data) = match opts.output {
        OutputFormat::Der => layers(&mut counted)?,
        OutputFormat::Pem => {
            counted.write_all(b"-----BEGIN CMS-----\n").map_err(io)?;
            let mut b = Base64Lines::new(&mut counted, 48, b"\n");
            let r = layers(&mut b)?;
            b.finish().map_err(io)?;
            counted.write_all(b"-----END CMS-----\n").map_err(io)?;
            r
        }
        OutputFormat::Smime => {
            let head = format!(
                "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={}; name=\"smime.p7m\"\r\n\
                 Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n",
                env.smime_type
            );
            counted.write_all(head.as_bytes()).map_err(io)?;
            let mut b = Base64Lines::new(&mut counted, 57, b"\r\n");
            let r = layers(&mut b)?;
            b.finish().map_err(io)?;
            r
        }
    };
    counted.flush().map_err(io)?;
    Ok(SealedStream {
        document_size,
        sealed_size: counted.count,
        signed_data,
    })
}

/// Seal the file `input` into the file `output`, written beside it under a temporary name and
/// renamed into place once complete (a failed seal leaves no `output`).
pub(crate) fn seal_file(
    input: &std::path::Path,
    output: &std::path::Path,
    signer: &Identity,
    recipients: &[Certificate],
    opts: &SealOptions,
) -> Result<SealedStream> {
    let mut src = std::fs::File::open(input).map_err(|e| Error::Io {
        context: format!("opening {}", input.display()),
        source: e,
    })?;
    super::stream::write_then_rename(output, |w| {
        seal_stream(&mut src, w, signer, recipients, opts)
    })
}
