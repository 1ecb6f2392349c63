//! What the ingest tests share: an in-process storage SCP on a fresh database and spool, the
//! shared DICOM folders, and the DCMTK / Python peers.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;
pub mod pki;
pub mod scu;
pub mod stored_as_sent;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use brainaged::config::{CallerConfig, DicomConfig};
use brainaged::db::Db;
use brainaged::scp::{Reloader, Server, contexts::MR_STORAGE};
use brainaged::shutdown::{self, Trigger};
use brainaged::spool::Spool;
use tokio::task::JoinHandle;

/// Calling AE titles the test SCP allows.
pub const CALLERS: [&str; 4] = ["STORESCU", "ECHOSCU", "PYNETDICOM", "TESTSCU"];
/// The called AE title of the test SCP.
pub const AE_TITLE: &str = "BRAINAGED";

/// The read-only real DICOM beside the project.
pub fn shared_dicom() -> PathBuf {
    let dir = common::shared_dir().join("dicom");
    assert!(dir.is_dir(), "shared DICOM not found at {}", dir.display());
    dir
}

/// The test helper scripts.
pub fn support_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ingest_support")
        .join(name)
}

/// The dicom configuration the tests start from: loopback, port 0, an allowlist.
pub fn test_config() -> DicomConfig {
    DicomConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ae_title: AE_TITLE.into(),
        accept_any_caller: false,
        callers: CALLERS
            .iter()
            .map(|ae| CallerConfig {
                ae_title: ae.to_string(),
                host: None,
                tls_name: None,
            })
            .collect(),
        ..DicomConfig::default()
    }
}

/// A running in-process SCP with its own database and spool.
pub struct TestScp {
    /// The plain port, or the TLS port when the configuration turns the plain one off.
    pub addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    pub spool: Spool,
    pub cfg: DicomConfig,
    pub db: Db,
    /// Applies a new AE policy and TLS files to the running SCP, as SIGHUP does in the daemon.
    pub reloader: Reloader,
    url: String,
    _spool_dir: tempfile::TempDir,
    trigger: Trigger,
    task: JoinHandle<Result<(), brainaged::scp::ScpError>>,
}

impl TestScp {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(cfg: DicomConfig) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            brainaged::telemetry::init(false, None);
        }
        let (db, url) = Db::connect_for_test()
            .await
            .expect("test database (is PostgreSQL running on 127.0.0.1:5432?)");
        let spool_dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(spool_dir.path().join("spool")).unwrap();
        let server = Server::bind(&cfg, spool.clone(), db.clone()).await.unwrap();
        let plain_addr = server.local_addr();
        let tls_addr = server.tls_addr();
        let reloader = server.reloader();
        let (trigger, listener) = shutdown::channel();
        let task = tokio::spawn(server.run(listener));
        TestScp {
            addr: plain_addr.or(tls_addr).unwrap(),
            plain_addr,
            tls_addr,
            spool,
            cfg,
            db,
            reloader,
            url,
            _spool_dir: spool_dir,
            trigger,
            task,
        }
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// SOP classes this SCP stores.
    pub fn accepted_classes(&self) -> Vec<String> {
        MR_STORAGE
            .iter()
            .map(|s| s.to_string())
            .chain(self.cfg.other_storage_classes.iter().cloned())
            .collect()
    }

    pub async fn instance_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM instances")
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }

    /// SOP Instance UID → (absolute spool path, transfer syntax) for every indexed instance.
    pub async fn index(&self) -> BTreeMap<String, (PathBuf, String)> {
        stored_as_sent::stored_index(&self.db, self.spool.root()).await
    }

    /// Every `.dcm` file in the spool.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        brainaged::spool::walk(self.spool.root())
            .map(|p| p.unwrap())
            .collect()
    }

    /// Requests shutdown (as SIGTERM does) without waiting for it.
    pub fn request_stop(&self) {
        self.trigger.fire();
    }

    /// True once the listener task has returned.
    pub fn stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the SCP (as SIGTERM would), then drops the test database.
    pub async fn stop(self) {
        self.trigger.fire();
        self.task.await.unwrap().unwrap();
        self.db.close().await;
        drop_test_database(&self.url).await;
    }

    /// Runs compare.py on `source` against the index; returns its JSON report.
    pub async fn compare_with(&self, source: &Path) -> serde_json::Value {
        self.compare_with_classes(source, &self.accepted_classes())
            .await
    }

    /// As `compare_with`, expecting only instances of `classes`.
    pub async fn compare_with_classes(
        &self,
        source: &Path,
        classes: &[String],
    ) -> serde_json::Value {
        stored_as_sent::compare(source, &self.index().await, classes)
    }
}

/// Drops the database that `Db::connect_for_test` made at `url` (the SCP's own, or one a test
/// made beside it).
pub async fn drop_test_database(url: &str) {
    let name = url.rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&brainaged::db::test_server_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

/// Runs a peer program with TCP_NODELAY=1; a missing program fails the test with its name.
pub async fn run<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .env("TCP_NODELAY", "1")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"))
}

/// stdout and stderr together, for assertion messages and log matching.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
