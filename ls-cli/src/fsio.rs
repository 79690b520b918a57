//! Files, standard streams and passwords: reading input with limits, writing output atomically.

use crate::cli::PassArgs;
use ls_core::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn io_err(context: impl Into<String>, source: io::Error) -> Error {
    Error::Io {
        context: context.into(),
        source,
    }
}

pub fn usage(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

pub fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// The whole of `path` (or stdin for `-`). With `limit`, more than `limit` bytes is `TooLarge`.
pub fn read_input(path: &Path, limit: Option<u64>, what: &str) -> Result<Vec<u8>, Error> {
    let too_large = |n: String| {
        Error::TooLarge(format!(
            "the {what} is larger than {n} bytes (raise --max-size if it is expected)"
        ))
    };
    let mut data = Vec::new();
    if is_dash(path) {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        let cap = limit.map(|l| l.saturating_add(1)).unwrap_or(u64::MAX);
        (&mut lock)
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|e| io_err(format!("cannot read the {what} from standard input"), e))?;
    } else {
        let mut f = File::open(path)
            .map_err(|e| io_err(format!("cannot open the {what} {}", path.display()), e))?;
        let meta = f
            .metadata()
            .map_err(|e| io_err(format!("cannot read the {what} {}", path.display()), e))?;
        if meta.is_dir() {
            return Err(io_err(
                format!("cannot read the {what} {}", path.display()),
                io::Error::other("it is a directory"),
            ));
        }
        if let Some(l) = limit {
            if meta.len() > l {
                return Err(too_large(l.to_string()));
            }
        }
        let cap = limit.map(|l| l.saturating_add(1)).unwrap_or(u64::MAX);
        (&mut f)
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|e| io_err(format!("cannot read the {what} {}", path.display()), e))?;
    }
    if let Some(l) = limit {
        if data.len() as u64 > l {
            return Err(too_large(l.to_string()));
        }
    }
    Ok(data)
}

/// Write `data` to stdout and flush.
pub fn write_stdout(data: &[u8]) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(data)
        .and_then(|_| lock.flush())
        .map_err(|e| io_err("cannot write to standard output", e))
}

/// Print a line on stdout (a result, or JSON), reporting a closed pipe as an I/O error.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut s = String::with_capacity(text.len() + 1);
    s.push_str(text);
    s.push('\n');
    write_stdout(s.as_bytes())
}

/// How an atomic write treats an existing file at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace it, keeping its permission bits.
    Replace,
    /// Fail with `AlreadyExists`.
    Refuse,
}

/// A temporary file next to its destination, removed unless committed.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    existing: Existing,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `data` into a new temporary file in the destination's folder and sync it to disk.
/// New files get `mode` (subject to the umask); a replaced file keeps its permission bits when
/// `keep_existing_mode` (a private key must not inherit a laxer mode from the file it replaces).
pub fn stage(
    dest: &Path,
    data: &[u8],
    mode: u32,
    keep_existing_mode: bool,
    existing: Existing,
) -> Result<Staged, Error> {
    let ctx = || format!("cannot write {}", dest.display());
    stage_with(dest, mode, keep_existing_mode, existing, |w| {
        w.write_all(data).map_err(|e| io_err(ctx(), e))
    })
    .map(|(s, ())| s)
}

/// [`stage`] with the content written by `write` as it is made (a document of any size in
/// constant memory). The temporary file is removed if `write` fails.
pub fn stage_with<T>(
    dest: &Path,
    mode: u32,
    keep_existing_mode: bool,
    existing: Existing,
    write: impl FnOnce(&mut dyn Write) -> Result<T, Error>,
) -> Result<(Staged, T), Error> {
    let name = dest
        .file_name()
        .ok_or_else(|| usage(format!("{} does not name a file", dest.display())))?;
    let dir = parent_of(dest);
    let mut keep_mode = None;
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            return Err(io_err(
                format!("cannot write {}", dest.display()),
                io::Error::other("it is a directory"),
            ))
        }
        Ok(_) if existing == Existing::Refuse => {
            return Err(already_exists(dest));
        }
        Ok(m) if keep_existing_mode => keep_mode = Some(m.permissions().mode() & 0o7777),
        Ok(_) => {}
        Err(_) => {}
    }
    let mut attempt = 0;
    let (tmp, file) = loop {
        let tmp = dir.join(format!(
            ".{}.{}-{}.layersec-tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(keep_mode.unwrap_or(mode))
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => {
                return Err(io_err(
                    format!("cannot create a file in {}", dir.display()),
                    e,
                ))
            }
        }
    };
    let staged = Staged {
        tmp,
        dest: dest.to_path_buf(),
        existing,
        committed: false,
    };
    let ctx = || format!("cannot write {}", dest.display());
    if let Some(m) = keep_mode {
        file.set_permissions(fs::Permissions::from_mode(m))
            .map_err(|e| io_err(ctx(), e))?;
    }
    let mut w = io::BufWriter::with_capacity(256 * 1024, file);
    let value = write(&mut w)?;
    let file = w.into_inner().map_err(|e| io_err(ctx(), e.into_error()))?;
    file.sync_all().map_err(|e| io_err(ctx(), e))?;
    Ok((staged, value))
}

