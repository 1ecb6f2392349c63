//! Series completion through the running daemon: a job appears `stable_after_secs` after the last
//! instance, a restart during the wait still completes the series, and a late instance reopens it
//! so that a new job version follows.

mod common;

use std::time::Duration;

use brainaged::db::Db;
use common::*;

async fn jobs(db: &Db) -> Vec<(String, i32)> {
    sqlx::query_as::<_, (String, i32)>(
        "SELECT series_instance_uid, series_version FROM jobs ORDER BY series_version",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

async fn wait_for_jobs(db: &Db, n: usize, secs: u64) -> Vec<(String, i32)> {
    for _ in 0..secs * 10 {
        let j = jobs(db).await;
        if j.len() >= n {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    jobs(db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_the_wait_still_completes_and_late_instances_reopen() {
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let stable = [("BRAINAGED__TRACKER__STABLE_AFTER_SECS", "2")];
    let mut daemon = Daemon::start(&spool, &url, &stable);
    let folder = dicom_folder("ge-dwi-tensor-r2");
    let files = dicom_files(&folder);
    let out = storescu(daemon.port, "SCANNER", &[&folder]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stop at once, before the series is stable; SIGTERM exits 0.
    assert!(
        daemon.terminate().success(),
        "SIGTERM exits 0:\n{}",
        daemon.log_text()
    );
    assert!(
        jobs(&db).await.is_empty(),
        "no job before the series was stable"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    daemon.restart();
    let done = wait_for_jobs(&db, 1, 10).await;
    assert_eq!(
        done.len(),
        1,
        "one job after the restart: {done:?}\n{}",
        daemon.log_text()
    );
    assert_eq!(done[0].1, 1);
    let state: String = sqlx::query_scalar("SELECT state FROM studies")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "complete");

    // A late instance (re-sent) reopens the series; a second job version follows.
    let out = storescu(daemon.port, "SCANNER", &[&files[0]]);
    assert!(out.status.success());
    let state: String = sqlx::query_scalar("SELECT state FROM series")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "receiving", "a late instance reopens the series");
    let done = wait_for_jobs(&db, 2, 10).await;
    assert_eq!(done.iter().map(|j| j.1).collect::<Vec<_>>(), vec![1, 2]);
    assert!(daemon.terminate().success());
}
