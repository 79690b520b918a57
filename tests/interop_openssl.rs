//! Interoperability with independent implementations, both directions:
//! - what we seal opens with `openssl cms -decrypt` then `-verify` pinned to the sender, and the
//!   CompressedData layer inflates with Python asn1crypto, byte-identical; the legacy-as2
//!   profile's multipart/signed (in canonical form) verifies with `openssl cms -verify` and
//!   `openssl smime -verify` without `-binary`, inside AES-256-CBC EnvelopedData with RSA
//!   PKCS#1 v1.5 or OAEP-SHA-1 key transport;
//! - what `openssl cms` seals (GCM+OAEP, CBC+PKCS#1 v1.5, ECDH P-256, PSS, ECDSA, S/MIME
//!   multipart/signed) opens with ours.

use ls_core::*;
use ls_tests::*;
use std::path::Path;
use std::process::Command;

fn openssl() -> Command {
    Command::new("openssl")
}

/// `openssl cms -decrypt` (input `inform`: DER or SMIME) → the inner S/MIME entity's body (our
/// SignedData), written to `dir/signed.der`.
fn openssl_decrypt(dir: &Path, sealed: &Path, inform: &str, rcpt: &Party) -> std::path::PathBuf {
    let inner = dir.join("inner.mime");
    run_ok(
        openssl()
            .args(["cms", "-decrypt", "-inform", inform, "-in"])
            .arg(sealed)
            .arg("-recip")
            .arg(&rcpt.cert)
            .arg("-inkey")
            .arg(&rcpt.key)
            .arg("-out")
            .arg(&inner),
    );
    let signed = dir.join("signed.der");
    std::fs::write(&signed, mime_body(&std::fs::read(&inner).unwrap())).unwrap();
    signed
}

/// `openssl cms -verify` pinned to `signer_cert`: only that certificate is accepted (-nointern
/// ignores certificates in the message) and it is its own trust anchor. The verified content
/// lands in `dir/content`.
fn openssl_verify_pinned(dir: &Path, signed: &Path, signer_cert: &Path) -> std::process::Output {
    run(openssl()
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-nointern",
            "-partial_chain",
            "-in",
        ])
        .arg(signed)
        .arg("-certfile")
        .arg(signer_cert)
        .arg("-CAfile")
        .arg(signer_cert)
        .arg("-out")
        .arg(dir.join("content")))
}

/// Decrypt, then verify pinned to `sender`; returns the verified content entity.
fn openssl_open(dir: &Path, sealed: &Path, inform: &str, rcpt: &Party, sender: &Party) -> Vec<u8> {
    let signed = openssl_decrypt(dir, sealed, inform, rcpt);
    let o = openssl_verify_pinned(dir, &signed, &sender.cert);
    assert!(
        o.status.success(),
        "openssl cms -verify failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(dir.join("content")).unwrap()
}

/// Decompress a DER CompressedData ContentInfo with Python asn1crypto.
fn asn1crypto_decompress(dir: &Path, der: &[u8]) -> Vec<u8> {
    let p = dir.join("compressed.der");
    std::fs::write(&p, der).unwrap();
    let out = dir.join("decompressed.bin");
    let script = "import sys\nfrom asn1crypto import cms\nci = cms.ContentInfo.load(open(sys.argv[1],'rb').read())\n\
                  assert ci['content_type'].native == 'compressed_data', ci['content_type'].native\n\
                  open(sys.argv[2],'wb').write(ci['content'].decompressed)\n";
    run_ok(
        Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(&p)
            .arg(&out),
    );
    std::fs::read(&out).unwrap()
}

#[test]
fn ours_opens_with_openssl_and_asn1crypto() {
    let dir = tempdir("ours-to-openssl");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let carol = party(&dir, "carol", KeyType::EcP256);
    let doc = invoice(200_000);
    let cases = [
        (
            "GCM, RSA-OAEP, PKCS#1 v1.5 signature",
            &alice,
            &bob,
            ContentCipher::Aes256Gcm,
            SignatureScheme::Pkcs1v15,
        ),
        (
            "CBC, RSA-OAEP, PSS signature",
            &alice,
            &bob,
            ContentCipher::Aes256Cbc,
            SignatureScheme::RsaPss,
        ),
        (
            "GCM, ECDH P-256, RSA signature",
            &alice,
            &carol,
            ContentCipher::Aes256Gcm,
            SignatureScheme::Pkcs1v15,
        ),
        (
            "CBC, ECDH P-256, ECDSA signature",
            &carol,
            &carol,
            ContentCipher::Aes256Cbc,
            SignatureScheme::Pkcs1v15,
        ),
        (
            "GCM, RSA-OAEP, ECDSA signature",
            &carol,
            &bob,
            ContentCipher::Aes256Gcm,
            SignatureScheme::Pkcs1v15,
        ),
    ];
    for (name, sender, rcpt, cipher, signature) in cases {
        let opts = SealOptions {
            filename: Some("invoice.xml".into()),
            cipher,
            signature,
            ..Default::default()
        };
        let sealed = seal(
            &doc,
            &sender.identity,
            &[rcpt.identity.certificate().clone()],
            &opts,
        )
        .unwrap();
        let path = dir.join("sealed.der");
        std::fs::write(&path, &sealed).unwrap();
        let content = openssl_open(&dir, &path, "DER", rcpt, sender);
        // The signed content is the compressed-data entity; inflate it independently.
        assert!(
            String::from_utf8_lossy(&content[..200]).contains("smime-type=compressed-data"),
            "{name}: expected a compressed-data entity"
        );
        let entity = asn1crypto_decompress(&dir, mime_body(&content));
        assert!(
            entity.starts_with(b"Content-Type: application/xml; name=\"invoice.xml\""),
            "{name}"
        );
        assert_eq!(mime_body(&entity), &doc[..], "{name}: document differs");
    }
}

/// Python's zlib (the C zlib, an implementation independent of ours) inflates each stream.
fn python_zlib_inflates(
    dir: &Path,
    streams: &[(String, Vec<u8>, Vec<u8>)],
) -> std::process::Output {
    let script = "import sys, zlib\nfor i in range(1, len(sys.argv), 2):\n    \
                  z = open(sys.argv[i], 'rb').read()\n    d = zlib.decompressobj()\n    \
                  out = d.decompress(z) + d.flush()\n    \
                  assert d.eof and not d.unused_data, sys.argv[i]\n    \
                  assert out == open(sys.argv[i + 1], 'rb').read(), sys.argv[i]\n";
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script);
    for (name, z, plain) in streams {
        let zp = dir.join(format!("{name}.z"));
        let pp = dir.join(format!("{name}.plain"));
        std::fs::write(&zp, z).unwrap();
        std::fs::write(&pp, plain).unwrap();
        cmd.arg(zp).arg(pp);
    }
    run(&mut cmd)
}

