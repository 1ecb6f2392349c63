//! The receiver's dataset scan (`spool::scan`) against the full dicom-rs parser, on every real
//! instance of the reference set: the scan must describe each instance exactly as the parsed
//! object does (so the index cannot depend on which path read it), in both encodings it reads,
//! and must never accept a truncated dataset that the parser refuses. End to end, a dataset the
//! scan leaves to the parser (an ISO 2022 character set) is stored and indexed like the others.

mod ingest_support;

use ingest_support::common;

use brainaged::db::instances::InstanceRecord;
use brainaged::spool::record::{self, ScannedText};
use brainaged::spool::scan::{self, Encoding};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// A part-10 file's dataset bytes (after the file meta group) and its transfer syntax.
fn dataset_of(path: &std::path::Path) -> (Vec<u8>, String) {
    let meta = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PATIENT_NAME)
        .open_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .meta()
        .clone();
    let bytes = std::fs::read(path).unwrap();
    // Preamble, magic, the group length element, then the rest of the meta group.
    let start = 132 + 12 + meta.information_group_length as usize;
    let ts = meta.transfer_syntax().trim_end_matches('\0').to_string();
    (bytes[start..].to_vec(), ts)
}

fn parsed(dataset: &[u8], ts: &str) -> Option<InMemDicomObject> {
    let ts = TransferSyntaxRegistry.get(ts)?;
    InMemDicomObject::read_dataset_with_ts(dataset, ts).ok()
}

fn by_parser(obj: &InMemDicomObject) -> String {
    let mut rec = InstanceRecord::default();
    record::describe(obj, &mut rec);
    format!("{rec:?}")
}

fn by_scan(dataset: &[u8], encoding: Encoding) -> Result<String, String> {
    let scanned = scan::scan(dataset, encoding, &record::DESCRIBED).map_err(|e| e.to_string())?;
    let text = ScannedText::new(&scanned).ok_or("left to the parser")?;
    let mut rec = InstanceRecord::default();
    record::describe(&text, &mut rec);
    Ok(format!("{rec:?}"))
}

#[test]
fn the_scan_describes_every_reference_instance_as_the_parser_does() {
    let files = common::dicom_files(&common::shared_dir().join("dicom"));
    assert!(
        files.len() > 1000,
        "reference set too small: {}",
        files.len()
    );
    let mut compared = 0;
    let mut implicit = 0;
    for (i, path) in files.iter().enumerate() {
        let (dataset, ts) = dataset_of(path);
        let Some(encoding) = Encoding::of_transfer_syntax(&ts) else {
            continue;
        };
        let obj = parsed(&dataset, &ts).unwrap_or_else(|| panic!("{}", path.display()));
        let expected = by_parser(&obj);
        let got = by_scan(&dataset, encoding)
            .unwrap_or_else(|e| panic!("{}: scan refused: {e}", path.display()));
        assert_eq!(got, expected, "{}", path.display());
        compared += 1;
        // Every tenth instance again in implicit VR, the encoding without VRs in the headers.
        if i % 10 == 0 {
            let mut again = Vec::new();
            obj.write_dataset_with_ts(&mut again, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
            let got = by_scan(&again, Encoding::ImplicitVrLittleEndian)
                .unwrap_or_else(|e| panic!("{} (implicit VR): {e}", path.display()));
            let reparsed = parsed(&again, "1.2.840.10008.1.2").unwrap();
            assert_eq!(
                got,
                by_parser(&reparsed),
                "{} (implicit VR)",
                path.display()
            );
            implicit += 1;
        }
    }
    eprintln!("{compared} instances compared, {implicit} of them also in implicit VR");
    assert!(compared > 1000 && implicit > 100);
}

#[test]
fn the_scan_accepts_no_truncated_dataset_that_the_parser_refuses() {
    let root = common::shared_dir().join("dicom");
    let mut cuts = 0;
    for folder in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
        if !folder.path().is_dir() {
            continue;
        }
        let Some(path) = common::dicom_files(&folder.path()).into_iter().next() else {
            continue;
        };
        let (dataset, ts) = dataset_of(&path);
        let Some(encoding) = Encoding::of_transfer_syntax(&ts) else {
            continue;
        };
        // Cuts spread over the whole dataset, and the last bytes, where pixel data ends.
        let n = dataset.len();
        let positions = (1..60).map(|k| k * n / 60).chain(n.saturating_sub(9)..n);
        for cut in positions {
            let part = &dataset[..cut];
            if scan::scan(part, encoding, &[]).is_ok() {
                assert!(
                    parsed(part, &ts).is_some(),
                    "{}: scan accepted a cut at {cut} of {n} that the parser refuses",
                    path.display()
                );
            }
            cuts += 1;
        }
    }
    assert!(cuts > 500, "{cuts}");
}

