//! The spooler reads what `Package::parse` reads, whatever the pieces the body comes in.

use super::*;
use crate::as4::package::{Attachment, Package};
use crate::ErrorCode;
use std::io::Cursor;

/// Spool `body` fed in pieces cut at `cuts` (ascending offsets).
fn spool(
    ct: &str,
    body: &[u8],
    limits: &Limits,
    cuts: &[usize],
) -> Result<(SpooledPackage, Vec<u8>)> {
    let mut s = Spooler::new(ct, Cursor::new(Vec::new()), limits)?;
    let mut at = 0;
    // The SOAP part as `soap_part` first gives it, while the body is still arriving.
    let mut early: Option<std::result::Result<Vec<u8>, ErrorCode>> = None;
    for &c in cuts.iter().chain(std::iter::once(&body.len())) {
        s.feed(&body[at..c])?;
        at = c;
        if early.is_none() {
            early = s
                .soap_part()
                .map(|r| r.map(|c| c.into_owned()).map_err(|e| e.code()));
        }
    }
    assert_eq!(s.received(), body.len() as u64);
    let (pkg, out) = s.finish()?;
    // A message accepted at the end has the SOAP part announced early (if any was).
    match early {
        Some(Ok(soap)) => assert_eq!(soap, pkg.soap, "cuts {cuts:?}"),
        Some(Err(e)) => panic!("cuts {cuts:?}: soap_part failed ({e:?}), finish accepted"),
        None => {}
    }
    Ok((pkg, out.into_inner()))
}

/// The spooled package as a `Package` (attachment bytes read from the spool).
fn as_package(p: &SpooledPackage, spooled: &[u8]) -> Package {
    Package {
        soap: p.soap.clone(),
        soap_content_type: p.soap_content_type.clone(),
        attachments: p
            .attachments
            .iter()
            .map(|a| Attachment {
                content_id: a.content_id.clone(),
                content_type: a.content_type.clone(),
                headers: a.headers.clone(),
                data: match &a.body {
                    SpooledBody::File {
                        offset,
                        len,
                        sha256,
                    } => {
                        let d = spooled[*offset as usize..(*offset + *len) as usize].to_vec();
                        assert_eq!(openssl::sha::sha256(&d), *sha256);
                        d
                    }
                    SpooledBody::Memory(d) => d.clone(),
                },
            })
            .collect(),
    }
}

/// The spooler's result for `body` in these pieces equals `Package::parse`'s (the same
/// package, or an error with the same code), and the spool holds the body.
fn agrees(ct: &str, body: &[u8], limits: &Limits, cuts: &[usize]) {
    let want = Package::parse(ct, body, limits);
    let got = spool(ct, body, limits, cuts);
    match (want, got) {
        (Ok(w), Ok((g, spooled))) => {
            assert_eq!(spooled, body);
            assert_eq!(g.length, body.len() as u64);
            assert_eq!(as_package(&g, &spooled), w, "cuts {cuts:?}");
        }
        (Err(w), Err(g)) => assert_eq!(g.code(), w.code(), "cuts {cuts:?}: {w} / {g}"),
        (w, g) => panic!(
            "cuts {cuts:?} of {:?}: parse {:?}, spool {:?}",
            String::from_utf8_lossy(body),
            w.map(|_| ()),
            g.map(|_| ())
        ),
    }
}

/// In one piece, in two at every offset, in three around every offset, byte by byte.
fn agrees_in_any_pieces(ct: &str, body: &[u8], limits: &Limits) {
    agrees(ct, body, limits, &[]);
    for i in 0..=body.len() {
        agrees(ct, body, limits, &[i]);
        if i + 1 < body.len() {
            agrees(ct, body, limits, &[i, i + 1]);
        }
    }
    let bytes: Vec<usize> = (1..body.len()).collect();
    agrees(ct, body, limits, &bytes);
}

fn two_parts(boundary: &str, le: &str, data: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{boundary}{le}Content-Type: application/soap+xml{le}Content-ID: <root>{le}{le}<E/>{le}--{boundary}{le}Content-ID: <att@x>{le}Content-Type: application/octet-stream{le}{le}"
    )
    .into_bytes();
    b.extend_from_slice(data);
    b.extend_from_slice(format!("{le}--{boundary}--{le}").as_bytes());
    b
}

const CT: &str =
    "multipart/related; boundary=\"bnd\"; type=\"application/soap+xml\"; start=\"<root>\"";