#[test]
fn compressed_streams_around_every_chunk_boundary_inflate_with_python_zlib() {
    // The compressor's chunks are independent deflate blocks joined into one zlib stream with
    // one Adler-32 combined from theirs: C zlib must read that as any other stream.
    let dir = tempdir("zlib-chunks");
    let chunk = ls_core::deflate::CHUNK;
    let text = business_text::generate(3, business_text::Mix::Mixed, 3 * chunk + 1);
    let mut streams = Vec::new();
    for n in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 1] {
        for level in [1, 6, 9] {
            let z = ls_core::deflate::zlib(&[&text[..n]], level).unwrap();
            streams.push((format!("n{n}-l{level}"), z, text[..n].to_vec()));
        }
    }
    // The same stream, whatever the number of threads, with the input in odd pieces.
    let mut z = Vec::new();
    let mut e = ls_core::deflate::ZlibEncoder::with_params(6, chunk, 3);
    for piece in text.chunks(77_777) {
        e.update(piece, &mut z).unwrap();
    }
    e.finish(&mut z).unwrap();
    assert_eq!(z, ls_core::deflate::zlib(&[&text], 6).unwrap());
    let o = python_zlib_inflates(&dir, &streams);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The check must be able to fail: a wrong Adler-32 is refused.
    let (name, mut z, plain) = streams.pop().unwrap();
    *z.last_mut().unwrap() ^= 1;
    let o = python_zlib_inflates(&dir, &[(name, z, plain)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("incorrect data check"));
}

#[test]
fn a_document_of_several_compression_chunks_opens_with_openssl_and_asn1crypto() {
    let dir = tempdir("ours-to-openssl-chunks");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc = business_text::generate(
        5,
        business_text::Mix::Mixed,
        3 * ls_core::deflate::CHUNK + 4321,
    );
    let opts = SealOptions {
        filename: Some("export.xml".into()),
        ..Default::default()
    };
    let sealed = seal(
        &doc,
        &alice.identity,
        &[bob.identity.certificate().clone()],
        &opts,
    )
    .unwrap();
    // Business text at level 6: about a fifth of the document, as gzip -6 makes it.
    assert!(
        sealed.len() < doc.len() / 4,
        "{} of {}",
        sealed.len(),
        doc.len()
    );
    let path = dir.join("sealed.der");
    std::fs::write(&path, &sealed).unwrap();
    let content = openssl_open(&dir, &path, "DER", &bob, &alice);
    let entity = asn1crypto_decompress(&dir, mime_body(&content));
    assert_eq!(mime_body(&entity), &doc[..], "document differs");
}

