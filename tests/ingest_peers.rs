//! Real DICOM peers (DCMTK echoscu/storescu, pynetdicom) send every shared folder to the
//! storage SCP: every instance ends up in the spool and the index, identical to its source.

mod ingest_support;

use ingest_support::{AE_TITLE, TestScp, run, shared_dicom, support_script, text};

/// Philips private storage classes in `philips-dwi-classic`: a site that receives Philips
/// studies lists them in `dicom.other_storage_classes`, as this test does.
const PHILIPS_PRIVATE: [&str; 2] = ["1.3.46.670589.11.0.0.12.2", "1.3.46.670589.11.0.0.12.4"];

fn config_with_philips_private() -> brainaged::config::DicomConfig {
    let mut cfg = ingest_support::test_config();
    cfg.other_storage_classes
        .extend(PHILIPS_PRIVATE.iter().map(|s| s.to_string()));
    cfg
}

fn assert_complete(report: &serde_json::Value, not_sendable: u64) {
    assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(
        report["mismatched"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert_eq!(report["not_accepted"], not_sendable, "{report}");
    assert_eq!(report["matched"], report["expected"], "{report}");
    assert_eq!(report["indexed"], report["expected"], "{report}");
    assert!(report["expected"].as_u64().unwrap() >= 3000, "{report}");
}

fn sendable_by_storescu(scp: &TestScp) -> Vec<String> {
    scp.accepted_classes()
        .into_iter()
        .filter(|c| !PHILIPS_PRIVATE.contains(&c.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoscu_is_answered() {
    let scp = TestScp::start().await;
    let out = run(
        "/usr/bin/echoscu",
        &[
            "-v",
            "-aet",
            "ECHOSCU",
            "-aec",
            AE_TITLE,
            "127.0.0.1",
            &scp.port(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Received Echo Response (Success)"),
        "{}",
        text(&out)
    );
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storescu_sends_every_shared_folder() {
    let scp = TestScp::start_with(config_with_philips_private()).await;
    let source = shared_dicom();
    let started = std::time::Instant::now();
    let out = run(
        "/usr/bin/storescu",
        &[
            "-aet".as_ref(),
            "STORESCU".as_ref(),
            "-aec".as_ref(),
            AE_TITLE.as_ref(),
            "+sd".as_ref(),
            "+r".as_ref(),
            "-nh".as_ref(),
            // Propose exactly the SOP classes and transfer syntaxes found in the files.
            "-R".as_ref(),
            "127.0.0.1".as_ref(),
            scp.port().as_ref(),
            source.as_os_str(),
        ],
    )
    .await;
    eprintln!("storescu took {:?}", started.elapsed());
    let log = text(&out);
    assert!(out.status.success(), "storescu failed: {log}");
    // storescu refuses to send SOP classes missing from its own dictionary (it logs "unknown
    // storage SOP class ... ignoring file"), so the Philips private objects are checked by the
    // pynetdicom test instead.
    assert_eq!(log.matches("unknown storage SOP class").count(), 2, "{log}");
    let started = std::time::Instant::now();
    let report = scp
        .compare_with_classes(&source, &sendable_by_storescu(&scp))
        .await;
    eprintln!("comparison took {:?}", started.elapsed());
    assert_complete(&report, 2);
    assert_eq!(
        scp.spool_files().len() as u64,
        report["expected"].as_u64().unwrap()
    );
    scp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynetdicom_sends_every_shared_folder() {
    let scp = TestScp::start_with(config_with_philips_private()).await;
    let source = shared_dicom();
    let mut args = vec![
        support_script("send_pynetdicom.py").into_os_string(),
        "127.0.0.1".into(),
        scp.port().into(),
        AE_TITLE.into(),
        "PYNETDICOM".into(),
    ];
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            args.push(path.into_os_string());
        }
    }
    let out = run("python3", &args).await;
    assert!(
        out.status.success(),
        "pynetdicom sender failed: {}",
        text(&out)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["rejected_contexts"], 0, "{sent}");
    assert_eq!(sent["association_failures"], 0, "{sent}");
    assert_eq!(sent["statuses"]["0x0000"], sent["sent"], "{sent}");
    let report = scp.compare_with(&source).await;
    assert_complete(&report, 0);
    assert_eq!(report["expected"], sent["sent"], "{report} {sent}");
    scp.stop().await;
}
