//! Retention: purge the bodies of delivered messages, expire undelivered ones, and remove the
//! records of finished messages, as `[delivery]` says. The usage ledger is never touched.

use crate::config::DeliverySection;
use crate::log::{self, V};
use crate::store::{Store, StoreResult, Unix};

/// What one retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    pub purged_delivered: u64,
    pub expired_undelivered: u64,
    pub records_removed: u64,
}

/// One pass at `now`; logs what it did.
pub fn run_once(store: &dyn Store, d: &DeliverySection, now: Unix) -> StoreResult<Retained> {
    let hours = |h: u64| i64::try_from(h.saturating_mul(3600)).unwrap_or(i64::MAX);
    let p = store.purge(
        now.saturating_sub(hours(d.keep_delivered_hours)),
        now.saturating_sub(hours(d.expire_undelivered_hours)),
    )?;
    let records_removed = store.prune_records(now.saturating_sub(hours(d.keep_records_hours)))?;
    let r = Retained {
        purged_delivered: p.delivered,
        expired_undelivered: p.expired,
        records_removed,
    };
    if r != Retained::default() {
        log::info(
            "retention",
            &[
                ("purged_delivered", r.purged_delivered.into()),
                ("expired_undelivered", r.expired_undelivered.into()),
                ("records_removed", r.records_removed.into()),
            ],
        );
    }
    Ok(r)
}

/// Run [`run_once`] now and then every `purge_interval_secs`, for ever; failures are logged.
pub fn spawn(
    store: std::sync::Arc<dyn Store>,
    d: DeliverySection,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let every = std::time::Duration::from_secs(d.purge_interval_secs.max(1));
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            if let Err(e) = run_once(&*store, &d, ls_core::time::now_unix()) {
                log::error("retention_failed", &[("error", V::S(&e.to_string()))]);
            }
            std::thread::sleep(every);
        })
}
