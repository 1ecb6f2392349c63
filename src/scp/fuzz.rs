//! Entry points for the coverage-guided fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing`.
//!
//! Each runs one piece of the receiver on bytes a peer controls, through the same functions the
//! receiver calls, and checks what must hold for any input: no panic, and where a dataset is
//! accepted, that the file the spool would write is a readable part-10 file naming the same
//! instance, under the spool root. The scan and the full parser are also run side by side on
//! every dataset the scan reads: the index must not depend on which of them read it. What the
//! receiver accepts then goes on to the converter, as the job worker runs it; so does any file,
//! as `brainaged convert` reads a folder, and as `brainaged reindex` reads the spool.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dicom_ul::pdu::{self, Pdu};

use super::command::{C_STORE_RQ, Request};
use super::contexts::Negotiator;
use super::store;
use super::wire;
use crate::config::DicomConfig;
use crate::convert::{ConvertOptions, convert_paths, output};
use crate::dataset_bounds;
use crate::db::instances::InstanceRecord;
use crate::spool::Spool;

/// The transfer syntaxes a dataset may arrive in; the input's first byte picks one.
const SYNTAXES: [&str; 10] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.2",
];

/// The largest dataset, once inflated, that the fuzzer lets the receiver and the converter hold
/// (the daemon's limit is larger; memory is not what is tested here).
const MAX_INFLATED: u64 = 16 << 20;

/// A C-STORE dataset: described as the receiver describes it, checked against a command that
/// announces the instance it names, and planned into a spool.
pub fn c_store_dataset(input: &[u8]) {
    let Some((&pick, dataset)) = input.split_first() else {
        return;
    };
    let ts = SYNTAXES[pick as usize % SYNTAXES.len()];
    let Ok(rec) = store::described_slowly(ts, dataset, false, MAX_INFLATED) else {
        return;
    };
    same_as_the_full_parser(ts, dataset, &rec);
    let req = Request {
        command_field: C_STORE_RQ,
        message_id: 1,
        affected_sop_class: rec.sop_class_uid.clone(),
        affected_sop_instance: rec.sop_instance_uid.clone(),
        has_dataset: true,
    };
    let Ok((rec, planned)) = store::finish(spool(), &req, "FUZZ", ts, rec, dataset) else {
        return;
    };
    let relative = Path::new(&rec.spool_path);
    assert!(
        relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))),
        "spool path {relative:?} leaves its directory"
    );
    assert_eq!(relative.components().count(), 3, "{relative:?}");
    let meta = dicom_object::FileMetaTable::from_reader(&planned.header()[128..])
        .expect("the spool's meta group reads back");
    // A value that is no UID is replaced in the meta group (src/spool/meta.rs).
    let uid = &rec.sop_instance_uid;
    if uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        assert_eq!(
            meta.media_storage_sop_instance_uid().trim_end_matches('\0'),
            rec.sop_instance_uid
        );
    }
}

/// When the scan read the dataset, the full parser must describe it the same way.
fn same_as_the_full_parser(ts: &str, dataset: &[u8], rec: &InstanceRecord) {
    let Ok(Some(_)) = store::scanned(ts, dataset) else {
        return;
    };
    let Ok(parsed) = store::parsed(ts, dataset) else {
        // The scan checks structure only; values the parser refuses to decode are its call.
        return;
    };
    assert_eq!(
        format!("{rec:?}"),
        format!("{parsed:?}"),
        "scan and parser differ"
    );
}

/// A DIMSE command set: parsed, and when it parses, answered.
pub fn command_set(input: &[u8]) {
    if let Ok(req) = Request::parse(input) {
        let response = req.response(0xC000, Some("fuzz"));
        let back = Request::parse(&response).expect("our response parses");
        assert_eq!(back.command_field, req.command_field | 0x8000);
    }
}

