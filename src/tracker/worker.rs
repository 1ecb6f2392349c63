//! Job workers: each claims a completed-series job, converts the series from the spool in a
//! child process ([`super::convert_job`]) and records what came out (class, files, problems)
//! in the database.
//!
//! A job that fails is marked failed with its error and the worker goes on. When shutdown is
//! requested a worker stops its conversion and gives the job back to the queue without
//! counting the attempt (`Db::return_job`): a stop is not the series' fault, and an operator's
//! `systemctl restart` should not wait for, or be killed in the middle of, a long conversion.
//! A job it never finished because the daemon was killed is requeued at the next start, or
//! failed once the daemon has died running it `pipeline.max_attempts` times
//! (`Db::requeue_orphaned_jobs`).

use std::path::PathBuf;
use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

use super::convert_job::{self, Interrupted, Request};
use crate::convert::{ConvertOptions, output};
use crate::db::Db;
use crate::db::jobs::{Job, PROCESS_SERIES};
use crate::shutdown::Shutdown;

/// What a worker needs besides the database.
#[derive(Clone, Debug)]
pub struct WorkerContext {
    pub spool_root: PathBuf,
    pub output_dir: PathBuf,
    pub options: ConvertOptions,
    pub poll: Duration,
    /// The binary whose `convert-job` command converts a series: the daemon's own.
    pub converter: PathBuf,
    /// How long a conversion may run before its child is stopped and the job failed.
    pub job_timeout: Duration,
}

/// Claims and processes jobs until shutdown.
pub async fn run(db: Db, ctx: WorkerContext, mut shutdown: Shutdown) {
    let kinds = vec![PROCESS_SERIES.to_string()];
    while !shutdown.is_requested() {
        let job = match db.claim_job(&kinds).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                pause(ctx.poll, &mut shutdown).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot claim a job; will retry");
                pause(ctx.poll * 4, &mut shutdown).await;
                continue;
            }
        };
        let span = info_span!("job", id = job.id, series = %job.series_instance_uid, version = job.series_version);
        let outcome = process(&db, &ctx, &job, &shutdown)
            .instrument(span.clone())
            .await;
        if let Err(e) = &outcome
            && e.is::<Interrupted>()
        {
            give_back(&db, job.id).instrument(span).await;
            continue;
        }
        let error = outcome.err().map(|e| format!("{e:#}"));
        if let Some(e) = &error {
            span.in_scope(|| warn!(error = %e, "job failed"));
        }
        if let Err(e) = db.finish_job(job.id, error.as_deref()).await {
            // The job stays 'running' and is requeued at the next start: done twice, never lost.
            warn!(error = %e, job = job.id, "cannot record the end of a job");
        }
    }
}

/// Waits `time`, or until shutdown is requested.
async fn pause(time: Duration, shutdown: &mut Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(time) => {}
        _ = shutdown.requested() => {}
    }
}

/// Puts a job whose conversion the shutdown stopped back in the queue.
async fn give_back(db: &Db, id: i64) {
    match db.return_job(id).await {
        Ok(()) => info!("conversion stopped for shutdown; the job goes back to the queue"),
        // It stays 'running' and is requeued at the next start, as after a crash.
        Err(e) => warn!(error = %e, "cannot return a stopped job to the queue"),
    }
}

/// Converts one series version, in a child process, and records the result.
async fn process(
    db: &Db,
    ctx: &WorkerContext,
    job: &Job,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let relative = db.series_spool_paths(&job.series_instance_uid).await?;
    let request = Request {
        paths: relative.iter().map(|r| ctx.spool_root.join(r)).collect(),
        out_dir: ctx
            .output_dir
            .join(output::sanitise(&job.series_instance_uid))
            .join(format!("v{}", job.series_version)),
        options: ctx.options.clone(),
    };
    let converter = ctx.converter.clone();
    let converted =
        convert_job::convert_in_child(converter, request, ctx.job_timeout, shutdown.clone())
            .await?;
    let problems = &converted.problems;
    db.record_conversion(
        &job.series_instance_uid,
        job.series_version,
        converted.class.as_deref(),
        &converted.records,
        (!problems.is_empty())
            .then(|| problems.join("; "))
            .as_deref(),
    )
    .await?;
    info!(
        volumes = converted.records.len(),
        class = converted.class.as_deref().unwrap_or("none"),
        "series converted"
    );
    if converted.records.is_empty() {
        anyhow::bail!("nothing converted: {}", problems.join("; "));
    }
    Ok(())
}
