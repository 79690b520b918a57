//! Payload files and free space: bodies larger than `inline_max` live in files under
//! `payloads/`, written and synced before the row naming them is committed.

use super::convert::to_u64;
use super::*;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) const BODY_EXT: &str = ".body";
const TMP_EXT: &str = ".tmp";
/// Room a stored message needs besides its body: its row, the receipt and WAL pages.
const ROW_SLACK: u64 = 64 * 1024;

impl SqliteStore {
    pub(super) fn payload_path(&self, name: &str) -> StoreResult<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(StoreError::Backend(format!(
                "bad payload file name {name:?} in the database"
            )));
        }
        Ok(self.payloads.join(name))
    }

    /// Write `body` to a new payload file, synced and renamed into place, the directory synced.
    /// Returns the file's name.
    pub(super) fn write_payload(&self, body: &[u8]) -> StoreResult<String> {
        let mut attempts = 0;
        loop {
            let name = payload_name();
            let tmp = self.payloads.join(format!("{name}{TMP_EXT}"));
            let fin = self.payloads.join(format!("{name}{BODY_EXT}"));
            let mut file = match new_private_file(&tmp) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(io_err(format!("create {}", tmp.display()), e)),
            };
            let written = file
                .write_all(body)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(format!("write {}", tmp.display()), e))
                .and_then(|()| {
                    drop(file);
                    fs::rename(&tmp, &fin)
                        .map_err(|e| io_err(format!("rename {}", tmp.display()), e))
                })
                .and_then(|()| sync_dir(&self.payloads));
            return match written {
                Ok(()) => Ok(format!("{name}{BODY_EXT}")),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    let _ = fs::remove_file(&fin);
                    Err(e)
                }
            };
        }
    }

    /// A new private file in `payloads/` for a body being received (`.tmp`: the orphan sweep
    /// removes it if a crash leaves it behind; its time stamp moves while it is written).
    pub(super) fn new_spool(&self) -> StoreResult<(Spool, fs::File)> {
        let mut attempts = 0;
        loop {
            let path = self.payloads.join(format!("{}{TMP_EXT}", payload_name()));
            match new_private_file(&path) {
                Ok(f) => return Ok((Spool { path, len: 0 }, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(io_err(format!("create {}", path.display()), e)),
            }
        }
    }

    /// Move a received spool file into place as a payload file (synced, renamed, the directory
    /// synced). Returns the file's name.
    pub(super) fn keep_spool(&self, spool: &Spool) -> StoreResult<String> {
        let name = format!("{}{BODY_EXT}", payload_name());
        let fin = self.payloads.join(&name);
        let sync = fs::OpenOptions::new()
            .write(true)
            .open(&spool.path)
            .and_then(|f| {
                if f.metadata()?.len() != spool.len {
                    return Err(std::io::Error::other("its length changed"));
                }
                f.sync_all()
            })
            .map_err(|e| io_err(format!("sync {}", spool.path.display()), e));
        sync.and_then(|()| {
            fs::rename(&spool.path, &fin)
                .map_err(|e| io_err(format!("rename {}", spool.path.display()), e))
        })?;
        if let Err(e) = sync_dir(&self.payloads) {
            let _ = fs::remove_file(&fin);
            return Err(e);
        }
        Ok(name)
    }

    /// Refuse (`LowSpace`) a body of `size` bytes that would leave less than `reserve` bytes
    /// free. An inline body goes through the WAL into the database (twice its size at worst,
    /// less the database's free pages); a file body needs its size on the payloads' file system.
    pub(super) fn check_space(&self, size: u64, inline: bool, reserve: u64) -> StoreResult<()> {
        if reserve == 0 {
            return Ok(());
        }
        let (available, needed) = if inline {
            let reusable = self.read(db_free_bytes)?;
            (
                fs_available(&self.dir)?.saturating_add(reusable),
                size.saturating_mul(2).saturating_add(ROW_SLACK),
            )
        } else {
            (
                fs_available(&self.payloads)?,
                size.saturating_add(ROW_SLACK),
            )
        };
        if available < needed.saturating_add(reserve) {
            return Err(StoreError::LowSpace {
                available,
                needed,
                reserve,
            });
        }
        Ok(())
    }

    pub(super) fn remove_payload(&self, name: &str) {
        if let Ok(path) = self.payload_path(name) {
            // A failure leaves an orphan for the sweep in `purge`.
            let _ = fs::remove_file(path);
        }
    }

    /// Remove payload files that no row names and that are older than [`ORPHAN_GRACE`]
    /// (crash leftovers). Best effort.
    pub(super) fn sweep_orphans(&self) -> StoreResult<()> {
        let Some(cutoff) = SystemTime::now().checked_sub(ORPHAN_GRACE) else {
            return Ok(());
        };
        let entries = fs::read_dir(&self.payloads)
            .map_err(|e| io_err(format!("read {}", self.payloads.display()), e))?;
        let mut old = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !(name.ends_with(BODY_EXT) || name.ends_with(TMP_EXT)) {
                continue;
            }
            let modified = entry.metadata().and_then(|m| m.modified());
            if matches!(modified, Ok(t) if t < cutoff) {
                old.push(name);
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        let orphans = self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT 1 FROM messages WHERE body_file = ?1")?;
            let mut orphans = Vec::new();
            for name in old {
                if name.ends_with(TMP_EXT) || !stmt.exists([&name])? {
                    orphans.push(name);
                }
            }
            Ok(orphans)
        })?;
        for name in orphans {
            self.remove_payload(&name);
        }
        Ok(())
    }
}

pub(super) fn io_err(context: String, source: std::io::Error) -> StoreError {
    StoreError::Io { context, source }
}

pub(super) fn create_private_dir(dir: &Path) -> StoreResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io_err(format!("create {}", dir.display()), e))
}

pub(super) fn new_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Create an empty database file readable by the owner only (SQLite gives its `-wal` and
/// `-shm` files the database file's permissions), unless it exists.
pub(super) fn create_private_file(path: &Path) -> StoreResult<()> {
    match new_private_file(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(format!("create {}", path.display()), e)),
    }
}

/// Bytes an unprivileged process may still write on the file system of `path`.
pub(super) fn fs_available(path: &Path) -> StoreResult<u64> {
    let st = rustix::fs::statvfs(path)
        .map_err(|e| io_err(format!("statvfs {}", path.display()), e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes of free pages inside the database (reused before the file grows).
fn db_free_bytes(tx: &Transaction<'_>) -> StoreResult<u64> {
    let pages: i64 = tx.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = tx.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(to_u64(pages).saturating_mul(to_u64(size)))
}

pub(super) fn sync_dir(dir: &Path) -> StoreResult<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("sync {}", dir.display()), e))
}

/// A name no other payload file has: time, process and a per-process counter.
fn payload_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}
