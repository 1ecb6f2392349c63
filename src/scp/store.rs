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

use super::command::{Request, status};
use super::index::{IndexError, InstanceIndex};
use super::listener::Service;
use super::recover;
use crate::dataset_bounds;
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
/// The dataset is checked and described first; its row goes to the group commit (committed with
/// the rows of other associations that arrive meanwhile) and its file is written while that
/// commit runs: the file's fsync and the database's commit overlap.
/// Success needs both; when only the index succeeded, [`recover::settle`] takes the row back
/// before answering.
pub(crate) async fn handle<I: InstanceIndex>(
    svc: &Service<I>,
    req: &Request,
    origin: &Origin<'_>,
    dataset: Vec<u8>,
) -> (u16, Vec<u8>, Vec<u8>) {
    let started = std::time::Instant::now();
    let (received, dataset) = receive(svc, req, origin, dataset).await;
    let (rec, planned) = match received {
        Ok(pair) => pair,
        Err(refused) => return respond(req, Err(refused), started, dataset),
    };
    let submitted = svc.commits.submit(rec);
    let (written, dataset) = write_spool_file(&svc.spool, planned, dataset).await;
    let (rec, index_result) = submitted.answer(&svc.commits).await;
    let outcome = match (index_result, written) {
        (Ok(()), Ok(())) => Ok(()),
        (index_result, written) => Err(fail_stored(svc, &rec, index_result, written).await),
    };
    respond(req, outcome, started, dataset)
}

/// Writes the planned spool file, handing the buffer back; the outcome is logged and turned
/// into the ErrorComment's words.
///
/// On the multi-threaded runtime the write runs on this very thread (`block_in_place`, which
/// first hands this worker's other tasks to another thread). One association's instances are
/// strictly sequential (the sender waits for each response), so any wait before the write starts
/// is on the critical path: waking an idle blocking thread for it (`spawn_blocking`), and this
/// task again afterwards, took a median of 95 µs per instance where this takes 11 µs (session
/// 14), and sends ran 4.2 % faster on one association, 2.2 % on four (session 15; both in
/// BENCHMARKS.md). A runtime without worker threads to hand over to (a single-threaded test
/// runtime) gets the blocking thread.
async fn write_spool_file(
    spool: &Spool,
    planned: Planned,
    dataset: Vec<u8>,
) -> (Result<(), String>, Vec<u8>) {
    let write = {
        let spool = spool.clone();
        move || {
            let written = spool.write(&planned, &dataset).map_err(|e| {
                warn!(error = %e, "spool write failed");
                "spool write failed".to_string()
            });
            (written, dataset)
        }
    };
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    if flavor == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(write);
    }
    match tokio::task::spawn_blocking(write).await {
        Ok(pair) => pair,
        Err(e) => (Err(format!("storage task failed: {e}")), Vec::new()),
    }
}

/// The largest dataset described on the association's own task; larger ones (enhanced
/// multi-frame instances with thousands of per-frame items) are scanned on a blocking thread so
/// that no other association waits behind the scan.
const DESCRIBE_HERE_MAX: usize = 1 << 20;

/// Checks and describes the dataset and plans its spool file, handing the buffer back.
///
/// The common case, a single-frame dataset the scan can read, is done right here: it costs tens
/// of microseconds, and doing it on this task lets the index commit start at once instead of
/// after a blocking thread has been woken for it. Anything else goes to a blocking thread: the
/// scan of a large dataset, the inflation of a deflated one, and the full parser, which may take
/// long on odd data.
async fn receive<I: InstanceIndex>(
    svc: &Service<I>,
    req: &Request,
    origin: &Origin<'_>,
    dataset: Vec<u8>,
) -> (Result<(InstanceRecord, Planned), Failure>, Vec<u8>) {
    let small = dataset.len() <= DESCRIBE_HERE_MAX;
    let quick = match small {
        true => scanned(origin.transfer_syntax, &dataset),
        false => Ok(None),
    };
    match quick {
        Err(unreadable) => return (Err(unreadable), dataset),
        Ok(Some(rec)) => {
            let received = finish(
                &svc.spool,
                req,
                origin.calling_ae,
                origin.transfer_syntax,
                rec,
                &dataset,
            );
            return (received, dataset);
        }
        Ok(None) => {}
    }
    let spool = svc.spool.clone();
    let req = req.clone();
    let ae = origin.calling_ae.to_string();
    let ts = origin.transfer_syntax.to_string();
    let max_inflated = svc.cfg.max_dataset_bytes;
    let joined = tokio::task::spawn_blocking(move || {
        let described = described_slowly(&ts, &dataset, small, max_inflated);
        let received = described.and_then(|rec| finish(&spool, &req, &ae, &ts, rec, &dataset));
        (received, dataset)
    })
    .await;
    joined.unwrap_or_else(|_| {
        let failed = Failure::new(status::OUT_OF_RESOURCES, "storage task failed");
        (Err(failed), Vec::new())
    })
}

