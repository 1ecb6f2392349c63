//! Nothing acknowledged is lost: kill -9 in the middle of a 2000-instance send, and PostgreSQL
//! going away during ingest. The sender is DCMTK's storescu; "acknowledged" is what its own log
//! says was stored with a success status.

mod common;
#[path = "ingest_support/stored_as_sent.rs"]
mod stored_as_sent;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brainaged::db::Db;
use brainaged::db::embedded::EmbeddedCluster;
use common::*;
use stored_as_sent::{assert_stored_as_sent, stored_index};

/// SOP Instance UID → spool path, as the index has them.
async fn indexed(db: &Db) -> Vec<(String, String)> {
    sqlx::query_as::<_, (String, String)>("SELECT sop_instance_uid, spool_path FROM instances")
        .fetch_all(db.pool())
        .await
        .expect("query instances")
}

/// Every acknowledged file is indexed, and its spool file is a complete part-10 file holding
/// the same instance as sent: its dataset's SOP Instance UID and pixel data are the source's,
/// read by pydicom (`compare.py`).
async fn assert_acknowledged_are_kept(db: &Db, spool: &Path, acked: &[PathBuf]) {
    let rows: std::collections::HashMap<String, String> = indexed(db).await.into_iter().collect();
    for file in acked {
        let uid = sop_instance_uid(file);
        let rel = rows
            .get(&uid)
            .unwrap_or_else(|| panic!("acknowledged {} ({uid}) is not indexed", file.display()));
        let stored = spool.join(rel);
        assert_eq!(
            sop_instance_uid(&stored),
            uid,
            "spool file {} holds another instance",
            stored.display()
        );
    }
    assert_stored_as_sent(acked, &stored_index(db, spool).await);
}

