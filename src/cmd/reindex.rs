//! `brainaged reindex`: rebuilds the database index from the spool, the source of truth.
//!
//! Every part-10 file under `spool.dir` is read back (up to its pixel data) and indexed as the
//! receiver would have indexed it. Files already indexed with the same path and size are left
//! alone, so running it on a live index only fills what is missing (an index restored from an
//! old backup, rows lost with a database). Unreadable files are reported and skipped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use tracing::warn;

use crate::cmd::serve::open_database;
use brainaged::config::Config;
use brainaged::db::Db;
use brainaged::spool::{self, Spool};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Files read and indexed at once.
    #[arg(long, default_value_t = 8)]
    jobs: usize,
}

/// What happened to one spool file.
enum Outcome {
    Indexed,
    Unchanged,
    Unreadable,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    brainaged::telemetry::init(config.logging.json, config.logging.filter.as_deref());
    let spool = Spool::open(&config.spool.dir)
        .with_context(|| format!("opening the spool at {}", config.spool.dir.display()))?;
    let rt = tokio::runtime::Runtime::new()?;
    let (indexed, unchanged, unreadable) = rt.block_on(async {
        let (db, _cluster) = open_database(&config).await?;
        let mut counts = (0u64, 0u64, 0u64);
        let files: Vec<PathBuf> = spool::walk(spool.root())
            .filter_map(|f| f.map_err(|e| warn!(error = %e, "cannot list spool")).ok())
            .collect();
        let mut results = futures::stream::iter(files)
            .map(|path| reindex_one(&db, &spool, path))
            .buffer_unordered(args.jobs.max(1));
        while let Some(result) = results.next().await {
            match result? {
                Outcome::Indexed => counts.0 += 1,
                Outcome::Unchanged => counts.1 += 1,
                Outcome::Unreadable => counts.2 += 1,
            }
        }
        drop(results);
        db.close().await;
        anyhow::Ok(counts)
    })?;
    println!("indexed {indexed}, already indexed {unchanged}, unreadable {unreadable}");
    Ok(if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Reads one spool file and indexes it unless its row is already current. A database error
/// stops the whole run (nothing could be indexed anyway); a bad file does not.
async fn reindex_one(db: &Db, spool: &Spool, path: PathBuf) -> anyhow::Result<Outcome> {
    let sp = spool.clone();
    let read = tokio::task::spawn_blocking(move || spool::record::from_file(&sp, &path)).await?;
    let rec = match read {
        Ok(rec) => rec,
        Err(e) => {
            warn!(error = %e, "skipping unreadable spool file");
            return Ok(Outcome::Unreadable);
        }
    };
    let current: Option<(String, i64)> =
        sqlx::query_as("SELECT spool_path, size_bytes FROM instances WHERE sop_instance_uid = $1")
            .bind(&rec.sop_instance_uid)
            .fetch_optional(db.pool())
            .await?;
    if current.is_some_and(|(p, s)| p == rec.spool_path && s == rec.size_bytes) {
        return Ok(Outcome::Unchanged);
    }
    db.index_instance(&rec)
        .await
        .with_context(|| format!("indexing {}", rec.spool_path))?;
    Ok(Outcome::Indexed)
}
