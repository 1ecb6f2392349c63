//! The connection index commits go through (`db::commit`) is kept between commits; when the
//! server has ended it meanwhile (a restart, an administrator, a dropped network connection),
//! the next commit is sent again on a new connection instead of failing.

use brainaged::db::Db;

mod common;
use common::index::{count, record};

/// Ends every other session of the test database, as a server restart or a dropped network
/// connection would; returns how many were ended.
async fn drop_other_sessions(db: &Db) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_commit_after_the_server_dropped_the_connection_succeeds_on_a_new_one() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    db.index_instance(&record("1.2.3.series", "1.2.3.1"))
        .await
        .unwrap();
    // The kept connection is one of the sessions ended here.
    assert!(drop_other_sessions(&db).await >= 1);
    db.index_instance(&record("1.2.3.series", "1.2.3.2"))
        .await
        .unwrap();
    db.index_instances(&[
        record("1.2.3.series", "1.2.3.3"),
        record("1.2.3.series", "1.2.3.4"),
    ])
    .await
    .unwrap();
    assert!(drop_other_sessions(&db).await >= 1);
    db.index_instances(&[
        record("1.2.3.series", "1.2.3.5"),
        record("1.2.3.series", "1.2.3.6"),
    ])
    .await
    .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM instances").await, 6);
}
