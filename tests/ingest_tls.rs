//! DICOM over TLS, with real peers: pynetdicom over Python's `ssl`, and DCMTK's storescu and
//! echoscu (`+tls`). Certificates are made by the `openssl` command for each test: a CA, the
//! server, clients, a client of another CA, and a revoked client with the CA's CRL.

mod ingest_support;

use std::path::{Path, PathBuf};

use brainaged::config::{CallerConfig, TlsConfig};
use brainaged::db::Db;
use brainaged::scp::Server;
use brainaged::spool::Spool;
use ingest_support::common::{Daemon, dicom_folder};
use ingest_support::pki::{
    EC_KEY, Peer, Pki, assert_calling_ae_refused, dcmtk_echo, send, send_as, with_tls,
};
use ingest_support::{TestScp, run, text};

/// Asserts that compare.py found every instance of the source stored and indexed, pixel data and
/// UIDs as sent, and that there was at least one.
fn assert_all_stored_as_sent(report: &serde_json::Value) {
    assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report}");
    let mismatched = report["mismatched"].as_array().unwrap();
    assert_eq!(mismatched.len(), 0, "{report}");
    assert!(report["expected"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["matched"], report["expected"], "{report}");
    assert_eq!(report["indexed"], report["expected"], "{report}");
}

fn tls_port(scp: &TestScp) -> u16 {
    scp.tls_addr.expect("TLS listener").port()
}

/// A whole real series over TLS: echoed, every instance acknowledged, stored byte-for-byte as
/// sent; the plain port still serves DCMTK beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_sent_over_tls_is_stored_as_sent() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(false, true));
    let scp = TestScp::start_with(cfg).await;
    let series = dicom_folder("ge-t1-mprage");
    let (_, sent) = send(&pki, Peer::Anonymous, tls_port(&scp), &[&series]).await;
    assert_eq!(sent["association_failures"], 0, "{sent}");
    assert_eq!(sent["echoes"]["0x0000"], 1, "{sent}");
    assert_eq!(sent["statuses"]["0x0000"], sent["sent"], "{sent}");
    let report = scp.compare_with(&series).await;
    assert_all_stored_as_sent(&report);
    assert_eq!(report["expected"], sent["sent"], "{report} {sent}");

    let plain = dcmtk_echo(&pki, None, "ECHOSCU", scp.addr.port()).await;
    assert!(
        plain.status.success(),
        "plain echo beside TLS: {}",
        text(&plain)
    );
    scp.stop().await;
}

/// With `client_ca` set, a caller without a certificate, or with one from another CA, never
/// reaches the association: nothing is stored, and the daemon goes on serving the caller whose
/// certificate the hospital's CA issued. With the plain listener off, plain DICOM is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_callers_the_hospital_ca_certified() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(true, false));
    let scp = TestScp::start_with(cfg).await;
    assert!(scp.plain_addr.is_none(), "plain listener opened");
    let port = tls_port(&scp);
    let series = dicom_folder("siemens-mosaic-orient-axasc35");

    for peer in [Peer::Anonymous, Peer::Certified("stranger"), Peer::Plain] {
        let (out, refused) = send(&pki, peer, port, &[&series]).await;
        assert_eq!(
            refused["association_failures"],
            1,
            "{refused} {}",
            text(&out)
        );
        assert_eq!(refused["sent"], 0, "{refused}");
        assert_eq!(scp.instance_count().await, 0);
        assert!(scp.spool_files().is_empty());
    }

    let (_, sent) = send(&pki, Peer::Certified("client"), port, &[&series]).await;
    assert_eq!(sent["association_failures"], 0, "{sent}");
    assert_eq!(sent["echoes"]["0x0000"], 1, "{sent}");
    assert_eq!(sent["statuses"]["0x0000"], 2, "{sent}");
    let report = scp.compare_with(&series).await;
    assert_eq!(report["matched"], 2, "{report}");
    assert_eq!(report["indexed"], 2, "{report}");
    scp.stop().await;
}

