//! Inflating (zlib for CMS CompressedData, raw deflate inside gzip for AS4 payloads) with an
//! output limit that costs nothing to enforce.
//!
//! Small outputs are inflated straight into their buffer. Once the output passes
//! [`DIRECT_MAX`], inflating starts over into a 32 KiB ring buffer that only counts the bytes
//! (a counting sink): a decompression bomb is refused as soon as the count passes the limit,
//! having held at most `DIRECT_MAX` + 32 KiB, whatever it expands to. Output within the limit is
//! then inflated once more into a buffer of exactly its size.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Outputs up to this size are inflated directly, once.
pub(crate) const DIRECT_MAX: usize = 4 << 20;
/// The ring buffer of the counting pass (deflate's window is 32 KiB).
const RING: usize = 32 * 1024;

/// Why inflating stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The output would be larger than the limit: at least `at_least` bytes.
    TooLarge { at_least: u64 },
    /// The input ends before the compressed stream does.
    Truncated,
    /// Not valid compressed data (or a zlib checksum mismatch).
    Corrupt(String),
}

/// The inflated bytes and how many input bytes the compressed stream used.
#[derive(Debug)]
pub(crate) struct Inflated {
    pub data: Vec<u8>,
    pub used: usize,
}

fn flags(zlib: bool) -> u32 {
    if zlib {
        inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER | inflate_flags::TINFL_FLAG_COMPUTE_ADLER32
    } else {
        0
    }
}

fn failed(status: TINFLStatus) -> Failure {
    match status {
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => Failure::Truncated,
        TINFLStatus::Adler32Mismatch => Failure::Corrupt("checksum mismatch".into()),
        other => Failure::Corrupt(format!("{other:?}")),
    }
}

/// Inflate `input` (zlib when `zlib`, else raw deflate; data after the end of the stream is
/// left for the caller, see [`Inflated::used`]) into at most `limit` bytes.
pub(crate) fn inflate(input: &[u8], zlib: bool, limit: u64) -> Result<Inflated, Failure> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // 1. Directly, while the output stays small.
    let cap = limit.min(DIRECT_MAX);
    match into_buffer(
        input,
        zlib,
        cap,
        input.len().saturating_mul(4).clamp(64, cap.max(64)),
    )? {
        Some(done) => return Ok(done),
        None if cap == limit => {
            return Err(Failure::TooLarge {
                at_least: limit as u64 + 1,
            })
        }
        None => {}
    }
    // 2. Count, holding nothing but the window.
    let size = count(input, zlib, limit)?;
    // 3. Exactly the size counted.
    match into_buffer(input, zlib, size, size)? {
        Some(done) if done.data.len() == size => Ok(done),
        _ => Err(Failure::Corrupt(
            "the data inflated differently twice".into(),
        )),
    }
}

/// Inflate into one buffer that may grow from `initial` to `cap` bytes: `None` when the output
/// would be longer than `cap`.
fn into_buffer(
    input: &[u8],
    zlib: bool,
    cap: usize,
    initial: usize,
) -> Result<Option<Inflated>, Failure> {
    let flags = flags(zlib) | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut state = Box::<DecompressorOxide>::default();
    let mut out = vec![0u8; initial.min(cap)];
    let (mut pos, mut used) = (0, 0);
    loop {
        let (status, in_used, out_used) =
            decompress(&mut state, &input[used..], &mut out, pos, flags);
        used += in_used;
        pos += out_used;
        match status {
            TINFLStatus::Done => {
                out.truncate(pos);
                return Ok(Some(Inflated { data: out, used }));
            }
            TINFLStatus::HasMoreOutput => {
                if out.len() >= cap {
                    return Ok(None);
                }
                let grown = out.len().saturating_mul(2).max(64).min(cap);
                out.resize(grown, 0);
            }
            other => return Err(failed(other)),
        }
    }
}

/// The size of the output, counted through a ring buffer; `TooLarge` as soon as it passes
/// `limit`.
fn count(input: &[u8], zlib: bool, limit: usize) -> Result<usize, Failure> {
    let flags = flags(zlib);
    let mut state = Box::<DecompressorOxide>::default();
    let mut ring = vec![0u8; RING];
    let (mut pos, mut used, mut total) = (0usize, 0usize, 0usize);
    loop {
        let (status, in_used, out_used) =
            decompress(&mut state, &input[used..], &mut ring, pos, flags);
        used += in_used;
        total = total.saturating_add(out_used);
        pos = (pos + out_used) & (RING - 1);
        if total > limit {
            return Err(Failure::TooLarge {
                at_least: total as u64,
            });
        }
        match status {
            TINFLStatus::Done => return Ok(total),
            TINFLStatus::HasMoreOutput => {}
            other => return Err(failed(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};

    #[test]
    fn small_and_large_outputs_round_trip() {
        for n in [
            0usize,
            1,
            1000,
            DIRECT_MAX - 1,
            DIRECT_MAX,
            DIRECT_MAX + 1,
            3 * DIRECT_MAX + 7,
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            for zlib in [false, true] {
                let z = if zlib {
                    compress_to_vec_zlib(&data, 6)
                } else {
                    compress_to_vec(&data, 6)
                };
                let mut with_tail = z.clone();
                with_tail.extend_from_slice(b"TAIL");
                let got = inflate(&with_tail, zlib, n as u64).unwrap();
                assert_eq!(got.data, data, "{n} {zlib}");
                assert_eq!(got.used, z.len());
                // One byte less than the output is too little, whichever pass notices.
                if n > 0 {
                    assert!(matches!(
                        inflate(&z, zlib, n as u64 - 1),
                        Err(Failure::TooLarge { .. })
                    ));
                }
            }
        }
    }

    #[test]
    fn bombs_are_refused_while_counting() {
        // 64 MiB of zeros in ~64 KiB.
        let z = compress_to_vec_zlib(&vec![0u8; 64 << 20], 9);
        assert!(z.len() < 100_000, "{}", z.len());
        match inflate(&z, true, 16 << 20) {
            Err(Failure::TooLarge { at_least }) => assert!(at_least > 16 << 20),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_corrupt_input() {
        let z = compress_to_vec_zlib(b"hello hello hello hello", 6);
        assert_eq!(
            inflate(&z[..z.len() - 6], true, 1000).unwrap_err(),
            Failure::Truncated
        );
        let mut bad = z.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            inflate(&bad, true, 1000),
            Err(Failure::Corrupt(_))
        ));
        assert!(matches!(
            inflate(b"\xff\xff\xff\xff", false, 1000),
            Err(Failure::Corrupt(_))
        ));
    }
}