/// The input to read as a stream: the file (not a folder) or standard input for `-`.
pub fn open_input(path: &Path, what: &str) -> Result<Box<dyn Read>, Error> {
    if is_dash(path) {
        return Ok(Box::new(io::stdin()));
    }
    let f = File::open(path)
        .map_err(|e| io_err(format!("cannot open the {what} {}", path.display()), e))?;
    let meta = f
        .metadata()
        .map_err(|e| io_err(format!("cannot read the {what} {}", path.display()), e))?;
    if meta.is_dir() {
        return Err(io_err(
            format!("cannot read the {what} {}", path.display()),
            io::Error::other("it is a directory"),
        ));
    }
    Ok(Box::new(f))
}

/// A file of our own (mode 0600, already unlinked) in the temporary folder, for what must not
/// reach standard output before it is verified.
pub fn anonymous_file() -> Result<File, Error> {
    let dir = std::env::temp_dir();
    for _ in 0..100 {
        let p = dir.join(format!(
            ".layersec-{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                let _ = fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io_err(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Err(Error::Internal("cannot create a temporary file".into()))
}

fn already_exists(dest: &Path) -> Error {
    io_err(
        format!(
            "refusing to overwrite {} (use --force to replace it)",
            dest.display()
        ),
        io::Error::new(io::ErrorKind::AlreadyExists, "the file exists"),
    )
}

impl Staged {
    /// Move the temporary file into place (atomically) and sync the folder.
    pub fn commit(mut self) -> Result<(), Error> {
        let ctx = || format!("cannot write {}", self.dest.display());
        match self.existing {
            Existing::Replace => {
                fs::rename(&self.tmp, &self.dest).map_err(|e| io_err(ctx(), e))?;
            }
            Existing::Refuse => {
                // A hard link never replaces an existing file; fall back to a checked rename on
                // file systems without hard links.
                match fs::hard_link(&self.tmp, &self.dest) {
                    Ok(()) => {
                        let _ = fs::remove_file(&self.tmp);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(already_exists(&self.dest))
                    }
                    Err(_) => {
                        if fs::symlink_metadata(&self.dest).is_ok() {
                            return Err(already_exists(&self.dest));
                        }
                        fs::rename(&self.tmp, &self.dest).map_err(|e| io_err(ctx(), e))?;
                    }
                }
            }
        }
        self.committed = true;
        if let Ok(d) = File::open(parent_of(&self.dest)) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

pub fn already_exists_error(dest: &Path) -> Error {
    already_exists(dest)
}

/// A password, wiped from memory when dropped (zeroize) and never printed.
pub struct Password(zeroize::Zeroizing<String>);

impl Password {
    fn new(s: String) -> Password {
        Password(zeroize::Zeroizing::new(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

/// The password given by `--pass-env` or `--pass-file`, if any.
pub fn password(p: &PassArgs) -> Result<Option<Password>, Error> {
    if let Some(var) = &p.pass_env {
        let v = std::env::var_os(var).ok_or_else(|| {
            usage(format!(
                "--pass-env: the environment variable {var} is not set"
            ))
        })?;
        let s = v.into_string().map_err(|_| {
            usage(format!(
                "--pass-env: the environment variable {var} is not valid UTF-8"
            ))
        })?;
        return Ok(Some(Password::new(s)));
    }
    if let Some(path) = &p.pass_file {
        let raw = zeroize::Zeroizing::new(fs::read(path).map_err(|e| {
            io_err(
                format!("cannot read the password file {}", path.display()),
                e,
            )
        })?);
        let raw = std::str::from_utf8(&raw).map_err(|_| {
            usage(format!(
                "the password file {} is not valid UTF-8",
                path.display()
            ))
        })?;
        let first = raw.split('\n').next().unwrap_or("");
        let first = first.strip_suffix('\r').unwrap_or(first);
        return Ok(Some(Password::new(first.to_string())));
    }
    Ok(None)
}
