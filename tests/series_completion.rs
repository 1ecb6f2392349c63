//! Series completion and the job queue against a real PostgreSQL: a series completes after
//! `stable_after_secs` without instances, a late instance reopens it and a new job version
//! follows, and concurrent workers never claim the same job.

use std::time::Duration;

use brainaged::db::Db;
use brainaged::db::jobs::{Job, PROCESS_SERIES, Retry};

mod common;
use common::index::{count, record};

#[tokio::test]
async fn stable_series_completes_and_late_instance_reopens() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    for i in 0..3 {
        db.index_instance(&record("1.2.3.a", &format!("1.2.3.a.{i}")))
            .await
            .unwrap();
    }
    db.index_instance(&record("1.2.3.b", "1.2.3.b.0"))
        .await
        .unwrap();
    // Re-sending an instance is idempotent: still one row.
    db.index_instance(&record("1.2.3.a", "1.2.3.a.0"))
        .await
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM instances").await, 4);

    assert!(
        db.complete_stable_series(1).await.unwrap().is_empty(),
        "nothing is stable yet"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut done = db.complete_stable_series(1).await.unwrap();
    done.sort_by(|a, b| a.series_instance_uid.cmp(&b.series_instance_uid));
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].version, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM jobs WHERE state = 'queued'").await,
        2
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM studies WHERE state = 'complete'").await,
        1
    );
    assert!(
        db.complete_stable_series(1).await.unwrap().is_empty(),
        "completes once"
    );

    // A late instance reopens series a and its study; the next completion is version 2.
    db.index_instance(&record("1.2.3.a", "1.2.3.a.late"))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM series WHERE state = 'receiving'").await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM studies WHERE state = 'complete'").await,
        0
    );
    assert!(db.complete_stable_series(1).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let done = db.complete_stable_series(1).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].series_instance_uid.as_str(), done[0].version),
        ("1.2.3.a", 2)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM jobs").await, 3);
    assert_eq!(
        count(&db, "SELECT count(*) FROM studies WHERE state = 'complete'").await,
        1
    );
}

