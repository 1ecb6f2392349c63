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

use super::{Db, DbError};

impl Db {
    /// Records one stored instance, creating or updating its patient, study and series.
    ///
    /// Runs in one transaction that commits before the C-STORE is acknowledged. A re-sent SOP
    /// Instance UID updates its row (one row, latest file). An instance for a completed series
    /// reopens it (and its study), so a new job version follows the next completion.
    ///
    /// The series row is taken `FOR SHARE`: concurrent instances of one series do not wait for
    /// each other, but the tracker, which locks the row `FOR UPDATE` before it decides the series
    /// is complete, waits for them and then sees them (see `tracker`).
    pub async fn index_instance(&self, rec: &InstanceRecord) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let patient_ref = upsert_patient(&mut tx, rec).await?;
        sqlx::query!(
            r#"INSERT INTO studies (study_instance_uid, patient_ref, study_date, study_description,
                                   accession_number, patient_age)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (study_instance_uid) DO NOTHING"#,
            rec.study_instance_uid,
            patient_ref,
            rec.study_date,
            rec.study_description,
            rec.accession_number,
            rec.patient_age,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number,
                                  series_description, protocol_name, image_type)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (series_instance_uid) DO NOTHING"#,
            rec.series_instance_uid,
            rec.study_instance_uid,
            rec.modality,
            rec.series_number,
            rec.series_description,
            rec.protocol_name,
            rec.image_type,
        )
        .execute(&mut *tx)
        .await?;
        let state = sqlx::query_scalar!(
            "SELECT state FROM series WHERE series_instance_uid = $1 FOR SHARE",
            rec.series_instance_uid
        )
        .fetch_one(&mut *tx)
        .await?;
        if state == "complete" {
            reopen(&mut tx, &rec.series_instance_uid).await?;
        }
        sqlx::query!(
            r#"INSERT INTO instances (sop_instance_uid, sop_class_uid, series_instance_uid,
                                     study_instance_uid, instance_number, spool_path,
                                     transfer_syntax, size_bytes, calling_ae, received_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (sop_instance_uid) DO UPDATE SET
                   sop_class_uid = EXCLUDED.sop_class_uid,
                   series_instance_uid = EXCLUDED.series_instance_uid,
                   study_instance_uid = EXCLUDED.study_instance_uid,
                   instance_number = EXCLUDED.instance_number,
                   spool_path = EXCLUDED.spool_path,
                   transfer_syntax = EXCLUDED.transfer_syntax,
                   size_bytes = EXCLUDED.size_bytes,
                   calling_ae = EXCLUDED.calling_ae,
                   received_at = EXCLUDED.received_at,
                   indexed_at = now()"#,
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
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Finds or creates the patient. Attributes are updated only when they change, so that the hot
/// path takes no row lock on a patient that many concurrent instances share.
async fn upsert_patient(tx: &mut Tx<'_>, rec: &InstanceRecord) -> Result<i64, DbError> {
    let patient_id = rec.patient_id.clone().unwrap_or_default();
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO patients (patient_id, patient_name, sex, birth_date)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (patient_id, issuer) DO NOTHING
           RETURNING id"#,
        patient_id,
        rec.patient_name,
        rec.patient_sex,
        rec.patient_birth_date,
    )
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    let id = sqlx::query_scalar!(
        r#"UPDATE patients SET
               patient_name = COALESCE($2, patient_name),
               sex = COALESCE($3, sex),
               birth_date = COALESCE($4, birth_date),
               updated_at = now()
           WHERE patient_id = $1 AND issuer = ''
             AND (($2::text IS NOT NULL AND patient_name IS DISTINCT FROM $2)
               OR ($3::text IS NOT NULL AND sex IS DISTINCT FROM $3)
               OR ($4::date IS NOT NULL AND birth_date IS DISTINCT FROM $4))
           RETURNING id"#,
        patient_id,
        rec.patient_name,
        rec.patient_sex,
        rec.patient_birth_date,
    )
    .fetch_optional(&mut **tx)
    .await?;
    match id {
        Some(id) => Ok(id),
        None => Ok(sqlx::query_scalar!(
            "SELECT id FROM patients WHERE patient_id = $1 AND issuer = ''",
            patient_id
        )
        .fetch_one(&mut **tx)
        .await?),
    }
}

/// A late instance for a completed series: back to receiving, and its study with it.
async fn reopen(tx: &mut Tx<'_>, series_uid: &str) -> Result<(), DbError> {
    let study = sqlx::query_scalar!(
        r#"UPDATE series SET state = 'receiving', completed_at = NULL
           WHERE series_instance_uid = $1 AND state = 'complete'
           RETURNING study_instance_uid"#,
        series_uid
    )
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(study) = study {
        sqlx::query!(
            "UPDATE studies SET state = 'receiving', completed_at = NULL
             WHERE study_instance_uid = $1 AND state = 'complete'",
            study
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
