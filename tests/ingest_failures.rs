//! Bad peers and bad data: refused associations, aborted and malformed transfers, garbage on
//! the port, a failing spool. Each gets the proper DICOM answer, loses nothing acknowledged,
//! indexes nothing partial, and leaves the daemon serving.

mod ingest_support;

use std::time::Duration;

use brainaged::config::{CallerConfig, DicomConfig};
use ingest_support::scu::{self, Instance, Scu};
use ingest_support::{AE_TITLE, TestScp, run, shared_dicom, test_config, text};
use tokio::io::AsyncWriteExt;

fn mr_instance() -> Instance {
    scu::instance_from(&first_file_of("ge-t1-mprage"))
}

/// The first file of a shared folder, in name order.
fn first_file_of(folder: &str) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(shared_dicom().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

async fn echo(scp: &TestScp, calling: &str, called: &str) -> (bool, String) {
    let out = run(
        "/usr/bin/echoscu",
        &[
            "-v",
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            &scp.port(),
        ],
    )
    .await;
    (out.status.success(), text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_calling_ae_and_wrong_called_ae_are_rejected() {
    let scp = TestScp::start().await;
    let (ok, log) = echo(&scp, "NOBODY", AE_TITLE).await;
    assert!(!ok, "{log}");
    assert!(log.contains("Rejected Permanent"), "{log}");
    assert!(log.contains("Calling AE Title Not Recognized"), "{log}");
    let (ok, log) = echo(&scp, "ECHOSCU", "NOTUS").await;
    assert!(!ok, "{log}");
    assert!(log.contains("Called AE Title Not Recognized"), "{log}");
    let (ok, log) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(ok, "{log}");
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_bound_to_a_host_is_rejected_from_elsewhere() {
    let mut cfg = test_config();
    cfg.callers = vec![
        CallerConfig {
            ae_title: "FARAWAY".into(),
            host: Some("10.9.9.9".parse().unwrap()),
            tls_name: None,
        },
        CallerConfig {
            ae_title: "LOCAL".into(),
            host: Some("127.0.0.1".parse().unwrap()),
            tls_name: None,
        },
    ];
    let scp = TestScp::start_with(cfg).await;
    let (ok, log) = echo(&scp, "FARAWAY", AE_TITLE).await;
    assert!(!ok, "{log}");
    assert!(log.contains("Calling AE Title Not Recognized"), "{log}");
    let (ok, log) = echo(&scp, "LOCAL", AE_TITLE).await;
    assert!(ok, "{log}");
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_transfer_indexes_nothing() {
    // One association at a time: a new one is accepted only once the server has finished with
    // the aborted one, which is when anything it was going to keep would have been kept.
    let scp = TestScp::start_with(DicomConfig {
        max_associations: 1,
        ..test_config()
    })
    .await;
    let inst = mr_instance();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    let cmd = scu::store_command(&inst.sop_class, &inst.sop_instance, 1);
    scu.send_command(&cmd, 1).await;
    scu.send_data(&inst.dataset[..inst.dataset.len() / 2], 4_000, false)
        .await;
    scu.assoc.abort().await.unwrap();
    until_the_association_has_ended(&scp).await;
    assert_eq!(scp.instance_count().await, 0);
    assert!(scp.spool_files().is_empty());
    // A TCP drop half-way (no A-ABORT at all) is the same.
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    scu.send_command(&cmd, 1).await;
    scu.send_data(&inst.dataset[..inst.dataset.len() / 3], 4_000, false)
        .await;
    drop(scu);
    until_the_association_has_ended(&scp).await;
    assert_eq!(scp.instance_count().await, 0);
    assert!(scp.spool_files().is_empty());
    // The daemon still takes the whole instance afterwards.
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(scu.store(&inst, 2, 1).await.status, 0x0000);
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}

/// Returns once an SCP limited to one association accepts a C-ECHO association: the one before
/// it has then ended on the server's side. Panics after 10 s.
async fn until_the_association_has_ended(scp: &TestScp) {
    assert_eq!(scp.cfg.max_associations, 1);
    let mut last = String::new();
    for _ in 0..100 {
        let (ok, log) = echo(scp, "ECHOSCU", AE_TITLE).await;
        if ok {
            return;
        }
        last = log;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the aborted association still holds the server's only slot after 10 s: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datasets_fail_and_the_association_goes_on() {
    let scp = TestScp::start().await;
    let inst = mr_instance();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;

    // Truncated mid-element: cannot be parsed.
    let cut = Instance {
        dataset: inst.dataset[..inst.dataset.len() - 1001].to_vec(),
        sop_class: inst.sop_class.clone(),
        sop_instance: inst.sop_instance.clone(),
    };
    let rsp = scu.store(&cut, 11, 1).await;
    assert_eq!((rsp.command_field, rsp.responding_to), (0x8001, 11));
    assert_eq!(rsp.status, 0xC000, "{rsp:?}");

    // Random bytes.
    let noise = Instance {
        dataset: (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        sop_class: inst.sop_class.clone(),
        sop_instance: inst.sop_instance.clone(),
    };
    let rsp = scu.store(&noise, 12, 1).await;
    assert_eq!(rsp.responding_to, 12);
    assert!(rsp.status == 0xC000 || rsp.status == 0xA900, "{rsp:?}");

    // Well-formed, but not the instance the command announced.
    let other = Instance {
        dataset: inst.dataset.clone(),
        sop_class: inst.sop_class.clone(),
        sop_instance: "1.2.3.4.5.6.7.8.9".into(),
    };
    let rsp = scu.store(&other, 13, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (13, 0xA900), "{rsp:?}");
    assert_eq!(scp.instance_count().await, 0);

    // The same association then stores a good instance, its command split over three PDUs.
    let rsp = scu.store(&inst, 14, 3).await;
    assert_eq!((rsp.responding_to, rsp.status), (14, 0x0000), "{rsp:?}");
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    assert_eq!(scp.spool_files().len(), 1);
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_instance_is_one_row_and_one_file() {
    let scp = TestScp::start().await;
    let inst = mr_instance();
    for round in 0..3u16 {
        let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
        assert_eq!(scu.store(&inst, round + 1, 1).await.status, 0x0000);
        scu.assoc.release().await.unwrap();
    }
    assert_eq!(scp.instance_count().await, 1);
    let files = scp.spool_files();
    assert_eq!(files.len(), 1);
    // Nothing but the one file: no temporary left behind.
    let dir = files[0].parent().unwrap();
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    let writing = scp.spool.root().join(".writing");
    assert_eq!(std::fs::read_dir(writing).unwrap().count(), 0);
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_failure_answers_out_of_resources() {
    let scp = TestScp::start().await;
    let inst = mr_instance();
    let study = dicom_object::open_file(
        shared_dicom()
            .join("ge-t1-mprage")
            .join(first_name("ge-t1-mprage")),
    )
    .unwrap()
    .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
    .unwrap()
    .to_str()
    .unwrap()
    .trim_end_matches('\0')
    .to_string();
    // A plain file where the study directory must go: the spool cannot write the instance.
    let blocker = scp
        .spool
        .root()
        .join(brainaged::spool::sanitise_uid(&study));
    std::fs::write(&blocker, b"in the way").unwrap();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(scu.store(&inst, 1, 1).await.status, 0xA700);
    assert_eq!(scp.instance_count().await, 0);
    // Once the disk is usable again, the sender's retry succeeds on the same association.
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(scu.store(&inst, 2, 1).await.status, 0x0000);
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}

/// A Philips DWI slice: an MR instance about a third the size of [`mr_instance`].
fn small_mr_instance() -> Instance {
    scu::instance_from(
        &shared_dicom()
            .join("philips-dwi-bangalore")
            .join("dwi_no-phi")
            .join("IM_0001"),
    )
}

/// The peak resident memory of this process (the SCP runs in it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// An explicit VR little endian element with a 2-byte length, its value padded to even length.
fn short_element(group: u16, element: u16, vr: &[u8; 2], value: &str) -> Vec<u8> {
    let mut value = value.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    let mut out = group.to_le_bytes().to_vec();
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend(value);
    out
}

/// The SCP ended the association: an A-ABORT, or the connection closed.
async fn assert_aborted(scu: &mut Scu) {
    match tokio::time::timeout(Duration::from_secs(10), scu.assoc.receive()).await {
        Ok(Ok(dicom_ul::pdu::Pdu::AbortRQ { .. })) | Ok(Err(_)) => {}
        Ok(Ok(other)) => panic!("expected an abort, got {other:?}"),
        Err(_) => panic!("the association was neither aborted nor closed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_over_the_limit_is_refused_and_the_association_goes_on() {
    let big = mr_instance();
    let small = small_mr_instance();
    let limit = (big.dataset.len() + small.dataset.len()) / 2;
    assert!(small.dataset.len() < limit && limit < big.dataset.len());
    let mut cfg = test_config();
    cfg.max_dataset_bytes = limit as u64;
    let scp = TestScp::start_with(cfg).await;
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    let rsp = scu.store(&big, 1, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (1, 0xA700), "{rsp:?}");
    assert_eq!(scp.instance_count().await, 0);
    assert!(scp.spool_files().is_empty());
    // The next message on the same association is read from its start, and stored.
    let rsp = scu.store(&small, 2, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (2, 0x0000), "{rsp:?}");
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}

/// The UIDs of `inst`, as its command announces them, followed by `elements` (explicit VR
/// little endian, as written): a dataset that gets past the check of its UIDs.
fn announced_then(inst: &Instance, elements: &[&[u8]]) -> Instance {
    let mut dataset = short_element(0x0008, 0x0016, b"UI", &inst.sop_class);
    dataset.extend(short_element(0x0008, 0x0018, b"UI", &inst.sop_instance));
    dataset.extend(elements.concat());
    Instance {
        dataset,
        sop_class: inst.sop_class.clone(),
        sop_instance: inst.sop_instance.clone(),
    }
}

/// An explicit VR little endian element header with a 4-byte length.
fn long_header(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut out = group.to_le_bytes().to_vec();
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_past_the_end_is_refused_without_allocating_it() {
    let scp = TestScp::start().await;
    let inst = small_mr_instance();
    let hostile = [
        // An element that announces 4 GiB and brings 8 bytes: UT, whose value the full parser
        // would allocate and zero-fill before finding the bytes missing.
        announced_then(
            &inst,
            &[
                &long_header(0x0008, 0x4100, b"UT", 0xFFFF_FFF0),
                b"12345678",
            ],
        ),
        // The same with a VR nobody knows, which the parser reads as UN, with a 4-byte length.
        announced_then(
            &inst,
            &[
                &long_header(0xFB05, 0x4107, b"ZZ", 0xD9FF_0006),
                b"12345678",
            ],
        ),
        // An unknown VR whose value fits, so the scan stops there and hands the dataset to
        // the full parser, which reads on as UN and meets the 4 GiB length after it.
        announced_then(
            &inst,
            &[
                &long_header(0x0009, 0x0010, b"ZZ", 4),
                b"abcd",
                &long_header(0x0010, 0x4000, b"UT", 0xFFFF_FFF0),
                b"12345678",
            ],
        ),
    ];
    let before = peak_rss();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    for (id, dataset) in (1..).zip(&hostile) {
        let rsp = scu.store(dataset, id, 1).await;
        assert_eq!((rsp.responding_to, rsp.status), (id, 0xC000), "{rsp:?}");
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "peak memory grew by {grown} bytes");
    let rsp = scu.store(&inst, 9, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (9, 0x0000), "{rsp:?}");
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}

/// A 16-bit value of odd length: dicom-rs, which `reindex` and the converter read spool files
/// with, reads it one byte short and everything after it from the wrong byte. Acknowledging it
/// would keep a file that reads back as something else or not at all; it is refused instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_value_of_a_broken_length_is_never_acknowledged() {
    let scp = TestScp::start().await;
    let inst = small_mr_instance();
    let odd_us = [0x19, 0x00, 0x01, 0x10, b'U', b'S', 3, 0, 1, 0, 0];
    let study = short_element(0x0020, 0x000D, b"UI", "1.2.826.0.1.3680043.9.7.2");
    let series = short_element(0x0020, 0x000E, b"UI", "1.2.826.0.1.3680043.9.7.3");
    let broken = announced_then(&inst, &[&odd_us, &study, &series]);
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    let rsp = scu.store(&broken, 1, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (1, 0xC000), "{rsp:?}");
    let rsp = scu.store(&inst, 2, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (2, 0x0000), "{rsp:?}");
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}

/// An association proposing MR Image in deflated explicit VR little endian only.
async fn deflate_scu(scp: &TestScp) -> Scu {
    let assoc = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("TESTSCU")
        .called_ae_title(AE_TITLE)
        .with_presentation_context("1.2.840.10008.5.1.4.1.1.4", vec!["1.2.840.10008.1.2.1.99"])
        .max_pdu_length(16_384)
        .establish_async(scp.addr)
        .await
        .unwrap();
    let context_id = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .expect("deflate accepted")
        .id;
    Scu { assoc, context_id }
}

/// An MR instance of `pixel_bytes` zero bytes (OB), raw-deflated as PS3.5 §A.5 has it.
fn deflated_instance(sop_instance: &str, pixel_bytes: u32) -> Instance {
    let class = "1.2.840.10008.5.1.4.1.1.4";
    let mut plain = short_element(0x0008, 0x0016, b"UI", class);
    plain.extend(short_element(0x0008, 0x0018, b"UI", sop_instance));
    plain.extend(short_element(
        0x0020,
        0x000D,
        b"UI",
        "1.2.826.0.1.3680043.9.7.1",
    ));
    plain.extend(short_element(
        0x0020,
        0x000E,
        b"UI",
        "1.2.826.0.1.3680043.9.7.1.1",
    ));
    plain.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    plain.extend_from_slice(&pixel_bytes.to_le_bytes());
    plain.resize(plain.len() + pixel_bytes as usize, 0);
    let mut deflate =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflate, &plain).unwrap();
    Instance {
        dataset: deflate.finish().unwrap(),
        sop_class: class.into(),
        sop_instance: sop_instance.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflated_dataset_that_inflates_past_the_limit_is_refused() {
    let mut cfg = test_config();
    cfg.max_dataset_bytes = 1 << 20;
    let scp = TestScp::start_with(cfg).await;
    // 64 MiB of zeros deflate to about 64 KB: under the limit as received, far over it inflated.
    let bomb = deflated_instance("1.2.826.0.1.3680043.9.7.1.1.1", 64 << 20);
    assert!(bomb.dataset.len() < 1 << 20);
    let fine = deflated_instance("1.2.826.0.1.3680043.9.7.1.1.2", 4096);
    let mut scu = deflate_scu(&scp).await;
    let before = peak_rss();
    let rsp = scu.store(&bomb, 1, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (1, 0xA700), "{rsp:?}");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 48 << 20, "peak memory grew by {grown} bytes");
    let rsp = scu.store(&fine, 2, 1).await;
    assert_eq!((rsp.responding_to, rsp.status), (2, 0x0000), "{rsp:?}");
    scu.assoc.release().await.unwrap();
    // The one stored is kept as it was sent: deflated.
    let index = scp.index().await;
    assert_eq!(index.len(), 1);
    let (path, ts) = &index["1.2.826.0.1.3680043.9.7.1.1.2"];
    assert_eq!(ts, "1.2.840.10008.1.2.1.99");
    let stored = std::fs::read(path).unwrap();
    assert!(stored.ends_with(&fine.dataset));
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_never_ends_is_cut_off() {
    let scp = TestScp::start().await;
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    // Command fragments, none marked last: 80 KB where a command set is a few hundred bytes.
    let filler = vec![0u8; 8_000];
    for _ in 0..10 {
        let pdv = dicom_ul::pdu::PDataValue {
            presentation_context_id: scu.context_id,
            value_type: dicom_ul::pdu::PDataValueType::Command,
            is_last: false,
            data: filler.clone(),
        };
        if scu
            .assoc
            .send(&dicom_ul::pdu::Pdu::PData { data: vec![pdv] })
            .await
            .is_err()
        {
            break;
        }
    }
    assert_aborted(&mut scu).await;
    let (ok, log) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(ok, "{log}");
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_a_context_never_accepted_aborts_the_association() {
    let scp = TestScp::start().await;
    let inst = mr_instance();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    // Presentation context IDs are odd; this one was never proposed.
    scu.context_id += 2;
    let cmd = scu::store_command(&inst.sop_class, &inst.sop_instance, 1);
    scu.send_command(&cmd, 1).await;
    assert_aborted(&mut scu).await;
    assert_eq!(scp.instance_count().await, 0);
    assert!(scp.spool_files().is_empty());
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(scu.store(&inst, 2, 1).await.status, 0x0000);
    scu.assoc.release().await.unwrap();
    scp.stop().await;
}

fn first_name(folder: &str) -> String {
    let mut names: Vec<_> = std::fs::read_dir(shared_dicom().join(folder))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_the_port_do_not_stop_the_daemon() {
    let scp = TestScp::start().await;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(scp.addr).await.unwrap();
        let len = 1 + (next() % 4096) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let prefix: &[u8] = match round % 3 {
            // A plausible A-ASSOCIATE-RQ header announcing a huge body.
            0 => &[0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0],
            // A P-DATA before any association.
            1 => &[0x04, 0x00, 0x00, 0x00, 0x00, 0x10],
            _ => &[],
        };
        bytes.splice(0..0, prefix.iter().copied());
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    }
    let (ok, log) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(ok, "{log}");
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    assert_eq!(scu.store(&mr_instance(), 1, 1).await.status, 0x0000);
    scu.assoc.release().await.unwrap();
    scp.stop().await;
}

/// pynetdicom proposes MR Image with JPEG extended 12-bit (.51) alone, beside Verification, and
/// prints each context's result.
const PROPOSE_12_BIT: &str = r#"
import json, sys
from pynetdicom import AE
ae = AE(ae_title="PYNETDICOM")
ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", ["1.2.840.10008.1.2.4.51"])
ae.add_requested_context("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title=sys.argv[2])
print(json.dumps({
    "established": assoc.is_established,
    "accepted": [c.abstract_syntax for c in assoc.accepted_contexts],
    "rejected": [[c.abstract_syntax, c.result] for c in assoc.rejected_contexts],
}))
if assoc.is_established:
    assoc.release()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_bit_jpeg_proposed_alone_is_refused() {
    let scp = TestScp::start().await;
    let out = run("python3", &["-c", PROPOSE_12_BIT, &scp.port(), AE_TITLE]).await;
    assert!(out.status.success(), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["established"], true, "{got}");
    assert_eq!(
        got["accepted"],
        serde_json::json!(["1.2.840.10008.1.1"]),
        "{got}"
    );
    // Result 4: transfer syntaxes not supported (PS3.8 §9.3.3.2).
    assert_eq!(
        got["rejected"],
        serde_json::json!([["1.2.840.10008.5.1.4.1.1.4", 4]]),
        "{got}"
    );
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_c_store_in_flight_finish() {
    let scp = TestScp::start().await;
    let inst = mr_instance();
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    let cmd = scu::store_command(&inst.sop_class, &inst.sop_instance, 7);
    scu.send_command(&cmd, 1).await;
    let half = inst.dataset.len() / 2;
    scu.send_data(&inst.dataset[..half], 4_000, false).await;
    // Let the association read what was sent, so the message is in flight on the SCP's side
    // (not merely in a socket buffer the reactor has not yet seen) when shutdown is requested.
    tokio::time::sleep(Duration::from_millis(300)).await;
    scp.request_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New associations are no longer accepted...
    let (ok, _) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(
        !ok,
        "a new association was accepted after shutdown was requested"
    );
    // ...but the message in flight completes and is acknowledged only once stored.
    assert!(
        !scp.stopped(),
        "the listener stopped with a C-STORE in flight"
    );
    scu.send_data(&inst.dataset[half..], 4_000, true).await;
    let rsp = scu.response().await;
    assert_eq!((rsp.responding_to, rsp.status), (7, 0x0000), "{rsp:?}");
    assert_eq!(scp.instance_count().await, 1);
    // Between messages the association is then closed and the listener returns.
    for _ in 0..50 {
        if scp.stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        scp.stopped(),
        "the listener did not stop after the last message"
    );
    drop(scu);
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_beyond_the_limit_are_refused_for_now() {
    let mut cfg = test_config();
    cfg.max_associations = 1;
    let scp = TestScp::start_with(cfg).await;
    let first = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;
    let (ok, log) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(!ok, "{log}");
    assert!(log.contains("Rejected Transient"), "{log}");
    assert!(log.contains("Local Limit Exceeded"), "{log}");
    first.assoc.release().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, log) = echo(&scp, "ECHOSCU", AE_TITLE).await;
    assert!(ok, "{log}");
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_by_the_artim_timer() {
    use tokio::io::AsyncReadExt;
    let mut cfg = test_config();
    cfg.artim_timeout_secs = 1;
    let scp = TestScp::start_with(cfg).await;
    let mut stream = tokio::net::TcpStream::connect(scp.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the SCP kept a silent connection open past its ARTIM timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    scp.stop().await;
}

/// PostgreSQL text cannot hold a NUL character. A NUL inside a value (not the padding at its
/// end) must not turn into "out of resources", which senders retry for ever: the instance is
/// kept and indexed with the NUL left out of the indexed text, and the file keeps the bytes
/// as sent. A UID with a NUL inside is not a valid UID: a permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_inside_a_value_is_never_out_of_resources() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let scp = TestScp::start().await;
    let mut scu = Scu::connect(scp.addr, "TESTSCU", AE_TITLE).await;

    let named = scu::instance_edited(&first_file_of("ge-t1-mprage"), |obj| {
        let name = PrimitiveValue::from("DOE\0^JOHN");
        obj.put(DataElement::new(tags::PATIENT_NAME, VR::PN, name));
        let about = PrimitiveValue::from("BRAIN\0 MRI");
        obj.put(DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, about));
    });
    let rsp = scu.store(&named, 1, 1).await;
    assert_eq!(rsp.status, 0x0000, "{rsp:?}");
    let (name, about): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT p.patient_name, s.study_description FROM patients p \
         JOIN studies s ON s.patient_ref = p.id",
    )
    .fetch_one(scp.db.pool())
    .await
    .unwrap();
    assert_eq!(name.as_deref(), Some("DOE^JOHN"));
    assert_eq!(about.as_deref(), Some("BRAIN MRI"));
    let stored = std::fs::read(&scp.spool_files()[0]).unwrap();
    assert!(
        stored.windows(9).any(|w| w == b"DOE\0^JOHN"),
        "file keeps what was sent"
    );

    let bad_uid = scu::instance_edited(&first_file_of("ge-t1-mprage"), |obj| {
        let uid = PrimitiveValue::from("1.2.826.0.1\0.99");
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, uid));
    });
    let rsp = scu.store(&bad_uid, 2, 1).await;
    assert_eq!(rsp.status, 0xA900, "{rsp:?}");
    scu.assoc.release().await.unwrap();
    assert_eq!(scp.instance_count().await, 1);
    scp.stop().await;
}
