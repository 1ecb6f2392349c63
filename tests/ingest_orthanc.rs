//! A real PACS push: Orthanc (the Debian package, loopback only) receives a study over its REST
//! API and pushes it to brainaged with `/modalities/<name>/store`.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};

use brainaged::db::Db;
use common::*;

struct Orthanc(std::process::Child);

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orthanc_pushes_a_study() {
    let (db, url) = Db::connect_for_test().await.expect("test database");
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&tmp.path().join("spool"), &url, &[]);

    let (http, dicom) = (free_port(), free_port());
    let config = serde_json::json!({
        "Name": "brainaged-test",
        "StorageDirectory": tmp.path().join("orthanc").display().to_string(),
        "IndexDirectory": tmp.path().join("orthanc").display().to_string(),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "DicomModalities": { "brainaged": ["BRAINAGED", "127.0.0.1", daemon.port] },
        "DicomScuTimeout": 30,
        "Plugins": [],
    });
    let config_path = tmp.path().join("orthanc.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let _orthanc = Orthanc(
        Command::new("/usr/sbin/Orthanc")
            .arg(&config_path)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Orthanc (apt install orthanc)"),
    );
    let base = format!("http://127.0.0.1:{http}");
    assert!(
        wait_until(30, || Command::new("curl")
            .args(["-sf", &format!("{base}/system")])
            .output()
            .is_ok_and(|o| o.status.success())),
        "Orthanc did not start"
    );

    let files = dicom_files(&dicom_folder("ge-t1-mprage"));
    let mut study = String::new();
    for f in &files {
        let reply = curl(&[
            "-X",
            "POST",
            &format!("{base}/instances"),
            "--data-binary",
            &format!("@{}", f.display()),
        ]);
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        study = reply["ParentStudy"]
            .as_str()
            .expect("ParentStudy")
            .to_string();
    }
    let reply = curl(&[
        "-X",
        "POST",
        &format!("{base}/modalities/brainaged/store"),
        "-d",
        &study,
    ]);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        reply["FailedInstancesCount"], 0,
        "Orthanc reports failures: {reply}"
    );
    assert_eq!(reply["InstancesCount"], files.len(), "{reply}");

    let rows =
        sqlx::query_as::<_, (String, String)>("SELECT sop_instance_uid, calling_ae FROM instances")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), files.len());
    assert!(
        rows.iter().all(|(_, ae)| ae == "ORTHANC"),
        "calling AE recorded"
    );
    let uids: HashSet<String> = rows.into_iter().map(|(u, _)| u).collect();
    for f in &files {
        assert!(
            uids.contains(&sop_instance_uid(f)),
            "{} not received",
            f.display()
        );
    }
}
