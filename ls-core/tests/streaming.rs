//! Sealing and opening as streams (`seal_stream`, `open_stream`, `seal_file`, `open_file`):
//! round trips around every segment and chunk boundary in every output format, cipher and key
//! type, each direction against the in-memory path; what the streaming side writes is BER;
//! truncated and altered streams are refused with their specific codes, and `open_file`
//! leaves no file behind for them. (Interop with `openssl cms -stream` is in
//! `tests/interop_openssl.rs`; the peak memory of the CLI in `tests/streaming_rss.rs`.)

use ls_core::cms::receipt::{sign_receipt, verify_receipt, ReceiptOptions};
use ls_core::cms::{ContentCipher, SealedStream};
use ls_core::*;

fn id(name: &str, kt: KeyType) -> Identity {
    Identity::generate(name, kt, 30, None).unwrap().identity
}

struct Pair {
    alice: Identity,
    bob: Identity,
}

fn pair(kt: KeyType) -> Pair {
    Pair {
        alice: id("alice", kt),
        bob: id("bob", kt),
    }
}

fn opts_for(p: &Pair) -> OpenOptions<'_> {
    OpenOptions {
        recipient: Some(&p.bob),
        sender: Some(p.alice.certificate()),
        ..Default::default()
    }
}

/// Text that compresses, with a counter so no segment repeats another.
fn text(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "<Line id=\"{i}\"><Amount>{}.{:02}</Amount></Line>\n",
                i * 37 % 9973,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

fn seal_s(doc: &[u8], p: &Pair, o: &SealOptions) -> (Vec<u8>, SealedStream) {
    let mut out = Vec::new();
    let mut src: &[u8] = doc;
    let s = seal_stream(
        &mut src,
        &mut out,
        &p.alice,
        &[p.bob.certificate().clone()],
        o,
    )
    .unwrap();
    assert_eq!(s.document_size, doc.len() as u64);
    assert_eq!(s.sealed_size, out.len() as u64);
    (out, s)
}

fn open_s(sealed: &[u8], o: &OpenOptions) -> Result<(Vec<u8>, Opened)> {
    let mut out = Vec::new();
    let mut src: &[u8] = sealed;
    let opened = open_stream(&mut src, &mut out, o)?;
    Ok((out, opened))
}

/// A reader that hands out at most `n` bytes per read (the layers must not depend on how the
/// input arrives).
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

const SEG: usize = 64 * 1024;
const ZCHUNK: usize = 512 * 1024;

#[test]
fn round_trips_around_every_boundary() {
    let p = pair(KeyType::Rsa(2048));
    let sizes = [
        0,
        1,
        255,
        256,
        SEG - 1,
        SEG,
        SEG + 1,
        64 * 1024 * 3 + 17,
        ZCHUNK - 1,
        ZCHUNK,
        ZCHUNK + 1,
        3 * ZCHUNK + 5,
    ];
    for &n in &sizes {
        for compression in [Compression::Never, Compression::Always] {
            let doc = text(n);
            let o = SealOptions {
                compression,
                filename: Some("report.xml".into()),
                ..Default::default()
            };
            let (sealed, _) = seal_s(&doc, &p, &o);
            // BER: the streamed output starts with an indefinite-length ContentInfo.
            assert_eq!(&sealed[..2], &[0x30, 0x80]);
            // Opened as a stream and in memory.
            let (got, opened) = open_s(&sealed, &opts_for(&p)).unwrap();
            assert!(got == doc, "size {n} {compression:?}");
            assert_eq!(opened.size, n as u64);
            assert_eq!(opened.filename.as_deref(), Some("report.xml"));
            assert_eq!(opened.mime_type, "application/xml");
            assert!(opened.encrypted);
            assert_eq!(opened.signer.as_ref(), Some(p.alice.certificate()));
            let mem = open(&sealed, &opts_for(&p)).unwrap();
            assert!(mem.document == doc, "in memory, size {n} {compression:?}");
            // The in-memory seal (DER) opened as a stream.
            let der = seal(&doc, &p.alice, &[p.bob.certificate().clone()], &o).unwrap();
            let (got, _) = open_s(&der, &opts_for(&p)).unwrap();
            assert!(got == doc, "DER, size {n} {compression:?}");
        }
    }
}

#[test]
fn input_arriving_in_small_pieces_gives_the_same_document() {
    let p = pair(KeyType::EcP256);
    let doc = text(SEG * 2 + 333);
    let (sealed, _) = seal_s(&doc, &p, &SealOptions::default());
    for piece in [1usize, 7, 4096, SEG + 3] {
        let mut out = Vec::new();
        let mut src = Trickle(&sealed, piece);
        open_stream(&mut src, &mut out, &opts_for(&p)).unwrap();
        assert!(out == doc, "pieces of {piece}");
        // And sealing from a trickling reader.
        let mut sealed2 = Vec::new();
        let mut src = Trickle(&doc, piece);
        seal_stream(
            &mut src,
            &mut sealed2,
            &p.alice,
            &[p.bob.certificate().clone()],
            &SealOptions::default(),
        )
        .unwrap();
        assert!(open(&sealed2, &opts_for(&p)).unwrap().document == doc);
    }
}

#[test]
fn every_format_cipher_and_key_type() {
    for kt in [KeyType::Rsa(2048), KeyType::EcP256] {
        let p = pair(kt);
        for cipher in [ContentCipher::Aes256Gcm, ContentCipher::Aes256Cbc] {
            for output in [OutputFormat::Der, OutputFormat::Pem, OutputFormat::Smime] {
                for doc in [text(SEG * 3 + 11), random(SEG + 5)] {
                    let o = SealOptions {
                        cipher,
                        output,
                        encrypt_to_self: true,
                        ..Default::default()
                    };
                    let (sealed, _) = seal_s(&doc, &p, &o);
                    let what = format!("{kt:?} {cipher:?} {output:?} {}", doc.len());
                    let (got, _) = open_s(&sealed, &opts_for(&p)).expect(&what);
                    assert!(got == doc, "{what}");
                    assert!(
                        open(&sealed, &opts_for(&p)).expect(&what).document == doc,
                        "{what}"
                    );
                    // Our own copy opens too.
                    let me = OpenOptions {
                        recipient: Some(&p.alice),
                        sender: Some(p.alice.certificate()),
                        ..Default::default()
                    };
                    assert!(open_s(&sealed, &me).expect(&what).0 == doc, "{what}");
                }
            }
        }
    }
}

#[test]
fn the_evidence_of_a_streamed_seal_serves_receipts() {
    let p = pair(KeyType::Rsa(2048));
    let doc = text(SEG * 2);
    let o = SealOptions {
        receipt_request: Some(b"doc-1".to_vec()),
        ..Default::default()
    };
    let (sealed, s) = seal_s(&doc, &p, &o);
    // The evidence is a detached signature: small, whatever the document's size.
    assert!(s.signed_data.len() < 8192, "{}", s.signed_data.len());
    let (_, opened) = open_s(&sealed, &opts_for(&p)).unwrap();
    let request = opened.receipt_request.expect("a receipt is asked for");
    assert_eq!(request.content_identifier, b"doc-1");
    let theirs = opened.signed_data.expect("the evidence to answer");
    assert!(theirs.len() < 8192);
    let receipt = sign_receipt(&theirs, &p.bob, &ReceiptOptions::default()).unwrap();
    verify_receipt(
        &receipt,
        &s.signed_data,
        std::slice::from_ref(p.bob.certificate()),
    )
    .unwrap();
}

#[test]
fn truncated_streams_are_refused_at_every_layer() {
    let p = pair(KeyType::Rsa(2048));
    let doc = text(SEG * 4 + 100);
    for compression in [Compression::Never, Compression::Always] {
        let o = SealOptions {
            compression,
            ..Default::default()
        };
        let (sealed, _) = seal_s(&doc, &p, &o);
        let n = sealed.len();
        let mut cuts: Vec<usize> = vec![
            1,
            2,
            10,
            100,
            400,
            1000,
            n / 3,
            n / 2,
            n - 200,
            n - 40,
            n - 20,
            n - 2,
            n - 1,
        ];
        cuts.retain(|&c| c < n);
        for cut in cuts {
            let e = open_s(&sealed[..cut], &opts_for(&p)).unwrap_err();
            assert!(
                matches!(
                    e.code(),
                    ErrorCode::Truncated | ErrorCode::DecryptFailed | ErrorCode::Malformed
                ),
                "cut at {cut} of {n} ({compression:?}): {e}"
            );
        }
    }
}

#[test]
fn altered_streams_are_refused_and_leave_no_file() {
    let p = pair(KeyType::Rsa(2048));
    let dir = tempdir();
    let doc = text(SEG * 4 + 100);
    for cipher in [ContentCipher::Aes256Gcm, ContentCipher::Aes256Cbc] {
        let o = SealOptions {
            cipher,
            compression: Compression::Always,
            ..Default::default()
        };
        let (sealed, _) = seal_s(&doc, &p, &o);
        let n = sealed.len();
        for at in [n / 4, n / 2, n - 300, n - 30, n - 5] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x40;
            let input = dir.join("bad.p7m");
            std::fs::write(&input, &bad).unwrap();
            let output = dir.join("doc.xml");
            let r = open_file(&input, &output, &opts_for(&p));
            let e = r.expect_err(&format!("{cipher:?} flipped at {at} of {n}"));
            if cipher == ContentCipher::Aes256Gcm && at < n - 40 {
                // Inside the ciphertext: the tag decides.
                assert_eq!(
                    e.code(),
                    ErrorCode::DecryptFailed,
                    "{cipher:?} at {at}: {e}"
                );
            }
            assert!(
                !output.exists(),
                "{cipher:?} at {at}: a refused document was left"
            );
            let left: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n != "bad.p7m")
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }
}