#[tokio::test]
async fn a_series_still_receiving_never_completes() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    let poller = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut completed = Vec::new();
            for _ in 0..80 {
                completed.extend(db.complete_stable_series(2).await.unwrap());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            completed
        })
    };
    // One instance every 300 ms for 2.4 s: never two seconds of silence, even on a loaded machine.
    for i in 0..8 {
        db.index_instance(&record("1.2.3.c", &format!("1.2.3.c.{i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let completed = poller.await.unwrap();
    assert!(
        completed.iter().all(|s| s.version == 1) && completed.len() <= 1,
        "at most the final completion: {completed:?}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = db.complete_stable_series(2).await.unwrap();
    assert_eq!(
        completed.len() + later.len(),
        1,
        "the series completes exactly once"
    );
}

#[tokio::test]
async fn concurrent_workers_claim_distinct_jobs() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    for s in 0..6 {
        db.index_instance(&record(&format!("1.2.3.s{s}"), &format!("1.2.3.s{s}.0")))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(db.complete_stable_series(1).await.unwrap().len(), 6);
    let kinds = vec![PROCESS_SERIES.to_string()];
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (db, kinds) = (db.clone(), kinds.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = db.claim_job(&kinds).await.unwrap() {
                    mine.push(job.id);
                    db.finish_job(job.id, None).await.unwrap();
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        (before, all.len()),
        (6, 6),
        "every job claimed exactly once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM jobs WHERE state = 'done'").await,
        6
    );
}

/// A fresh database with one instance of `series`, completed, and its job claimed; with the
/// job kinds a worker claims.
async fn one_claimed_job(series: &str) -> (Db, Vec<String>, Job) {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    db.index_instance(&record(series, &format!("{series}.0")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    db.complete_stable_series(1).await.unwrap();
    let kinds = vec![PROCESS_SERIES.to_string()];
    let job = db.claim_job(&kinds).await.unwrap().expect("a job");
    (db, kinds, job)
}

#[tokio::test]
async fn jobs_left_running_are_requeued() {
    let (db, kinds, job) = one_claimed_job("1.2.3.r").await;
    assert!(db.claim_job(&kinds).await.unwrap().is_none());
    // The daemon "dies" here; its successor requeues the job and claims it again.
    let orphans = db.requeue_orphaned_jobs(3).await.unwrap();
    assert_eq!((orphans.requeued, orphans.abandoned), (1, 0));
    let again = db.claim_job(&kinds).await.unwrap().expect("requeued job");
    assert_eq!((again.id, again.attempts), (job.id, 2));
}

/// A job the daemon died running as many times as it may start one is failed with the reason,
/// not queued a fourth time; another job left running beside it is requeued.
#[tokio::test]
async fn a_job_the_daemon_died_running_too_often_is_failed() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    for series in ["1.2.3.p", "1.2.3.q"] {
        db.index_instance(&record(series, &format!("{series}.0")))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(db.complete_stable_series(1).await.unwrap().len(), 2);
    let kinds = vec![PROCESS_SERIES.to_string()];
    // The first job is started and "dies" twice, then runs a third time beside the second job.
    let first = db.claim_job(&kinds).await.unwrap().expect("a job");
    for _ in 0..2 {
        let orphans = db.requeue_orphaned_jobs(3).await.unwrap();
        assert_eq!((orphans.requeued, orphans.abandoned), (1, 0));
        assert_eq!(db.claim_job(&kinds).await.unwrap().unwrap().id, first.id);
    }
    let second = db.claim_job(&kinds).await.unwrap().expect("the second job");
    assert_eq!(second.attempts, 1);

    let orphans = db.requeue_orphaned_jobs(3).await.unwrap();
    assert_eq!((orphans.requeued, orphans.abandoned), (1, 1));
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM jobs WHERE id = $1")
            .bind(first.id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(state, "failed");
    let error = error.expect("the reason");
    assert!(error.contains("stopped 3 times"), "{error}");
    let again = db.claim_job(&kinds).await.unwrap().expect("the second job");
    assert_eq!((again.id, again.attempts), (second.id, 2));
    assert!(db.claim_job(&kinds).await.unwrap().is_none());
}

/// A job given back is queued again with its attempt taken back; a job's error that quotes a
/// NUL (a value a peer sent) is still recorded.
#[tokio::test]
async fn a_job_given_back_keeps_its_attempts_and_an_error_may_hold_a_nul() {
    let (db, kinds, job) = one_claimed_job("1.2.3.b").await;
    db.return_job(job.id).await.unwrap();
    let again = db
        .claim_job(&kinds)
        .await
        .unwrap()
        .expect("the job, queued again");
    assert_eq!((again.id, again.attempts), (job.id, 1));

    db.finish_job(job.id, Some("description 'T1\0w' not understood"))
        .await
        .unwrap();
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM jobs WHERE id = $1")
            .bind(job.id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(error.as_deref(), Some("description 'T1w' not understood"));
}

/// A failed job is queued again as new (no attempts, no error) and claimed; a running, done or
/// missing job is not.
#[tokio::test]
async fn a_failed_job_is_queued_again_as_new() {
    let (db, kinds, job) = one_claimed_job("1.2.3.f").await;
    let not_failed = |state: &str| Retry::NotFailed(state.to_string());
    let failed_ids = async || -> Vec<i64> {
        let failed = db.list_jobs(Some("failed"), 10).await.unwrap();
        failed.iter().map(|j| j.id).collect()
    };
    assert_eq!(db.retry_job(job.id).await.unwrap(), not_failed("running"));
    db.finish_job(job.id, Some("No space left on device"))
        .await
        .unwrap();
    assert_eq!(failed_ids().await, [job.id]);
    assert_eq!(db.retry_job(job.id).await.unwrap(), Retry::Queued);
    let listed = db.list_jobs(None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let queued = &listed[0];
    assert_eq!(
        (queued.id, queued.state.as_str(), queued.attempts),
        (job.id, "queued", 0)
    );
    assert_eq!((&queued.error, queued.finished_at), (&None, None));
    assert!(failed_ids().await.is_empty());

    let again = db.claim_job(&kinds).await.unwrap().expect("the job");
    assert_eq!((again.id, again.attempts), (job.id, 1));
    db.finish_job(job.id, None).await.unwrap();
    assert_eq!(db.retry_job(job.id).await.unwrap(), not_failed("done"));
    assert_eq!(db.retry_job(job.id + 1000).await.unwrap(), Retry::NoSuchJob);
}

/// A failed job whose series has moved on is not run again: it would convert the series as it
/// is now under the old version's name. That holds while the series receives again, and after
/// it completes as the next version.
#[tokio::test]
async fn a_failed_job_of_an_older_version_is_not_run_again() {
    let series = "1.2.3.s";
    let (db, _, job) = one_claimed_job(series).await;
    db.finish_job(job.id, Some("cannot read")).await.unwrap();
    db.index_instance(&record(series, &format!("{series}.late")))
        .await
        .unwrap();
    let superseded = Retry::Superseded {
        version: 1,
        latest: 2,
    };
    assert_eq!(db.retry_job(job.id).await.unwrap(), superseded);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(db.complete_stable_series(1).await.unwrap().len(), 1);
    assert_eq!(db.retry_job(job.id).await.unwrap(), superseded);

    let listed = db.list_jobs(None, 10).await.unwrap();
    let seen: Vec<_> = listed
        .iter()
        .map(|j| (j.series_version, j.state.as_str()))
        .collect();
    assert_eq!(seen, [(2, "queued"), (1, "failed")], "newest first");
    let failed = db.list_jobs(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("cannot read"));
    assert_eq!(db.list_jobs(None, 1).await.unwrap().len(), 1);
}

/// Everything the index holds, as comparable text: instances, series, studies and patients.
async fn index_state(db: &Db) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        r#"SELECT format('instance %s %s %s %s %s %s', sop_instance_uid, series_instance_uid,
                         study_instance_uid, spool_path, size_bytes, calling_ae)
             FROM instances
           UNION ALL
           SELECT format('series %s %s %s %s', series_instance_uid, study_instance_uid, state,
                         modality) FROM series
           UNION ALL
           SELECT format('study %s %s', study_instance_uid, state) FROM studies
           UNION ALL
           SELECT format('patient %s %s %s', patient_id, patient_name, sex) FROM patients
           ORDER BY 1"#,
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_group_commit_indexes_exactly_as_one_call_per_instance() {
    let (one_by_one, _) = Db::connect_for_test().await.expect("test database");
    let (grouped, _) = Db::connect_for_test().await.expect("test database");
    // Two series, a re-sent instance within the batch, and a patient whose name arrives late.
    let mut batch = vec![
        record("1.2.3.g", "1.2.3.g.0"),
        record("1.2.3.g", "1.2.3.g.1"),
        record("1.2.3.h", "1.2.3.h.0"),
        record("1.2.3.g", "1.2.3.g.0"),
    ];
    batch[3].spool_path = "x/resent.dcm".into();
    batch[2].patient_name = Some("Late^Name".into());
    for rec in &batch {
        one_by_one.index_instance(rec).await.unwrap();
    }
    assert_eq!(grouped.index_instances(&batch).await.unwrap(), 0);
    let state = index_state(&grouped).await;
    assert_eq!(state, index_state(&one_by_one).await);
    assert!(state.contains(&"instance 1.2.3.g.0 1.2.3.g 1.2.3.study x/resent.dcm 10 TEST".into()));
    assert_eq!(count(&grouped, "SELECT count(*) FROM instances").await, 3);

    // A batch with a late instance for a completed series reopens it, as one call would.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(grouped.complete_stable_series(1).await.unwrap().len(), 2);
    let late = [
        record("1.2.3.g", "1.2.3.g.late"),
        record("1.2.3.new", "1.2.3.new.0"),
    ];
    assert_eq!(grouped.index_instances(&late).await.unwrap(), 1);
    assert_eq!(
        count(
            &grouped,
            "SELECT count(*) FROM series WHERE state = 'receiving'"
        )
        .await,
        2
    );
}
