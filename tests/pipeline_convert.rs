//! The daemon converts completed series: classes, outputs and conversion errors end up in the
//! database, and the volumes it writes match dcm2niix's.

mod common;

use std::path::Path;
use std::process::Command;

use brainaged::db::Db;
use brainaged::db::embedded::EmbeddedCluster;
use brainaged::nifti_io::read_volume;
use common::*;

const FAST: [(&str, &str); 2] = [
    ("BRAINAGED__TRACKER__STABLE_AFTER_SECS", "1"),
    ("BRAINAGED__PIPELINE__POLL_INTERVAL_MS", "100"),
];

async fn finished_jobs(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('done', 'failed')")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn wait_jobs(db: &Db, n: i64) {
    for _ in 0..600 {
        if finished_jobs(db).await >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("jobs did not finish within 60 s");
}

fn dcm2niix(input: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let status = Command::new("dcm2niix")
        .args(["-z", "y", "-f", "%s_%d", "-o"])
        .arg(out)
        .arg(input)
        .output()
        .expect("dcm2niix (pip install dcm2niix)");
    assert!(status.status.success());
}

/// A fresh database, and a daemon that completes series after 1 s and converts them into
/// `derived/` of the returned directory.
async fn converting_daemon() -> (Db, tempfile::TempDir, Daemon) {
    converting_daemon_with(&[]).await
}

/// [`converting_daemon`] with more configuration overrides.
async fn converting_daemon_with(extra: &[(&str, &str)]) -> (Db, tempfile::TempDir, Daemon) {
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("derived").display().to_string();
    let mut env = FAST.to_vec();
    env.push(("BRAINAGED__PIPELINE__OUTPUT_DIR", &out));
    env.extend_from_slice(extra);
    let daemon = Daemon::start(&tmp.path().join("spool"), &url, &env);
    (db, tmp, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_series_are_converted_and_classified() {
    let (db, tmp, mut daemon) = converting_daemon().await;
    let t1 = dicom_folder("ge-t1-mprage");
    let dwi = dicom_folder("ge-dwi-tensor-r2");
    let sent = storescu(daemon.port, "SCANNER", &[&t1, &dwi]);
    assert!(sent.status.success());
    wait_jobs(&db, 2).await;

    let rows = sqlx::query_as::<_, (Option<String>, Option<String>, Option<i32>)>(
        "SELECT class, convert_error, series_number FROM series ORDER BY series_number",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let classes: Vec<Option<&str>> = rows.iter().map(|r| r.0.as_deref()).collect();
    assert!(
        classes.contains(&Some("t1w")) && classes.contains(&Some("dwi")),
        "{rows:?}"
    );
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'failed'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(failed, 0, "{}", daemon.log_text());

    // The daemon's T1 volume has dcm2niix's voxels and geometry.
    let nifti: String =
        sqlx::query_scalar("SELECT nifti_path FROM conversions WHERE class = 't1w'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    let ours = read_volume(Path::new(&nifti)).unwrap();
    let reference_dir = tmp.path().join("dcm2niix");
    dcm2niix(&t1, &reference_dir);
    let reference = std::fs::read_dir(&reference_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".nii.gz"))
        .expect("dcm2niix output");
    let reference = read_volume(&reference).unwrap();
    assert_eq!(ours.data, reference.data, "voxels differ from dcm2niix");
    assert!(
        (ours.affine - reference.affine).abs().max() < 1e-4,
        "affine differs from dcm2niix"
    );
    let dwi_files: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT bval_path, bvec_path FROM conversions WHERE class = 'dwi'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(
        dwi_files.0.is_some_and(|p| Path::new(&p).exists()),
        "bval written"
    );
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_that_cannot_be_converted_records_its_error() {
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&tmp.path().join("spool"), &url, &FAST);
    // A 3-D T1 with a slice missing in the middle.
    let mut files = dicom_files(&dicom_folder("ge-t1-mprage"));
    files.sort_by_key(|f| instance_number(f));
    let missing = files.remove(files.len() / 2);
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    assert!(storescu(daemon.port, "SCANNER", &refs).status.success());
    wait_jobs(&db, 1).await;
    let (error,): (Option<String>,) = sqlx::query_as("SELECT convert_error FROM series")
        .fetch_one(db.pool())
        .await
        .unwrap();
    // The assembler's `AssembleError::NonUniformSpacing` (src/convert/assemble.rs).
    let error = error.unwrap_or_else(|| panic!("missing slice {} not reported", missing.display()));
    assert!(
        error.contains("slice gap of")
            && error.contains("a slice is missing or spacing is not uniform"),
        "missing slice {} reported as a slice gap: {error}",
        missing.display()
    );
    let (state, job_error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM jobs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(state, "failed", "the job failed: {job_error:?}");
    assert!(
        job_error
            .as_deref()
            .is_some_and(|e| e.starts_with("nothing converted: ") && e.contains("slice gap of")),
        "the job error names the problem: {job_error:?}"
    );
    // The worker's failure event (src/tracker/worker.rs), not merely any line in the "job" span.
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("job failed") && l.contains("slice gap of")),
        "the job failure is logged with its error:\n{log}"
    );
    assert!(daemon.terminate().success());
}

fn instance_number(path: &Path) -> i64 {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(tags::INSTANCE_NUMBER)
        .ok()
        .and_then(|e| e.to_int::<i64>().ok())
        .unwrap_or(0)
}

async fn job_states(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT state FROM jobs ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// The converter child process the daemon runs for a job, if one is running: a process whose
/// parent is the daemon and whose command line names `convert-job`.
fn converter_of(daemon_pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: the command name may hold spaces, so read after its ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let named = cmdline.split(|b| *b == 0).any(|arg| arg == b"convert-job");
            (ppid == daemon_pid && named).then_some(pid)
        })
}

/// Waits up to 60 s for the daemon's converter child to start, and returns its process ID.
async fn wait_converter(daemon: &Daemon) -> u32 {
    for _ in 0..30_000 {
        if let Some(pid) = converter_of(daemon.pid()) {
            return pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("no converter process started:\n{}", daemon.log_text());
}

/// Waits until the only job runs for the `attempt`th time.
async fn wait_running(db: &Db, daemon: &Daemon, attempt: i32) {
    for _ in 0..30_000 {
        let jobs: Vec<(String, i32)> = sqlx::query_as("SELECT state, attempts FROM jobs")
            .fetch_all(db.pool())
            .await
            .unwrap();
        if let [(state, attempts)] = jobs.as_slice()
            && state == "running"
            && *attempts == attempt
        {
            return;
        }
        assert!(
            jobs.iter()
                .all(|(state, _)| state == "queued" || state == "running"),
            "the job ended before it could be interrupted: {jobs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!(
        "the job never started attempt {attempt}:\n{}",
        daemon.log_text()
    );
}

/// Waits until the only job runs for the `attempt`th time, then kills the daemon (kill -9).
async fn kill_during_attempt(db: &Db, daemon: &mut Daemon, attempt: i32) {
    wait_running(db, daemon, attempt).await;
    daemon.kill9();
}

/// Whether process `pid` ends (or is left a zombie) within 5 s.
fn wait_dead(pid: u32) -> bool {
    wait_until(5, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    })
}

/// The 2040-slice Philips DWI: a conversion long enough to be caught running.
fn long_series() -> std::path::PathBuf {
    dicom_folder("philips-dwi-bangalore").join("dwi_no-phi")
}

/// Sends the long series and returns the process ID of its converter once its job runs,
/// checking that the out-of-memory killer would take the converter first.
async fn converting_long_series(db: &Db, daemon: &Daemon) -> u32 {
    assert!(
        storescu(daemon.port, "SCANNER", &[&long_series()])
            .status
            .success()
    );
    wait_running(db, daemon, 1).await;
    let converter = wait_converter(daemon).await;
    let score = std::fs::read_to_string(format!("/proc/{converter}/oom_score_adj")).unwrap();
    assert_eq!(score.trim(), "1000");
    converter
}

/// Whether the converter `pid` ends within 5 s; it is killed if not, so that no test leaves
/// one behind.
fn converter_ends(pid: u32) -> bool {
    let ended = wait_dead(pid);
    if !ended {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_conversion_is_requeued_and_completes() {
    let (db, tmp, mut daemon) = converting_daemon().await;
    let converter = converting_long_series(&db, &daemon).await;
    // Stopped, the converter cannot finish on its own: only the daemon's death can end it now.
    unsafe { libc::kill(converter as i32, libc::SIGSTOP) };
    daemon.kill9();
    assert!(
        converter_ends(converter),
        "the converter outlived the killed daemon"
    );
    assert_eq!(
        job_states(&db).await,
        ["running"],
        "a killed job stays running"
    );

    daemon.restart();
    wait_jobs(&db, 1).await;
    assert_eq!(job_states(&db).await, ["done"], "{}", daemon.log_text());
    assert!(
        daemon
            .log_text()
            .lines()
            .any(|l| l.contains("requeued=1") && l.contains("were requeued")),
        "the restart requeued the job:\n{}",
        daemon.log_text()
    );
    // The conversion is whole and recorded once: as many volumes as dcm2niix makes of the
    // series (the DWI and the scanner's ADC map), each file present, and the DWI 4-D with one
    // volume per b-value.
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT nifti_path, bval_path, bvec_path FROM conversions")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let reference_dir = tmp.path().join("dcm2niix");
    dcm2niix(&long_series(), &reference_dir);
    let reference_volumes = std::fs::read_dir(&reference_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".nii.gz")
        })
        .count();
    assert_eq!(rows.len(), reference_volumes, "{rows:?}");
    let distinct: std::collections::HashSet<&String> = rows.iter().map(|r| &r.0).collect();
    assert_eq!(distinct.len(), rows.len(), "{rows:?}");
    assert!(rows.iter().all(|r| Path::new(&r.0).exists()), "{rows:?}");
    let (nifti, bval, bvec) = rows
        .iter()
        .find(|r| r.1.is_some())
        .expect("a DWI volume with its b-values");
    let volume = read_volume(Path::new(nifti)).unwrap();
    let bvals = std::fs::read_to_string(bval.as_ref().unwrap()).unwrap();
    let directions = bvals.split_whitespace().count();
    assert!(directions > 1, "{bvals}");
    assert_eq!(
        volume.data.shape().last(),
        Some(&directions),
        "{:?}",
        volume.data.shape()
    );
    assert!(Path::new(bvec.as_ref().expect("bvec")).exists());
    assert!(daemon.terminate().success());
}

/// A series whose job the daemon itself dies running, again and again (here kill -9, as the
/// out-of-memory killer would when it picks the daemon), does not restart it in a loop: once
/// the daemon has died running it `max_attempts` times, the next start fails the job with the
/// reason instead of running it again, and goes on receiving and converting other series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_daemon_keeps_dying_on_is_failed_not_run_again() {
    let (db, _tmp, mut daemon) =
        converting_daemon_with(&[("BRAINAGED__PIPELINE__MAX_ATTEMPTS", "2")]).await;
    assert!(
        storescu(daemon.port, "SCANNER", &[&long_series()])
            .status
            .success()
    );
    kill_during_attempt(&db, &mut daemon, 1).await;
    daemon.restart();
    kill_during_attempt(&db, &mut daemon, 2).await;

    daemon.restart();
    let (state, attempts, error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT state, attempts, error FROM jobs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("failed", 2),
        "{}",
        daemon.log_text()
    );
    let error = error.expect("the reason is recorded");
    assert!(error.contains("stopped 2 times"), "{error}");
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("failed=1") && l.contains("not run again")),
        "the start says it failed the job:\n{log}"
    );

    // Still receiving and converting; the failed job is not picked up again meanwhile.
    let other = dicom_folder("ge-dwi-tensor-r2");
    assert!(storescu(daemon.port, "SCANNER", &[&other]).status.success());
    wait_jobs(&db, 2).await;
    let jobs: Vec<(String, i32)> = sqlx::query_as("SELECT state, attempts FROM jobs ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(
        jobs,
        [("failed".to_string(), 2), ("done".to_string(), 1)],
        "{}",
        daemon.log_text()
    );
    let converted: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT series_instance_uid FROM conversions")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        converted.len(),
        1,
        "only the other series is converted: {converted:?}"
    );
    assert!(daemon.terminate().success());
}