#[test]
fn wrong_recipient_unknown_signer_and_limits() {
    let p = pair(KeyType::Rsa(2048));
    let eve = id("eve", KeyType::Rsa(2048));
    let doc = text(SEG * 2);
    let (sealed, _) = seal_s(&doc, &p, &SealOptions::default());
    let not_for_eve = OpenOptions {
        recipient: Some(&eve),
        sender: Some(p.alice.certificate()),
        ..Default::default()
    };
    assert_eq!(
        open_s(&sealed, &not_for_eve).unwrap_err().code(),
        ErrorCode::NotARecipient
    );
    let expects_eve = OpenOptions {
        recipient: Some(&p.bob),
        sender: Some(eve.certificate()),
        ..Default::default()
    };
    assert_eq!(
        open_s(&sealed, &expects_eve).unwrap_err().code(),
        ErrorCode::SignerMismatch
    );
    let small = OpenOptions {
        max_output: 1000,
        ..opts_for(&p)
    };
    assert_eq!(
        open_s(&sealed, &small).unwrap_err().code(),
        ErrorCode::TooLarge
    );
    // A decompression bomb: 64 MiB of zeros compress to ~64 KiB.
    let bomb = vec![0u8; 64 << 20];
    let (sealed, _) = seal_s(
        &bomb,
        &p,
        &SealOptions {
            compression: Compression::Always,
            ..Default::default()
        },
    );
    assert!(sealed.len() < 1 << 20);
    let limited = OpenOptions {
        max_output: 1 << 20,
        ..opts_for(&p)
    };
    assert_eq!(
        open_s(&sealed, &limited).unwrap_err().code(),
        ErrorCode::ExpansionTooLarge
    );
}

#[test]
fn seal_file_and_open_file_round_trip() {
    let p = pair(KeyType::Rsa(2048));
    let dir = tempdir();
    let doc = text(3 * ZCHUNK + 99);
    std::fs::write(dir.join("in.xml"), &doc).unwrap();
    let s = seal_file(
        &dir.join("in.xml"),
        &dir.join("in.p7m"),
        &p.alice,
        &[p.bob.certificate().clone()],
        &SealOptions::default(),
    )
    .unwrap();
    assert_eq!(
        s.sealed_size,
        std::fs::metadata(dir.join("in.p7m")).unwrap().len()
    );
    let o = open_file(&dir.join("in.p7m"), &dir.join("out.xml"), &opts_for(&p)).unwrap();
    assert_eq!(o.size, doc.len() as u64);
    assert!(std::fs::read(dir.join("out.xml")).unwrap() == doc);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("out.xml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the opened document is readable by others");
    }
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "ls-streaming-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
