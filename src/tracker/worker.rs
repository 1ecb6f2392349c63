//! Job workers: each claims a completed-series job, converts the series from the spool and
//! records what came out (class, files, problems) in the database.
//!
//! A job that fails is marked failed with its error and the worker goes on; a worker stops
//! between jobs when shutdown is requested, and a job it never finished (the daemon was killed)
//! is requeued at the next start, or failed once the daemon has died running it
//! `pipeline.max_attempts` times (`Db::requeue_orphaned_jobs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{Instrument, info, info_span, warn};

use crate::convert::classify::SeriesClass;
use crate::convert::{self, ConvertOptions, SeriesError, output};
use crate::db::Db;
use crate::db::conversions::ConversionRecord;
use crate::db::jobs::{Job, PROCESS_SERIES};
use crate::shutdown::Shutdown;

/// What a worker needs besides the database.
#[derive(Clone, Debug)]
pub struct WorkerContext {
    pub spool_root: PathBuf,
    pub output_dir: PathBuf,
    pub options: ConvertOptions,
    pub poll: Duration,
}

/// Claims and processes jobs until shutdown.
pub async fn run(db: Db, ctx: WorkerContext, mut shutdown: Shutdown) {
    let kinds = vec![PROCESS_SERIES.to_string()];
    while !shutdown.is_requested() {
        let job = match db.claim_job(&kinds).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(ctx.poll) => {}
                    _ = shutdown.requested() => {}
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot claim a job; will retry");
                tokio::time::sleep(ctx.poll * 4).await;
                continue;
            }
        };
        let span = info_span!("job", id = job.id, series = %job.series_instance_uid, version = job.series_version);
        let outcome = process(&db, &ctx, &job).instrument(span.clone()).await;
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

/// Converts one series version and records the result.
async fn process(db: &Db, ctx: &WorkerContext, job: &Job) -> anyhow::Result<()> {
    let relative = db.series_spool_paths(&job.series_instance_uid).await?;
    let paths: Vec<PathBuf> = relative.iter().map(|r| ctx.spool_root.join(r)).collect();
    let out_dir = ctx
        .output_dir
        .join(output::sanitise(&job.series_instance_uid))
        .join(format!("v{}", job.series_version));
    let options = ctx.options.clone();
    let dir = out_dir.clone();
    let converted =
        tokio::task::spawn_blocking(move || convert_and_write(&paths, &dir, &options)).await?;
    let (records, class, problems) = converted?;
    db.record_conversion(
        &job.series_instance_uid,
        job.series_version,
        class.map(SeriesClass::as_str),
        &records,
        (!problems.is_empty())
            .then(|| problems.join("; "))
            .as_deref(),
    )
    .await?;
    info!(
        volumes = records.len(),
        class = class.map(SeriesClass::as_str).unwrap_or("none"),
        "series converted"
    );
    if records.is_empty() {
        anyhow::bail!("nothing converted: {}", problems.join("; "));
    }
    Ok(())
}

type Converted = (Vec<ConversionRecord>, Option<SeriesClass>, Vec<String>);

/// Runs the converter on the series' files and writes each volume under `out_dir`.
fn convert_and_write(
    paths: &[PathBuf],
    out_dir: &Path,
    options: &ConvertOptions,
) -> anyhow::Result<Converted> {
    std::fs::create_dir_all(out_dir)?;
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut classes = Vec::new();
    for result in convert::convert_paths(paths, options) {
        let series = match result {
            Ok(s) => s,
            Err(e @ (SeriesError::Unreadable(_) | SeriesError::Failed { .. })) => {
                problems.push(e.to_string());
                continue;
            }
        };
        problems.extend(series.problems);
        for v in series.volumes {
            let stem = format!("{}{}", output::base_name(&v.volume), v.suffix);
            let files = output::write(out_dir, &stem, &v.volume, v.class, v.image_only)?;
            let text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            records.push(ConversionRecord {
                class: v.class.as_str().to_string(),
                nifti_path: files.nifti.display().to_string(),
                sidecar_path: text(&files.sidecar),
                bval_path: text(&files.bval),
                bvec_path: text(&files.bvec),
            });
            if !v.image_only {
                classes.push(v.class);
            }
        }
    }
    Ok((records, series_class(&classes), problems))
}

/// The class recorded for the series: diffusion wins over T1w, which wins over other, so that a
/// series with a usable diffusion or T1w volume is scored even if it also had a derived map.
fn series_class(classes: &[SeriesClass]) -> Option<SeriesClass> {
    [SeriesClass::Dwi, SeriesClass::T1w, SeriesClass::Other]
        .into_iter()
        .find(|c| classes.contains(c))
}