/// Sends the 2040-slice DWI, sends `signal` to its converter once it runs, and returns the
/// error of its job, which must have failed.
async fn job_error_after_signal(db: &Db, daemon: &Daemon, signal: i32) -> String {
    let converter = converting_long_series(db, daemon).await;
    unsafe { libc::kill(converter as i32, signal) };
    wait_jobs(db, 1).await;
    let (state, error): (String, Option<String>) = sqlx::query_as("SELECT state, error FROM jobs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "failed", "{}", daemon.log_text());
    assert!(wait_dead(converter), "the converter is gone");
    error.expect("the reason is recorded")
}

/// Sends another series and checks that its job is done after the failed one.
async fn the_next_series_converts(db: &Db, daemon: &Daemon) {
    let other = dicom_folder("ge-dwi-tensor-r2");
    assert!(storescu(daemon.port, "SCANNER", &[&other]).status.success());
    wait_jobs(db, 2).await;
    assert_eq!(
        job_states(db).await,
        ["failed", "done"],
        "{}",
        daemon.log_text()
    );
}

/// A converter that dies (here kill -9, as the out-of-memory killer would pick the process that
/// holds a large series; a crashing decoder ends it the same way) fails its job with the signal
/// named, and the daemon goes on receiving and converting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converter_that_dies_fails_its_job_and_the_daemon_goes_on() {
    let (db, _tmp, mut daemon) = converting_daemon().await;
    let error = job_error_after_signal(&db, &daemon, libc::SIGKILL).await;
    assert!(error.contains("killed by signal 9"), "{error}");
    the_next_series_converts(&db, &daemon).await;
    assert!(daemon.terminate().success());
}

