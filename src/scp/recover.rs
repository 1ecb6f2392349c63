//! Keeping the index and the spool in step when a file did not make it to disk.
//!
//! The receiver indexes an instance while its file is being made durable ([`super::store`]):
//! the database commit and the file's fsync each cost about a disk flush, and one association is
//! strictly sequential, so overlapping them is most of what a durable receiver can win. The
//! price is that a row can exist, for a moment, before its file does. Two things close that gap:
//!
//! - when the file write fails, [`settle`] takes the row back (or points it at the older file
//!   the failed write left in place) before the failure status is sent;
//! - after a crash, [`recover`] runs before the listener opens and settles every row indexed
//!   shortly before the newest one. Older rows are safe: a row whose file was not yet durable
//!   at the crash belonged to a write in flight at that moment, so it was committed at most one
//!   write's duration (milliseconds) before the newest row, far inside the window.
//!
//! Nothing acknowledged is touched: an acknowledged instance has its file on disk, which is
//! exactly what these checks keep.

use std::time::Duration;

use tracing::{info, warn};

use super::index::{IndexError, InstanceIndex};
use crate::db::instances::IndexedFile;
use crate::spool::{self, Spool};

/// How far back from the newest row [`recover`] looks. Generous: a write in flight lasts
/// milliseconds, and checking a few thousand rows at start-up costs well under a second.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(120);

/// What settling one row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The file is there with the size the row records.
    Consistent,
    /// The file is missing: the row (and a series or study only it had made) was removed.
    Forgotten,
    /// An older file is in place (a re-send whose write failed): the row now describes it.
    Reindexed,
}

/// What [`recover`] found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovery {
    pub checked: usize,
    pub forgotten: usize,
    pub reindexed: usize,
}

/// Makes the row of `row.sop_instance_uid` agree with the spool. Blocking file checks run on a
/// blocking thread.
pub async fn settle<I: InstanceIndex>(
    spool: &Spool,
    index: &I,
    row: &IndexedFile,
) -> Result<Settled, IndexError> {
    let path = spool.path_of(&row.spool_path);
    let sp = spool.clone();
    let expected = row.size_bytes;
    let on_disk = tokio::task::spawn_blocking(move || match std::fs::metadata(&path) {
        Ok(md) if md.len() as i64 == expected => Ok(None),
        Ok(_) => spool::record::from_file(&sp, &path).map(Some),
        Err(e) => Err(spool::SpoolError::io(&path, e)),
    })
    .await
    .map_err(|e| IndexError::new(format!("spool check failed: {e}")))?;
    match on_disk {
        Ok(None) => Ok(Settled::Consistent),
        Ok(Some(older)) => {
            index.index_instance(&older).await?;
            Ok(Settled::Reindexed)
        }
        Err(_) => {
            // Missing or unreadable: an acknowledged instance never is, so this row was not.
            index
                .forget_instance(&row.sop_instance_uid, &row.spool_path)
                .await?;
            Ok(Settled::Forgotten)
        }
    }
}

/// Settles every row indexed within [`RECOVERY_WINDOW`] of the newest: run at start-up, before
/// associations are accepted, so that a crash mid-write leaves no row without its file.
pub async fn recover<I: InstanceIndex>(spool: &Spool, index: &I) -> Result<Recovery, IndexError> {
    let rows = index.recently_indexed(RECOVERY_WINDOW).await?;
    let mut summary = Recovery {
        checked: rows.len(),
        ..Recovery::default()
    };
    for row in &rows {
        match settle(spool, index, row).await? {
            Settled::Consistent => {}
            Settled::Forgotten => summary.forgotten += 1,
            Settled::Reindexed => summary.reindexed += 1,
        }
    }
    if summary.forgotten + summary.reindexed > 0 {
        warn!(
            forgotten = summary.forgotten,
            reindexed = summary.reindexed,
            "rows of unacknowledged instances whose files were not in the spool were settled"
        );
    } else {
        info!(checked = summary.checked, "index and spool agree");
    }
    Ok(summary)
}