/// Deflated explicit VR little endian (PS3.5 §A.5): the dataset is one raw deflate stream.
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// Describes a dataset on a blocking thread: a deflated one is inflated first (within the
/// dataset limit) and then read as the explicit VR little endian dataset it is; others are
/// scanned, unless `scan_tried` (a small dataset the scan already could not read), and go to the
/// full parser when the scan cannot read them.
pub(super) fn described_slowly(
    ts: &str,
    dataset: &[u8],
    scan_tried: bool,
    max_inflated: u64,
) -> Result<InstanceRecord, Failure> {
    if ts.trim_end_matches('\0') == DEFLATED {
        let plain = inflated(dataset, max_inflated)?;
        return scanned(EXPLICIT_LE, &plain)?.map_or_else(|| parsed(EXPLICIT_LE, &plain), Ok);
    }
    let found = match scan_tried {
        true => None,
        false => scanned(ts, dataset)?,
    };
    found.map_or_else(|| parsed(ts, dataset), Ok)
}

/// A deflated dataset, inflated. A few kilobytes of deflate can stand for gigabytes, so the
/// output is bounded by the same limit as a received dataset (A700 beyond it).
fn inflated(dataset: &[u8], max: u64) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::DeflateDecoder::new(dataset)
        .take(max.saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(|e| {
            Failure::new(
                status::CANNOT_UNDERSTAND,
                format!("unparseable dataset: deflate stream: {e}"),
            )
        })?;
    if plain.len() as u64 > max {
        return Err(Failure::new(
            status::OUT_OF_RESOURCES,
            format!("dataset inflates to more than {max} bytes"),
        ));
    }
    Ok(plain)
}

/// The failure status when the dataset was good but the file or its row did not both land;
/// a row whose file is not in the spool is taken back first, so nothing unacknowledged stays
/// indexed.
async fn fail_stored<I: InstanceIndex>(
    svc: &Service<I>,
    rec: &InstanceRecord,
    index_result: Result<(), IndexError>,
    write_result: Result<(), String>,
) -> Failure {
    let write_failed = write_result.is_err();
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

/// Checks a described dataset against its command and plans its spool file.
pub(super) fn finish(
    spool: &Spool,
    req: &Request,
    calling_ae: &str,
    ts_uid: &str,
    mut rec: InstanceRecord,
    dataset: &[u8],
) -> Result<(InstanceRecord, Planned), Failure> {
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

/// The attributes the index needs, read by the scan; `None` when the scan cannot read the
/// dataset (an encoding it does not know, or a structure it cannot follow) and the full parser
/// must judge it; C000 when no parser could read it (a length past the end of the dataset).
pub(super) fn scanned(ts_uid: &str, dataset: &[u8]) -> Result<Option<InstanceRecord>, Failure> {
    let Some(encoding) = scan::Encoding::of_transfer_syntax(ts_uid) else {
        return Ok(None);
    };
    let scanned = match scan::scan(dataset, encoding, &record::DESCRIBED) {
        Ok(scanned) => scanned,
        Err(e) if e.past_end => {
            return Err(Failure::new(
                status::CANNOT_UNDERSTAND,
                format!("unparseable dataset: {e}"),
            ));
        }
        Err(_) => return Ok(None),
    };
    let Some(values) = record::ScannedText::new(&scanned) else {
        return Ok(None);
    };
    let mut rec = InstanceRecord::default();
    record::describe(&values, &mut rec);
    Ok(Some(rec))
}

/// One full parse at a time, across associations. The parser allocates each value's announced
/// length before it reads the value; after [`dataset_bounds::check_dataset`] no length exceeds
/// the dataset, but a parse may still hold several times its dataset's size, and parsing one
/// at a time bounds what peers together can make the daemon hold. Real datasets rarely get here
/// (a structure the scan does not know), and each takes milliseconds.
static FULL_PARSE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The attributes the index needs, read by the full parser, which decides whether the dataset
/// is unreadable (C000). Runs on a blocking thread.
pub(super) fn parsed(ts_uid: &str, dataset: &[u8]) -> Result<InstanceRecord, Failure> {
    let _one_at_a_time = FULL_PARSE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {ts_uid}"),
        )
    })?;
    // Before the parser allocates what a corrupt length announces (see `dataset_bounds`).
    dataset_bounds::check_dataset(dataset, ts).map_err(|past| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unparseable dataset: {past}"),
        )
    })?;
    let obj = InMemDicomObject::read_dataset_with_ts(dataset, ts).map_err(|e| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unparseable dataset: {e}"),
        )
    })?;
    let mut rec = InstanceRecord::default();
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
