//! `brainaged jobs`: list the job queue, and run failed jobs again.
//!
//! A job fails for good when its conversion fails (a full disk, a series the converter cannot
//! read) or when the daemon died running it `pipeline.max_attempts` times. Once the cause is
//! gone, `retry` queues the same job again; the alternative, sending the series again, reopens
//! it and makes a new version. A daemon running at the time picks the job up at its next poll.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::serve::open_database;
use brainaged::config::Config;
use brainaged::db::Db;
use brainaged::db::jobs::{JobSummary, Retry};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List jobs, newest first: id, state, attempts, series, version and error.
    List {
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "running", "done", "failed"])]
        state: Option<String>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue failed jobs again, with their attempts and error cleared.
    Retry {
        /// The jobs' ids (from `brainaged jobs list`).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        ids: Vec<i64>,
        /// Every failed job whose series has not moved on to a newer version.
        #[arg(long)]
        failed: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (db, _cluster) = open_database(&config).await?;
        let code = match args.action {
            Action::List { state, limit, json } => list(&db, state.as_deref(), limit, json).await,
            Action::Retry { ids, failed } => retry(&db, ids, failed).await,
        };
        db.close().await;
        code
    })
}

async fn list(db: &Db, state: Option<&str>, limit: i64, json: bool) -> anyhow::Result<ExitCode> {
    let jobs = db.list_jobs(state, limit).await?;
    if json {
        println!("{}", serde_json::to_string(&jobs)?);
    } else {
        println!(
            "{:>8}  {:<8} {:>8} {:>4}  series",
            "id", "state", "attempts", "v"
        );
        for job in &jobs {
            println!("{}", table_row(job));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table_row(job: &JobSummary) -> String {
    let mut row = format!(
        "{:>8}  {:<8} {:>8} {:>4}  {}",
        job.id, job.state, job.attempts, job.series_version, job.series_instance_uid
    );
    if let Some(error) = &job.error {
        row.push_str("\n          ");
        row.push_str(error);
    }
    row
}

/// Queues each job again; says what happened to each, and fails when any was not queued.
async fn retry(db: &Db, ids: Vec<i64>, all_failed: bool) -> anyhow::Result<ExitCode> {
    let ids = if all_failed {
        let failed = db.list_jobs(Some("failed"), i64::MAX).await?;
        failed.iter().map(|job| job.id).collect()
    } else {
        ids
    };
    let mut refused = 0;
    for id in ids {
        let outcome = db.retry_job(id).await?;
        // With --failed, a superseded job is expected: its newer version is the one to run.
        let fine =
            outcome == Retry::Queued || (all_failed && matches!(outcome, Retry::Superseded { .. }));
        if fine {
            println!("job {id}: {outcome}");
        } else {
            eprintln!("job {id}: {outcome}");
            refused += 1;
        }
    }
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
