//! File-system building blocks of the client's journal: synced and atomic writes, no-clobber
//! moves, unique names, and lock files that a crashed process does not leave behind for good.

use ls_core::bytes::{self, hex};
use ls_core::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// Random lowercase hex of `bytes` random bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // rand_bytes only fails when OpenSSL's generator is broken; fall back to the clock then.
    if openssl::rand::rand_bytes(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (std::process::id() as u8);
        }
    }
    hex(&b)
}

/// A random number in `[0, 1)`.
pub(crate) fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = openssl::rand::rand_bytes(&mut b);
    u32::from_be_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

/// Make a folder's entries durable (a new, renamed or removed file). A no-op where folders
/// cannot be opened (Windows).
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let f = File::open(dir).map_err(|e| io_err("cannot open folder", dir, e))?;
        f.sync_all()
            .map_err(|e| io_err("cannot sync folder", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create or truncate `path`, write `data` and sync it to disk (not its folder entry).
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    // Never through a planted symlink: whatever is at the path is removed, the file is new.
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot replace", path, e)),
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err("cannot create", path, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err("cannot write", path, e))
}

/// [`write_synced`] for content written by `write` in pieces (never whole in memory); returns
/// its SHA-256 and length.
pub(crate) fn write_synced_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<([u8; 32], u64)> {
    write_synced_mode_with(path, None, write)
}

/// [`write_synced_with`] into a file created with `mode` (from the start: no moment in which
/// others could read it).
pub(crate) fn write_synced_mode_with(
    path: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<([u8; 32], u64)> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot replace", path, e)),
    }
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    if let Some(m) = mode {
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, m);
    }
    let f = o.open(path).map_err(|e| io_err("cannot create", path, e))?;
    let mut out = HashingWriter {
        inner: std::io::BufWriter::with_capacity(256 * 1024, f),
        sha: openssl::sha::Sha256::new(),
        len: 0,
    };
    write(&mut out)?;
    let HashingWriter { inner, sha, len } = out;
    let f = inner
        .into_inner()
        .map_err(|e| io_err("cannot write", path, e.into_error()))?;
    f.sync_all().map_err(|e| io_err("cannot write", path, e))?;
    Ok((sha.finish(), len))
}

/// A writer that hashes and counts what passes.
struct HashingWriter<W> {
    inner: W,
    sha: openssl::sha::Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Set a file's or folder's permission bits (Unix; a no-op elsewhere).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("cannot set the permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Replace `path` with `data` atomically: a hidden temporary file in the same folder, synced,
/// renamed over `path`, and the folder synced.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", random_hex(6)));
    if let Err(e) = write_synced(&tmp, data) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot replace", path, e));
    }
    fsync_dir(dir)
}

/// [`write_atomic`] for a file that must have `mode` from the start (a key, a receipt): the
/// temporary file is created with it (never readable by others for a moment, whatever the
/// umask and the folder's permissions), then set to exactly it (the umask may have taken bits).
pub(crate) fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", random_hex(6)));
    let written = write_synced_mode_with(&tmp, Some(mode), |out| {
        out.write_all(data)
            .map_err(|e| io_err("cannot write", &tmp, e))
    })
    .and_then(|_| set_mode(&tmp, mode));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot replace", path, e));
    }
    fsync_dir(dir)
}

/// Read a file, `None` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot read", path, e)),
    }
}

/// Read a JSON file written by the journal; `None` when it does not exist, `StateCorrupt` when
/// it does not parse.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match read_opt(path)? {
        None => Ok(None),
        Some(d) => serde_json::from_slice(&d)
            .map(Some)
            .map_err(|e| Error::StateCorrupt(format!("{}: {e}", path.display()))),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// Whether two paths name the same file (not following symlinks).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => x.is_file() && x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Move `from` to `to` without ever replacing an existing `to` (a hard link then unlink where
