//! zlib compression (RFC 1950) for CMS CompressedData (RFC 3274), at `gzip -6`'s ratio and
//! faster than `pigz -6` on the same cores.
//!
//! The input is cut into chunks of [`CHUNK`] bytes. Each chunk is compressed as raw deflate by
//! zlib-rs, primed with the 32 KiB before it as its dictionary (so matches reach back across the
//! cut, as `pigz` does), and ended with a sync flush (an empty stored block that byte-aligns it);
//! the last chunk ends with the final block instead. The chunks are compressed on all cores
//! and their outputs concatenated behind one zlib header, which makes one valid deflate stream;
//! the Adler-32 of the whole input is combined from the chunks' own. Any zlib reader inflates
//! it (tested: C zlib through Python, asn1crypto after `openssl cms`, pyas2lib).
//!
//! The output depends only on the input bytes and the level (with the chunk size, a constant),
//! not on the number of threads nor on how the input is handed over ([`ZlibEncoder::update`]
//! in any pieces). Memory is bounded: at most two chunks per thread are in flight, whatever the
//! input's size, so the streaming seal can call [`ZlibEncoder`] chunk by chunk (measured while
//! fed 512 MiB in 64 KiB pieces: peak RSS +3 MiB on one thread, +13 MiB on two, +43 MiB on
//! eight; about half of it is what glibc's per-thread arenas keep of the freed deflate
//! states). The last chunk is compressed on the calling thread, so a document that fits in one
//! chunk starts no thread.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use zlib_rs::{DeflateFlush, Status};

/// The size of the chunks compressed independently: large enough that starting one (a new
/// state, the 32 KiB dictionary hashed) costs ~1 % of compressing it, small enough that the
/// chunks in flight stay a few MiB (measured: 128 KiB is 3 % slower, 1 MiB no faster, and the
/// ratio is the same within 0.05 %).
pub const CHUNK: usize = 512 << 10;
/// The dictionary of a chunk: deflate's window.
const WINDOW: usize = 32 * 1024;
/// At most this many threads: beyond it the chunks in flight would cost more memory than the
/// speed is worth.
const MAX_THREADS: usize = 8;

/// The level sealing uses unless told otherwise: gzip -6's ratio (see docs/ARCHITECTURE.md).
pub const DEFAULT_LEVEL: u8 = 6;

/// A compressed chunk: `out[..written]`, with the buffers handed back for the next chunks.
struct Compressed {
    out: Vec<u8>,
    written: usize,
    adler: u32,
    /// The chunk's input, given back (its length counts for the Adler-32).
    input: Vec<u8>,
}

/// A chunk that is not the last, its dictionary, a buffer for its output, and where the result
/// goes.
struct Job {
    dict: Vec<u8>,
    input: Vec<u8>,
    out: Vec<u8>,
    done: mpsc::SyncSender<Result<Compressed>>,
}

/// A compressing thread.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

/// Raw deflate of `input` at `level`, primed with `dict`, ended with a sync flush or, when
/// `last`, the final block, into `out` (grown as needed, its length kept: only
/// `out[..written]` is the chunk); `(written, Adler-32 of input)`.
fn compress_chunk(
    level: u8,
    dict: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> Result<(usize, u32)> {
    // A new state for every chunk: a state reset after one chunk compresses the next one
    // validly but not byte for byte as a new one would (stale hash chains), and the output
    // must not depend on which thread compressed what. A new state costs ~5 µs.
    let mut d = zlib_rs::Deflate::new(level.min(9) as i32, false, 15);
    if !dict.is_empty() {
        d.set_dictionary(dict)
            .map_err(|e| Error::Internal(format!("deflate dictionary: {}", e.as_str())))?;
    }
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    // Room for the worst case (stored blocks) in one go; grown only if ever short. The
    // buffers are reused from chunk to chunk, so this zero-fills only once.
    let bound = zlib_rs::compress_bound(input.len()) + 16;
    if out.len() < bound {
        out.resize(bound, 0);
    }
    let mut used = 0;
    let mut written = 0;
    loop {
        let before = (d.total_in(), d.total_out());
        let status = d
            .compress(&input[used..], &mut out[written..], flush)
            .map_err(|e| Error::Internal(format!("deflate: {}", e.as_str())))?;
        used += (d.total_in() - before.0) as usize;
        written += (d.total_out() - before.1) as usize;
        if status == Status::StreamEnd {
            break;
        }
        if written == out.len() {
            // Out of room (never with the bound above): more room, and go on.
            out.resize(out.len() * 2, 0);
        } else if !last && used == input.len() {
            // Room left after a sync flush: all of it is out.
            break;
        } else if before == (d.total_in(), d.total_out()) {
            return Err(Error::Internal("deflate made no progress".into()));
        }
    }
    Ok((written, zlib_rs::adler32::adler32(1, input)))
}

/// The zlib header: deflate with a 32 KiB window, the level class stated (RFC 1950 FLEVEL).
fn header(level: u8) -> [u8; 2] {
    let flevel: u16 = match level {
        0 | 1 => 0,
        2..=5 => 1,
        6 => 2,
        _ => 3,
    };
    let cmf: u16 = 0x78;
    let flg = flevel << 6;
    let check = 31 - (cmf * 256 + flg) % 31;
    [cmf as u8, (flg + check % 31) as u8]
}

/// The number of compressing threads for this machine: its cores (as the process may use
/// them), at most [`MAX_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_THREADS)
}

