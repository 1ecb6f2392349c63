//! The accept loop: one task per association, a bound on concurrent associations shared by the
//! plain and the TLS port, and a graceful stop that lets every in-flight C-STORE finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::ScpError;
use super::association::{self, Transport};
use super::contexts::Negotiator;
use super::group_commit::GroupCommit;
use super::index::InstanceIndex;
use super::live::{Live, Reloader};
use super::policy::AePolicy;
use super::tls::Identity;
use crate::config::DicomConfig;
use crate::shutdown::Shutdown;
use crate::spool::Spool;

/// Everything an association needs, shared by all of them.
pub(crate) struct Service<I> {
    pub cfg: DicomConfig,
    /// The AE policy and TLS identity, which a reload replaces.
    pub live: Arc<Live>,
    pub negotiator: Negotiator,
    pub spool: Spool,
    pub index: Arc<I>,
    /// Commits the rows of concurrent C-STOREs together (see [`GroupCommit`]).
    pub commits: GroupCommit<I>,
}

/// The storage SCP: bound listeners ready to [`run`](Server::run).
pub struct Server<I = crate::db::Db> {
    /// Plain DICOM at `dicom.bind`; `None` when `[dicom.tls]` turns it off.
    plain: Option<Port>,
    /// DICOM over TLS at `dicom.tls.bind`, when configured.
    tls: Option<Port>,
    svc: Arc<Service<I>>,
    /// One permit per association being served; when none is left, requests are refused
    /// with a transient "local limit exceeded" so that senders retry.
    slots: Arc<Semaphore>,
}

impl<I: InstanceIndex> Server<I> {
    /// Binds `cfg.bind` and, with `[dicom.tls]`, the TLS port after loading its certificate
    /// and key. Binding early lets the caller learn the ports (tests bind port 0) before
    /// serving, and a bad certificate stops the daemon at start, not at the first caller.
    pub async fn bind(cfg: &DicomConfig, spool: Spool, index: I) -> Result<Self, ScpError> {
        let identity = cfg.tls.as_ref().map(Identity::load).transpose()?;
        if let Some(identity) = &identity {
            info!(expires = %identity.expires, "TLS certificate loaded");
            identity.log_expiry(chrono::Utc::now());
        }
        let tls = match &cfg.tls {
            None => None,
            Some(t) => Some(Port::bind(t.bind, true).await?),
        };
        let plain = match &cfg.tls {
            Some(t) if !t.plain_listener => None,
            _ => Some(Port::bind(cfg.bind, false).await?),
        };
        let index = Arc::new(index);
        Ok(Server {
            plain,
            tls,
            svc: Arc::new(Service {
                cfg: cfg.clone(),
                live: Arc::new(Live::new(AePolicy::new(cfg), identity)),
                negotiator: Negotiator::new(cfg),
                spool,
                commits: GroupCommit::start(index.clone()),
                index,
            }),
            slots: Arc::new(Semaphore::new(cfg.max_associations)),
        })
    }

    /// A handle that applies a new configuration's AE policy and TLS files while serving.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            live: self.svc.live.clone(),
        }
    }

    /// The plain listener's address, if it is open.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(Port::local_addr)
    }

    /// The TLS listener's address, if it is open.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(Port::local_addr)
    }

    /// Serves until `shutdown` fires, then stops accepting and waits for every association to
    /// finish the message it is in.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<(), ScpError> {
        info!(
            addr = self.local_addr().map(|a| a.to_string()),
            tls_addr = self.tls_addr().map(|a| a.to_string()),
            ae_title = %self.svc.cfg.ae_title,
            "DICOM listener ready"
        );
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.requested() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    log_join(done);
                    continue;
                }
                a = accept(self.plain.as_ref(), &self.svc.live) => a,
                a = accept(self.tls.as_ref(), &self.svc.live) => a,
            };
            match accepted {
                Ok((stream, peer, transport)) => {
                    backoff = Duration::from_millis(10);
                    let permit = self.slots.clone().try_acquire_owned().ok();
                    tasks.spawn(association::serve(
                        stream,
                        peer,
                        transport,
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
            }
        }
        drop(self.plain);
        drop(self.tls);
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

/// A listening socket and how its connections are served.
struct Port {
    listener: TcpListener,
    /// The TLS port: each connection completes a handshake first, with the acceptor [`Live`]
    /// holds when it is accepted.
    tls: bool,
}

impl Port {
    async fn bind(addr: SocketAddr, tls: bool) -> Result<Self, ScpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ScpError::Bind { addr, source })?;
        Ok(Port { listener, tls })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// The next connection on `port`, with its transport; never ready when the port is closed.
async fn accept(
    port: Option<&Port>,
    live: &Live,
) -> std::io::Result<(TcpStream, SocketAddr, Transport)> {
    let Some(port) = port else {
        return std::future::pending().await;
    };
    let (stream, peer) = port.listener.accept().await?;
    if !port.tls {
        return Ok((stream, peer, Transport::Plain));
    }
    // Never served plain: a TLS port always has an identity (`Live` is built with one).
    let acceptor = live
        .acceptor()
        .ok_or_else(|| std::io::Error::other("the TLS port has no certificate"))?;
    Ok((stream, peer, Transport::Tls(acceptor)))
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "association task panicked");
    }
}
