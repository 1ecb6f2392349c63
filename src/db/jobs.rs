//! Series completion and the job queue.
//!
//! Completion state lives in the database, measured on the database's clock, so a restarted
//! daemon resumes every timer where it stopped. Jobs are claimed with `FOR UPDATE SKIP LOCKED`,
//! so any number of workers (in one daemon or several) can consume the queue without conflicts.

use super::{Db, DbError};

/// The job kind a completed series enqueues: the pipeline that converts, scores and reports it.
pub const PROCESS_SERIES: &str = "process_series";

/// A series that has just become complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSeries {
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    /// Starts at 1; each reopening and completion adds one.
    pub version: i32,
}

/// What start-up did with the jobs a daemon that died left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Orphans {
    /// Put back in the queue, to run again.
    pub requeued: u64,
    /// Failed: the daemon had died running each of them as many times as it may start a job.
    pub abandoned: u64,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub series_instance_uid: String,
    pub series_version: i32,
    pub attempts: i32,
}

impl Db {
    /// Marks complete every receiving series with no instance indexed in the last
    /// `stable_after_secs`, enqueues one job per completed series version, and completes the
    /// studies whose series are now all complete. Returns the series completed.
    ///
    /// Series rows are locked `FOR UPDATE SKIP LOCKED` first: a series with an instance being
    /// indexed right now holds a share lock and is skipped (it is not stable anyway). Once locked,
    /// the recency check runs in a new statement, so it sees every instance committed before the
    /// lock was granted; instances arriving later wait for this transaction and then reopen.
    pub async fn complete_stable_series(
        &self,
        stable_after_secs: u64,
    ) -> Result<Vec<CompletedSeries>, DbError> {
        let mut tx = self.pool.begin().await?;
        let candidates = sqlx::query_scalar!(
            "SELECT series_instance_uid FROM series WHERE state = 'receiving'
             FOR UPDATE SKIP LOCKED"
        )
        .fetch_all(&mut *tx)
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let stable = stable_after_secs as f64;
        let done = sqlx::query_as!(
            CompletedSeries,
            r#"UPDATE series s
               SET state = 'complete', version = version + 1, completed_at = now()
               WHERE s.series_instance_uid = ANY($1)
                 AND NOT EXISTS (
                     SELECT 1 FROM instances i
                     WHERE i.series_instance_uid = s.series_instance_uid
                       AND i.indexed_at > clock_timestamp() - make_interval(secs => $2))
               RETURNING series_instance_uid, study_instance_uid, version"#,
            &candidates,
            stable,
        )
        .fetch_all(&mut *tx)
        .await?;
        for series in &done {
            sqlx::query!(
                "INSERT INTO jobs (kind, series_instance_uid, series_version) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, series_instance_uid, series_version) DO NOTHING",
                PROCESS_SERIES,
                series.series_instance_uid,
                series.version,
            )
            .execute(&mut *tx)
            .await?;
        }
        let studies: Vec<String> = done.iter().map(|s| s.study_instance_uid.clone()).collect();
        sqlx::query!(
            r#"UPDATE studies st SET state = 'complete', completed_at = now()
               WHERE st.study_instance_uid = ANY($1) AND st.state <> 'complete'
                 AND NOT EXISTS (SELECT 1 FROM series s
                                 WHERE s.study_instance_uid = st.study_instance_uid
                                   AND s.state <> 'complete')"#,
            &studies
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Claims the oldest queued job of one of `kinds`, or None when the queue is empty.
    pub async fn claim_job(&self, kinds: &[String]) -> Result<Option<Job>, DbError> {
        Ok(sqlx::query_as!(
            Job,
            r#"UPDATE jobs SET state = 'running', started_at = now(), attempts = attempts + 1
               WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND kind = ANY($1)
                           ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
               RETURNING id, kind, series_instance_uid, series_version, attempts"#,
            kinds
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks a job done, or failed with `error`.
    pub async fn finish_job(&self, id: i64, error: Option<&str>) -> Result<(), DbError> {
        let state = if error.is_some() { "failed" } else { "done" };
        // PostgreSQL text cannot hold a NUL, and an error may quote a value a peer sent.
        let error = error.map(|e| e.replace('\0', ""));
        sqlx::query!(
            "UPDATE jobs SET state = $2, error = $3, finished_at = now() WHERE id = $1",
            id,
            state,
            error
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a job this daemon was running back in the queue, because it is stopping or the
    /// database went away under the job, and takes back the attempt: `pipeline.max_attempts`
    /// counts the times the daemon died running a job, and neither is one of them.
    pub async fn return_job(&self, id: i64) -> Result<(), DbError> {
        sqlx::query!(
            r#"UPDATE jobs SET state = 'queued', started_at = NULL, attempts = attempts - 1
               WHERE id = $1 AND state = 'running'"#,
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts the jobs a daemon that died left running back in the queue, except those it had
    /// already started `max_attempts` times, which are failed with the reason. A job that the
    /// daemon dies running whenever it runs it (the out-of-memory killer picking the daemon,
    /// say; a crashing decoder ends only the converter child) would otherwise restart it in a
    /// loop, and every restart drops the associations in flight. Called at start-up, when no
    /// worker of this daemon can be running yet.
    pub async fn requeue_orphaned_jobs(&self, max_attempts: i32) -> Result<Orphans, DbError> {
        let mut tx = self.pool.begin().await?;
        let abandoned = sqlx::query!(
            r#"UPDATE jobs SET state = 'failed', finished_at = now(),
                   error = format('the daemon stopped %s times while running this job (a crash, '
                                  'a kill or the out-of-memory killer); not run again', attempts)
               WHERE state = 'running' AND attempts >= $1"#,
            max_attempts
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requeued = sqlx::query!(
            "UPDATE jobs SET state = 'queued', started_at = NULL WHERE state = 'running'"
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Orphans {
            requeued,
            abandoned,
        })
    }
}

/// A job as an operator lists it (`brainaged jobs list`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobSummary {
    pub id: i64,
    pub kind: String,
    pub series_instance_uid: String,
    pub series_version: i32,
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What asking to run a job again did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Queued again, with its attempts and error cleared.
    Queued,
    /// No job has that id.
    NoSuchJob,
    /// Only a failed job is run again; this one is in the state named.
    NotFailed(String),
    /// The job is for an older version of its series, or its series is receiving again: running
    /// it would convert the series' instances as they are now under the old version's name.
    /// The series' latest version (or the one on its way) is the one to look at.
    Superseded { version: i32, latest: i32 },
}

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry::Queued => write!(f, "queued again"),
            Retry::NoSuchJob => write!(f, "no such job"),
            Retry::NotFailed(state) => {
                write!(f, "not failed but {state}; only a failed job runs again")
            }
            Retry::Superseded { version, latest } => write!(
                f,
                "for version {version} of its series, which has moved on to version {latest} \
                 (received, or being received); not run again"
            ),
        }
    }
}

impl Db {
    /// The newest jobs first, at most `limit`, only those in `state` when given.
    pub async fn list_jobs(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobSummary>, DbError> {
        Ok(sqlx::query_as!(
            JobSummary,
            r#"SELECT id, kind, series_instance_uid, series_version, state, attempts, error,
                      created_at, finished_at
               FROM jobs WHERE $1::text IS NULL OR state = $1
               ORDER BY id DESC LIMIT $2"#,
            state,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues a failed job again, as new: no attempts, no error. A job that failed for a cause
    /// that has since gone (a full disk, a converter fixed by an upgrade) then runs without the
    /// series being sent again, which would make a new version. A daemon running now picks it
    /// up at its next poll.
    pub async fn retry_job(&self, id: i64) -> Result<Retry, DbError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query!(
            r#"SELECT j.state, j.series_version, s.version, s.state AS series_state
               FROM jobs j JOIN series s USING (series_instance_uid)
               WHERE j.id = $1 FOR UPDATE OF j FOR SHARE OF s"#,
            id
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = found else {
            return Ok(Retry::NoSuchJob);
        };
        if job.state != "failed" {
            return Ok(Retry::NotFailed(job.state));
        }
        // A series receiving again will complete as the version after its last one.
        let latest = job.version + i32::from(job.series_state == "receiving");
        if job.series_version != latest {
            return Ok(Retry::Superseded {
                version: job.series_version,
                latest,
            });
        }
        sqlx::query!(
            r#"UPDATE jobs SET state = 'queued', attempts = 0, error = NULL, started_at = NULL,
                   finished_at = NULL
               WHERE id = $1"#,
            id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Retry::Queued)
    }
}
