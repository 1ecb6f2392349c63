//! `brainaged reindex` rebuilds, from the spool alone, the index the receiver wrote.

mod ingest_support;

use brainaged::db::Db;
use ingest_support::{AE_TITLE, TestScp, common, drop_test_database, run, shared_dicom, text};

/// The receiver-written columns of every instance, in a stable order.
async fn rows(
    db: &Db,
) -> Vec<(
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<i32>,
)> {
    sqlx::query_as(
        "SELECT sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid,
                spool_path, transfer_syntax, size_bytes, calling_ae, instance_number
         FROM instances ORDER BY sop_instance_uid",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

async fn series(
    db: &Db,
) -> Vec<(
    String,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
)> {
    sqlx::query_as(
        "SELECT series_instance_uid, modality, series_number, series_description, image_type
         FROM series ORDER BY series_instance_uid",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

async fn reindex(spool: &std::path::Path, url: &str) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("reindex")
        .env("BRAINAGED__SPOOL__DIR", spool)
        .env("BRAINAGED__DATABASE__URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (out.status.code(), text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_rebuilds_the_index_from_the_spool() {
    let scp = TestScp::start().await;
    let dicom = shared_dicom();
    // One index row per DICOM part-10 file sent.
    let sent = ["ge-dwi-tensor-r2", "philips-enhanced"]
        .iter()
        .map(|name| common::dicom_files(&dicom.join(name)).len())
        .sum::<usize>();
    assert!(sent > 0, "no DICOM files in the source folders");
    let out = run(
        "/usr/bin/storescu",
        &[
            "-aet".as_ref(),
            "STORESCU".as_ref(),
            "-aec".as_ref(),
            AE_TITLE.as_ref(),
            "+sd".as_ref(),
            "127.0.0.1".as_ref(),
            scp.port().as_ref(),
            dicom.join("ge-dwi-tensor-r2").as_os_str(),
            dicom.join("philips-enhanced").as_os_str(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let want = rows(&scp.db).await;
    let want_series = series(&scp.db).await;
    assert_eq!(want.len(), sent);

    let (fresh, url) = Db::connect_for_test().await.unwrap();
    let (code, log) = reindex(scp.spool.root(), &url).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains(&format!("indexed {sent}, already indexed 0, unreadable 0")),
        "{log}"
    );
    assert_eq!(rows(&fresh).await, want);
    assert_eq!(series(&fresh).await, want_series);

    // A second run changes nothing; a corrupt file is reported and the rest still checked.
    std::fs::write(scp.spool.root().join("garbage.dcm"), b"not DICOM at all").unwrap();
    let (code, log) = reindex(scp.spool.root(), &url).await;
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!("indexed 0, already indexed {sent}, unreadable 1")),
        "{log}"
    );
    assert_eq!(rows(&fresh).await, want);

    fresh.close().await;
    drop_test_database(&url).await;
    scp.stop().await;
}

/// A spool file damaged on disk after it was acknowledged (here a length far past its end,
/// before its pixel data) is reported as unreadable, without the parser first allocating what
/// the length announces; the rest of the spool is still indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_file_damaged_on_disk_is_reported_without_allocating_it() {
    let spool = tempfile::tempdir().unwrap();
    let mut files = common::dicom_files(&shared_dicom().join("ge-t1-mprage"));
    files.sort();
    std::fs::copy(&files[0], spool.path().join("intact.dcm")).unwrap();
    let damaged = common::with_long_value(&std::fs::read(&files[1]).unwrap());
    std::fs::write(spool.path().join("damaged.dcm"), &damaged).unwrap();
    // dicom-rs also reads a file that starts with "DICM", without a preamble.
    std::fs::write(spool.path().join("no_preamble.dcm"), &damaged[128..]).unwrap();

    let (fresh, url) = Db::connect_for_test().await.unwrap();
    let (code, log) = reindex(spool.path(), &url).await;
    let peak = common::children_peak_rss();
    assert!(peak < 512 << 20, "a child's peak memory: {peak} bytes");
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("indexed 1, already indexed 0, unreadable 2"),
        "{log}"
    );
    assert!(
        log.contains("damaged.dcm") && log.contains("a value of 4294967280 bytes"),
        "{log}"
    );
    let indexed: Vec<String> = sqlx::query_scalar("SELECT spool_path FROM instances")
        .fetch_all(fresh.pool())
        .await
        .unwrap();
    assert_eq!(indexed, ["intact.dcm"]);
    fresh.close().await;
    drop_test_database(&url).await;
}

/// A sender's SOP Instance UID that is no UID (a letter in it) is still stored, and its spool
/// file reads back: the meta group, which the parser checks, carries a UID derived from it,
/// while the dataset and the index keep the value as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_uid_is_no_uid_is_kept_readable() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use ingest_support::scu::{self, Scu};
    let scp = TestScp::start().await;
    let mut files = common::dicom_files(&shared_dicom().join("ge-t1-mprage"));
    files.sort();
    let odd = scu::instance_edited(&files[0], |obj| {
        let uid = PrimitiveValue::from("1.2.826.0.1.3680043.9.7133.A7");
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, uid));
    });
    let mut sender = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(sender.store(&odd, 1, 1).await.status, 0x0000);
    sender.assoc.release().await.unwrap();
    let want = rows(&scp.db).await;
    assert_eq!(want[0].0, "1.2.826.0.1.3680043.9.7133.A7");

    let file = dicom_object::open_file(&scp.spool_files()[0]).expect("the spool file reads back");
    assert!(
        file.meta()
            .media_storage_sop_instance_uid()
            .starts_with("2.25.")
    );
    let (fresh, url) = Db::connect_for_test().await.unwrap();
    let (code, log) = reindex(scp.spool.root(), &url).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(rows(&fresh).await, want);
    fresh.close().await;
    drop_test_database(&url).await;
    scp.stop().await;
}