/// A zlib stream written chunk by chunk: [`update`](Self::update) with the input in any
/// pieces, then [`finish`](Self::finish). Compressed bytes are appended to the caller's buffer
/// as chunks complete, in order.
pub struct ZlibEncoder {
    level: u8,
    chunk: usize,
    threads: usize,
    /// Input not handed over yet: at most one chunk. A full chunk is held until more input
    /// comes, so that the last chunk is always known as last.
    pending: Vec<u8>,
    /// The last [`WINDOW`] bytes before `pending`: its dictionary.
    dict: Vec<u8>,
    /// Chunks being compressed, oldest first.
    in_flight: VecDeque<mpsc::Receiver<Result<Compressed>>>,
    workers: Vec<Worker>,
    next_worker: usize,
    /// Input and output buffers of chunks done, reused for the next ones: no chunk-sized
    /// allocation per chunk, and output buffers are zero-filled once.
    spare_inputs: Vec<Vec<u8>>,
    spare_outs: Vec<Vec<u8>>,
    adler: u32,
    header_written: bool,
}

impl ZlibEncoder {
    /// An encoder at `level` (0–9), on [`default_threads`] threads.
    pub fn new(level: u8) -> Self {
        Self::with_params(level, CHUNK, default_threads())
    }

    /// An encoder with a chunk size (at least the 32 KiB window) and a number of threads of
    /// its own choosing (for the benchmark; the output depends on `chunk`, not on `threads`).
    pub fn with_params(level: u8, chunk: usize, threads: usize) -> Self {
        ZlibEncoder {
            level: level.min(9),
            chunk: chunk.max(WINDOW),
            threads: threads.max(1),
            pending: Vec::new(),
            dict: Vec::new(),
            in_flight: VecDeque::new(),
            workers: Vec::new(),
            next_worker: 0,
            spare_inputs: Vec::new(),
            spare_outs: Vec::new(),
            adler: 1,
            header_written: false,
        }
    }

    /// Compress `input`, appending what is ready to `out`.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if !self.header_written {
            out.extend_from_slice(&header(self.level));
            self.header_written = true;
        }
        while !input.is_empty() {
            if self.pending.len() == self.chunk {
                let next = self.spare_inputs.pop().unwrap_or_default();
                let full = std::mem::replace(&mut self.pending, next);
                self.dispatch(full, out)?;
            }
            if self.pending.capacity() == 0 {
                // The first piece of a small document takes what it needs; a chunk after it.
                self.pending
                    .reserve_exact(self.chunk.min(input.len().max(WINDOW)));
            }
            let take = (self.chunk - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Compress the rest and append it, then the Adler-32 of the whole input.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        self.update(&[], out)?;
        // The last chunk is compressed here, while the threads finish theirs.
        let mut buf = self.spare_outs.pop().unwrap_or_default();
        let (written, adler) =
            compress_chunk(self.level, &self.dict, &self.pending, true, &mut buf)?;
        while !self.in_flight.is_empty() {
            self.collect_oldest(out)?;
        }
        out.extend_from_slice(&buf[..written]);
        self.adler =
            zlib_rs::adler32::adler32_combine(self.adler, adler, self.pending.len() as u64);
        out.extend_from_slice(&self.adler.to_be_bytes());
        Ok(())
    }

    /// Hand a full chunk that is not the last to a thread (or compress it here when there is
    /// one thread), having collected the oldest chunks while too many are in flight.
    fn dispatch(&mut self, input: Vec<u8>, out: &mut Vec<u8>) -> Result<()> {
        let dict = std::mem::replace(&mut self.dict, input[input.len() - WINDOW..].to_vec());
        let buf = self.spare_outs.pop().unwrap_or_default();
        if self.threads == 1 {
            let mut buf = buf;
            let (written, adler) = compress_chunk(self.level, &dict, &input, false, &mut buf)?;
            self.append(
                Compressed {
                    out: buf,
                    written,
                    adler,
                    input,
                },
                out,
            );
            return Ok(());
        }
        while self.in_flight.len() >= 2 * self.threads {
            self.collect_oldest(out)?;
        }
        if self.workers.len() < self.threads {
            self.workers.push(spawn_worker(self.level)?);
        }
        let (done, result) = mpsc::sync_channel(1);
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker += 1;
        let job = Job {
            dict,
            input,
            out: buf,
            done,
        };
        let sent = worker.jobs.as_ref().map(|j| j.send(job).is_ok());
        if sent != Some(true) {
            return Err(Error::Internal("a compressing thread ended".into()));
        }
        self.in_flight.push_back(result);
        Ok(())
    }

    fn collect_oldest(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(oldest) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let c = oldest
            .recv()
            .map_err(|_| Error::Internal("a compressing thread ended".into()))??;
        self.append(c, out);
        Ok(())
    }

    /// Append a compressed chunk, count it in the Adler-32, keep its buffers.
    fn append(&mut self, mut c: Compressed, out: &mut Vec<u8>) {
        out.extend_from_slice(&c.out[..c.written]);
        self.adler = zlib_rs::adler32::adler32_combine(self.adler, c.adler, c.input.len() as u64);
        c.input.clear();
        self.spare_inputs.push(c.input);
        self.spare_outs.push(c.out);
    }
}