#[test]
fn openssl_verify_rejects_a_different_pinned_sender() {
    // The pinned verification above must be able to fail: signed by alice, pinned to mallory.
    let dir = tempdir("openssl-pin-negative");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let mallory = party(&dir, "mallory", KeyType::Rsa(2048));
    let sealed = seal(
        b"pay 100 EUR",
        &alice.identity,
        &[bob.identity.certificate().clone()],
        &SealOptions::default(),
    )
    .unwrap();
    let path = dir.join("sealed.der");
    std::fs::write(&path, &sealed).unwrap();
    let signed = openssl_decrypt(&dir, &path, "DER", &bob);
    let o = openssl_verify_pinned(&dir, &signed, &mallory.cert);
    assert!(
        !o.status.success(),
        "openssl accepted a signature pinned to the wrong certificate"
    );
}

#[test]
fn uncompressed_and_smime_outputs_open_with_openssl() {
    let dir = tempdir("ours-smime");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let opts = SealOptions {
        compression: Compression::Never,
        output: OutputFormat::Smime,
        ..Default::default()
    };
    let sealed = seal(
        &doc,
        &alice.identity,
        &[bob.identity.certificate().clone()],
        &opts,
    )
    .unwrap();
    let path = dir.join("sealed.smime");
    std::fs::write(&path, &sealed).unwrap();
    let content = openssl_open(&dir, &path, "SMIME", &bob, &alice);
    assert_eq!(mime_body(&content), &doc[..]);
}

// ------------------------------------------------------------------------------------------------
// openssl cms → ours

struct Case {
    name: &'static str,
    sign: Vec<&'static str>,
    encrypt: Vec<&'static str>,
}

fn openssl_seal(dir: &Path, doc: &Path, sender: &Party, rcpt: &Party, c: &Case) -> Vec<u8> {
    let signed = dir.join("os-signed.der");
    run_ok(
        openssl()
            .args([
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-outform",
                "DER",
                "-md",
                "sha256",
                "-in",
            ])
            .arg(doc)
            .arg("-signer")
            .arg(&sender.cert)
            .arg("-inkey")
            .arg(&sender.key)
            .args(&c.sign)
            .arg("-out")
            .arg(&signed),
    );
    let env = dir.join("os-env.der");
    // -keyopt applies to the recipient named before it.
    let (cipher, keyopts) = c.encrypt.split_at(1);
    run_ok(
        openssl()
            .args([
                "cms", "-encrypt", "-binary", "-inform", "DER", "-outform", "DER", "-in",
            ])
            .arg(&signed)
            .args(cipher)
            .arg("-recip")
            .arg(&rcpt.cert)
            .args(keyopts)
            .arg("-out")
            .arg(&env),
    );
    std::fs::read(&env).unwrap()
}

