//! `brainaged serve`: the daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info, warn};

use brainaged::config::Config;
use brainaged::convert::ConvertOptions;
use brainaged::db::Db;
use brainaged::db::embedded::EmbeddedCluster;
use brainaged::spool::Spool;
use brainaged::tracker::worker::{self, WorkerContext};
use brainaged::{scp, shutdown, telemetry, tracker};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    quiet_library_backtraces();
    // SAFETY: before the runtime or any other thread exists. Unset, so that the converter
    // children do not take the daemon's watchdog for theirs.
    let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
    // systemd never sets a zero interval, but a hand-written environment may: no watchdog then.
    let watchdog = watchdog.filter(|every| !every.is_zero());
    let config = Config::load(args.config.as_deref())?;
    telemetry::init(
        args.log_json || config.logging.json,
        config.logging.filter.as_deref(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args.config.as_deref(), config, watchdog))?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps `RUST_BACKTRACE=1` (set on many hosts) from making library errors capture backtraces.
///
/// dicom-rs ends every dataset it reads with an end-of-input error, built with a backtrace when
/// backtraces are enabled: once per received instance, that was a few percent of the receiver's
/// CPU. `RUST_LIB_BACKTRACE=0` turns off library backtraces only; a panic still prints one.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `serve`, before the runtime or any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// Connects to `database.url`, or starts the embedded cluster when it is absent, and applies
/// migrations. The cluster handle, when there is one, stops the cluster when dropped.
pub async fn open_database(config: &Config) -> anyhow::Result<(Db, Option<EmbeddedCluster>)> {
    let max = config.database.max_connections.unwrap_or(16);
    let (db, cluster) = match &config.database.url {
        Some(url) => (
            Db::connect(url, max)
                .await
                .context("connecting to database.url")?,
            None,
        ),
        None => {
            let dir = config.data_dir().join("db");
            let cluster =
                tokio::task::spawn_blocking(move || EmbeddedCluster::start(&dir)).await??;
            cluster.ensure_database().await?;
            (Db::connect(&cluster.url(), max).await?, Some(cluster))
        }
    };
    db.migrate().await?;
    Ok((db, cluster))
}

/// Pings systemd's watchdog (the unit's `WatchdogSec`) at half its interval, from a task on the
/// daemon's runtime: a runtime that stops running its tasks (a deadlock, every worker thread
/// stuck) stops the pings too, and systemd restarts the daemon instead of leaving senders to
/// time out against a port that accepts and never answers. It runs until the runtime ends, so
/// that a long shutdown is not taken for a hang.
async fn feed_watchdog(every: Duration) {
    let mut tick = tokio::time::interval(every / 2);
    loop {
        tick.tick().await;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            warn!(error = %e, "could not ping systemd's watchdog");
        }
    }
}