#[test]
fn packages_written_by_to_mime_spool_in_any_pieces() {
    let mut att = Attachment::new(
        "part-1@x",
        "application/octet-stream",
        b"\r\n--binary\r\n\0\r".to_vec(),
    );
    att.headers
        .push(("content-description".into(), "Attachment".into()));
    let p = Package {
        soap: b"<S12:Envelope/>".to_vec(),
        soap_content_type: "application/soap+xml".into(),
        attachments: vec![att, Attachment::new("part-2@x", "text/plain", Vec::new())],
    };
    let (ct, body) = p.to_mime().unwrap();
    agrees_in_any_pieces(&ct, &body, &Limits::default());
    let (g, spooled) = spool(&ct, &body, &Limits::default(), &[]).unwrap();
    assert_eq!(
        as_package(&g, &spooled).attachments[0].data,
        p.attachments[0].data
    );
    assert!(g.attachment("cid:part-2%40x").is_some());
}

#[test]
fn data_that_looks_like_a_delimiter_spools_in_any_pieces() {
    let l = Limits::default();
    for data in [
        &b""[..],
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\n--bn",
        b"\n--bnd",
        b"x--bnd\r\n--bndy",
        b"--bnd",
        b"a\r\n--bn\r\n-\r\n--",
        b"\r\r\n\n\r\n\r",
    ] {
        for le in ["\r\n", "\n"] {
            agrees_in_any_pieces(CT, &two_parts("bnd", le, data), &l);
        }
    }
}

#[test]
fn odd_bodies_spool_as_they_parse() {
    let l = Limits::default();
    let cases: Vec<(&str, &[u8])> = vec![
        // No start: the first part; LF line ends; base64 attachment; no type anywhere.
        (
            "Multipart/Related; boundary=b",
            b"--b\nContent-Type: text/xml\n\n<E/>\n--b\nContent-ID: a1\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n",
        ),
        // start names the second part.
        (
            "multipart/related; boundary=\"b\"; start=\"<root>\"",
            b"--b\r\nContent-ID: <att>\r\n\r\nDATA\r\n--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n--b--",
        ),
        (
            "multipart/related; boundary=\"b\"; start=\"<other>\"",
            b"--b\r\nContent-ID: <att>\r\n\r\nDATA\r\n--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n--b--",
        ),
        // MTOM.
        (
            "multipart/related; boundary=b; type=\"application/xop+xml\"; start-info=\"application/soap+xml\"",
            b"--b\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n\r\n<E/>\r\n--b--",
        ),
        ("application/soap+xml; charset=UTF-8", b"<E/>"),
        ("text/xml", b""),
        // Preamble, epilogue, transport padding, a close delimiter first.
        (
            "multipart/related; boundary=b",
            b"preamble\r\n--b  \r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\n1\r\n--b--\r\nepilogue\r\n--b\r\nnot a part\r\n",
        ),
        ("multipart/related; boundary=b", b"--b--\r\n\r\n<E/>\r\n--b--"),
        // Headers without a body; a part without an empty line; empty parts.
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n--b--"),
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\n--b--"),
        ("multipart/related; boundary=b", b"--b\n--b\n--b--"),
        // No close delimiter: what follows the last delimiter is not a part.
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\nlost"),
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b"),
        // Refusals.
        ("multipart/related", b"--b\r\n\r\nx\r\n--b--"),
        ("multipart/related; boundary=b", b"no parts at all"),
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>"),
        ("multipart/related; boundary=b", b"--b\r\n\r\n<E/>\r\n--b\r\n\r\nno cid\r\n--b--"),
        (
            "multipart/related; boundary=b",
            b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\n1\r\n--b\r\nContent-ID: x\r\n\r\n2\r\n--b--",
        ),
        (
            "multipart/related; boundary=b",
            b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\nContent-Transfer-Encoding: x-uu\r\n\r\n1\r\n--b--",
        ),
        (
            "multipart/related; boundary=b",
            b"--b\r\n\r\n<E/>\r\n--b\r\nno colon\r\n\r\n1\r\n--b--",
        ),
        // Found by the fuzzer: a header block that never ends, in an unknown encoding.
        (
            "multipart/related; boundary=b",
            b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\nContent-Transfer-Encoding: bin\r\n--b--",
        ),
        ("text/plain", b"<E/>"),
        ("", b"<E/>"),
    ];
    for (ct, body) in cases {
        agrees_in_any_pieces(ct, body, &l);
    }
}

#[test]
fn every_truncation_is_read_as_parse_reads_it() {
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 256) as u8).collect();
    for le in ["\r\n", "\n"] {
        let body = two_parts("bnd", le, &data);
        for cut in 0..=body.len() {
            agrees(CT, &body[..cut], &Limits::default(), &[]);
            agrees(CT, &body[..cut], &Limits::default(), &[cut / 2]);
        }
    }
}

