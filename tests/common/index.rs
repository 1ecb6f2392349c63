//! Helpers for tests that index instances straight into a test database.

use brainaged::db::Db;
use brainaged::db::instances::InstanceRecord;

/// A minimal MR instance of `series` (study "1.2.3.study", patient "P1").
pub fn record(series: &str, sop: &str) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
        series_instance_uid: series.into(),
        study_instance_uid: "1.2.3.study".into(),
        spool_path: format!("x/{sop}.dcm"),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        size_bytes: 10,
        calling_ae: "TEST".into(),
        received_at: chrono::Utc::now(),
        patient_id: Some("P1".into()),
        patient_sex: Some("F".into()),
        modality: Some("MR".into()),
        ..Default::default()
    }
}

/// The single count `sql` returns.
pub async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
}
