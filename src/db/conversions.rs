//! What the convert stage produced for a series version, and the spool files it reads.

use super::{Db, DbError};

/// One written volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConversionRecord {
    pub class: String,
    pub nifti_path: String,
    pub sidecar_path: Option<String>,
    pub bval_path: Option<String>,
    pub bvec_path: Option<String>,
}

impl ConversionRecord {
    /// Every file the record names: the volume, then its sidecar, b-values and b-vectors where
    /// they were written.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        let optional = [&self.sidecar_path, &self.bval_path, &self.bvec_path];
        std::iter::once(self.nifti_path.as_str())
            .chain(optional.into_iter().flatten().map(String::as_str))
    }
}

impl Db {
    /// Spool paths (relative to the spool root) of every instance of a series.
    pub async fn series_spool_paths(&self, series_uid: &str) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar!(
            "SELECT spool_path FROM instances WHERE series_instance_uid = $1 ORDER BY spool_path",
            series_uid
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the outcome of converting one series version: the volumes written (replacing
    /// any earlier record of the same version, so a retried job leaves one set), the series'
    /// class, and the problems met (None when there were none).
    pub async fn record_conversion(
        &self,
        series_uid: &str,
        version: i32,
        class: Option<&str>,
        outputs: &[ConversionRecord],
        problems: Option<&str>,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "DELETE FROM conversions WHERE series_instance_uid = $1 AND series_version = $2",
            series_uid,
            version
        )
        .execute(&mut *tx)
        .await?;
        for o in outputs {
            sqlx::query!(
                r#"INSERT INTO conversions (series_instance_uid, series_version, class, nifti_path,
                                            sidecar_path, bval_path, bvec_path)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
                series_uid,
                version,
                o.class,
                o.nifti_path,
                o.sidecar_path,
                o.bval_path,
                o.bvec_path,
            )
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query!(
            "UPDATE series SET class = $2, convert_error = $3 WHERE series_instance_uid = $1",
            series_uid,
            class,
            problems
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
