//! The embedded default: without `database.url` the daemon runs a private PostgreSQL cluster
//! under its data directory, `status` reads it, SIGTERM stops both. Its info-level JSON log
//! carries no patient name, ID or birth date.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn embedded_cluster_serves_and_logs_no_phi() {
    let tmp = tempfile::tempdir().unwrap();
    // The cluster runs as the `postgres` user when the test runs as root: it must reach the dir.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = tmp.path().join("var");
    let spool = data.join("spool");
    let mut daemon = Daemon::start(&spool, "", &[("BRAINAGED__LOGGING__JSON", "true")]);
    assert!(
        data.join("db/pgdata/PG_VERSION").exists(),
        "cluster initialised under the data dir"
    );

    let folder = dicom_folder("philips-dwi-classic");
    let out = storescu(daemon.port, "SCANNER", &[&folder]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = dicom_files(&folder).len();

    let status = daemon.command(&["status", "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let stored = counts["instances"].as_u64().unwrap() as usize;
    // storescu skips the folder's private non-image objects it has no SOP class for.
    assert!(
        stored >= sent - 2 && stored <= sent,
        "status counts {stored} of {sent} sent"
    );

    assert!(daemon.terminate().success(), "SIGTERM exits 0");
    assert!(
        !data.join("db/pgdata/postmaster.pid").exists(),
        "the private cluster was stopped"
    );

    // Patient name "PSM", ID "Research", birth date 1969-07-14 in these files.
    let log = daemon.log_text();
    assert!(log.lines().all(|l| l.starts_with('{')), "JSON lines: {log}");
    for phi in ["PSM", "Research", "19690714", "1969-07-14"] {
        assert!(!log.contains(phi), "PHI {phi:?} in the info log:\n{log}");
    }
}
