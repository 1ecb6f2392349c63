//! What the receiver needs from the database: recording stored instances, and taking back a
//! row whose file did not make it to the spool.
//!
//! A trait rather than a concrete type so that the receiver depends on these operations, not on
//! the whole database layer; the daemon passes its `crate::db::Db`.

use std::future::Future;
use std::time::Duration;

use crate::db::instances::{IndexedFile, InstanceRecord};

/// Why an instance could not be indexed. The receiver answers A700 (out of resources) so that
/// the sender retries later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("index: {message}")]
pub struct IndexError {
    pub message: String,
    /// The database is unreachable or overloaded, whatever the rows: trying the same rows again
    /// at once, one by one, would only wait longer for the same answer.
    pub unavailable: bool,
}

impl IndexError {
    /// A failure that may be about the rows themselves.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unavailable: false,
        }
    }
}

impl From<crate::db::DbError> for IndexError {
    fn from(e: crate::db::DbError) -> Self {
        Self {
            unavailable: e.is_unavailable(),
            message: e.to_string(),
        }
    }
}

/// Records stored instances. Indexing the same SOP instance again must replace its row.
pub trait InstanceIndex: Send + Sync + 'static {
    /// Inserts or replaces the row of `rec.sop_instance_uid`; returns once it is committed.
    fn index_instance(
        &self,
        rec: &InstanceRecord,
    ) -> impl Future<Output = Result<(), IndexError>> + Send;

    /// Inserts or replaces the rows of several instances in one transaction: all or none.
    fn index_instances(
        &self,
        recs: &[InstanceRecord],
    ) -> impl Future<Output = Result<(), IndexError>> + Send;

    /// Removes the row of `sop_instance_uid` if it still names `spool_path`; true if removed.
    fn forget_instance(
        &self,
        sop_instance_uid: &str,
        spool_path: &str,
    ) -> impl Future<Output = Result<bool, IndexError>> + Send;

    /// The rows indexed within `window` before the newest one.
    fn recently_indexed(
        &self,
        window: Duration,
    ) -> impl Future<Output = Result<Vec<IndexedFile>, IndexError>> + Send;
}

impl InstanceIndex for crate::db::Db {
    async fn index_instance(&self, rec: &InstanceRecord) -> Result<(), IndexError> {
        crate::db::Db::index_instance(self, rec)
            .await
            .map(|_reopened| ())
            .map_err(IndexError::from)
    }

    async fn index_instances(&self, recs: &[InstanceRecord]) -> Result<(), IndexError> {
        crate::db::Db::index_instances(self, recs)
            .await
            .map(|_reopened| ())
            .map_err(IndexError::from)
    }

    async fn forget_instance(
        &self,
        sop_instance_uid: &str,
        spool_path: &str,
    ) -> Result<bool, IndexError> {
        crate::db::Db::forget_instance(self, sop_instance_uid, spool_path)
            .await
            .map_err(IndexError::from)
    }

    async fn recently_indexed(&self, window: Duration) -> Result<Vec<IndexedFile>, IndexError> {
        crate::db::Db::recently_indexed(self, window)
            .await
            .map_err(IndexError::from)
    }
}
