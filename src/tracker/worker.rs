//! Job workers: each claims a completed-series job, converts the series from the spool in a
//! child process ([`super::convert_job`]) and records what came out (class, files, problems)
//! in the database.
//!
//! A job that fails is marked failed with its error and the worker goes on. When shutdown is
//! requested a worker stops its conversion and gives the job back to the queue without
//! counting the attempt (`Db::return_job`): a stop is not the series' fault, and an operator's
//! `systemctl restart` should not wait for, or be killed in the middle of, a long conversion.
//! A job the database went away under is given back the same way once the database answers
//! again, and converted anew.
//! A job it never finished because the daemon was killed is requeued at the next start, or
//! failed once the daemon has died running it `pipeline.max_attempts` times
//! (`Db::requeue_orphaned_jobs`).

use std::path::PathBuf;
use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

use super::convert_job::{self, Interrupted, Request};
use crate::convert::{ConvertOptions, output};
use crate::db::jobs::{Job, PROCESS_SERIES};
use crate::db::{Db, DbError};
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
        let end = span.in_scope(|| End::of(outcome));
        record_end(&db, job.id, &end, ctx.poll * 4, &mut shutdown)
            .instrument(span)
            .await;
    }
}

/// What becomes of a job once its processing has returned.
enum End {
    /// Done (no error) or failed with the error.
    Finished(Option<String>),
    /// Back to the queue, the attempt not counted: the series is not at fault.
    GivenBack,
}

impl End {
    fn of(outcome: anyhow::Result<()>) -> End {
        let Err(e) = outcome else {
            return End::Finished(None);
        };
        if e.is::<Interrupted>() {
            info!("conversion stopped for shutdown; the job goes back to the queue");
            End::GivenBack
        } else if e
            .downcast_ref::<DbError>()
            .is_some_and(DbError::is_unavailable)
        {
            warn!(error = %e, "the database went away during the job; it goes back to the queue");
            End::GivenBack
        } else {
            warn!(error = %e, "job failed");
            End::Finished(Some(format!("{e:#}")))
        }
    }
}

/// Records the end of a job, retrying while the database is unavailable: a job left 'running'
/// would be taken up again only at the next start. On shutdown, or an error retrying cannot
/// mend, it gives up and leaves that to the next start.
async fn record_end(db: &Db, id: i64, end: &End, retry: Duration, shutdown: &mut Shutdown) {
    loop {
        let recorded = match end {
            End::Finished(error) => db.finish_job(id, error.as_deref()).await,
            End::GivenBack => db.return_job(id).await,
        };
        let Err(e) = recorded else { return };
        if !e.is_unavailable() || shutdown.is_requested() {
            warn!(error = %e, "cannot record the end of the job; the next start requeues it");
            return;
        }
        warn!(error = %e, "cannot record the end of the job; will retry");
        pause(retry, shutdown).await;
    }
}

/// Waits `time`, or until shutdown is requested.
async fn pause(time: Duration, shutdown: &mut Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(time) => {}
        _ = shutdown.requested() => {}
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