/// A conversion that runs past `pipeline.job_timeout_secs` (here a converter stopped with
/// SIGSTOP, hanging as a decoder caught in a loop would) is stopped, its job fails with the
/// reason, and the queue goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_that_runs_too_long_is_stopped_and_the_queue_goes_on() {
    let (db, _tmp, mut daemon) =
        converting_daemon_with(&[("BRAINAGED__PIPELINE__JOB_TIMEOUT_SECS", "4")]).await;
    let error = job_error_after_signal(&db, &daemon, libc::SIGSTOP).await;
    assert!(
        error.contains("ran past pipeline.job_timeout_secs (4 s)"),
        "{error}"
    );
    the_next_series_converts(&db, &daemon).await;
    assert!(daemon.terminate().success());
}

/// Stopping the daemon (SIGTERM) while it converts: it stops at once, without waiting for the
/// conversion, and gives the job back to the queue without counting the attempt; the next
/// start converts the series. systemd's stop and a terminal's Ctrl-C signal the converter
/// child too, and that must not fail the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_gives_its_job_back_and_the_next_start_converts_it() {
    let (db, _tmp, mut daemon) = converting_daemon().await;
    let converter = converting_long_series(&db, &daemon).await;
    // What systemd's stop does to every process of the service.
    unsafe { libc::kill(converter as i32, libc::SIGTERM) };
    // Stopped, the converter cannot end on its own: only the daemon can end it now.
    unsafe { libc::kill(converter as i32, libc::SIGSTOP) };
    let asked = std::time::Instant::now();
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
    let took = asked.elapsed();
    assert!(
        converter_ends(converter),
        "the converter outlived the stopped daemon"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "the daemon took {took:?} to stop"
    );
    let job = the_only_job(&db).await;
    assert_eq!(job, ("queued".to_string(), 0), "{}", daemon.log_text());
    assert!(
        daemon.log_text().contains("the job goes back to the queue"),
        "{}",
        daemon.log_text()
    );

    daemon.restart();
    wait_jobs(&db, 1).await;
    let job = the_only_job(&db).await;
    assert_eq!(job, ("done".to_string(), 1), "{}", daemon.log_text());
    assert!(daemon.terminate().success());
}

