//! Counts for `brainaged status`.

use serde::Serialize;

use super::{Db, DbError};

/// What the index holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub instances: i64,
    pub studies: i64,
    /// Series by state (receiving, complete).
    pub series: Vec<(String, i64)>,
    /// Jobs by state (queued, running, done, failed).
    pub jobs: Vec<(String, i64)>,
}

impl Db {
    /// Counts of instances, studies, series by state and jobs by state.
    pub async fn counts(&self) -> Result<Counts, DbError> {
        let instances = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM instances"#)
            .fetch_one(&self.pool)
            .await?;
        let studies = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM studies"#)
            .fetch_one(&self.pool)
            .await?;
        let series = sqlx::query!(
            r#"SELECT state, count(*) AS "n!" FROM series GROUP BY state ORDER BY state"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.state, r.n))
        .collect();
        let jobs = sqlx::query!(
            r#"SELECT state, count(*) AS "n!" FROM jobs GROUP BY state ORDER BY state"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.state, r.n))
        .collect();
        Ok(Counts {
            instances,
            studies,
            series,
            jobs,
        })
    }
}
