//! Reloading a running receiver (SIGHUP, `systemctl reload`): a new calling AE, a renewed
//! certificate and a new revocation list take effect for the next association, without a
//! restart; a file or configuration that cannot be used changes nothing. Real peers: DCMTK
//! echoscu, pynetdicom, `openssl s_client`.

mod ingest_support;

use brainaged::config::{CallerConfig, TlsConfig};
use brainaged::db::Db;
use ingest_support::common::{Daemon, dicom_folder};
use ingest_support::pki::{Peer, Pki, assert_calling_ae_refused, dcmtk_echo, send, with_tls};
use ingest_support::{TestScp, text};

fn caller(ae_title: &str) -> CallerConfig {
    CallerConfig {
        ae_title: ae_title.into(),
        host: None,
        tls_name: None,
    }
}

/// A new modality added to the allowlist can associate after the reload, and one removed from
/// it cannot; nothing else about the running SCP changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_new_calling_ae_allowlist() {
    let pki = Pki::new();
    let scp = TestScp::start().await;
    let port = scp.addr.port();
    assert_calling_ae_refused(&dcmtk_echo(&pki, None, "NEWSCANNER", port).await);
    assert!(
        dcmtk_echo(&pki, None, "ECHOSCU", port)
            .await
            .status
            .success()
    );

    let mut cfg = scp.cfg.clone();
    cfg.callers.retain(|c| c.ae_title != "ECHOSCU");
    cfg.callers.push(caller("NEWSCANNER"));
    let done = scp.reloader.reload(&cfg).unwrap();
    assert_eq!(done.callers, cfg.callers.len());
    assert_eq!(done.certificate_expires, None);

    let admitted = dcmtk_echo(&pki, None, "NEWSCANNER", port).await;
    assert!(admitted.status.success(), "{}", text(&admitted));
    assert_calling_ae_refused(&dcmtk_echo(&pki, None, "ECHOSCU", port).await);
    scp.stop().await;
}

/// A certificate renewed in place is shown to the next caller after the reload, and a series
/// sent over it is stored; the reload reports the new certificate's end as openssl reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_a_renewed_certificate() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(true, false));
    let scp = TestScp::start_with(cfg.clone()).await;
    let port = scp.addr.port();
    assert_eq!(pki.served_fingerprint(port), pki.fingerprint("server"));

    pki.make_leaf_for("renewed", "ca", "server", "brainaged", "rsa:2048", 400);
    pki.install_server("renewed");
    // Until the reload, the certificate read at start is served.
    assert_ne!(pki.served_fingerprint(port), pki.fingerprint("renewed"));
    let done = scp.reloader.reload(&cfg).unwrap();
    assert_eq!(done.certificate_expires, Some(pki.not_after("renewed")));
    assert_eq!(pki.served_fingerprint(port), pki.fingerprint("renewed"));

    let series = dicom_folder("siemens-mosaic-orient-axasc35");
    let (_, sent) = send(&pki, Peer::Certified("client"), port, &[&series]).await;
    assert_eq!(sent["statuses"]["0x0000"], 2, "{sent}");
    assert_eq!(scp.instance_count().await, 2);
    scp.stop().await;
}

/// The CA's next revocation list, read at the reload, refuses the device it lists while the
/// others the CA issued are still admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_new_revocation_list() {
    let pki = Pki::new();
    let tls = TlsConfig {
        client_crl: Some(pki.pem("crl")),
        ..pki.tls_config(true, false)
    };
    let cfg = with_tls(tls);
    let scp = TestScp::start_with(cfg.clone()).await;
    let port = scp.addr.port();
    let series = dicom_folder("siemens-mosaic-orient-axasc35");
    let (_, sent) = send(&pki, Peer::Certified("client"), port, &[&series]).await;
    assert_eq!(sent["statuses"]["0x0000"], 2, "{sent}");

    pki.revoke("client");
    scp.reloader.reload(&cfg).unwrap();
    let (out, refused) = send(&pki, Peer::Certified("client"), port, &[&series]).await;
    assert_eq!(
        refused["association_failures"],
        1,
        "{refused} {}",
        text(&out)
    );
    assert_eq!(refused["sent"], 0, "{refused}");
    let (_, other) = send(&pki, Peer::Certified("ct"), port, &[&series]).await;
    assert_eq!(other["statuses"]["0x0000"], 2, "{other}");
    scp.stop().await;
}

/// A reload with a file that cannot be used is refused, naming the file, and changes nothing:
/// neither the certificate served nor the allowlist given with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_an_unusable_file_changes_nothing() {
    let pki = Pki::new();
    let cfg = with_tls(pki.tls_config(true, true));
    let scp = TestScp::start_with(cfg.clone()).await;
    let tls_port = scp.tls_addr.unwrap().port();
    let plain_port = scp.plain_addr.unwrap().port();
    let served = pki.served_fingerprint(tls_port);

    let mut broken = cfg.clone();
    broken.callers.push(caller("NEWSCANNER"));
    std::fs::write(pki.pem("server"), "not a certificate\n").unwrap();
    let err = scp.reloader.reload(&broken).unwrap_err().to_string();
    assert!(
        err.contains(&pki.pem("server").display().to_string()),
        "{err}"
    );
    assert!(err.contains("no PEM certificate"), "{err}");
    assert_eq!(pki.served_fingerprint(tls_port), served);
    assert_calling_ae_refused(&dcmtk_echo(&pki, None, "NEWSCANNER", plain_port).await);
    let echoed = dcmtk_echo(&pki, Some("client"), "ECHOSCU", tls_port).await;
    assert!(echoed.status.success(), "{}", text(&echoed));
    scp.stop().await;
}

