//! C-STORE: receive → validate → (write the spool file ∥ index it) → respond.
//!
//! Success is answered only when the instance is both in the spool (fsynced) and committed to
//! the index; the two durable writes run at the same time (see [`super::recover`] for how a row
//! whose file failed is taken back). Every other outcome is a failure status the sender can act
//! on, and the association carries on with the next message: C000 for a dataset that cannot be
//! parsed, A900 when it is not the instance the command announced or lacks its UIDs, A700 when
//! the spool or the database fails. With the database unreachable the file may already be in the
//! spool without a row: the sender retries on A700 (the retry replaces the file), and
//! `brainaged reindex` indexes any such file.

use chrono::Utc;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use tracing::{debug, warn};

use tokio::sync::oneshot;

use super::command::{Request, status};
use super::index::{IndexError, InstanceIndex};
use super::listener::Service;
use super::recover;
use crate::db::instances::{IndexedFile, InstanceRecord};
use crate::spool::record;
use crate::spool::scan;
use crate::spool::{Incoming, Planned, Spool};

/// A refused C-STORE: the status and a short ErrorComment (no PHI).
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: u16,
    pub comment: String,
}

impl Failure {
    fn new(status: u16, comment: impl Into<String>) -> Self {
        Self {
            status,
            comment: comment.into(),
        }
    }
}

/// What the association knows about where a dataset came from.
pub(crate) struct Origin<'a> {
    pub calling_ae: &'a str,
    pub transfer_syntax: &'a str,
}

/// Handles one C-STORE-RQ whose dataset is `dataset`; returns the status, the response command
/// set, and the buffer for reuse.
///
/// The dataset is checked and described on a blocking thread, which then writes the file while
/// this task has the instance indexed (by the group commit, with the rows of other associations
/// that arrive meanwhile): the file's fsync and the database's commit overlap. Success needs
/// both; when only the index succeeded, [`recover::settle`] takes the row back before answering.
pub(crate) async fn handle<I: InstanceIndex>(
    svc: &Service<I>,
    req: &Request,
    origin: &Origin<'_>,
    dataset: Vec<u8>,
) -> (u16, Vec<u8>, Vec<u8>) {
    let started = std::time::Instant::now();
    let (described, writer) = spawn_writer(svc, req, origin, dataset);
    let indexed = match described.await {
        Ok(Ok(rec)) => Ok(svc.commits.index(rec).await),
        Ok(Err(refused)) => Err(refused),
        Err(_) => Err(Failure::new(
            status::OUT_OF_RESOURCES,
            "storage task failed",
        )),
    };
    let (written, dataset) = match writer.await {
        Ok(pair) => pair,
        Err(e) => (Some(Err(format!("storage task failed: {e}"))), Vec::new()),
    };
    let outcome = match (indexed, written) {
        (Err(refused), _) => Err(refused),
        (Ok((_, Ok(()))), Some(Ok(()))) => Ok(()),
        (Ok((rec, index_result)), write_result) => {
            Err(fail_stored(svc, &rec, index_result, write_result).await)
        }
    };
    respond(req, outcome, started, dataset)
}

/// Starts the blocking half: parse and describe (sent back at once), then the durable write
/// (the join handle's result: `None` when nothing was written because the dataset was refused).
#[allow(clippy::type_complexity)]
fn spawn_writer<I: InstanceIndex>(
    svc: &Service<I>,
    req: &Request,
    origin: &Origin<'_>,
    dataset: Vec<u8>,
) -> (
    oneshot::Receiver<Result<InstanceRecord, Failure>>,
    tokio::task::JoinHandle<(Option<Result<(), String>>, Vec<u8>)>,
) {
    let (tx, rx) = oneshot::channel();
    let spool = svc.spool.clone();
    let req = req.clone();
    let ae = origin.calling_ae.to_string();
    let ts = origin.transfer_syntax.to_string();
    let writer = tokio::task::spawn_blocking(move || {
        let (rec, planned) = match receive(&spool, &req, &ae, &ts, &dataset) {
            Ok(pair) => pair,
            Err(refused) => {
                let _ = tx.send(Err(refused));
                return (None, dataset);
            }
        };
        let _ = tx.send(Ok(rec));
        let written = spool.write(&planned, &dataset).map_err(|e| {
            warn!(error = %e, "spool write failed");
            "spool write failed".to_string()
        });
        (Some(written), dataset)
    });
    (rx, writer)
}