/// With the CA's revocation list configured, the retired scanner's certificate is refused
/// while the others the CA issued are still admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused() {
    let pki = Pki::new();
    let tls = TlsConfig {
        client_crl: Some(pki.pem("crl")),
        ..pki.tls_config(true, false)
    };
    let cfg = with_tls(tls);
    let scp = TestScp::start_with(cfg).await;
    let series = dicom_folder("siemens-mosaic-orient-axasc35");
    let (out, refused) = send(&pki, Peer::Certified("revoked"), tls_port(&scp), &[&series]).await;
    assert_eq!(
        refused["association_failures"],
        1,
        "{refused} {}",
        text(&out)
    );
    assert_eq!(scp.instance_count().await, 0);
    let (_, sent) = send(&pki, Peer::Certified("client"), tls_port(&scp), &[&series]).await;
    assert_eq!(sent["statuses"]["0x0000"], 2, "{sent}");
    assert_eq!(scp.instance_count().await, 2);
    scp.stop().await;
}

/// The AE allowlist still applies behind TLS: a certified caller with an unknown calling AE is
/// rejected at the association, as on the plain port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_keeps_the_calling_ae_allowlist() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(true, true));
    let scp = TestScp::start_with(cfg).await;
    let refused = dcmtk_echo(&pki, Some("client"), "NOTALLOWED", tls_port(&scp)).await;
    assert_calling_ae_refused(&refused);
    assert_eq!(scp.instance_count().await, 0);
    scp.stop().await;
}

/// storescu's arguments: `tls` (the TLS options), then the usual ones for `series` to `port`.
fn storescu_args(tls: &[String], port: u16, series: &Path) -> Vec<String> {
    let mut args = tls.to_vec();
    let usual = "-aet STORESCU -aec BRAINAGED +sd +r -nh 127.0.0.1";
    args.extend(usual.split_whitespace().map(String::from));
    args.push(port.to_string());
    args.push(series.display().to_string());
    args
}

/// DCMTK's storescu and echoscu, in their default TLS profile (BCP 195, non-downgrading),
/// against mutual TLS: with the hospital's client certificate they send a series that is
/// stored as sent; anonymous TLS (`+tla`) is refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_peers_use_mutual_tls_with_the_bcp195_profile() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(true, false));
    let scp = TestScp::start_with(cfg).await;
    let port = tls_port(&scp);
    let series = dicom_folder("ge-dwi-tensor-r2");
    let path = |p: PathBuf| p.display().to_string();
    let trust = ["+cf".to_string(), path(pki.pem("ca"))];
    let anonymous = [vec!["+tla".to_string()], trust.to_vec()].concat();
    let refused = run(
        "/usr/bin/storescu",
        &storescu_args(&anonymous, port, &series),
    )
    .await;
    assert!(
        !refused.status.success() && text(&refused).contains("Association Request Failed"),
        "anonymous TLS admitted, or storescu failed otherwise: {}",
        text(&refused)
    );
    assert_eq!(scp.instance_count().await, 0);

    let certified = [
        vec![
            "+tls".to_string(),
            path(pki.key("client")),
            path(pki.pem("client")),
            "-pw".into(),
        ],
        trust.to_vec(),
    ]
    .concat();
    let out = run(
        "/usr/bin/storescu",
        &storescu_args(&certified, port, &series),
    )
    .await;
    assert!(out.status.success(), "storescu over TLS: {}", text(&out));
    let report = scp.compare_with(&series).await;
    assert_all_stored_as_sent(&report);

    let echoed = dcmtk_echo(&pki, Some("client"), "ECHOSCU", port).await;
    assert!(
        echoed.status.success(),
        "echoscu over TLS: {}",
        text(&echoed)
    );
    scp.stop().await;
}

