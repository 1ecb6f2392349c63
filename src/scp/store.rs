//! C-STORE: receive → validate → spool durably → index → respond.
//!
//! Success is answered only when the instance is both in the spool (fsynced) and committed to
//! the index. Every other outcome is a failure status the sender can act on, and the
//! association carries on with the next message: C000 for a dataset that cannot be parsed,
//! A900 when it is not the instance the command announced or lacks its UIDs, A700 when the
//! spool or the database fails. With the database unreachable the file may already be in the
//! spool without a row: the sender retries on A700 (the retry replaces the file), and
//! `brainaged reindex` indexes any such file.

use chrono::Utc;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use tracing::{debug, warn};

use super::command::{Request, status};
use super::index::InstanceIndex;
use super::listener::Service;
use crate::db::instances::InstanceRecord;
use crate::spool::{self, Incoming, Spool};

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
pub(crate) async fn handle<I: InstanceIndex>(
    svc: &Service<I>,
    req: &Request,
    origin: &Origin<'_>,
    dataset: Vec<u8>,
) -> (u16, Vec<u8>, Vec<u8>) {
    let started = std::time::Instant::now();
    let spool = svc.spool.clone();
    let req_owned = req.clone();
    let ae = origin.calling_ae.to_string();
    let ts = origin.transfer_syntax.to_string();
    let joined = tokio::task::spawn_blocking(move || {
        let outcome = receive(&spool, &req_owned, &ae, &ts, &dataset);
        (outcome, dataset)
    })
    .await;
    let (outcome, dataset) = match joined {
        Ok(pair) => pair,
        Err(e) => (
            Err(Failure::new(
                status::OUT_OF_RESOURCES,
                format!("storage task failed: {e}"),
            )),
            Vec::new(),
        ),
    };
    let spooled = started.elapsed();
    let outcome = match outcome {
        Ok(rec) => svc
            .index
            .index_instance(&rec)
            .await
            .map_err(|e| Failure::new(status::OUT_OF_RESOURCES, e.to_string())),
        Err(f) => Err(f),
    };
    match outcome {
        Ok(()) => {
            debug!(
                sop_instance_uid = %req.affected_sop_instance,
                spool_us = spooled.as_micros() as u64,
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

/// The blocking part: parse, validate, describe, write durably.
fn receive(
    spool: &Spool,
    req: &Request,
    calling_ae: &str,
    ts_uid: &str,
    dataset: &[u8],
) -> Result<InstanceRecord, Failure> {
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unknown transfer syntax {ts_uid}"),
        )
    })?;
    let t0 = std::time::Instant::now();
    let obj = InMemDicomObject::read_dataset_with_ts(dataset, ts).map_err(|e| {
        Failure::new(
            status::CANNOT_UNDERSTAND,
            format!("unparseable dataset: {e}"),
        )
    })?;
    let mut rec = InstanceRecord::default();
    spool::record::describe(&obj, &mut rec);
    check_matches(req, &rec, &obj)?;
    tracing::trace!(parse_us = t0.elapsed().as_micros() as u64, "parsed");
    let stored = spool
        .store(&Incoming {
            study_instance_uid: &rec.study_instance_uid,
            series_instance_uid: &rec.series_instance_uid,
            sop_instance_uid: &rec.sop_instance_uid,
            sop_class_uid: &rec.sop_class_uid,
            transfer_syntax: ts_uid,
            calling_ae,
            dataset,
        })
        .map_err(|e| {
            warn!(error = %e, "spool write failed");
            Failure::new(status::OUT_OF_RESOURCES, "spool write failed")
        })?;
    rec.spool_path = stored.relative_path;
    rec.size_bytes = stored.size_bytes as i64;
    rec.transfer_syntax = ts_uid.to_string();
    rec.calling_ae = calling_ae.trim().to_string();
    rec.received_at = Utc::now();
    Ok(rec)
}

/// The dataset must be the instance the command announced, with the UIDs the spool needs.
fn check_matches(
    req: &Request,
    rec: &InstanceRecord,
    obj: &InMemDicomObject,
) -> Result<(), Failure> {
    if obj.get(tags::SOP_INSTANCE_UID).is_none() || rec.sop_instance_uid.is_empty() {
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
