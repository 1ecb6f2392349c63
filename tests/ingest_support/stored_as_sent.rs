//! The content check of `compare.py` (pydicom as the independent reader): for a folder against
//! the index (the in-process SCP of this folder's `mod.rs`), and for any list of source files
//! (the tests that drive the daemon binary through `tests/common`, which include this file with
//! `#[path = "ingest_support/stored_as_sent.rs"] mod stored_as_sent;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainaged::db::Db;

/// SOP Instance UID → (absolute spool path, transfer syntax), as the index has them.
pub async fn stored_index(db: &Db, spool: &Path) -> BTreeMap<String, (PathBuf, String)> {
    sqlx::query_as::<_, (String, String, String)>(
        "SELECT sop_instance_uid, spool_path, transfer_syntax FROM instances",
    )
    .fetch_all(db.pool())
    .await
    .expect("query instances")
    .into_iter()
    .map(|(uid, rel, ts)| (uid, (spool.join(rel), ts)))
    .collect()
}

/// Every file of `sources` (at least one) is in `index`, and its spool file, read by pydicom,
/// is a part-10 file whose meta transfer syntax is the indexed one, whose dataset holds the same
/// SOP Instance UID as the source, and whose pixel data is byte-identical to the source's (same
/// transfer syntax) or decodes to the same pixels (another one): `compare.py`'s checks, run on a
/// folder of links to exactly these sources.
pub fn assert_stored_as_sent(sources: &[PathBuf], index: &BTreeMap<String, (PathBuf, String)>) {
    assert!(!sources.is_empty(), "no source files to compare");
    let dir = tempfile::tempdir().unwrap();
    let linked = dir.path().join("sources");
    std::fs::create_dir(&linked).unwrap();
    let mut classes = std::collections::BTreeSet::new();
    for (i, src) in sources.iter().enumerate() {
        let src = std::path::absolute(src).unwrap();
        std::os::unix::fs::symlink(&src, linked.join(format!("{i:06}.dcm"))).unwrap();
        let obj =
            dicom_object::open_file(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        classes.insert(
            obj.meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .trim()
                .to_string(),
        );
    }
    let classes: Vec<String> = classes.into_iter().collect();
    let report = compare(&linked, index, &classes);
    let n = sources.len() as u64;
    assert!(
        report["expected"] == n
            && report["matched"] == n
            && report["missing"].as_array().is_some_and(|m| m.is_empty())
            && report["mismatched"]
                .as_array()
                .is_some_and(|m| m.is_empty()),
        "{n} sources: the spool does not hold them as sent: {report}"
    );
}

/// Runs `compare.py` (pydicom) on the part-10 files under `source` against `index`, expecting
/// only instances of `classes`; returns its JSON report.
pub fn compare(
    source: &Path,
    index: &BTreeMap<String, (PathBuf, String)>,
    classes: &[String],
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let index: serde_json::Map<String, serde_json::Value> = index
        .iter()
        .map(|(uid, (path, ts))| (uid.clone(), serde_json::json!({"path": path, "ts": ts})))
        .collect();
    let index_path = dir.path().join("index.json");
    let classes_path = dir.path().join("accepted.json");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(&classes_path, serde_json::to_vec(classes).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ingest_support/compare.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(source)
        .arg(&index_path)
        .arg(&classes_path)
        .output()
        .expect("run python3 compare.py");
    assert!(
        out.status.success(),
        "compare.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
