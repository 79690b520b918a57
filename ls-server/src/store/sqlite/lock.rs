//! The service lock of a store folder: an advisory `flock` on the folder itself (no file is
//! made in it), released when its holder ends, however it ends.
//!
//! `layersec-server serve` holds it shared for as long as it runs (several processes may serve
//! one folder, as SQLite allows); `layersec-server migrate-store` takes it exclusively, so it
//! refuses a store a service is running on, and a service refuses to start on a store being
//! moved. The `admin` commands take no lock: they may run beside a service, and
//! `migrate-store` notices their writes by other means (SQLite's `data_version`).

use super::payloads::io_err;
use super::*;
use rustix::fs::{flock, FlockOperation};

/// A held lock on a store folder; dropping it releases it.
#[derive(Debug)]
pub struct ServiceLock {
    _dir: fs::File,
}

impl ServiceLock {
    /// The lock of a service running on the store in `dir` (shared: more services may hold
    /// it). Refused (`Conflict`) while the store is being moved (`migrate-store`).
    pub fn shared(dir: &Path) -> StoreResult<ServiceLock> {
        Self::take(dir, FlockOperation::NonBlockingLockShared).map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "the store {} is being moved to PostgreSQL (`layersec-server migrate-store` \
                 holds it)",
                dir.display()
            )),
            e => e,
        })
    }

    /// The lock of a tool that must have the store to itself. Refused (`Conflict`) while a
    /// service runs on it (or another such tool has it).
    pub fn exclusive(dir: &Path) -> StoreResult<ServiceLock> {
        Self::take(dir, FlockOperation::NonBlockingLockExclusive).map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "the store {} is in use by a running service (`layersec-server serve`) or by \
                 another `migrate-store`: stop it first",
                dir.display()
            )),
            e => e,
        })
    }

    fn take(dir: &Path, op: FlockOperation) -> StoreResult<ServiceLock> {
        let file = fs::File::open(dir).map_err(|e| io_err(format!("open {}", dir.display()), e))?;
        match flock(&file, op) {
            Ok(()) => Ok(ServiceLock { _dir: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                Err(StoreError::Conflict(String::new()))
            }
            Err(e) => Err(io_err(format!("lock {}", dir.display()), e.into())),
        }
    }
}