/// The state and attempts of the only job.
async fn the_only_job(db: &Db) -> (String, i32) {
    sqlx::query_as("SELECT state, attempts FROM jobs")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// The volumes the conversions table names.
async fn converted_volumes(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT nifti_path FROM conversions")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// A conversion that fills the output disk fails its job with the cause and leaves nothing
/// half-written for a later stage to find; once there is room, the series sent again converts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_output_disk_fails_the_job_and_leaves_nothing_half_written() {
    let (db, _tmp, mut daemon, disk, series) = a_job_failed_on_a_full_disk().await;
    disk.resize("16m");
    assert!(
        storescu(daemon.port, "SCANNER", &[&series])
            .status
            .success()
    );
    wait_jobs(&db, 2).await;
    assert_eq!(
        job_states(&db).await,
        ["failed", "done"],
        "{}",
        daemon.log_text()
    );
    assert_whole_volumes(&db).await;
    assert!(daemon.terminate().success());
}

/// Once the disk has room again, the operator runs the failed job again with `brainaged jobs
/// retry` (no resend, no new version), and the running daemon converts the series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_retried_by_the_operator_converts_its_series() {
    let (db, _tmp, mut daemon, disk, _) = a_job_failed_on_a_full_disk().await;
    let listed = daemon.command(&["jobs", "list", "--state", "failed", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let error = listed[0]["error"]
        .as_str()
        .expect("the failed job and its error");
    assert!(error.contains("No space left on device"), "{error}");

    disk.resize("16m");
    let retried = daemon.command(&["jobs", "retry", "--failed"]);
    assert!(retried.status.success(), "{retried:?}");
    wait_jobs(&db, 1).await;
    let (state, attempts, version): (String, i32, i32) =
        sqlx::query_as("SELECT state, attempts, series_version FROM jobs")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts, version),
        ("done", 1, 1),
        "{}",
        daemon.log_text()
    );
    assert_whole_volumes(&db).await;
    let again = daemon.command(&["jobs", "retry", &listed[0]["id"].to_string()]);
    assert!(!again.status.success(), "a done job is not run again");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("not failed but done"), "{said}");
    assert!(daemon.terminate().success());
}

