//! The receiver indexes an instance while its file is still being made durable (the two flushes
//! overlap). These tests check the two ways a row can get ahead of its file, with the real
//! daemon, DCMTK's storescu and PostgreSQL:
//! - the spool disk fills up mid-send (a real full filesystem, a small tmpfs): every refused
//!   instance's row is taken back before the failure is answered, every acknowledged instance
//!   is kept, and the same send succeeds once there is room;
//! - a crash lost files whose rows were committed: the start-up check removes those rows (and a
//!   series and study only they made) and re-describes a row whose older file is in place.

mod common;
#[path = "ingest_support/stored_as_sent.rs"]
mod stored_as_sent;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::db::Db;
use common::tmpfs::Tmpfs;
use common::*;
use stored_as_sent::{assert_stored_as_sent, stored_index};

/// SOP Instance UID → (spool path, size), as the index has them.
async fn rows(db: &Db) -> HashMap<String, (String, i64)> {
    sqlx::query_as::<_, (String, String, i64)>(
        "SELECT sop_instance_uid, spool_path, size_bytes FROM instances",
    )
    .fetch_all(db.pool())
    .await
    .expect("query instances")
    .into_iter()
    .map(|(uid, path, size)| (uid, (path, size)))
    .collect()
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db.pool())
        .await
        .expect("count")
}

/// Sends `folder` with storescu's verbose log in `log`; returns the files it saw acknowledged
/// and the log.
fn send_logged(port: u16, folder: &Path, log: &Path) -> (Vec<PathBuf>, String) {
    let out = std::fs::File::create(log).expect("log");
    let status = storescu_command(port, "RECOVER", &[folder])
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .status()
        .expect("storescu");
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        status.code().is_some(),
        "storescu did not finish normally:\n{text}"
    );
    (acknowledged_files(&text), text)
}

/// Every acknowledged file has its row, the row's size is its spool file's, and that spool file
/// holds the instance as sent: its dataset's SOP Instance UID and pixel data are the source's,
/// read by pydicom (`compare.py`).
async fn assert_kept(
    db: &Db,
    spool: &Path,
    index: &HashMap<String, (String, i64)>,
    acked: &[PathBuf],
) {
    for file in acked {
        let uid = sop_instance_uid(file);
        let (rel, size) = index
            .get(&uid)
            .unwrap_or_else(|| panic!("acknowledged {} is not indexed", file.display()));
        let stored = spool.join(rel);
        let len = std::fs::metadata(&stored)
            .unwrap_or_else(|e| panic!("{}: {e}", stored.display()))
            .len();
        assert_eq!(len as i64, *size, "{} size differs from its row", rel);
        assert_eq!(sop_instance_uid(&stored), uid);
    }
    assert_stored_as_sent(acked, &stored_index(db, spool).await);
}

/// Files whose names say they are temporary (a write that did not finish).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.into_path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_without_losing_or_leaving_anything() {
    let folder = dicom_folder("ge-t1-mprage");
    let files = dicom_files(&folder);
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // About a quarter of the series fits.
    let disk = Tmpfs::mount(&spool, "5m");
    let mut daemon = Daemon::start(&spool, &url, &[]);

    let (acked, sent) = send_logged(daemon.port, &folder, &tmp.path().join("full.log"));
    assert!(!acked.is_empty(), "nothing fitted:\n{}", daemon.log_text());
    assert!(
        acked.len() < files.len(),
        "the disk never filled ({} of {} stored)",
        acked.len(),
        files.len()
    );
    // Every file was answered: what was not stored was refused with A700, none went unsent.
    assert_eq!(
        sent.matches("Refused: OutOfResources").count(),
        files.len() - acked.len(),
        "every C-STORE not acknowledged is refused with A700:\n{sent}"
    );
    let index = rows(&db).await;
    assert_kept(&db, &spool, &index, &acked).await;
    assert_eq!(index.len(), acked.len(), "a refused instance kept its row");
    assert!(temporaries(&spool).is_empty(), "temporary files left");
    let log = daemon.log_text();
    assert!(
        log.contains("No space left on device"),
        "the failure names its cause:\n{log}"
    );

    // Room again: the same send completes, one row per instance.
    disk.resize("64m");
    let (acked, _) = send_logged(daemon.port, &folder, &tmp.path().join("retry.log"));
    assert_eq!(acked.len(), files.len(), "resend after freeing space");
    let index = rows(&db).await;
    assert_eq!(index.len(), files.len());
    assert_kept(&db, &spool, &index, &files).await;
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_whose_files_a_crash_lost_are_settled_at_start() {
    let series = dicom_folder("ge-dwi-tensor-r2");
    let lone = dicom_folder("siemens-xa30-fa-derived");
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut daemon = Daemon::start(&spool, &url, &[]);
    for folder in [&series, &lone] {
        let out = storescu(daemon.port, "RECOVER", &[folder]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    daemon.kill9();
    let before = rows(&db).await;
    let series_files = dicom_files(&series);
    let lone_file = &dicom_files(&lone)[0];
    assert_eq!(before.len(), series_files.len() + 1);
    let studies = count(&db, "SELECT count(*) FROM studies").await;
    let all_series = count(&db, "SELECT count(*) FROM series").await;

    // What a crash in the middle of writes leaves: rows whose files never reached the disk
    // (one of a series, and the only instance of another study), and a re-sent instance whose
    // new file was lost while the older one stayed.
    let gone = sop_instance_uid(&series_files[0]);
    let lone_uid = sop_instance_uid(lone_file);
    for uid in [&gone, &lone_uid] {
        std::fs::remove_file(spool.join(&before[uid].0)).unwrap();
    }
    let older = sop_instance_uid(&series_files[1]);
    let older_path = spool.join(&before[&older].0);
    let status = Command::new("/usr/bin/dcmodify")
        .args([
            "-nb",
            "-m",
            "(0008,103e)=an older, longer series description",
        ])
        .arg(&older_path)
        .status()
        .expect("dcmodify");
    assert!(status.success());
    let older_size = std::fs::metadata(&older_path).unwrap().len() as i64;
    assert_ne!(older_size, before[&older].1, "the edit changed the size");

    daemon.restart();
    let after = rows(&db).await;
    assert!(!after.contains_key(&gone), "row of a lost file kept");
    assert!(!after.contains_key(&lone_uid), "row of a lost file kept");
    assert_eq!(after.len(), before.len() - 2);
    assert_eq!(
        after[&older].1, older_size,
        "row describes the file in place"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM studies").await,
        studies - 1,
        "the study only the lost instance made is gone"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM series").await,
        all_series - 1,
        "the series only the lost instance made is gone"
    );
    assert_kept(&db, &spool, &after, &series_files[1..]).await;
    let log = daemon.log_text();
    assert!(
        log.contains("forgotten=2") && log.contains("reindexed=1"),
        "start-up check reported:\n{log}"
    );

    // The senders were never told these were stored; their resend completes the index.
    for folder in [&series, &lone] {
        let out = storescu(daemon.port, "RECOVER", &[folder]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(rows(&db).await.len(), before.len());
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