#[test]
fn limits_apply_while_spooling() {
    let mut body = Vec::new();
    for i in 0..70 {
        body.extend_from_slice(format!("--b\r\nContent-ID: <{i}>\r\n\r\nx\r\n").as_bytes());
    }
    body.extend_from_slice(b"--b--\r\n");
    let ct = "multipart/related; boundary=b";
    agrees(ct, &body, &Limits::default(), &[]);
    let few = Limits {
        max_parts: 70,
        ..Default::default()
    };
    agrees(ct, &body, &few, &[]);
    let small = Limits {
        max_envelope: 3,
        max_part: 3,
        ..Default::default()
    };
    agrees("application/soap+xml", b"<E/>", &small, &[2]);
    agrees(
        ct,
        b"--b\r\n\r\n<E>\r\n--b\r\nContent-ID: <a>\r\n\r\n1234\r\n--b--",
        &small,
        &[],
    );
    agrees(
        ct,
        b"--b\r\n\r\n<E/>\r\n--b\r\nContent-ID: <a>\r\n\r\n1234\r\n--b--",
        &small,
        &[],
    );
    // Too many delimiters are refused while the body still arrives.
    let mut s = Spooler::new(ct, Cursor::new(Vec::new()), &Limits::default()).unwrap();
    let e = body
        .chunks(10)
        .map(|c| s.feed(c))
        .find_map(Result::err)
        .expect("refused before the end");
    assert_eq!(e.code(), ErrorCode::TooLarge);
    // Header blocks without an end are not kept, and refused when the part is one.
    let mut body = b"--b\r\n\r\n<E/>\r\n--b\r\n".to_vec();
    body.extend_from_slice(&vec![b'a'; 400_000]);
    agrees(ct, &body, &Limits::default(), &[]);
    body.extend_from_slice(b"\r\n\r\nbody\r\n--b--");
    agrees(ct, &body, &Limits::default(), &[100_000]);
}

#[test]
fn large_binary_parts_are_hashed_not_kept() {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let body = two_parts("bnd", "\r\n", &data);
    let mut s = Spooler::new(CT, Cursor::new(Vec::new()), &Limits::default()).unwrap();
    for c in body.chunks(65_536) {
        s.feed(c).unwrap();
    }
    let (p, _) = s.finish().unwrap();
    let SpooledBody::File {
        offset,
        len,
        sha256,
    } = p.attachments[0].body
    else {
        panic!("a binary part stays in the spool");
    };
    assert_eq!(len, data.len() as u64);
    assert_eq!(&body[offset as usize..][..len as usize], &data[..]);
    assert_eq!(sha256, openssl::sha::sha256(&data));
}

/// The fuzzer's seeds of AS4 packages (fuzz/seeds/as4_package) spool as they parse, in pieces.
#[test]
fn the_fuzz_seeds_spool_as_they_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/as4_package");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let data = std::fs::read(entry.path()).unwrap();
        for ct in [
            "multipart/related; boundary=b; type=\"application/soap+xml\"; start=\"<soap@x>\"",
            "application/soap+xml",
        ] {
            let n = data.len();
            agrees(ct, &data, &Limits::default(), &[]);
            agrees(ct, &data, &Limits::default(), &[n / 3, n / 2, n - n / 5]);
        }
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}

/// A spool that keeps nothing (for bodies too large to hold in a test).
struct Discard(u64);

impl std::io::Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Read for Discard {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
}