/// The failure status when the dataset was good but the file or its row did not both land;
/// a row whose file is not in the spool is taken back first, so nothing unacknowledged stays
/// indexed.
async fn fail_stored<I: InstanceIndex>(
    svc: &Service<I>,
    rec: &InstanceRecord,
    index_result: Result<(), IndexError>,
    write_result: Option<Result<(), String>>,
) -> Failure {
    let write_failed = !matches!(write_result, Some(Ok(())));
    if index_result.is_ok() && write_failed {
        let row = IndexedFile {
            sop_instance_uid: rec.sop_instance_uid.clone(),
            spool_path: rec.spool_path.clone(),
            size_bytes: rec.size_bytes,
        };
        if let Err(e) = recover::settle(&svc.spool, &*svc.index, &row).await {
            // The start-up check settles it if the daemon stops before a retry does.
            warn!(error = %e, "could not take back the row of a failed write");
        }
    }
    let comment = match (&index_result, write_failed) {
        (_, true) => "spool write failed".to_string(),
        (Err(e), false) => e.to_string(),
        (Ok(()), false) => "storage failed".to_string(),
    };
    Failure::new(status::OUT_OF_RESOURCES, comment)
}

/// Logs the outcome and builds the response command set.
fn respond(
    req: &Request,
    outcome: Result<(), Failure>,
    started: std::time::Instant,
    dataset: Vec<u8>,
) -> (u16, Vec<u8>, Vec<u8>) {
    match outcome {
        Ok(()) => {
            debug!(
                sop_instance_uid = %req.affected_sop_instance,
                total_us = started.elapsed().as_micros() as u64,
                "stored"
            );
            (
                status::SUCCESS,
                req.response(status::SUCCESS, None),
                dataset,
            )
        }
        Err(f) => {
            warn!(
                sop_instance_uid = %req.affected_sop_instance,
                status = format_args!("{:04X}", f.status),
                reason = %f.comment,
                "C-STORE refused"
            );
            (f.status, req.response(f.status, Some(&f.comment)), dataset)
        }
    }
}

/// The blocking part before any write: check, describe, and plan the spool file.
fn receive(
    spool: &Spool,
    req: &Request,
    calling_ae: &str,
    ts_uid: &str,
    dataset: &[u8],
) -> Result<(InstanceRecord, Planned), Failure> {
    let mut rec = describe(ts_uid, dataset)?;
    check_matches(req, &rec)?;
    let planned = spool
        .plan(&Incoming {
            study_instance_uid: &rec.study_instance_uid,
            series_instance_uid: &rec.series_instance_uid,
            sop_instance_uid: &rec.sop_instance_uid,
            sop_class_uid: &rec.sop_class_uid,
            transfer_syntax: ts_uid,
            calling_ae,
            dataset,
        })
        .map_err(|e| Failure::new(status::DATASET_DOES_NOT_MATCH, e.to_string()))?;
    rec.spool_path = planned.stored.relative_path.clone();
    rec.size_bytes = planned.stored.size_bytes as i64;
    rec.transfer_syntax = ts_uid.to_string();
    rec.calling_ae = calling_ae.trim().to_string();
    rec.received_at = Utc::now();
    Ok((rec, planned))
}

/// Checks the dataset's structure and reads the attributes the index needs: by the scan when it
/// can read the dataset, else by the full parser, which decides whether it is unreadable (C000).
fn describe(ts_uid: &str, dataset: &[u8]) -> Result<InstanceRecord, Failure> {
    let mut rec = InstanceRecord::default();
    if let Some(encoding) = scan::Encoding::of_transfer_syntax(ts_uid)
        && let Ok(scanned) = scan::scan(dataset, encoding, &record::DESCRIBED)
        && let Some(values) = record::ScannedText::new(&scanned)
    {
        record::describe(&values, &mut rec);
        return Ok(rec);
    }
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {ts_uid}"),
        )
    })?;
    let obj = InMemDicomObject::read_dataset_with_ts(dataset, ts).map_err(|e| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unparseable dataset: {e}"),
        )
    })?;
    record::describe(&obj, &mut rec);
    Ok(rec)
}

/// The dataset must be the instance the command announced, with the UIDs the spool needs.
fn check_matches(req: &Request, rec: &InstanceRecord) -> Result<(), Failure> {
    if rec.sop_instance_uid.is_empty() {
        return Err(Failure::new(
            status::DATASET_DOES_NOT_MATCH,
            "no SOP Instance UID",
        ));
    }
    if rec.sop_instance_uid != req.affected_sop_instance {
        return Err(Failure::new(
            status::DATASET_DOES_NOT_MATCH,
            "SOP Instance UID differs from the command",
        ));
    }
    if rec.sop_class_uid != req.affected_sop_class {
        return Err(Failure::new(
            status::DATASET_DOES_NOT_MATCH,
            "SOP Class UID differs from the command",
        ));
    }
    if rec.study_instance_uid.is_empty() || rec.series_instance_uid.is_empty() {
        return Err(Failure::new(
            status::DATASET_DOES_NOT_MATCH,
            "no Study or Series Instance UID",
        ));
    }
    Ok(())
}
