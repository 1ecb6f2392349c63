//! Series completion: a series is complete once no instance has arrived for
//! `tracker.stable_after_secs`.
//!
//! The state and the clock are the database's (see [`crate::db::jobs`]), so this module is only
//! the loop that asks the database, at `poll_interval_ms`, which series have become stable. A
//! restart therefore resumes every timer, and a late instance reopens its series so that a new
//! job version follows its next completion.

use std::time::Duration;

use tracing::{info, warn};

use crate::config::TrackerConfig;
use crate::db::Db;
use crate::shutdown::Shutdown;

/// Runs until shutdown is requested. Database errors are logged and retried at the next tick:
/// a database outage delays completion, it never loses it.
pub async fn run(db: Db, config: TrackerConfig, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(config.poll_interval_ms.max(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.requested() => return,
        }
        match db.complete_stable_series(config.stable_after_secs).await {
            Ok(done) => {
                for s in done {
                    info!(series = %s.series_instance_uid, version = s.version, "series complete");
                }
            }
            Err(e) => warn!(error = %e, "series completion check failed; will retry"),
        }
    }
}
pub mod convert_job;
pub mod worker;
