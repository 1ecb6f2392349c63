//! Graceful shutdown, one idea: a watch channel that every long-running task listens to.
//!
//! SIGTERM (or Ctrl-C) flips the channel once; the listener stops accepting, associations finish
//! the C-STORE in flight, and the daemon exits 0 after every task has returned.

use tokio::sync::watch;

/// The sending half, held by whoever decides to stop.
#[derive(Clone)]
pub struct Trigger(watch::Sender<bool>);

/// The receiving half, cloned into every task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every listener to stop. Calling it twice is harmless.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// True once shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when shutdown is requested (at once if it already was).
    pub async fn requested(&mut self) {
        // An error means every trigger is gone, which can only happen at process exit: stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
