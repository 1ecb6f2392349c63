//! What the receiver needs from the database: recording one stored instance.
//!
//! A trait rather than a concrete type so that the receiver depends on one operation, not on
//! the whole database layer; the daemon passes its `crate::db::Db`.

use std::future::Future;

use crate::db::instances::InstanceRecord;

/// Why an instance could not be indexed. The receiver answers A700 (out of resources) so that
/// the sender retries later.
#[derive(Debug, thiserror::Error)]
#[error("index: {0}")]
pub struct IndexError(pub String);

/// Records stored instances. Indexing the same SOP instance again must replace its row.
pub trait InstanceIndex: Send + Sync + 'static {
    /// Inserts or replaces the row of `rec.sop_instance_uid`; returns once it is committed.
    fn index_instance(
        &self,
        rec: &InstanceRecord,
    ) -> impl Future<Output = Result<(), IndexError>> + Send;
}

impl InstanceIndex for crate::db::Db {
    async fn index_instance(&self, rec: &InstanceRecord) -> Result<(), IndexError> {
        crate::db::Db::index_instance(self, rec)
            .await
            .map_err(|e| IndexError(e.to_string()))
    }
}