/// A stream of PDUs as a peer sends them: framed, decoded, an A-ASSOCIATE-RQ negotiated and
/// answered, the values of P-DATA-TF split out.
pub fn pdu_stream(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut reader = wire::PduReader::new(input, 1 << 20);
        while let Ok(received) = reader.next().await {
            match received {
                wire::Received::PData(body) => wire::pdvs(body).for_each(drop),
                wire::Received::Other(Pdu::AssociationRQ(rq)) => {
                    let negotiator = Negotiator::new(&DicomConfig::default());
                    let negotiated: Vec<_> = rq
                        .presentation_contexts
                        .iter()
                        .map(|pc| negotiator.negotiate(pc))
                        .collect();
                    let ac = super::association::acceptance(&rq, &negotiated, 1 << 20);
                    let mut out = Vec::new();
                    pdu::write_pdu(&mut out, &ac).expect("our A-ASSOCIATE-AC encodes");
                }
                wire::Received::Other(_) => {}
            }
        }
    });
}

/// One spool shared by every run of the process, on tmpfs: planning touches no disk, but the
/// spool is opened once.
fn spool() -> &'static Spool {
    static SPOOL: OnceLock<Spool> = OnceLock::new();
    SPOOL.get_or_init(|| {
        let dir = tmpfs().join(format!("brainaged-fuzz-spool-{}", std::process::id()));
        Spool::open(dir).expect("fuzz spool")
    })
}

/// A part-10 file as a peer could have had it stored: when the receiver would accept its
/// dataset, it is converted as a one-file series and its volumes written, as the job worker
/// does.
pub fn spool_file_converted(input: &[u8]) {
    let Ok((dataset_at, Some(ts))) = dataset_bounds::meta_group(input) else {
        return;
    };
    if store::described_slowly(&ts, &input[dataset_at..], false, MAX_INFLATED).is_err() {
        return;
    }
    converted_volumes_hold(input);
}

/// Any file with the part-10 magic, as `brainaged convert` meets it in a folder: converted and
/// its volumes written. Where the receiver's checks bound the spool's files, the converter's
/// own ([`dataset_bounds::check_file`] among them) are all that stand here.
pub fn convert_file(input: &[u8]) {
    if input.get(128..132) == Some(b"DICM".as_slice()) {
        converted_volumes_hold(input);
    }
}

/// Any file in the spool's place, read back as `brainaged reindex` reads it: the files there
/// were checked by the receiver, but one damaged on disk since is not, and the reader's own
/// check ([`dataset_bounds::check_file_header`]) is all that stands here.
pub fn spool_file_read_back(input: &[u8]) {
    let path = scratch().join("read_back.dcm");
    std::fs::write(&path, input).expect("scratch file");
    if let Ok(rec) = crate::spool::record::from_file(spool(), &path) {
        assert!(!rec.series_instance_uid.is_empty() && !rec.study_instance_uid.is_empty());
        assert_eq!(rec.size_bytes, input.len() as i64);
    }
}

/// Converts `input` as a one-file series and writes its volumes. Every volume must be 3-D or
/// 4-D, with a finite affine and one b-value and b-vector per volume.
fn converted_volumes_hold(input: &[u8]) {
    let dir = scratch();
    let path = dir.join("input.dcm");
    std::fs::write(&path, input).expect("scratch file");
    let options = ConvertOptions {
        max_dataset_bytes: MAX_INFLATED,
        ..ConvertOptions::default()
    };
    let converted = convert_paths(&[path], &options);
    for series in converted.into_iter().flatten() {
        for v in series.volumes {
            let shape = v.volume.data.shape();
            assert!(matches!(shape.len(), 3 | 4), "shape {shape:?}");
            assert!(v.volume.affine.iter().all(|x| x.is_finite()), "affine");
            if let Some(g) = &v.volume.gradients {
                let volumes = shape.get(3).copied().unwrap_or(1);
                assert_eq!((g.bvals.len(), g.bvecs.len()), (volumes, volumes));
            }
            let stem = format!("{}{}", output::base_name(&v.volume), v.suffix);
            let _ = output::write(&dir.join("out"), &stem, &v.volume, v.class, v.image_only);
        }
    }
}

/// A per-process directory on tmpfs where there is one: every run writes a file.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmpfs().join(format!("brainaged-fuzz-convert-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("out")).expect("scratch directory");
        dir
    })
}

fn tmpfs() -> PathBuf {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => shm.to_path_buf(),
        false => std::env::temp_dir(),
    }
}
