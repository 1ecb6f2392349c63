//! Group commit: the rows of C-STOREs that arrive while an index commit is in flight are
//! committed together by the next one.
//!
//! Why: every acknowledged instance needs a committed row, and a commit costs the database a
//! transaction, a WAL flush and a round trip of work on both ends. With several associations
//! sending at once, that per-instance cost competes for the same cores as the senders and the
//! file writes. Taking whatever queued up during the previous commit and committing it in one
//! call pays the cost once per batch instead of once per instance. Nothing waits for a batch to
//! fill: a lone instance (one association, or a quiet moment) is committed as soon as the
//! previous commit ends, so a single association is no slower than with a commit of its own.
//!
//! A batch is all or none. When the database refuses it, its instances are committed one by
//! one, so that one row the database refuses cannot fail the instances of other associations;
//! only that one gets the failure status. When the database is unreachable the whole batch
//! fails at once: each row alone would wait for the same timeout and fail too.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::index::{IndexError, InstanceIndex};
use crate::db::instances::InstanceRecord;

/// The most instances committed by one call; more wait for the next.
const MAX_BATCH: usize = 64;

/// An instance waiting for its row to be committed, and who to tell.
struct Pending {
    rec: InstanceRecord,
    done: oneshot::Sender<(InstanceRecord, Result<(), IndexError>)>,
}

/// The handle associations submit rows through; the committing task ends when every handle is
/// dropped, after answering everything submitted.
pub(crate) struct GroupCommit<I> {
    tx: mpsc::UnboundedSender<Pending>,
    /// For committing alone should the committing task be gone (it panicked): the receiver
    /// then loses the batching, not the ability to acknowledge.
    index: Arc<I>,
}

impl<I: InstanceIndex> GroupCommit<I> {
    /// Starts the committing task on the current runtime.
    pub fn start(index: Arc<I>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(index.clone(), rx));
        Self { tx, index }
    }

    /// Queues `rec` for the next commit at once, without waiting: the caller can then block
    /// its thread on the instance's file while the committing task works, and collect the
    /// outcome with [`Submitted::answer`] afterwards.
    pub fn submit(&self, rec: InstanceRecord) -> Submitted {
        let (done, answer) = oneshot::channel();
        match self.tx.send(Pending { rec, done }) {
            Ok(()) => Submitted::Queued(answer),
            Err(mpsc::error::SendError(p)) => Submitted::Alone(Box::new(p.rec)),
        }
    }
}

/// A row handed to the group commit ([`GroupCommit::submit`]).
pub(crate) enum Submitted {
    Queued(oneshot::Receiver<(InstanceRecord, Result<(), IndexError>)>),
    /// The committing task is gone; the row is committed alone when the answer is asked for.
    Alone(Box<InstanceRecord>),
}

impl Submitted {
    /// Waits for the row's commit and returns its outcome, with the record back.
    pub async fn answer<I: InstanceIndex>(
        self,
        commits: &GroupCommit<I>,
    ) -> (InstanceRecord, Result<(), IndexError>) {
        let rec = match self {
            Submitted::Queued(answer) => match answer.await {
                Ok(answered) => return answered,
                // The task dropped this instance unanswered: it panicked while committing it.
                Err(_) => {
                    return (
                        InstanceRecord::default(),
                        Err(IndexError::new("the index task stopped")),
                    );
                }
            },
            Submitted::Alone(rec) => *rec,
        };
        warn!("group commit is not running; committing alone");
        let result = commits.index.index_instance(&rec).await;
        (rec, result)
    }
}

async fn run<I: InstanceIndex>(index: Arc<I>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&*index, std::mem::take(&mut batch)).await;
    }
}