/// A real GE instance with its patient name replaced by `name_latin1` (raw bytes) under the
/// declared character set `charset`, and a new SOP Instance UID.
fn instance_with_name(
    charset: &str,
    name_latin1: &[u8],
    uid: &str,
) -> ingest_support::scu::Instance {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let path = common::dicom_files(&common::dicom_folder("ge-t1-mprage")).remove(0);
    let mut obj = dicom_object::open_file(&path).unwrap().into_inner();
    obj.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from(charset),
    ));
    obj.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::U8(name_latin1.into()),
    ));
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(uid),
    ));
    let mut dataset = Vec::new();
    obj.write_dataset_with_ts(
        &mut dataset,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    let sop_class = obj.element(tags::SOP_CLASS_UID).unwrap().to_str().unwrap();
    ingest_support::scu::Instance {
        dataset,
        sop_class: sop_class.trim_end_matches('\0').to_string(),
        sop_instance: uid.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_description_paths_store_and_index_a_latin1_name_alike() {
    use ingest_support::{AE_TITLE, TestScp, scu::Scu};
    let scp = TestScp::start().await;
    // "Müller^Jürgen" in ISO 8859-1. ISO_IR 100 is read by the scan; the ISO 2022 form (code
    // extensions) is left to the full parser.
    let name = b"M\xfcller^J\xfcrgen";
    let scanned = instance_with_name("ISO_IR 100", name, "1.2.826.0.1.3680043.10.1.1");
    let parsed = instance_with_name("ISO 2022 IR 100", name, "1.2.826.0.1.3680043.10.1.2");
    assert!(by_scan(&scanned.dataset, Encoding::ExplicitVrLittleEndian).is_ok());
    assert!(by_scan(&parsed.dataset, Encoding::ExplicitVrLittleEndian).is_err());
    let patient_names = || async {
        sqlx::query_scalar::<_, String>("SELECT patient_name FROM patients")
            .fetch_all(scp.db.pool())
            .await
            .unwrap()
    };
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(scu.store(&scanned, 1, 1).await.status, 0x0000);
    assert_eq!(patient_names().await, ["Müller^Jürgen"]);
    // The same patient again through the parser: its row is updated only if the name differs.
    sqlx::query("UPDATE patients SET patient_name = 'overwritten'")
        .execute(scp.db.pool())
        .await
        .unwrap();
    assert_eq!(scu.store(&parsed, 2, 1).await.status, 0x0000);
    assert_eq!(patient_names().await, ["Müller^Jürgen"]);
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 2);
    // Both files are in the spool, byte for byte as sent after the meta group.
    for inst in [&scanned, &parsed] {
        let (path, _) = &scp.index().await[&inst.sop_instance];
        let stored = std::fs::read(path).unwrap();
        assert!(stored.ends_with(&inst.dataset));
    }
    scp.stop().await;
}

/// An attribute the index reads, sent with a binary VR: the parser decodes its values as
/// numbers, so the scan leaves the dataset to the parser (found by fuzzing: the scan indexed
/// the bytes of an ImageType sent as SS as text).
#[test]
fn an_attribute_sent_with_a_binary_vr_is_left_to_the_parser() {
    let element = |group: u16, element: u16, vr: &[u8; 2], value: &[u8]| {
        let mut out = [group.to_le_bytes(), element.to_le_bytes()].concat();
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    };
    let dataset = [
        element(0x0008, 0x0008, b"SS", b"OI6R"),
        element(0x0008, 0x0018, b"UI", b"1.2.3.4\0"),
    ]
    .concat();
    let ts = "1.2.840.10008.1.2.1";
    let obj = parsed(&dataset, ts).expect("the parser reads it");
    assert!(
        by_parser(&obj).contains("image_type: Some(\"18767\\\\21046\")"),
        "{}",
        by_parser(&obj)
    );
    assert_eq!(
        by_scan(&dataset, Encoding::ExplicitVrLittleEndian),
        Err("left to the parser".to_string())
    );
}
