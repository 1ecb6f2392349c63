//! The `instances` index: one row per stored SOP instance.

use chrono::{DateTime, NaiveDate, Utc};

/// What the receiver knows about one stored instance; everything later stages query by.
///
/// Patient attributes are PHI: they go to the database, never to info-level logs.
#[derive(Debug, Clone, Default)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    /// Path of the part-10 file, relative to the spool root.
    pub spool_path: String,
    pub transfer_syntax: String,
    pub size_bytes: i64,
    pub calling_ae: String,
    pub received_at: DateTime<Utc>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<NaiveDate>,
    /// PatientAge as sent, e.g. "034Y".
    pub patient_age: Option<String>,
    pub study_date: Option<NaiveDate>,
    pub study_description: Option<String>,
    pub accession_number: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i32>,
    pub series_description: Option<String>,
    pub protocol_name: Option<String>,
    /// ImageType values joined with a backslash, as DICOM writes them.
    pub image_type: Option<String>,
    pub instance_number: Option<i32>,
}

use sqlx::PgConnection;

use super::{Db, DbError};

impl Db {
    /// Records one stored instance, creating or updating its patient, study and series.
    ///
    /// One call of the `brainaged_index_instance` function (its locking rules are in migration
    /// `20261126000003`, its short path for another instance of a known series in
    /// `20261127000006`), committed before the C-STORE is acknowledged: a single round trip,
    /// because one association is strictly sequential and every round trip is paid by every
    /// instance. A re-sent SOP Instance UID updates its row (one row, latest file). An instance
    /// for a completed series reopens it and its study, so a new job version follows the next
    /// completion. Returns true when it reopened a completed series.
    ///
    /// Sent on the connection kept for index commits (`db::commit`), not a pooled one; being
    /// idempotent, it is sent again on a new connection when the kept one turns out broken.
    pub async fn index_instance(&self, rec: &InstanceRecord) -> Result<bool, DbError> {
        let statement = |mut conn: PgConnection| async move {
            let result = sqlx::query_scalar!(
                r#"SELECT brainaged_index_instance($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                   $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) AS "reopened!""#,
                rec.sop_instance_uid,
                rec.sop_class_uid,
                rec.series_instance_uid,
                rec.study_instance_uid,
                rec.instance_number,
                rec.spool_path,
                rec.transfer_syntax,
                rec.size_bytes,
                rec.calling_ae,
                rec.received_at,
                rec.patient_id,
                rec.patient_name,
                rec.patient_sex,
                rec.patient_birth_date,
                rec.patient_age,
                rec.study_date,
                rec.study_description,
                rec.accession_number,
                rec.modality,
                rec.series_number,
                rec.series_description,
                rec.protocol_name,
                rec.image_type,
            )
            .fetch_one(&mut conn)
            .await;
            (conn, result)
        };
        let reopened = self.commits.run(&self.pool, statement).await?;
        Ok(reopened)
    }
}

impl Db {
    /// Records several stored instances in one call and one commit: all or none. Each is
    /// indexed exactly as [`index_instance`](Self::index_instance) would; used by the receiver's
    /// group commit, where the instances of concurrent associations share a transaction.
    /// Returns how many reopened a completed series.
    pub async fn index_instances(&self, recs: &[InstanceRecord]) -> Result<i32, DbError> {
        // One array per column. Arrays of nullable values are passed `as _`: the macro's check
        // knows only arrays of non-null elements, while the function takes NULLs in them.
        let statement = |mut conn: PgConnection| async move {
            let c = |f: fn(&InstanceRecord) -> String| recs.iter().map(f).collect::<Vec<_>>();
            let o =
                |f: fn(&InstanceRecord) -> Option<String>| recs.iter().map(f).collect::<Vec<_>>();
            let result = sqlx::query_scalar!(
                r#"SELECT brainaged_index_instances($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                   $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) AS "reopened!""#,
                &c(|r| r.sop_instance_uid.clone()),
                &c(|r| r.sop_class_uid.clone()),
                &c(|r| r.series_instance_uid.clone()),
                &c(|r| r.study_instance_uid.clone()),
                &recs.iter().map(|r| r.instance_number).collect::<Vec<_>>() as _,
                &c(|r| r.spool_path.clone()),
                &c(|r| r.transfer_syntax.clone()),
                &recs.iter().map(|r| r.size_bytes).collect::<Vec<_>>(),
                &c(|r| r.calling_ae.clone()),
                &recs.iter().map(|r| r.received_at).collect::<Vec<_>>(),
                &o(|r| r.patient_id.clone()) as _,
                &o(|r| r.patient_name.clone()) as _,
                &o(|r| r.patient_sex.clone()) as _,
                &recs
                    .iter()
                    .map(|r| r.patient_birth_date)
                    .collect::<Vec<_>>() as _,
                &o(|r| r.patient_age.clone()) as _,
                &recs.iter().map(|r| r.study_date).collect::<Vec<_>>() as _,
                &o(|r| r.study_description.clone()) as _,
                &o(|r| r.accession_number.clone()) as _,
                &o(|r| r.modality.clone()) as _,
                &recs.iter().map(|r| r.series_number).collect::<Vec<_>>() as _,
                &o(|r| r.series_description.clone()) as _,
                &o(|r| r.protocol_name.clone()) as _,
                &o(|r| r.image_type.clone()) as _,
            )
            .fetch_one(&mut conn)
            .await;
            (conn, result)
        };
        let reopened = self.commits.run(&self.pool, statement).await?;
        Ok(reopened)
    }
}

/// An indexed instance as the start-up check sees it: where its file should be and how big.
#[derive(Debug, Clone)]
pub struct IndexedFile {
    pub sop_instance_uid: String,
    pub spool_path: String,
    pub size_bytes: i64,
}

impl Db {
    /// The rows indexed within `window` before the newest row: the only rows whose files a crash
    /// can have lost, because every older file was fsynced before a later row was written.
    pub async fn recently_indexed(
        &self,
        window: std::time::Duration,
    ) -> Result<Vec<IndexedFile>, DbError> {
        let secs = window.as_secs_f64();
        let rows = sqlx::query_as!(
            IndexedFile,
            r#"SELECT sop_instance_uid, spool_path, size_bytes FROM instances
               WHERE indexed_at >= (SELECT max(indexed_at) FROM instances)
                                   - make_interval(secs => $1)"#,
            secs,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Removes the row of an instance whose file is not in the spool (its write failed, or a
    /// crash lost it before it was acknowledged), and the series and study rows it alone had
    /// created. Returns true when a row was removed.
    pub async fn forget_instance(
        &self,
        sop_instance_uid: &str,
        spool_path: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query!(
            r#"DELETE FROM instances WHERE sop_instance_uid = $1 AND spool_path = $2
               RETURNING series_instance_uid, study_instance_uid"#,
            sop_instance_uid,
            spool_path,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &gone {
            sqlx::query!(
                r#"DELETE FROM series s WHERE s.series_instance_uid = $1
                     AND NOT EXISTS (SELECT 1 FROM instances i
                                     WHERE i.series_instance_uid = s.series_instance_uid)
                     AND NOT EXISTS (SELECT 1 FROM jobs j
                                     WHERE j.series_instance_uid = s.series_instance_uid)"#,
                row.series_instance_uid,
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                r#"DELETE FROM studies st WHERE st.study_instance_uid = $1
                     AND NOT EXISTS (SELECT 1 FROM series s
                                     WHERE s.study_instance_uid = st.study_instance_uid)"#,
                row.study_instance_uid,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(gone.is_some())
    }
}