fn send_logged(port: u16, folder: &Path, log: &Path) -> std::process::Child {
    let out = std::fs::File::create(log).expect("log");
    storescu_command(port, "DURABLE", &[folder])
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("storescu")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_2000_instance_send_loses_nothing_acknowledged() {
    let folder = dicom_folder("philips-dwi-bangalore");
    let files = dicom_files(&folder);
    assert!(
        files.len() >= 2000,
        "need at least 2000 instances, have {}",
        files.len()
    );
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut daemon = Daemon::start(&spool, &url, &[]);

    let log = tmp.path().join("storescu-1.log");
    let mut sender = send_logged(daemon.port, &folder, &log);
    // Kill the daemon once a few hundred instances are in, in the middle of the stream.
    let mut n = 0i64;
    for _ in 0..600 {
        n = sqlx::query_scalar("SELECT count(*) FROM instances")
            .fetch_one(db.pool())
            .await
            .unwrap();
        if n >= 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        n >= 400,
        "the send did not get going: {n} instances after 30 s\n{}",
        daemon.log_text()
    );
    daemon.kill9();
    let _ = sender.wait();
    let acked = acknowledged_files(&std::fs::read_to_string(&log).unwrap());
    assert!(
        acked.len() >= 400,
        "storescu saw only {} acknowledgements",
        acked.len()
    );
    assert!(
        acked.len() < files.len(),
        "the kill came too late to test anything"
    );
    assert_acknowledged_are_kept(&db, &spool, &acked).await;

    // Restart and send everything again: all instances end up indexed exactly once. The kill
    // may have left the write in flight as a temporary file; one more stands for a write that a
    // power cut interrupted, so that the restart is seen removing it.
    std::fs::write(spool.join(".writing/4194304.0.tmp"), b"half an instance").unwrap();
    daemon.restart();
    let out = storescu(daemon.port, "DURABLE", &[&folder]);
    assert!(
        out.status.success(),
        "resend failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = indexed(&db).await;
    let uids: HashSet<String> = rows.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(rows.len(), files.len(), "one row per instance");
    for f in &files {
        assert!(
            uids.contains(&sop_instance_uid(f)),
            "{} missing after resend",
            f.display()
        );
    }
    assert_acknowledged_are_kept(&db, &spool, &files).await;
    // The restart removed the temporary files of interrupted writes.
    let leftovers: Vec<_> = std::fs::read_dir(spool.join(".writing")).unwrap().collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_failure_and_loses_nothing() {
    let pg_dir = private_cluster_dir();
    let cluster = EmbeddedCluster::start(pg_dir.path()).expect("private PostgreSQL");
    cluster.ensure_database().await.unwrap();
    let url = cluster.url();
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut daemon = Daemon::start(&spool, &url, &[]);
    let before = dicom_folder("ge-dwi-tensor-r2");
    let during = dicom_folder("ge-dwi-tensor-r3");

    let out = storescu(daemon.port, "OUTAGE", &[&before]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The database goes away: every C-STORE must now fail (A700), none may be acknowledged.
    let mut cluster = cluster;
    cluster.stop().expect("stop PostgreSQL");
    let log = tmp.path().join("storescu-outage.log");
    send_logged(daemon.port, &during, &log).wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let acked_during = acknowledged_files(&text);
    // The documented choice: without the database, answer A700 so that the sender keeps the data.
    assert!(
        acked_during.is_empty(),
        "acknowledged without a database:\n{text}"
    );
    assert_eq!(
        text.matches("Refused: OutOfResources").count(),
        dicom_files(&during).len(),
        "every C-STORE during the outage is refused with A700:\n{text}"
    );
    drop(cluster);

    // The database is back: whatever was acknowledged is there, nothing refused is indexed, and
    // a resend completes the set, every instance of it acknowledged and kept.
    let cluster = EmbeddedCluster::start(pg_dir.path()).expect("restart PostgreSQL");
    let db = Db::connect(&url, 2).await.unwrap();
    let before_files = dicom_files(&before);
    assert_acknowledged_are_kept(&db, &spool, &before_files).await;
    let after_outage = indexed(&db).await;
    let refused: HashSet<String> = dicom_files(&during)
        .iter()
        .map(|f| sop_instance_uid(f))
        .collect();
    assert!(
        !after_outage.iter().any(|(uid, _)| refused.contains(uid)),
        "an instance refused during the outage is indexed"
    );
    assert_eq!(
        after_outage.len(),
        before_files.len(),
        "rows after the outage"
    );
    let log = tmp.path().join("storescu-resend.log");
    let status = send_logged(daemon.port, &during, &log).wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "resend after the outage:\n{text}");
    let acked_resend = acknowledged_files(&text);
    assert_eq!(
        acked_resend.len(),
        dicom_files(&during).len(),
        "every resent instance is acknowledged:\n{text}"
    );
    assert_acknowledged_are_kept(&db, &spool, &acked_resend).await;
    assert_eq!(
        indexed(&db).await.len(),
        before_files.len() + acked_resend.len(),
        "one row per instance after the resend"
    );
    assert!(daemon.terminate().success());
    db.close().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_send_finishes_the_message_in_flight_and_exits_0() {
    let folder = dicom_folder("philips-dwi-vanderbilt");
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let mut daemon = Daemon::start(&spool, &url, &[]);
    let log = tmp.path().join("storescu-term.log");
    let mut sender = send_logged(daemon.port, &folder, &log);
    for _ in 0..600 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
            .fetch_one(db.pool())
            .await
            .unwrap();
        if n >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    assert!(
        daemon.terminate().success(),
        "SIGTERM exits 0:\n{}",
        daemon.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        started.elapsed()
    );
    let _ = sender.wait();
    let acked = acknowledged_files(&std::fs::read_to_string(&log).unwrap());
    assert!(acked.len() >= 100, "only {} acknowledged", acked.len());
    assert_acknowledged_are_kept(&db, &spool, &acked).await;
    // Nothing half-written is indexed: every row's file is a complete instance.
    for (uid, rel) in indexed(&db).await {
        assert_eq!(sop_instance_uid(&spool.join(rel)), uid);
    }
}
