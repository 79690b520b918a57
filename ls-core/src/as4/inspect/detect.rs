//! What the input is: an AS4 message or not, and the small readers of its first lines.

use crate::as4::package::media_type;

/// Whether `input` should be read as an AS4 message rather than a CMS/S-MIME object: a
/// Content-Type was given, or it is an XML document, a MIME body whose first part is a SOAP
/// envelope, or an HTTP capture / MIME entity of type `multipart/related`, `application/soap+xml`
/// or `text/xml`.
pub fn is_as4(input: &[u8], content_type: Option<&str>) -> bool {
    if content_type.is_some() {
        return true;
    }
    let head = &input[..input.len().min(64 << 10)];
    let trimmed = trim_start(head);
    if trimmed.starts_with(b"<") {
        return true;
    }
    if boundary_of_bare_body(trimmed).is_some() {
        // A multipart body without its headers: AS4 when its first part is a SOAP envelope.
        let first_nl = trimmed
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(trimmed.len());
        let rest = &trimmed[(first_nl + 1).min(trimmed.len())..];
        return header_content_type(rest).is_some_and(|ct| is_soap_type(&media_type(&ct)));
    }
    match header_content_type(skip_start_line(head)) {
        Some(ct) => {
            let mt = media_type(&ct);
            mt == "multipart/related" || is_soap_type(&mt)
        }
        None => false,
    }
}

pub(super) fn is_cid(uri: &str) -> bool {
    uri.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("cid:"))
}

pub(super) fn trim_start(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn is_soap_type(mt: &str) -> bool {
    matches!(
        mt,
        "application/soap+xml" | "text/xml" | "application/xop+xml"
    )
}

/// `BOUNDARY` when `b` starts with a multipart delimiter line `--BOUNDARY`.
pub(super) fn boundary_of_bare_body(b: &[u8]) -> Option<String> {
    let line_end = b.iter().take(200).position(|&c| c == b'\n')?;
    let line = std::str::from_utf8(&b[..line_end]).ok()?.trim_end();
    let boundary = line.strip_prefix("--")?;
    let ok = !boundary.is_empty()
        && boundary.len() <= 70
        && boundary.bytes().all(|c| c.is_ascii_graphic() || c == b' ')
        && !boundary.contains('"');
    ok.then(|| boundary.to_string())
}

/// The input after an HTTP request or status line, if it starts with one.
pub(super) fn skip_start_line(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..end];
    let is_start = match line.iter().position(|&c| c == b':') {
        None => !line.iter().all(|c| c.is_ascii_whitespace()),
        Some(colon) => {
            line.starts_with(b"HTTP/") || line[..colon].iter().any(|c| c.is_ascii_whitespace())
        }
    };
    if is_start {
        &b[(end + 1).min(b.len())..]
    } else {
        b
    }
}

/// The Content-Type of a header block (up to its empty line), unfolded.
pub(super) fn header_content_type(b: &[u8]) -> Option<String> {
    let mut found: Option<String> = None;
    let mut in_ct = false;
    for line in b.split(|&c| c == b'\n').take(200) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if in_ct {
                if let Some(f) = &mut found {
                    f.push(' ');
                    f.push_str(line.trim());
                }
            }
            continue;
        }
        in_ct = false;
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        if name.trim().eq_ignore_ascii_case("content-type") && found.is_none() {
            found = Some(value.trim().to_string());
            in_ct = true;
        }
    }
    found
}
