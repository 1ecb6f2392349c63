//! The connection the receiver's index commits go through.
//!
//! Why not the pool: sqlx's pool makes a round trip to the server each time it hands out a
//! connection (`test_before_acquire`) and another each time one is given back, to check that the
//! connection still works. An index commit is itself a single round trip, on the critical path of
//! every C-STORE; taken from the pool it cost three, and woke the server's backend three times.
//! The receiver's group commit sends one commit at a time, so one long-lived connection, kept out
//! of the pool, serves them all.
//!
//! A kept connection can break while it waits (the server restarted, the network dropped it).
//! Every statement sent through here is idempotent (an upsert of the same rows), so a statement
//! that fails for want of a server on a connection that had already been used is sent once more
//! on a new one before the failure is reported: the sender sees a failure only when the server
//! really is unreachable, as it did when every commit took a checked connection from the pool.

use std::future::Future;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

use super::{DbError, unavailable};

/// One connection, opened from the pool when first needed and detached from it.
#[derive(Debug, Default)]
pub(crate) struct CommitConnection {
    slot: Mutex<Option<PgConnection>>,
}

impl CommitConnection {
    /// Runs `statement` on the kept connection, opening one when there is none. `statement`
    /// gets the connection and hands it back with its result; it may be called twice (see the
    /// module documentation), so it must be idempotent.
    pub async fn run<T, F, Fut>(&self, pool: &PgPool, mut statement: F) -> Result<T, DbError>
    where
        F: FnMut(PgConnection) -> Fut,
        Fut: Future<Output = (PgConnection, Result<T, sqlx::Error>)>,
    {
        let mut slot = self.slot.lock().await;
        loop {
            let (conn, fresh) = match slot.take() {
                Some(conn) => (conn, false),
                None => (pool.acquire().await?.detach(), true),
            };
            let (conn, result) = statement(conn).await;
            match result {
                // The connection is broken: drop it, and try a new one unless this was one.
                Err(e) if unavailable(&e) => {
                    drop(conn);
                    if fresh {
                        return Err(e.into());
                    }
                }
                other => {
                    *slot = Some(conn);
                    return other.map_err(DbError::from);
                }
            }
        }
    }

    /// Closes the kept connection, if any, telling the server so.
    pub async fn close(&self) {
        if let Some(conn) = self.slot.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}
