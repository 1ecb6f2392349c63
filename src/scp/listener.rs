//! The accept loop: one task per association, a bound on concurrent associations, and a
//! graceful stop that lets every in-flight C-STORE finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::ScpError;
use super::association;
use super::contexts::Negotiator;
use super::group_commit::GroupCommit;
use super::index::InstanceIndex;
use super::policy::AePolicy;
use crate::config::DicomConfig;
use crate::shutdown::Shutdown;
use crate::spool::Spool;

/// Everything an association needs, shared by all of them.
pub(crate) struct Service<I> {
    pub cfg: DicomConfig,
    pub policy: AePolicy,
    pub negotiator: Negotiator,
    pub spool: Spool,
    pub index: Arc<I>,
    /// Commits the rows of concurrent C-STOREs together (see [`GroupCommit`]).
    pub commits: GroupCommit<I>,
}

/// The storage SCP: a bound listener ready to [`run`](Server::run).
pub struct Server<I = crate::db::Db> {
    listener: TcpListener,
    svc: Arc<Service<I>>,
    /// One permit per association being served; when none is left, requests are refused
    /// with a transient "local limit exceeded" so that senders retry.
    slots: Arc<Semaphore>,
}

impl<I: InstanceIndex> Server<I> {
    /// Binds `cfg.bind`. Binding early lets the caller learn the port (tests bind port 0)
    /// before serving.
    pub async fn bind(cfg: &DicomConfig, spool: Spool, index: I) -> Result<Self, ScpError> {
        let index = Arc::new(index);
        let listener = TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| ScpError::Bind {
                addr: cfg.bind,
                source,
            })?;
        Ok(Server {
            listener,
            svc: Arc::new(Service {
                cfg: cfg.clone(),
                policy: AePolicy::new(cfg),
                negotiator: Negotiator::new(cfg),
                spool,
                commits: GroupCommit::start(index.clone()),
                index,
            }),
            slots: Arc::new(Semaphore::new(cfg.max_associations)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ScpError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` fires, then stops accepting and waits for every association to
    /// finish the message it is in.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), ScpError> {
        info!(addr = %self.local_addr()?, ae_title = %self.svc.cfg.ae_title, "DICOM listener ready");
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        loop {
            tokio::select! {
                _ = shutdown.requested() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => log_join(done),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        backoff = Duration::from_millis(10);
                        let permit = self.slots.clone().try_acquire_owned().ok();
                        tasks.spawn(association::serve(
                            stream,
                            peer,
                            self.svc.clone(),
                            permit,
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait, never give up serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                },
            }
        }
        drop(self.listener);
        info!(
            associations = tasks.len(),
            "stopping: waiting for associations to finish"
        );
        while let Some(done) = tasks.join_next().await {
            log_join(done);
        }
        info!("DICOM listener stopped");
        Ok(())
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "association task panicked");
    }
}