/// A caller bound to a certificate name (`tls_name`) is admitted only with a certificate the
/// hospital's CA issued for that name: another device's valid certificate, or a plain
/// connection, cannot borrow its AE title, while callers without a name keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_bound_to_a_certificate_name_cannot_be_impersonated() {
    let pki = Pki::new();
    let mut cfg = with_tls(pki.tls_config(true, true));
    cfg.callers.push(CallerConfig {
        ae_title: "SCANNER1".into(),
        host: None,
        tls_name: Some("scanner1.test".into()),
    });
    let scp = TestScp::start_with(cfg).await;
    let series = dicom_folder("siemens-mosaic-orient-axasc35");
    let tls = tls_port(&scp);
    let plain = scp.plain_addr.unwrap().port();

    // Another device's valid certificate, and no certificate at all, cannot call as SCANNER1.
    assert_calling_ae_refused(&dcmtk_echo(&pki, Some("ct"), "SCANNER1", tls).await);
    assert_calling_ae_refused(&dcmtk_echo(&pki, None, "SCANNER1", plain).await);
    assert!(
        dcmtk_echo(&pki, Some("client"), "SCANNER1", tls)
            .await
            .status
            .success()
    );
    assert_eq!(scp.instance_count().await, 0);

    let (_, sent) = send_as(&pki, Peer::Certified("client"), "SCANNER1", tls, &[&series]).await;
    assert_eq!(sent["statuses"]["0x0000"], 2, "{sent}");
    let (_, unbound) = send(&pki, Peer::Certified("ct"), tls, &[&series]).await;
    assert_eq!(unbound["statuses"]["0x0000"], 2, "{unbound}");
    scp.stop().await;
}

/// A caller can be bound to an IP address its certificate names, as hospital PKIs often
/// certify modalities: that certificate is admitted, others from the same CA are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_can_be_bound_to_an_ip_address_its_certificate_names() {
    let pki = Pki::new();
    pki.make_leaf("mr", "ca", "client_ip", "mr1", EC_KEY);
    let mut cfg = with_tls(pki.tls_config(true, false));
    cfg.callers.push(CallerConfig {
        ae_title: "MR1".into(),
        host: None,
        tls_name: Some("10.20.30.40".into()),
    });
    let scp = TestScp::start_with(cfg).await;
    let port = scp.addr.port();
    assert_calling_ae_refused(&dcmtk_echo(&pki, Some("client"), "MR1", port).await);
    assert_calling_ae_refused(&dcmtk_echo(&pki, Some("ct"), "MR1", port).await);
    let admitted = dcmtk_echo(&pki, Some("mr"), "MR1", port).await;
    assert!(admitted.status.success(), "{}", text(&admitted));
    scp.stop().await;
}

/// A certificate or key the daemon cannot use stops it at start, naming the file, before any
/// port opens; never at the first caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_certificate_or_key_fails_the_start_naming_the_file() {
    let pki = Pki::new();
    let (db, url) = Db::connect_for_test().await.unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(spool_dir.path().join("spool")).unwrap();
    let missing = pki.path("no-such.pem");
    let cases = [
        (
            TlsConfig {
                certificate: missing.clone(),
                ..pki.tls_config(false, true)
            },
            missing.clone(),
            "cannot read",
        ),
        (
            TlsConfig {
                private_key: pki.pem("server"),
                ..pki.tls_config(false, true)
            },
            pki.pem("server"),
            "no PEM private key",
        ),
        (
            TlsConfig {
                certificate: pki.key("server"),
                ..pki.tls_config(false, true)
            },
            pki.key("server"),
            "no PEM certificate",
        ),
        (
            TlsConfig {
                private_key: pki.key("client"),
                ..pki.tls_config(false, true)
            },
            pki.key("client"),
            "not the key of the certificate",
        ),
        (
            TlsConfig {
                client_ca: Some(missing.clone()),
                ..pki.tls_config(true, true)
            },
            missing.clone(),
            "cannot read",
        ),
        (
            TlsConfig {
                client_crl: Some(missing.clone()),
                ..pki.tls_config(true, true)
            },
            missing.clone(),
            "cannot read",
        ),
        (
            TlsConfig {
                client_crl: Some(pki.pem("ca")),
                ..pki.tls_config(true, true)
            },
            pki.pem("ca"),
            "no PEM certificate revocation list",
        ),
        (
            TlsConfig {
                client_crl: Some(pki.pem("crl")),
                ..pki.tls_config(false, true)
            },
            pki.pem("crl"),
            "without client_ca",
        ),
    ];
    for (tls, file, says) in cases {
        let cfg = with_tls(tls);
        let err = match Server::bind(&cfg, spool.clone(), db.clone()).await {
            Ok(_) => panic!("started with an unusable {}", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(says), "{err}");
    }
    db.close().await;
    ingest_support::drop_test_database(&url).await;
}