/// The configuration file the daemon test rewrites: TLS files in `pki`, the calling AEs
/// `callers`, and `extra` lines under `[dicom]`.
fn daemon_config(pki: &Pki, tls_port: u16, callers: &[&str], extra: &str) -> String {
    let mut text = format!("[dicom]\naccept_any_caller = false\n{extra}\n");
    for ae in callers {
        text.push_str(&format!("[[dicom.callers]]\nae_title = \"{ae}\"\n"));
    }
    text.push_str(&format!(
        "[dicom.tls]\nbind = \"127.0.0.1:{tls_port}\"\ncertificate = \"{}\"\n\
         private_key = \"{}\"\nclient_ca = \"{}\"\n",
        pki.pem("server").display(),
        pki.key("server").display(),
        pki.pem("ca").display(),
    ));
    text
}

/// The daemon itself under SIGHUP, as `systemctl reload` sends it: the configuration file is
/// read again; a new caller and a renewed certificate take effect, a changed setting that only
/// a restart applies is named in a warning, and a broken file changes nothing. At start it
/// warns that the certificate ends within 30 days, with the date openssl reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reloads_its_configuration_at_sighup() {
    let pki = Pki::new();
    let (db, url) = Db::connect_for_test().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tls_port = ingest_support::common::free_port();
    let file = tmp.path().join("brainaged.toml");
    std::fs::write(&file, daemon_config(&pki, tls_port, &["ECHOSCU"], "")).unwrap();
    let env = [("BRAINAGED__DICOM__ACCEPT_ANY_CALLER", "false")];
    let spool = tmp.path().join("spool");
    let daemon = Daemon::start_with_config(&spool, &url, &env, Some(&file));
    let log = daemon.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("the TLS certificate expires in 1 day(s)"))
        .unwrap_or_else(|| panic!("no expiry warning:\n{log}"));
    let end = pki
        .not_after("server")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(warning.contains(&end), "{warning} vs {end}");
    assert_calling_ae_refused(&dcmtk_echo(&pki, None, "NEWSCANNER", daemon.port).await);

    pki.make_leaf_for("renewed", "ca", "server", "brainaged", "rsa:2048", 400);
    pki.install_server("renewed");
    let callers = ["ECHOSCU", "NEWSCANNER"];
    let config = daemon_config(&pki, tls_port, &callers, "max_associations = 4");
    std::fs::write(&file, config).unwrap();
    let reloaded = daemon.reload();
    assert!(reloaded.contains("configuration reloaded"), "{reloaded}");
    assert!(reloaded.contains("dicom.max_associations"), "{reloaded}");
    assert!(!reloaded.contains("expires in"), "{reloaded}");
    let admitted = dcmtk_echo(&pki, None, "NEWSCANNER", daemon.port).await;
    assert!(admitted.status.success(), "{}", text(&admitted));
    assert_eq!(pki.served_fingerprint(tls_port), pki.fingerprint("renewed"));

    std::fs::write(&file, "[dicom\nbroken").unwrap();
    let refused = daemon.reload();
    assert!(refused.contains("reload refused"), "{refused}");
    let still = dcmtk_echo(&pki, None, "NEWSCANNER", daemon.port).await;
    assert!(still.status.success(), "{}", text(&still));

    let mut daemon = daemon;
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
    db.close().await;
    ingest_support::drop_test_database(&url).await;
}

/// `brainaged check-config FILE`, as the unit's `ExecReload` runs it before SIGHUP, loads the file
/// and reads every TLS file as a reload would: a good configuration passes and says when the
/// certificate ends (as openssl reads it); a broken file, or a key that is not the
/// certificate's, fails naming the problem, so that `systemctl reload` itself fails.
#[test]
fn check_config_fails_on_what_a_reload_would_refuse() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("brainaged.toml");
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_brainaged"))
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let port = ingest_support::common::free_port();
    std::fs::write(&file, daemon_config(&pki, port, &["ECHOSCU"], "")).unwrap();
    let (ok, said) = check();
    assert!(ok, "{said}");
    assert!(said.contains("configuration OK"), "{said}");
    let end = pki
        .not_after("server")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(said.contains(&end), "{said} vs {end}");

    std::fs::copy(pki.key("client"), pki.key("server")).unwrap();
    let (ok, said) = check();
    assert!(!ok, "{said}");
    assert!(said.contains("not the key of the certificate"), "{said}");
    assert!(
        said.contains(&pki.key("server").display().to_string()),
        "{said}"
    );

    std::fs::write(&file, "[dicom\nbroken").unwrap();
    let (ok, said) = check();
    assert!(!ok, "{said}");
    assert!(said.contains("configuration"), "{said}");
}