#[test]
fn openssl_sealed_objects_open_with_ours() {
    let dir = tempdir("openssl-to-ours");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let carol = party(&dir, "carol", KeyType::EcP256);
    let doc_path = dir.join("doc.xml");
    let doc = invoice(30_000);
    std::fs::write(&doc_path, &doc).unwrap();
    let oaep = vec![
        "-keyopt",
        "rsa_padding_mode:oaep",
        "-keyopt",
        "rsa_oaep_md:sha256",
        "-keyopt",
        "rsa_mgf1_md:sha256",
    ];
    let cases = [
        (
            Case {
                name: "AES-256-GCM + RSA-OAEP",
                sign: vec![],
                encrypt: [&["-aes-256-gcm"][..], &oaep].concat(),
            },
            &alice,
            &bob,
        ),
        (
            Case {
                name: "AES-256-CBC + RSA PKCS#1 v1.5",
                sign: vec![],
                encrypt: vec!["-aes-256-cbc"],
            },
            &alice,
            &bob,
        ),
        (
            Case {
                name: "AES-128-CBC + RSA PKCS#1 v1.5",
                sign: vec![],
                encrypt: vec!["-aes-128-cbc"],
            },
            &alice,
            &bob,
        ),
        (
            Case {
                name: "3DES + RSA PKCS#1 v1.5",
                sign: vec![],
                encrypt: vec!["-des3"],
            },
            &alice,
            &bob,
        ),
        (
            Case {
                name: "AES-256-GCM + ECDH P-256",
                sign: vec![],
                encrypt: vec!["-aes-256-gcm"],
            },
            &alice,
            &carol,
        ),
        (
            Case {
                name: "AES-128-CBC + ECDH P-256",
                sign: vec![],
                encrypt: vec!["-aes-128-cbc"],
            },
            &alice,
            &carol,
        ),
        (
            Case {
                name: "RSASSA-PSS signature",
                sign: vec![
                    "-keyopt",
                    "rsa_padding_mode:pss",
                    "-keyopt",
                    "rsa_pss_saltlen:32",
                ],
                encrypt: [&["-aes-256-gcm"][..], &oaep].concat(),
            },
            &alice,
            &bob,
        ),
        (
            Case {
                name: "ECDSA signature",
                sign: vec![],
                encrypt: [&["-aes-256-gcm"][..], &oaep].concat(),
            },
            &carol,
            &bob,
        ),
    ];
    for (c, sender, rcpt) in &cases {
        let sealed = openssl_seal(&dir, &doc_path, sender, rcpt, c);
        let o = open(
            &sealed,
            &OpenOptions {
                recipient: Some(&rcpt.identity),
                sender: Some(sender.identity.certificate()),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(o.document, doc, "{}", c.name);
        assert_eq!(
            o.signer.as_ref(),
            Some(sender.identity.certificate()),
            "{}",
            c.name
        );
        assert!(o.encrypted && o.signing_time.is_some(), "{}", c.name);
        // And the same object is refused when another partner is expected.
        let e = open(
            &sealed,
            &OpenOptions {
                recipient: Some(&rcpt.identity),
                sender: Some(bob_or_alice(&alice, &bob, sender)),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::SignerMismatch, "{}: {e}", c.name);
    }
}

fn bob_or_alice<'a>(alice: &'a Party, bob: &'a Party, sender: &Party) -> &'a Certificate {
    if sender.identity.certificate() == alice.identity.certificate() {
        bob.identity.certificate()
    } else {
        alice.identity.certificate()
    }
}

#[test]
fn openssl_smime_multipart_signed_opens_with_ours() {
    // The S/MIME path: `openssl cms -sign` (detached, multipart/signed, text) then `-encrypt`
    // with S/MIME output; ours verifies the first part byte-exact.
    let dir = tempdir("openssl-smime");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc =
        b"UNB+UNOC:3+SENDER+RECEIVER+261127:1525+1'\r\nUNH+1+ORDERS:D:96A:UN'\r\nUNZ+1+1'\r\n"
            .to_vec();
    let doc_path = dir.join("order.edi");
    std::fs::write(&doc_path, &doc).unwrap();
    let signed = dir.join("signed.smime");
    run_ok(
        openssl()
            .args(["cms", "-sign", "-text", "-md", "sha256", "-in"])
            .arg(&doc_path)
            .arg("-signer")
            .arg(&alice.cert)
            .arg("-inkey")
            .arg(&alice.key)
            .arg("-out")
            .arg(&signed),
    );
    let env = dir.join("env.smime");
    run_ok(
        openssl()
            .args(["cms", "-encrypt", "-aes-256-cbc", "-in"])
            .arg(&signed)
            .arg("-recip")
            .arg(&bob.cert)
            .arg("-out")
            .arg(&env),
    );
    let sealed = std::fs::read(&env).unwrap();
    let o = open(
        &sealed,
        &OpenOptions {
            recipient: Some(&bob.identity),
            sender: Some(alice.identity.certificate()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, doc);
    assert_eq!(o.mime_type, "text/plain");
    assert!(
        o.layers.iter().any(|l| l == "multipart/signed"),
        "{:?}",
        o.layers
    );

    // Flip one byte of the signed text inside the (unencrypted) multipart/signed: must fail.
    let mut s = std::fs::read(&signed).unwrap();
    let pos = ls_core::bytes::find(&s, b"ORDERS:").unwrap();
    s[pos] = b'X';
    let e = open(
        &s,
        &OpenOptions {
            sender: Some(alice.identity.certificate()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DigestMismatch, "{e}");
}

#[test]
fn openssl_raw_text_content_is_not_mistaken_for_mime() {
    // `openssl cms -encrypt` of a plain file carries it without MIME headers; a first line that
    // looks like a header must not be taken for one.
    let dir = tempdir("openssl-raw");
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc = b"Note: pay by Friday\nThanks\n\nAccounts\n".to_vec();
    let path = dir.join("note.txt");
    std::fs::write(&path, &doc).unwrap();
    let env = dir.join("note.der");
    run_ok(
        openssl()
            .args([
                "cms",
                "-encrypt",
                "-binary",
                "-aes-256-gcm",
                "-outform",
                "DER",
                "-in",
            ])
            .arg(&path)
            .arg("-recip")
            .arg(&bob.cert)
            .arg("-out")
            .arg(&env),
    );
    let o = open(
        &std::fs::read(&env).unwrap(),
        &OpenOptions {
            recipient: Some(&bob.identity),
            allow_unsigned: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, doc);
    assert_eq!(o.mime_type, "application/octet-stream");
}

#[test]
fn signed_then_compressed_then_encrypted_opens() {
    // The other nesting order: `openssl cms -sign` output compressed (CompressedData whose content
    // is the SignedData ContentInfo), then `openssl cms -encrypt`. Ours peels all three.
    use ls_core::asn1;
    let dir = tempdir("signed-then-compressed");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc = invoice(20_000);
    let doc_path = dir.join("doc.xml");
    std::fs::write(&doc_path, &doc).unwrap();
    let signed = dir.join("signed.der");
    run_ok(
        openssl()
            .args([
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-outform",
                "DER",
                "-md",
                "sha256",
                "-in",
            ])
            .arg(&doc_path)
            .arg("-signer")
            .arg(&alice.cert)
            .arg("-inkey")
            .arg(&alice.key)
            .arg("-out")
            .arg(&signed),
    );
    let signed = std::fs::read(&signed).unwrap();
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&signed, 6);
    let id_data = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    let id_compressed = [
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x09,
    ];
    let zlib = [
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x03, 0x08,
    ];
    let eci = asn1::seq(&[
        &asn1::oid(&id_data),
        &asn1::tlv(asn1::tag::ctx(0), &asn1::octet_string(&z)),
    ]);
    let cd = asn1::seq(&[&asn1::uint(0), &asn1::seq(&[&asn1::oid(&zlib)]), &eci]);
    let ci = asn1::seq(&[
        &asn1::oid(&id_compressed),
        &asn1::tlv(asn1::tag::ctx(0), &cd),
    ]);
    let compressed = dir.join("compressed.der");
    std::fs::write(&compressed, &ci).unwrap();
    let env = dir.join("env.der");
    run_ok(
        openssl()
            .args([
                "cms",
                "-encrypt",
                "-binary",
                "-aes-256-gcm",
                "-inform",
                "DER",
                "-outform",
                "DER",
                "-in",
            ])
            .arg(&compressed)
            .arg("-recip")
            .arg(&bob.cert)
            .arg("-out")
            .arg(&env),
    );
    let o = open(
        &std::fs::read(&env).unwrap(),
        &OpenOptions {
            recipient: Some(&bob.identity),
            sender: Some(alice.identity.certificate()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.document, doc);
    assert_eq!(o.signer.as_ref(), Some(alice.identity.certificate()));
    let pos = |p: &str| {
        o.layers
            .iter()
            .position(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {:?}", o.layers))
    };
    assert!(
        pos("authEnvelopedData") < pos("compressedData")
            && pos("compressedData") < pos("signedData"),
        "{:?}",
        o.layers
    );
}

// ---------------------------------------------------------------------------------------------
// Signed receipts (RFC 2634 ESS) against `openssl cms -sign_receipt` / `-verify_receipt`.

/// `openssl cms -verify_receipt RECEIPT -rctform DER -in ORIGINAL -inform DER -CAfile PARTNER`:
/// the receipt's signer must chain to PARTNER (its own trust anchor: our test certificates are
/// self-signed end-entity certificates, accepted as anchors without further flags), and the
/// receipt must answer ORIGINAL's first signature asking for one.
fn openssl_verify_receipt(receipt: &Path, original: &Path, partner: &Path) -> std::process::Output {
    run(openssl()
        .args(["cms", "-verify_receipt"])
        .arg(receipt)
        .args(["-rctform", "DER", "-in"])
        .arg(original)
        .args(["-inform", "DER", "-CAfile"])
        .arg(partner))
}

fn assert_ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stderr).contains("Verification successful"),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// alice seals for bob asking for a receipt; bob opens it and signs the receipt with ours.
fn ours_receipted(
    dir: &Path,
    alice: &Party,
    bob: &Party,
    id: &[u8],
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let s = cms::seal_with_evidence(
        &invoice(50_000),
        &alice.identity,
        &[bob.identity.certificate().clone()],
        &SealOptions {
            filename: Some("invoice.xml".into()),
            receipt_request: Some(id.to_vec()),
            ..Default::default()
        },
    )
    .unwrap();
    let opened = open(
        &s.sealed,
        &OpenOptions {
            recipient: Some(&bob.identity),
            sender: Some(alice.identity.certificate()),
            ..Default::default()
        },
    )
    .unwrap();
    let rr = opened
        .receipt_request
        .clone()
        .expect("a receipt is asked for");
    assert_eq!(rr.content_identifier, id);
    let signed = opened.signed_data.expect("the SignedData is kept");
    assert_eq!(signed, s.signed_data, "kept as received = as signed");
    let receipt = cms::receipt::sign_receipt(&signed, &bob.identity, &Default::default()).unwrap();
    let original = dir.join(format!("original-{}.der", ls_core::bytes::hex(id)));
    let rct = dir.join(format!("receipt-{}.der", ls_core::bytes::hex(id)));
    std::fs::write(&original, &s.signed_data).unwrap();
    std::fs::write(&rct, &receipt).unwrap();
    (original, rct, receipt)
}

#[test]
fn our_receipts_verify_with_openssl() {
    for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
        let dir = tempdir("receipt-ours-openssl");
        let alice = party(&dir, "alice", kt);
        let bob = party(&dir, "bob", kt);
        let mallory = party(&dir, "mallory", kt);
        let (original, rct, receipt) = ours_receipted(&dir, &alice, &bob, b"msg-1@alice");
        assert_ok(
            &openssl_verify_receipt(&rct, &original, &bob.cert),
            &format!("{kt:?}: openssl cms -verify_receipt refused our receipt"),
        );
        // And ours agrees.
        let v = cms::receipt::verify_receipt(
            &receipt,
            &std::fs::read(&original).unwrap(),
            &[bob.identity.certificate().clone()],
        )
        .unwrap();
        assert_eq!(v.content_identifier, b"msg-1@alice");
        assert_eq!(v.signer, *bob.identity.certificate());
        // openssl reads our ReceiptRequest as we wrote it.
        let o = run_ok(
            openssl()
                .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
                .arg(&original)
                .arg("-CAfile")
                .arg(&alice.cert)
                .args(["-receipt_request_print", "-out"])
                .arg(dir.join("content")),
        );
        let printed = String::from_utf8_lossy(&o.stderr);
        assert!(
            printed.contains("Receipts From: All")
                && printed.contains("DirName:CN = alice")
                && printed.contains("msg-1@alice"),
            "{printed}"
        );
        // The openssl checks can fail: another trust anchor, another message.
        let o = openssl_verify_receipt(&rct, &original, &mallory.cert);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("certificate verify error"),
            "{kt:?}: openssl trusted the wrong signer: {err}"
        );
        let (other, _, _) = ours_receipted(&dir, &alice, &bob, b"msg-2@alice");
        let o = openssl_verify_receipt(&rct, &other, &bob.cert);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("no matching signature"),
            "{kt:?}: openssl took a receipt for another message: {err}"
        );
    }
}

#[test]
fn openssl_receipts_for_our_messages_verify_with_ours() {
    for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
        let dir = tempdir("receipt-openssl-ours");
        let alice = party(&dir, "alice", kt);
        let bob = party(&dir, "bob", kt);
        let mallory = party(&dir, "mallory", kt);
        let (original, _, _) = ours_receipted(&dir, &alice, &bob, b"msg-3@alice");
        let rct = dir.join("openssl-receipt.der");
        run_ok(
            openssl()
                .args(["cms", "-sign_receipt", "-in"])
                .arg(&original)
                .args(["-inform", "DER", "-signer"])
                .arg(&bob.cert)
                .arg("-inkey")
                .arg(&bob.key)
                .args(["-outform", "DER", "-out"])
                .arg(&rct),
        );
        let receipt = std::fs::read(&rct).unwrap();
        let original_der = std::fs::read(&original).unwrap();
        let v = cms::receipt::verify_receipt(
            &receipt,
            &original_der,
            &[bob.identity.certificate().clone()],
        )
        .unwrap_or_else(|e| panic!("{kt:?}: our verify_receipt refused openssl's receipt: {e}"));
        assert_eq!(v.content_identifier, b"msg-3@alice");
        assert!(v.signing_time.is_some());
        // Pinned: the same receipt is not mallory's.
        let e = cms::receipt::verify_receipt(
            &receipt,
            &original_der,
            &[mallory.identity.certificate().clone()],
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::SignerMismatch, "{kt:?}");
        // Nor a receipt for another of our messages.
        let (other, _, _) = ours_receipted(&dir, &alice, &bob, b"msg-4@alice");
        let e = cms::receipt::verify_receipt(
            &receipt,
            &std::fs::read(other).unwrap(),
            &[bob.identity.certificate().clone()],
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ReceiptMismatch, "{kt:?}");
    }
}

#[test]
fn openssl_receipt_requests_are_read_and_answered() {
    // RSA: receipts from all recipients; EC: from a list naming bob.
    for (kt, from) in [
        (KeyType::Rsa(2048), None),
        (KeyType::EcP256, Some("bob@example.com")),
    ] {
        let dir = tempdir("receipt-openssl-request");
        let alice = party(&dir, "alice", kt);
        let bob = party(&dir, "bob", kt);
        let doc = dir.join("doc.txt");
        std::fs::write(&doc, b"pay 100 EUR").unwrap();
        let original = dir.join("original.der");
        run_ok(
            openssl()
                .args([
                    "cms",
                    "-sign",
                    "-binary",
                    "-nodetach",
                    "-md",
                    "sha256",
                    "-in",
                ])
                .arg(&doc)
                .arg("-signer")
                .arg(&alice.cert)
                .arg("-inkey")
                .arg(&alice.key)
                .args(match from {
                    None => vec!["-receipt_request_all"],
                    Some(f) => vec!["-receipt_request_from", f],
                })
                .args([
                    "-receipt_request_to",
                    "alice@example.com",
                    "-outform",
                    "DER",
                    "-out",
                ])
                .arg(&original),
        );
        let original_der = std::fs::read(&original).unwrap();
        let opened = open(
            &original_der,
            &OpenOptions {
                sender: Some(alice.identity.certificate()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(opened.document, b"pay 100 EUR");
        let rr = opened
            .receipt_request
            .expect("openssl's ReceiptRequest is read");
        match from {
            None => assert!(rr.from_all && rr.receipts_from.is_empty(), "{rr:?}"),
            Some(f) => {
                assert!(!rr.from_all, "{rr:?}");
                assert_eq!(rr.receipts_from, [format!("email:{f}")]);
            }
        }
        assert_eq!(rr.receipts_to, ["email:alice@example.com"]);
        assert_eq!(
            rr.content_identifier.len(),
            32,
            "openssl makes a 32-byte random id"
        );
        let signed = opened.signed_data.expect("kept for the receipt");
        assert_eq!(signed, original_der);
        let receipt =
            cms::receipt::sign_receipt(&signed, &bob.identity, &Default::default()).unwrap();
        let rct = dir.join("receipt.der");
        std::fs::write(&rct, &receipt).unwrap();
        assert_ok(
            &openssl_verify_receipt(&rct, &original, &bob.cert),
            &format!("{kt:?}: openssl cms -verify_receipt refused our receipt for its message"),
        );
        // openssl's own receipt for its own message agrees with ours.
        let theirs = dir.join("openssl-receipt.der");
        run_ok(
            openssl()
                .args(["cms", "-sign_receipt", "-in"])
                .arg(&original)
                .args(["-inform", "DER", "-signer"])
                .arg(&bob.cert)
                .arg("-inkey")
                .arg(&bob.key)
                .args(["-outform", "DER", "-out"])
                .arg(&theirs),
        );
        let v = cms::receipt::verify_receipt(
            &std::fs::read(&theirs).unwrap(),
            &original_der,
            &[bob.identity.certificate().clone()],
        )
        .unwrap();
        assert_eq!(v.content_identifier, rr.content_identifier);
    }
}

// ---------------------------------------------------------------------------------------------
// The legacy-as2 profile: multipart/signed inside AES-256-CBC EnvelopedData, RSA PKCS#1 v1.5

/// `openssl <cmd> -verify` of a multipart/signed entity (S/MIME input, no `-binary`: OpenSSL
/// then turns every line end of the signed part into CRLF, so only a part in canonical form
/// verifies), pinned to `signer_cert` as above; the signed part lands in `dir/content`.
fn openssl_verify_multipart(
    dir: &Path,
    cmd: &str,
    entity: &Path,
    signer_cert: &Path,
) -> std::process::Output {
    run(openssl()
        .args([cmd, "-verify", "-nointern", "-partial_chain", "-in"])
        .arg(entity)
        .arg("-certfile")
        .arg(signer_cert)
        .arg("-CAfile")
        .arg(signer_cert)
        .arg("-out")
        .arg(dir.join("content")))
}

#[test]
fn legacy_as2_opens_with_openssl_cms_and_smime() {
    let dir = tempdir("legacy-as2-openssl");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let mallory = party(&dir, "mallory", KeyType::Rsa(2048));
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let text = invoice(100_000);
    let (pkcs1, oaep1) = (
        cms::KeyTransport::RsaPkcs1v15,
        cms::KeyTransport::RsaOaepSha1,
    );
    for (doc, output, inform, key_transport, compression) in [
        (
            &text,
            OutputFormat::Smime,
            "SMIME",
            pkcs1,
            Compression::Always,
        ),
        (&noise, OutputFormat::Der, "DER", pkcs1, Compression::Always),
        // --no-compress: the document itself is the signed part, in base64.
        (&noise, OutputFormat::Der, "DER", pkcs1, Compression::Never),
        (&text, OutputFormat::Der, "DER", oaep1, Compression::Always),
    ] {
        let what = format!(
            "{} bytes, {inform}, {key_transport:?}, {compression:?}",
            doc.len()
        );
        let opts = SealOptions {
            filename: Some("doc.bin".into()),
            output,
            key_transport,
            compression,
            ..cms::Profile::LegacyAs2.seal_options()
        };
        let sealed = seal(
            doc,
            &alice.identity,
            &[bob.identity.certificate().clone()],
            &opts,
        )
        .unwrap();
        let path = dir.join("sealed");
        std::fs::write(&path, &sealed).unwrap();

        // What openssl sees: AES-256-CBC EnvelopedData, the key transport asked for.
        let printed = run_ok(
            openssl()
                .args(["cms", "-cmsout", "-print", "-inform", inform, "-in"])
                .arg(&path),
        );
        let printed = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.contains("pkcs7-envelopedData"), "{what}: {printed}");
        assert!(printed.contains("aes-256-cbc"), "{what}: {printed}");
        let kt = match key_transport {
            cms::KeyTransport::RsaPkcs1v15 => "algorithm: rsaEncryption",
            _ => "algorithm: rsaesOaep",
        };
        assert!(printed.contains(kt), "{what}: {printed}");

        let inner = dir.join("inner.mime");
        run_ok(
            openssl()
                .args(["cms", "-decrypt", "-inform", inform, "-in"])
                .arg(&path)
                .arg("-recip")
                .arg(&bob.cert)
                .arg("-inkey")
                .arg(&bob.key)
                .arg("-out")
                .arg(&inner),
        );
        assert!(
            std::fs::read(&inner)
                .unwrap()
                .starts_with(b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;"),
            "{what}"
        );
        for cmd in ["cms", "smime"] {
            let o = openssl_verify_multipart(&dir, cmd, &inner, &alice.cert);
            assert!(
                o.status.success(),
                "{what}: openssl {cmd} -verify failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            // The signed part: the compressed-data entity or the document, base64.
            let part = std::fs::read(dir.join("content")).unwrap();
            let e = mime::Entity::parse(&part).unwrap();
            assert_eq!(
                e.header("content-transfer-encoding"),
                Some("base64"),
                "{what}"
            );
            let body = e.decoded_body().unwrap();
            let got = if e.content_type() == "application/pkcs7-mime" {
                let entity = asn1crypto_decompress(&dir, &body);
                mime_body(&entity).to_vec()
            } else {
                body.into_owned()
            };
            assert_eq!(&got, doc, "{what}: openssl {cmd}: document differs");

            // Negative control: pinned to someone else, it fails.
            let o = openssl_verify_multipart(&dir, cmd, &inner, &mallory.cert);
            assert!(
                !o.status.success(),
                "{what}: openssl {cmd} accepted mallory"
            );
        }
    }
}

/// What we seal as a stream (indefinite-length BER, 64 KiB segments) opens with `openssl cms`
/// as our DER does: decrypted, verified pinned to the sender, the CompressedData inflated by
/// Python asn1crypto; in DER, PEM and S/MIME output.
#[test]
fn streamed_seals_open_with_openssl() {
    let dir = tempdir("streamed-to-openssl");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc = business_text::generate(7, business_text::Mix::Mixed, 700_000);
    for compression in [Compression::Never, Compression::Always] {
        for (output, inform) in [
            (OutputFormat::Der, "DER"),
            (OutputFormat::Pem, "PEM"),
            (OutputFormat::Smime, "SMIME"),
        ] {
            let what = format!("{compression:?} {output:?}");
            let opts = SealOptions {
                filename: Some("export.xml".into()),
                compression,
                output,
                ..Default::default()
            };
            let mut sealed = Vec::new();
            seal_stream(
                &mut &doc[..],
                &mut sealed,
                &alice.identity,
                &[bob.identity.certificate().clone()],
                &opts,
            )
            .unwrap();
            let path = dir.join("streamed.p7m");
            std::fs::write(&path, &sealed).unwrap();
            let content = openssl_open(&dir, &path, inform, &bob, &alice);
            let entity = match compression {
                Compression::Always => asn1crypto_decompress(&dir, mime_body(&content)),
                _ => content,
            };
            assert!(mime_body(&entity) == &doc[..], "{what}: document differs");
        }
    }
}

/// What `openssl cms -stream` writes (indefinite-length BER in its own segment sizes), signed
/// then encrypted, in DER, PEM and S/MIME, opens with ours, as a stream and in memory.
#[test]
fn openssl_streamed_objects_open_with_ours() {
    let dir = tempdir("openssl-stream-to-ours");
    let alice = party(&dir, "alice", KeyType::Rsa(2048));
    let bob = party(&dir, "bob", KeyType::Rsa(2048));
    let doc = invoice(300_000);
    let doc_path = dir.join("doc.xml");
    std::fs::write(&doc_path, &doc).unwrap();
    let signed = dir.join("signed.ber");
    run_ok(
        openssl()
            .args([
                "cms",
                "-sign",
                "-stream",
                "-binary",
                "-nodetach",
                "-outform",
                "DER",
                "-md",
                "sha256",
                "-in",
            ])
            .arg(&doc_path)
            .arg("-signer")
            .arg(&alice.cert)
            .arg("-inkey")
            .arg(&alice.key)
            .arg("-out")
            .arg(&signed),
    );
    let signed_bytes = std::fs::read(&signed).unwrap();
    assert_eq!(
        &signed_bytes[..2],
        &[0x30, 0x80],
        "openssl -stream writes BER"
    );
    let opts = OpenOptions {
        recipient: Some(&bob.identity),
        sender: Some(alice.identity.certificate()),
        ..Default::default()
    };
    for cipher in ["-aes-256-cbc", "-aes-256-gcm"] {
        for outform in ["DER", "PEM", "SMIME"] {
            let what = format!("{cipher} {outform}");
            let env = dir.join("env.p7m");
            run_ok(
                openssl()
                    .args(["cms", "-encrypt", "-stream", "-binary", "-outform", outform])
                    .arg(cipher)
                    .arg("-in")
                    .arg(&signed)
                    .arg("-out")
                    .arg(&env)
                    .arg(&bob.cert),
            );
            let sealed = std::fs::read(&env).unwrap();
            let mut out = Vec::new();
            let o = open_stream(&mut &sealed[..], &mut out, &opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(out == doc, "{what}: document differs");
            assert_eq!(
                o.signer.as_ref(),
                Some(alice.identity.certificate()),
                "{what}"
            );
            assert!(
                open(&sealed, &opts).unwrap().document == doc,
                "{what}: in memory"
            );
        }
    }
}