/// The daemon itself, configured from the environment as an operator would: mutual TLS on its
/// own port beside the plain one, the caller's certificate named in the log by its fingerprint,
/// instances received counted by `brainaged status`, which also says when the certificate
/// ends; SIGTERM exits 0; a key other users can read
/// is warned about; and a start with a key it cannot read exits non-zero, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_tls_configured_from_its_environment() {
    let pki = Pki::new();
    let (db, url) = Db::connect_for_test().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tls_port = ingest_support::common::free_port();
    let bind = format!("127.0.0.1:{tls_port}");
    let (cert, key) = (pki.pem("server"), pki.key("server"));
    let ca = pki.pem("ca");
    let tls_env = [
        ("BRAINAGED__DICOM__TLS__BIND", bind.as_str()),
        ("BRAINAGED__DICOM__TLS__CERTIFICATE", cert.to_str().unwrap()),
        ("BRAINAGED__DICOM__TLS__PRIVATE_KEY", key.to_str().unwrap()),
        ("BRAINAGED__DICOM__TLS__CLIENT_CA", ca.to_str().unwrap()),
    ];
    // A key others can read is used, with a warning that says so.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut daemon = Daemon::start(&tmp.path().join("spool"), &url, &tls_env);
    assert!(
        daemon.log_text().contains("readable by other users"),
        "{}",
        daemon.log_text()
    );
    let series = dicom_folder("siemens-mosaic-orient-axasc35");
    let (_, sent) = send(&pki, Peer::Certified("client"), tls_port, &[&series]).await;
    assert_eq!(
        sent["statuses"]["0x0000"],
        2,
        "{sent} {}",
        daemon.log_text()
    );
    // The log names the caller's certificate by the fingerprint openssl gives it.
    let fingerprint = pki.fingerprint("client");
    let log = daemon.log_text();
    let established = log
        .lines()
        .find(|l| l.contains("TLS established"))
        .unwrap_or_else(|| panic!("no TLS line in the log:\n{log}"));
    assert!(
        established.contains(&fingerprint),
        "{established} vs {fingerprint}"
    );
    assert!(established.contains("TLSv1_3"), "{established}");
    let status = daemon.command(&["status", "--json"]);
    let counts: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(counts["instances"], 2, "{counts}");
    // ... and when our certificate ends, as openssl reads it.
    let expires: chrono::DateTime<chrono::Utc> = counts["tls_certificate_expires"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate end in {counts}"))
        .parse()
        .unwrap();
    assert_eq!(expires, pki.not_after("server"), "{counts}");
    assert!(daemon.terminate().success(), "{}", daemon.log_text());

    let unreadable = pki.path("absent.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("serve")
        .envs(tls_env)
        .env("BRAINAGED__DICOM__TLS__PRIVATE_KEY", &unreadable)
        .env(
            "BRAINAGED__DICOM__BIND",
            format!("127.0.0.1:{}", daemon.port),
        )
        .env("BRAINAGED__SPOOL__DIR", tmp.path().join("spool"))
        .env("BRAINAGED__DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&unreadable.display().to_string()),
        "{}",
        text(&out)
    );
    db.close().await;
    ingest_support::drop_test_database(&url).await;
}