impl std::io::Seek for Discard {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

/// Feed `pieces` (then finish); the error, how many bytes had been fed when it came, and
/// whether it came from `finish`.
fn refused_at<'a>(
    ct: &str,
    limits: &Limits,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Error, u64, bool) {
    let mut s = Spooler::new(ct, Discard(0), limits).unwrap();
    for p in pieces {
        if let Err(e) = s.feed(p) {
            return (e, s.received(), false);
        }
    }
    let n = s.received();
    match s.finish() {
        Err(e) => (e, n, true),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn a_second_start_part_is_refused_when_it_ends() {
    let ct = "multipart/related; boundary=b; start=\"<root>\"";
    let big = vec![b'x'; 1 << 20];
    let mut pieces: Vec<&[u8]> = vec![b"--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n"];
    for _ in 0..6 {
        pieces.push(b"--b\r\nContent-ID: <root>\r\n\r\n");
        pieces.extend(std::iter::repeat_n(&big[..], 3));
        pieces.push(b"\r\n");
    }
    pieces.push(b"--b--\r\n");
    let (e, n, at_finish) = refused_at(ct, &Limits::default(), pieces.iter().copied());
    assert_eq!(e.code(), ErrorCode::MalformedMime, "{e}");
    assert!(
        e.to_string().contains("two MIME parts carry the start"),
        "{e}"
    );
    assert!(!at_finish, "refused only at the end ({n} bytes)");
    assert!(
        n < 4 << 20,
        "refused after {n} bytes, not when the second start part ended"
    );
    // As `Package::parse` refuses it, in any pieces.
    let small = b"--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n--b\r\nContent-ID: <x>\r\n\r\n1\r\n--b\r\nContent-ID: <root>\r\n\r\n<F/>\r\n--b--";
    agrees_in_any_pieces(ct, small, &Limits::default());
    // Not a part (no delimiter follows it), so not refused.
    let open = b"--b\r\nContent-ID: <root>\r\n\r\n<E/>\r\n--b\r\nContent-ID: <root>\r\n\r\n<F/>";
    agrees_in_any_pieces(ct, open, &Limits::default());
}

#[test]
fn a_soap_part_past_its_limit_is_refused_while_it_arrives() {
    let small = Limits {
        max_envelope: 1000,
        ..Default::default()
    };
    let line = b"PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+PEU+\r\n";
    for (ct, head) in [
        (
            "multipart/related; boundary=b; start=\"<root>\"",
            &b"--b\r\nContent-ID: <root>\r\nContent-Transfer-Encoding: base64\r\n\r\n"[..],
        ),
        (
            "multipart/related; boundary=b",
            &b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n"[..],
        ),
        ("multipart/related; boundary=b", &b"--b\r\n\r\n"[..]),
    ] {
        let pieces = std::iter::once(head).chain(std::iter::repeat_n(&line[..], 100_000));
        let (e, n, at_finish) = refused_at(ct, &small, pieces);
        assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
        assert!(!at_finish && n < 4000, "refused after {n} bytes");
    }
    // Within it, as `Package::parse` reads it.
    let mut body = b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    for _ in 0..9 {
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b"--b--\r\n");
    agrees("multipart/related; boundary=b", &body, &small, &[]);
    agrees("multipart/related; boundary=b", &body, &small, &[100, 500]);
}

#[test]
fn encoded_attachments_are_bounded_in_all() {
    let ct = "multipart/related; boundary=b";
    let mut chunk = Vec::new();
    while chunk.len() < 1 << 20 {
        chunk.extend_from_slice(
            b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n",
        );
    }
    // Parts of 20 MiB each, every one under MAX_ENCODED_PART: their total is bounded.
    let mut pieces: Vec<&[u8]> = vec![b"--b\r\n\r\n<E/>\r\n"];
    let heads: Vec<String> = (0..6)
        .map(|i| format!("--b\r\nContent-ID: <a{i}>\r\nContent-Transfer-Encoding: base64\r\n\r\n"))
        .collect();
    for h in &heads {
        pieces.push(h.as_bytes());
        pieces.extend(std::iter::repeat_n(&chunk[..], 20));
        pieces.push(b"\r\n");
    }
    pieces.push(b"--b--\r\n");
    let (e, n, at_finish) = refused_at(ct, &Limits::default(), pieces.iter().copied());
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    assert!(!at_finish, "refused only at the end");
    assert!(
        n <= MAX_ENCODED_TOTAL + (2 << 20),
        "refused after {n} bytes"
    );
}

#[test]
fn boundaries_outside_rfc_2046_are_refused_by_both_readers() {
    let body = b"--b\r\n\r\n<E/>\r\n--b--\r\n";
    for ct in [
        "multipart/related; boundary*=UTF-8''b%0A",
        "multipart/related; boundary*=UTF-8''b%0D",
        "multipart/related; boundary*=UTF-8''b%00",
        "multipart/related; boundary=\"b \"",
        "multipart/related; boundary=\"b;c\"",
    ] {
        let e = Package::parse(ct, body, &Limits::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedMime, "{ct}: {e}");
        let e = Spooler::new(ct, Cursor::new(Vec::new()), &Limits::default())
            .err()
            .expect("refused");
        assert_eq!(e.code(), ErrorCode::MalformedMime, "{ct}: {e}");
    }
    let long = format!("multipart/related; boundary={}", "x".repeat(71));
    assert!(Package::parse(&long, body, &Limits::default()).is_err());
    // RFC 2046's own characters are fine.
    let b = "09AZaz'()+_,-./:=? x";
    let ct = format!("multipart/related; boundary=\"{b}\"");
    let body = format!("--{b}\r\n\r\n<E/>\r\n--{b}--\r\n");
    assert!(Package::parse(&ct, body.as_bytes(), &Limits::default()).is_ok());
    agrees_in_any_pieces(&ct, body.as_bytes(), &Limits::default());
}
