//! The index function's short path: a later instance of a series already indexed skips the
//! patient, study and series inserts only when they would change nothing. These cases each
//! need one of them to act, and check that it did.

use brainaged::db::Db;

mod common;
use common::index::{count, record};

/// The patient row of `patient_id` as text: name, sex, birth date.
async fn patient(db: &Db, patient_id: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT format('%s|%s|%s', patient_name, sex, birth_date) FROM patients \
         WHERE patient_id = $1",
    )
    .bind(patient_id)
    .fetch_optional(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn changed_patient_attributes_of_a_known_series_are_still_written() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    let mut first = record("1.2.3.k", "1.2.3.k.0");
    first.patient_name = Some("Doe^Jane".into());
    db.index_instance(&first).await.unwrap();
    assert_eq!(patient(&db, "P1").await.as_deref(), Some("Doe^Jane|F|"));

    // The same attributes: nothing changes.
    db.index_instance(&record("1.2.3.k", "1.2.3.k.1"))
        .await
        .unwrap();
    assert_eq!(patient(&db, "P1").await.as_deref(), Some("Doe^Jane|F|"));

    // A corrected name and a birth date arriving with a later instance are written.
    let mut corrected = record("1.2.3.k", "1.2.3.k.2");
    corrected.patient_name = Some("Doe^Janet".into());
    corrected.patient_birth_date = chrono::NaiveDate::from_ymd_opt(1950, 3, 1);
    db.index_instance(&corrected).await.unwrap();
    assert_eq!(
        patient(&db, "P1").await.as_deref(),
        Some("Doe^Janet|F|1950-03-01")
    );

    // An instance without the name leaves it; one with another sex changes it.
    let mut resexed = record("1.2.3.k", "1.2.3.k.3");
    resexed.patient_sex = Some("M".into());
    db.index_instance(&resexed).await.unwrap();
    assert_eq!(
        patient(&db, "P1").await.as_deref(),
        Some("Doe^Janet|M|1950-03-01")
    );
    assert_eq!(count(&db, "SELECT count(*) FROM patients").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM instances").await, 4);
}

#[tokio::test]
async fn a_known_series_under_another_study_or_patient_still_makes_their_rows() {
    let (db, _) = Db::connect_for_test().await.expect("test database");
    db.index_instance(&record("1.2.3.m", "1.2.3.m.0"))
        .await
        .unwrap();

    // The series UID arriving again under another study (a reused or malformed UID): that
    // study is still recorded, as the long path records it.
    let mut elsewhere = record("1.2.3.m", "1.2.3.m.1");
    elsewhere.study_instance_uid = "1.2.3.other-study".into();
    db.index_instance(&elsewhere).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM studies").await, 2);
    let recorded: String = sqlx::query_scalar(
        "SELECT study_instance_uid FROM instances WHERE sop_instance_uid = '1.2.3.m.1'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(recorded, "1.2.3.other-study");

    // A patient first seen in an instance of a known series gets a row.
    let mut other = record("1.2.3.m", "1.2.3.m.2");
    other.patient_id = Some("P2".into());
    db.index_instance(&other).await.unwrap();
    assert_eq!(patient(&db, "P2").await.as_deref(), Some("|F|"));
    assert_eq!(count(&db, "SELECT count(*) FROM patients").await, 2);
}