async fn serve(
    file: Option<&Path>,
    config: Config,
    watchdog: Option<Duration>,
) -> anyhow::Result<()> {
    let (db, mut cluster) = open_database(&config).await?;
    if let Some(c) = cluster.as_mut() {
        c.adopt();
    }
    let max_attempts = i32::try_from(config.pipeline.max_attempts.max(1)).unwrap_or(i32::MAX);
    let orphans = db.requeue_orphaned_jobs(max_attempts).await?;
    if orphans.requeued > 0 {
        info!(
            requeued = orphans.requeued,
            "jobs left running by a previous daemon were requeued"
        );
    }
    if orphans.abandoned > 0 {
        warn!(
            failed = orphans.abandoned,
            max_attempts,
            "jobs the daemon had died running max_attempts times were failed, not run again"
        );
    }
    let spool = Spool::open(&config.spool.dir)
        .with_context(|| format!("opening the spool at {}", config.spool.dir.display()))?;
    // Before the port opens: nothing writes to the spool yet, and no row may name a file that a
    // crash kept off the disk.
    let removed = spool
        .remove_interrupted_writes()
        .context("removing the temporary files of interrupted spool writes")?;
    if removed > 0 {
        info!(
            removed,
            "temporary files of spool writes a crash interrupted were removed"
        );
    }
    scp::recover::recover(&spool, &db)
        .await
        .context("checking the newest index rows against the spool")?;
    let server = scp::Server::bind(&config.dicom, spool, db.clone()).await?;
    let reloader = server.reloader();
    let (trigger, shutdown) = shutdown::channel();
    let tracker = tokio::spawn(tracker::run(
        db.clone(),
        config.tracker.clone(),
        shutdown.clone(),
    ));
    let listener = tokio::spawn(server.run(shutdown.clone()));
    let worker_ctx = WorkerContext {
        spool_root: config.spool.dir.clone(),
        output_dir: config.output_dir(),
        options: ConvertOptions {
            rules: config.classify.clone(),
            max_dataset_bytes: config.dicom.max_dataset_bytes,
        },
        poll: Duration::from_millis(config.pipeline.poll_interval_ms.max(50)),
        converter: own_binary()?,
        job_timeout: Duration::from_secs(config.pipeline.job_timeout_secs.max(1)),
    };
    let workers: Vec<_> = (0..config.pipeline.workers.max(1))
        .map(|_| {
            tokio::spawn(worker::run(
                db.clone(),
                worker_ctx.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = watchdog {
        tokio::spawn(feed_watchdog(every));
    }
    info!(
        watchdog_secs = watchdog.map(|w| w.as_secs_f64()),
        "brainaged running"
    );

    if reloader.certificate_expires().is_some() {
        tokio::spawn(check_certificate_daily(reloader.clone()));
    }
    serve_reloads_until_stopped(file, &config, &reloader).await?;
    info!("shutdown requested");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    trigger.fire();
    match listener.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "DICOM listener ended with an error"),
        Err(e) => warn!(error = %e, "DICOM listener task ended abnormally"),
    }
    for w in workers {
        if let Err(e) = w.await {
            warn!(error = %e, "job worker ended abnormally");
        }
    }
    if let Err(e) = tracker.await {
        warn!(error = %e, "tracker task ended abnormally");
    }
    db.close().await;
    if let Some(mut c) = cluster {
        c.stop()?;
    }
    info!("brainaged stopped");
    Ok(())
}

/// Applies the configuration again at each SIGHUP (systemd's `ExecReload`) until SIGTERM or
/// SIGINT.
async fn serve_reloads_until_stopped(
    file: Option<&Path>,
    running: &Config,
    reloader: &scp::Reloader,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let stop = shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            Some(()) = hangup.recv() => reload(file, running, reloader),
        }
    }
}

/// Reads the configuration again and applies what a running daemon can change: the called AE
/// title, the calling-AE allowlist and the TLS certificate, key, client CAs and revocation
/// lists (see [`scp::Reloader`]). A configuration or file that cannot be used changes nothing;
/// a changed setting that only a restart applies is named in a warning.
fn reload(file: Option<&Path>, running: &Config, reloader: &scp::Reloader) {
    info!("reloading the configuration (SIGHUP)");
    // systemd 253 and newer want the reload's start time with it, or fail the reload.
    let mut states = vec![sd_notify::NotifyState::Reloading];
    states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
    let _ = sd_notify::notify(&states);
    let applied = Config::load(file)
        .map_err(anyhow::Error::from)
        .and_then(|new| Ok((reloader.reload(&new.dicom)?, new)));
    match applied {
        Err(e) => error!(error = %e, "reload refused; nothing changed"),
        Ok((done, new)) => {
            info!(
                callers = done.callers,
                accept_any_caller = done.accept_any_caller,
                tls_certificate_expires = done.certificate_expires.map(|t| t.to_string()),
                "configuration reloaded"
            );
            let pending = running.restart_only_changes(&new);
            if !pending.is_empty() {
                warn!(
                    settings = ?pending,
                    "changed settings that take effect only at the next restart"
                );
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Says once a day how long the TLS certificate has left, when that is under 30 days: a
/// daemon runs for months, and a certificate lapses on a date, not at an event it would see.
async fn check_certificate_daily(reloader: scp::Reloader) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    // The first tick is at once; the start has just checked.
    tick.tick().await;
    loop {
        tick.tick().await;
        reloader.check_certificate();
    }
}

/// The daemon's own binary, for the converter child. `/proc/self/exe` runs the very binary
/// this process runs even after an upgrade has replaced or removed the file on disk, so a
/// converter never differs from its daemon.
fn own_binary() -> anyhow::Result<PathBuf> {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return Ok(proc_self);
    }
    std::env::current_exe().context("finding the daemon's own binary for the converter")
}