/// the file system has them, else a rename after a check), then sync both folders.
/// `AlreadyExists` when `to` exists; `NotFound` when `from` does not.
pub(crate) fn move_no_clobber(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            fs::remove_file(from)?;
        }
        // A crash between the link and the unlink left both names on one file: the move
        // happened, finish it (else the caller would pick another name: a duplicate).
        Err(e) if e.kind() == ErrorKind::AlreadyExists && same_file(from, to) => {
            fs::remove_file(from)?;
        }
        Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => {
            return Err(e)
        }
        Err(_) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "the target exists",
                ));
            }
            fs::rename(from, to)?;
        }
    }
    let _ = fsync_dir(parent_of(to));
    let _ = fsync_dir(parent_of(from));
    Ok(())
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// The `n`th candidate for `name`: `name`, then `stem-1.ext`, `stem-2.ext`…
pub(crate) fn candidate(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}-{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}-{n}"),
    }
}

/// Whether `name` is free in `dir`: neither `name` nor `name + companion` exists.
pub(crate) fn is_free(dir: &Path, name: &str, companion: &str) -> bool {
    !exists(&dir.join(name)) && !exists(&dir.join(format!("{name}{companion}")))
}

/// Reserve a name for a document in `dir` by creating its companion file (`name + companion`,
/// e.g. `invoice.xml.sent.json`) exclusively with `content`. A companion that already holds
/// `marker` (the job's own id, from an earlier try that crashed) is taken over. Returns the
/// name; the document itself is moved there by the caller.
pub(crate) fn reserve_name(
    dir: &Path,
    name: &str,
    companion: &str,
    marker: &str,
    content: &[u8],
) -> Result<String> {
    // The companion appears with its content or not at all: written to a file of its own,
    // then linked to its name (which fails if the name is taken). A companion created empty
    // (by an earlier version that wrote it in place, killed in between) names no job: taken.
    let tmp = dir.join(format!(".reserve-{}.tmp", random_hex(8)));
    write_synced(&tmp, content)?;
    let result = (|| {
        for n in 0..100_000 {
            let cand = candidate(name, n);
            let comp = dir.join(format!("{cand}{companion}"));
            if let Some(existing) = read_opt(&comp)? {
                if existing.is_empty() || bytes::contains(&existing, marker.as_bytes()) {
                    write_atomic(&comp, content)?;
                    return Ok(cand);
                }
                continue;
            }
            if exists(&dir.join(&cand)) {
                continue;
            }
            match fs::hard_link(&tmp, &comp) {
                Ok(()) => {
                    fsync_dir(dir)?;
                    return Ok(cand);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                // A file system without hard links: created in place (a crash in between
                // leaves it empty, which the next try takes over, above).
                Err(_) => match OpenOptions::new().write(true).create_new(true).open(&comp) {
                    Ok(mut f) => {
                        f.write_all(content)
                            .and_then(|_| f.sync_all())
                            .map_err(|e| io_err("cannot write", &comp, e))?;
                        fsync_dir(dir)?;
                        return Ok(cand);
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_err("cannot create", &comp, e)),
                },
            }
        }
        Err(Error::Io {
            context: format!("no free name for {name} in {}", dir.display()),
            source: std::io::Error::new(ErrorKind::AlreadyExists, "too many files of that name"),
        })
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// A file name made safe ([`ls_core::mime::safe_filename`]) that is never mistaken for one of
/// the client's own records beside a document (`.meta.json`, `.sent.json`, `.reason.txt` get
/// `.bin` appended). `None` when nothing is left.
pub(crate) fn safe_name(name: &str) -> Option<String> {
    let clean = ls_core::mime::safe_filename(name)?;
    if clean.ends_with(".meta.json")
        || clean.ends_with(".sent.json")
        || clean.ends_with(".reason.txt")
    {
        Some(format!("{clean}.bin"))
    } else {
        Some(clean)
    }
}

/// Regular files and folders of `dir` (sorted by name), `[]` when it does not exist.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>> {
    let rd = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_err("cannot list", dir, e))?;
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let path = ent.path();
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        out.push((name, path, md));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Locks

/// Whether `file` is (still) the file at `path`.
fn is_file_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// An exclusive lock: `flock` on a lock file (held by the open file, so the kernel releases it
/// when its holder exits, however it exits: there are no stale locks to detect or take over).
/// The file holds its owner's pid, for messages, and is removed on drop.
#[derive(Debug)]
pub(crate) struct Lock {
    path: PathBuf,
    file: File,
}

impl Lock {
    /// Take the lock at `path`, `Ok(None)` when another holds it (`holder` tells whom).
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| io_err("cannot create lock", path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", path, e)),
            }
            // A holder removes the file before it lets go: whoever opened it meanwhile and
            // locked it then holds a lock on a file that is no longer there. Try again.
            if !is_file_at(&file, path) {
                continue;
            }
            let mut f = &file;
            let _ = f
                .set_len(0)
                .and_then(|()| f.write_all(format!("pid={}\n", std::process::id()).as_bytes()));
            return Ok(Some(Lock {
                path: path.to_path_buf(),
                file,
            }));
        }
        Ok(None)
    }

    /// Take the lock at `path`, waiting up to `wait` for its holder to let go.
    pub(crate) fn acquire(path: &Path, wait: std::time::Duration) -> Result<Lock> {
        let until = std::time::Instant::now() + wait;
        loop {
            if let Some(l) = Self::try_acquire(path)? {
                return Ok(l);
            }
            if std::time::Instant::now() >= until {
                return Err(Error::StateLocked(format!(
                    "{} holds {} (a rollover is being changed by another process)",
                    Self::holder(path),
                    path.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The lock file was moved along with its folder.
    pub(crate) fn relocate(&mut self, to: PathBuf) {
        self.path = to;
    }

    /// Who holds the lock at `path`, for messages.
    pub(crate) fn holder(path: &Path) -> String {
        let s = fs::read_to_string(path).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("pid="))
            .map_or_else(|| "another process".to_string(), |p| format!("process {p}"))
    }
}

pub(crate) fn age_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_secs())
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held (only if it is still ours: its folder may be gone); the
        // lock itself goes when the file is closed.
        if is_file_at(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_and_safe_names() {
        assert_eq!(candidate("invoice.xml", 0), "invoice.xml");
        assert_eq!(candidate("invoice.xml", 2), "invoice-2.xml");
        assert_eq!(candidate("README", 1), "README-1");
        assert_eq!(candidate(".profile", 1), ".profile-1");
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name("C:\\x\\a:b.txt").as_deref(), Some("ab.txt"));
        assert_eq!(safe_name("..").as_deref(), None);
        assert_eq!(safe_name(" .hidden ").as_deref(), Some("hidden"));
        assert_eq!(safe_name("a\nb").as_deref(), Some("ab"));
        assert_eq!(safe_name("x.meta.json").as_deref(), Some("x.meta.json.bin"));
        assert_eq!(safe_name("x.sent.json").as_deref(), Some("x.sent.json.bin"));
        // Invisible characters that change what is shown are gone.
        assert_eq!(
            safe_name("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoicefdp.exe")
        );
        assert_eq!(
            safe_name("a\u{200B}b\u{2066}c\u{FEFF}.pdf\u{2029}").as_deref(),
            Some("abc.pdf")
        );
        assert_eq!(safe_name("\u{202E}\u{200F}"), None);
        // Long names are shortened before their extension, on a character boundary.
        let long = format!("{}.pdf", "é".repeat(150));
        let s = safe_name(&long).unwrap();
        assert!(
            s.len() <= ls_core::mime::MAX_SAFE_FILENAME && s.ends_with(".pdf"),
            "{s}"
        );
    }

    #[test]
    fn a_move_interrupted_between_link_and_unlink_is_finished_not_duplicated() {
        let guard = tempfile::Builder::new()
            .prefix("ls-fsutil-")
            .tempdir()
            .unwrap();
        let d = guard.path();
        let (from, to) = (d.join(".tmp-x"), d.join("x.pdf"));
        fs::write(&from, b"doc").unwrap();
        // The crash: the link was made, the unlink not.
        fs::hard_link(&from, &to).unwrap();
        move_no_clobber(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read(&to).unwrap(), b"doc");
        // A different file at the target is still refused.
        fs::write(&from, b"other").unwrap();
        assert_eq!(
            move_no_clobber(&from, &to).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        // A planted symlink at a temporary name is replaced, not followed.
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let tmp = d.join(".tmp-y");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_synced(&tmp, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&tmp).unwrap(), b"new");
    }

    #[test]
    fn locks_exclude_and_are_released_with_their_holder() {
        let guard = tempfile::Builder::new()
            .prefix("ls-lock-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        let p = dir.join("x.lock");
        let a = Lock::try_acquire(&p).unwrap().expect("free");
        assert!(Lock::try_acquire(&p).unwrap().is_none(), "held");
        assert!(Lock::holder(&p).contains(&std::process::id().to_string()));
        drop(a);
        assert!(!p.exists());
        // A file left by a holder that died holds no lock.
        fs::write(&p, "pid=4194304\n").unwrap();
        let b = Lock::try_acquire(&p).unwrap().expect("not held by anyone");
        drop(b);
        // Many takers at once, each dropping (and removing) the lock file as it goes: never
        // two holders.
        let holders = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (p, holders, taken) = (p.clone(), holders.clone(), taken.clone());
                std::thread::spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    for _ in 0..2000 {
                        if let Some(l) = Lock::try_acquire(&p).unwrap() {
                            assert_eq!(holders.fetch_add(1, SeqCst), 0, "two holders");
                            taken.fetch_add(1, SeqCst);
                            std::thread::yield_now();
                            holders.fetch_sub(1, SeqCst);
                            drop(l);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(taken.load(std::sync::atomic::Ordering::SeqCst) > 0);
    }

    #[test]
    fn reserve_name_skips_taken_and_takes_over_its_own() {
        let guard = tempfile::Builder::new()
            .prefix("ls-res-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        fs::write(dir.join("a.txt"), "x").unwrap();
        let n = reserve_name(dir, "a.txt", ".sent.json", "job-1", b"{\"job\":\"job-1\"}").unwrap();
        assert_eq!(n, "a-1.txt");
        let n2 = reserve_name(dir, "a.txt", ".sent.json", "job-2", b"{\"job\":\"job-2\"}").unwrap();
        assert_eq!(n2, "a-2.txt");
        // job-1 again (a retry after a crash): its own reservation.
        let n3 = reserve_name(dir, "a.txt", ".sent.json", "job-1", b"{\"job\":\"job-1\"}").unwrap();
        assert_eq!(n3, "a-1.txt");
        let src = dir.join("src");
        fs::write(&src, "doc").unwrap();
        assert_eq!(
            move_no_clobber(&src, &dir.join("a.txt"))
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        move_no_clobber(&src, &dir.join(&n)).unwrap();
        assert!(!src.exists());
    }
}

#[cfg(test)]
mod reserve_tests {
    use super::*;

    #[test]
    fn a_companion_appears_whole_and_an_empty_one_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        // What a kill -9 between creating and writing left before: an empty record.
        fs::write(d.path().join("a.txt.sent.json"), b"").unwrap();
        let got = reserve_name(
            d.path(),
            "a.txt",
            ".sent.json",
            "job-1",
            b"{\"job\":\"job-1\"}",
        )
        .unwrap();
        assert_eq!(got, "a.txt");
        assert_eq!(
            fs::read(d.path().join("a.txt.sent.json")).unwrap(),
            b"{\"job\":\"job-1\"}"
        );
        // Another job's record is never taken; no temporary file is left.
        let got = reserve_name(
            d.path(),
            "a.txt",
            ".sent.json",
            "job-2",
            b"{\"job\":\"job-2\"}",
        )
        .unwrap();
        assert_eq!(got, "a-1.txt");
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