/// Commits one batch and answers each of its instances.
async fn commit<I: InstanceIndex>(index: &I, batch: Vec<Pending>) {
    let (recs, dones): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.rec, p.done)).unzip();
    let together = match recs.len() {
        1 => None,
        _ => Some(index.index_instances(&recs).await),
    };
    let answers: Vec<Result<(), IndexError>> = match together {
        Some(Ok(())) => vec![Ok(()); recs.len()],
        // The database is down: every row would fail again, each after its own wait.
        Some(Err(e)) if e.unavailable => vec![Err(e); recs.len()],
        failed => {
            if let Some(Err(e)) = failed {
                debug!(batch = recs.len(), error = %e, "group commit failed; committing one by one");
            }
            let mut one_by_one = Vec::with_capacity(recs.len());
            for rec in &recs {
                one_by_one.push(index.index_instance(rec).await);
            }
            one_by_one
        }
    };
    for ((rec, done), answer) in recs.into_iter().zip(dones).zip(answers) {
        let _ = done.send((rec, answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::db::instances::IndexedFile;

    /// Records the size of every commit; refuses any commit that contains a UID starting with
    /// "bad", and is slow enough that concurrent submissions queue behind a commit.
    /// With `down`, every commit fails as an unreachable database does.
    #[derive(Default)]
    struct Recorder {
        commits: Mutex<Vec<Vec<String>>>,
        attempts: std::sync::atomic::AtomicUsize,
        down: bool,
        /// A UID whose commit panics, as a bug in the index would.
        panics_on: Option<&'static str>,
    }

    impl Recorder {
        async fn commit(&self, recs: &[InstanceRecord]) -> Result<(), IndexError> {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if recs
                .iter()
                .any(|r| Some(r.sop_instance_uid.as_str()) == self.panics_on)
            {
                panic!("a bug in the index");
            }
            if self.down {
                return Err(IndexError {
                    message: "connection refused".into(),
                    unavailable: true,
                });
            }
            if recs.iter().any(|r| r.sop_instance_uid.starts_with("bad")) {
                return Err(IndexError::new("refused"));
            }
            let uids = recs.iter().map(|r| r.sop_instance_uid.clone()).collect();
            self.commits.lock().unwrap().push(uids);
            Ok(())
        }
    }

    impl InstanceIndex for Recorder {
        async fn index_instance(&self, rec: &InstanceRecord) -> Result<(), IndexError> {
            self.commit(std::slice::from_ref(rec)).await
        }
        async fn index_instances(&self, recs: &[InstanceRecord]) -> Result<(), IndexError> {
            self.commit(recs).await
        }
        async fn forget_instance(&self, _: &str, _: &str) -> Result<bool, IndexError> {
            Ok(false)
        }
        async fn recently_indexed(&self, _: Duration) -> Result<Vec<IndexedFile>, IndexError> {
            Ok(Vec::new())
        }
    }

    fn rec(uid: &str) -> InstanceRecord {
        InstanceRecord {
            sop_instance_uid: uid.to_string(),
            ..Default::default()
        }
    }

    /// Submits `uids` at once and returns each one's result, in order.
    async fn submit_together(gc: &GroupCommit<Recorder>, uids: &[&str]) -> Vec<(String, bool)> {
        let answers =
            futures::future::join_all(uids.iter().map(|u| gc.submit(rec(u)).answer(gc))).await;
        answers
            .into_iter()
            .map(|(r, res)| (r.sop_instance_uid, res.is_ok()))
            .collect()
    }

    #[tokio::test]
    async fn instances_queued_during_a_commit_share_the_next_one() {
        let index = Arc::new(Recorder::default());
        let gc = GroupCommit::start(index.clone());
        let got = submit_together(&gc, &["a", "b", "c", "d", "e"]).await;
        assert!(got.iter().all(|(_, ok)| *ok), "{got:?}");
        let commits = index.commits.lock().unwrap().clone();
        // The first submission is taken alone (or with whatever had queued); the rest queued
        // behind its commit and share fewer commits than instances.
        assert!(commits.len() < 5, "{commits:?}");
        let mut all: Vec<String> = commits.concat();
        all.sort();
        assert_eq!(all, ["a", "b", "c", "d", "e"]);
    }

    #[tokio::test]
    async fn a_refused_row_fails_alone() {
        let index = Arc::new(Recorder::default());
        let gc = GroupCommit::start(index.clone());
        let got = submit_together(&gc, &["a", "b", "bad", "c"]).await;
        let expected = [("a", true), ("b", true), ("bad", false), ("c", true)];
        let expected: Vec<_> = expected
            .iter()
            .map(|(u, ok)| (u.to_string(), *ok))
            .collect();
        assert_eq!(got, expected);
        let mut all: Vec<String> = index.commits.lock().unwrap().concat();
        all.sort();
        assert_eq!(all, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_a_batch_at_once() {
        let index = Arc::new(Recorder {
            down: true,
            ..Default::default()
        });
        let gc = GroupCommit::start(index.clone());
        let got = submit_together(&gc, &["a", "b", "c", "d", "e"]).await;
        assert!(got.iter().all(|(_, ok)| !*ok), "{got:?}");
        // The first instance's commit and one for everything that queued behind it; retrying
        // the batch's rows one by one would have made six or more.
        let attempts = index.attempts.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            attempts <= 3,
            "{attempts} commits attempted for 5 instances"
        );
    }

    #[tokio::test]
    async fn after_the_committing_task_panics_instances_are_committed_alone() {
        let index = Arc::new(Recorder {
            panics_on: Some("boom"),
            ..Default::default()
        });
        let gc = GroupCommit::start(index.clone());
        let (_, res) = gc.submit(rec("boom")).answer(&gc).await;
        assert!(res.is_err());
        let got = submit_together(&gc, &["a", "b"]).await;
        assert_eq!(got, [("a".to_string(), true), ("b".to_string(), true)]);
        assert_eq!(index.commits.lock().unwrap().concat(), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_lone_instance_is_committed_without_waiting_for_company() {
        let index = Arc::new(Recorder::default());
        let gc = GroupCommit::start(index.clone());
        let started = std::time::Instant::now();
        let (r, res) = gc.submit(rec("alone")).answer(&gc).await;
        assert!(res.is_ok());
        assert_eq!(r.sop_instance_uid, "alone");
        // One 20 ms commit, not a wait for a batch to fill.
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(
            index.commits.lock().unwrap().clone(),
            vec![vec!["alone".to_string()]]
        );
    }
}
