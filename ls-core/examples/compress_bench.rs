//! The compression candidates on one file, in process (the file read first, not timed), for
//! `scripts/bench-compress.sh`: `compress_bench FILE [--quick]`.
//!
//! - `miniz-1`: what sealing used before (miniz_oxide, zlib level 1, one thread); `miniz-6` as a
//!   reference (left out with `--quick`);
//! - `zlib-rs-L`: zlib-rs at level L as one stream on one thread, what flate2 with its zlib-rs
//!   backend does (flate2 is a thin wrapper around the same calls);
//! - `chunked-L/SIZE/T`: `ls_core::deflate::ZlibEncoder` at level L, chunks of SIZE KiB, T threads
//!   (the chosen scheme: what `seal` does at level 6 with SIZE = `deflate::CHUNK` and T = the
//!   machine's cores, at most 8).
//!
//! Each line `RESULT name compressed_bytes seconds`; every chunked output is inflated again
//! (untimed) and compared with the input.

use ls_core::deflate::{default_threads, ZlibEncoder, CHUNK};
use std::time::Instant;

fn zlib_rs_stream(data: &[u8], level: i32) -> Vec<u8> {
    use zlib_rs::{Deflate, DeflateFlush, Status};
    let mut d = Deflate::new(level, true, 15);
    let mut out = vec![0u8; zlib_rs::compress_bound(data.len()) + 64];
    let mut used = 0;
    let mut written = 0;
    // Input in 1 GiB-safe pieces (the API takes at most u32::MAX bytes per call).
    loop {
        let (i0, o0) = (d.total_in(), d.total_out());
        let end = (used + (1 << 30)).min(data.len());
        let flush = if end == data.len() {
            DeflateFlush::Finish
        } else {
            DeflateFlush::NoFlush
        };
        let status = d
            .compress(&data[used..end], &mut out[written..], flush)
            .expect("deflate");
        used += (d.total_in() - i0) as usize;
        written += (d.total_out() - o0) as usize;
        if status == Status::StreamEnd {
            break;
        }
    }
    out.truncate(written);
    out
}

fn chunked(data: &[u8], level: u8, chunk: usize, threads: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3);
    let mut e = ZlibEncoder::with_params(level, chunk, threads);
    // Fed in 64 KiB pieces, as a streaming seal would.
    for piece in data.chunks(64 << 10) {
        e.update(piece, &mut out).expect("deflate");
    }
    e.finish(&mut out).expect("deflate");
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: compress_bench FILE [--quick]");
    let quick = args.iter().any(|a| a == "--quick");
    let data = std::fs::read(path).expect("read the input");
    let threads = default_threads();
    eprintln!(
        "compress_bench: {} bytes, {threads} threads, load average {}",
        data.len(),
        loadavg()
    );

    let run = |name: String, f: &dyn Fn() -> Vec<u8>, check: bool| {
        let t = Instant::now();
        let z = f();
        let secs = t.elapsed().as_secs_f64();
        println!("RESULT {name} {} {secs:.3}", z.len());
        if check {
            let back = miniz_oxide::inflate::decompress_to_vec_zlib(&z).expect("inflates");
            assert!(
                back == data,
                "{name}: the output does not inflate to the input"
            );
        }
    };

    run(
        "miniz-1".into(),
        &|| miniz_oxide::deflate::compress_to_vec_zlib(&data, 1),
        false,
    );
    if !quick {
        run(
            "miniz-6".into(),
            &|| miniz_oxide::deflate::compress_to_vec_zlib(&data, 6),
            false,
        );
    }
    for level in 1..=6 {
        run(
            format!("zlib-rs-{level}"),
            &|| zlib_rs_stream(&data, level),
            false,
        );
    }
    let k = CHUNK >> 10;
    for level in 1..=6u8 {
        run(
            format!("chunked-{level}/{k}/{threads}"),
            &|| chunked(&data, level, CHUNK, threads),
            true,
        );
    }
    if !quick {
        // Other chunk sizes, and one thread (the same bytes as on all threads).
        for other in [128 << 10, 1 << 20] {
            run(
                format!("chunked-6/{}/{threads}", other >> 10),
                &|| chunked(&data, 6, other, threads),
                true,
            );
        }
        run(
            format!("chunked-6/{k}/1"),
            &|| chunked(&data, 6, CHUNK, 1),
            true,
        );
    }
    eprintln!("compress_bench: load average at the end {}", loadavg());
}