fn spawn_worker(level: u8) -> Result<Worker> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let handle = std::thread::Builder::new()
        .name("ls-deflate".into())
        .spawn(move || {
            for mut job in queue {
                let r = compress_chunk(level, &job.dict, &job.input, false, &mut job.out);
                let _ = job.done.send(r.map(|(written, adler)| Compressed {
                    out: job.out,
                    written,
                    adler,
                    input: job.input,
                }));
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start a compressing thread: {e}")))?;
    Ok(Worker {
        jobs: Some(jobs),
        handle: Some(handle),
    })
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread once its current chunk is done.
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The zlib stream of `parts` written one after the other, at `level`.
pub fn zlib(parts: &[&[u8]], level: u8) -> Result<Vec<u8>> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(total / 4 + 64);
    let mut e = ZlibEncoder::new(level);
    for p in parts {
        e.update(p, &mut out)?;
    }
    e.finish(&mut out)?;
    Ok(out)
}

/// The raw deflate size of `data` at level 1 (a quick trial: does it shrink?).
pub(crate) fn trial_size(data: &[u8]) -> Result<usize> {
    Ok(compress_chunk(1, &[], data, true, &mut Vec::new())?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inflate::inflate;

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 100);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!(
                    "<Line n=\"{i}\"><Amount>{}.{:02}</Amount></Line>\n",
                    i * 7919 % 100_003,
                    i % 100
                )
                .as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn roundtrip(data: &[u8], chunk: usize, threads: usize) -> Vec<u8> {
        let mut z = Vec::new();
        let mut e = ZlibEncoder::with_params(6, chunk, threads);
        e.update(data, &mut z).unwrap();
        e.finish(&mut z).unwrap();
        let back = inflate(&z, true, u64::MAX).unwrap();
        assert_eq!(back.used, z.len());
        assert!(
            back.data == data,
            "len {} chunk {chunk} threads {threads}",
            data.len()
        );
        z
    }

    #[test]
    fn header_check_bits() {
        for level in 0..=9 {
            let h = header(level);
            assert_eq!((h[0] as u16 * 256 + h[1] as u16) % 31, 0, "{level}");
            assert_eq!(h[0], 0x78);
        }
        assert_eq!(header(6), [0x78, 0x9c]);
        assert_eq!(header(1), [0x78, 0x01]);
        assert_eq!(header(9), [0x78, 0xda]);
    }

    #[test]
    fn chunk_boundaries_and_threads_give_the_same_stream() {
        let chunk = WINDOW * 2;
        let data = text(chunk * 5 + 17);
        for n in [
            0,
            1,
            chunk - 1,
            chunk,
            chunk + 1,
            3 * chunk,
            3 * chunk + 1,
            data.len(),
        ] {
            let one = roundtrip(&data[..n], chunk, 1);
            for threads in [2, 3, 8] {
                assert_eq!(roundtrip(&data[..n], chunk, threads), one, "{n} {threads}");
            }
        }
    }

    #[test]
    fn pieces_of_any_size_give_the_same_stream() {
        let chunk = WINDOW;
        let data = text(chunk * 4 + 5);
        let whole = roundtrip(&data, chunk, 2);
        for piece in [1, 7, 4096, chunk - 1, chunk, chunk + 1] {
            let mut z = Vec::new();
            let mut e = ZlibEncoder::with_params(6, chunk, 2);
            for p in data.chunks(piece) {
                e.update(p, &mut z).unwrap();
                // Empty updates change nothing.
                e.update(&[], &mut z).unwrap();
            }
            e.finish(&mut z).unwrap();
            assert_eq!(z, whole, "{piece}");
        }
    }

    #[test]
    fn incompressible_and_every_level() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..3 * WINDOW + 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for level in 0..=9 {
            let z = {
                let mut z = Vec::new();
                let mut e = ZlibEncoder::with_params(level, WINDOW, 2);
                e.update(&noise, &mut z).unwrap();
                e.finish(&mut z).unwrap();
                z
            };
            assert_eq!(inflate(&z, true, u64::MAX).unwrap().data, noise, "{level}");
        }
    }

    #[test]
    fn the_dictionary_keeps_the_ratio() {
        let data = text(8 * WINDOW);
        let chunked = roundtrip(&data, WINDOW, 2).len();
        let whole = roundtrip(&data, data.len(), 1).len();
        // Sync flushes (5 bytes) and the cut cost little; without the dictionary each chunk
        // would start from nothing.
        assert!(chunked < whole + whole / 50, "{chunked} vs {whole}");
    }
}