/// A daemon whose output folder is a 512 KiB tmpfs, sent a DWI series it cannot write there:
/// the job has failed, with nothing left behind. Returns the tmpfs and the series' folder.
async fn a_job_failed_on_a_full_disk() -> (
    Db,
    tempfile::TempDir,
    Daemon,
    common::tmpfs::Tmpfs,
    std::path::PathBuf,
) {
    let (db, tmp, daemon) = converting_daemon().await;
    let derived = tmp.path().join("derived");
    // The DWI's volume alone is 0.9 MB.
    let disk = common::tmpfs::Tmpfs::mount(&derived, "512k");
    let series = dicom_folder("ge-dwi-tensor-r2");
    assert!(
        storescu(daemon.port, "SCANNER", &[&series])
            .status
            .success()
    );
    wait_jobs(&db, 1).await;
    let (state, error): (String, Option<String>) = sqlx::query_as("SELECT state, error FROM jobs")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "failed", "{}", daemon.log_text());
    let error = error.expect("the reason is recorded");
    assert!(error.contains("No space left on device"), "{error}");
    assert_eq!(files_under(&derived), Vec::<std::path::PathBuf>::new());
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM conversions")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    (db, tmp, daemon, disk, series)
}

/// Every volume recorded is there and reads back whole.
async fn assert_whole_volumes(db: &Db) {
    let paths = converted_volumes(db).await;
    assert!(!paths.is_empty());
    for path in paths {
        assert!(
            read_volume(Path::new(&path)).is_ok(),
            "{path} is not a whole volume"
        );
    }
}

/// The database goes away while a job converts: the job is neither failed for it nor left
/// 'running' until the next start. Once the database answers again the job goes back to the
/// queue and the same daemon converts the series anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_during_a_job_delays_it_and_the_same_daemon_converts_it() {
    let pg_dir = private_cluster_dir();
    let mut cluster = EmbeddedCluster::start(pg_dir.path()).expect("private PostgreSQL");
    cluster.ensure_database().await.unwrap();
    let url = cluster.url();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("derived").display().to_string();
    let mut env = FAST.to_vec();
    env.push(("BRAINAGED__PIPELINE__OUTPUT_DIR", &out));
    let mut daemon = Daemon::start(&tmp.path().join("spool"), &url, &env);
    let db = Db::connect(&url, 2).await.unwrap();
    let converter = converting_long_series(&db, &daemon).await;
    // The conversion is held while the database stops, so that it ends during the outage.
    unsafe { libc::kill(converter as i32, libc::SIGSTOP) };
    db.close().await;
    cluster.stop().expect("stop PostgreSQL");
    drop(cluster);
    unsafe { libc::kill(converter as i32, libc::SIGCONT) };
    assert!(
        wait_until(60, || daemon
            .log_text()
            .contains("the database went away during the job")),
        "{}",
        daemon.log_text()
    );

    let cluster = EmbeddedCluster::start(pg_dir.path()).expect("restart PostgreSQL");
    let db = Db::connect(&url, 2).await.unwrap();
    wait_jobs(&db, 1).await;
    let job = the_only_job(&db).await;
    assert_eq!(job, ("done".to_string(), 1), "{}", daemon.log_text());
    let paths = converted_volumes(&db).await;
    assert!(!paths.is_empty());
    assert!(paths.iter().all(|p| Path::new(p).exists()), "{paths:?}");
    assert!(daemon.terminate().success());
    db.close().await;
    drop(cluster);
}
