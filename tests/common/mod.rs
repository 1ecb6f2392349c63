//! Shared helpers for tests that run the real `brainaged` binary against real peers.
#![allow(dead_code)]

pub mod index;
pub mod tmpfs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// `../shared` beside the project, or `BRAINAGED_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// A folder of the reference DICOM set.
pub fn dicom_folder(name: &str) -> PathBuf {
    let dir = shared_dir().join("dicom").join(name);
    assert!(
        dir.is_dir(),
        "reference DICOM folder {} is missing",
        dir.display()
    );
    dir
}

/// The Python of the tools' virtualenv (`scripts/setup.d/40-venv.sh`: MONAI, torch, scipy,
/// nibabel, onnx), `BRAINAGED_VENV` or `~/.cache/brainaged/venv`.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("BRAINAGED_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            Path::new(&home).join(".cache/brainaged/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the tools virtualenv is missing at {}: run scripts/setup.sh",
        python.display()
    );
    python
}

/// Copies every file that `convert` would read from `from` into `to` (created); returns the
/// copies, sorted. Tests that edit or delete files work on such a copy, never on `../shared`.
pub fn copy_folder(from: &Path, to: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).unwrap();
    let mut out = Vec::new();
    for f in brainaged::convert::read::scan_folder(from).unwrap() {
        let dest = to.join(f.file_name().unwrap());
        std::fs::copy(&f, &dest).unwrap();
        out.push(dest);
    }
    out.sort();
    out
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The daemon, run as a child process with configuration from the environment.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub spool: PathBuf,
    pub db_url: String,
    env: Vec<(String, String)>,
    /// `serve --config FILE`, when started with one.
    config: Option<PathBuf>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `brainaged serve` on a free port with its spool under `spool`, the database at
    /// `db_url` (empty: the embedded private cluster), any calling AE accepted, and `extra`
    /// environment overrides; waits until it accepts connections.
    pub fn start(spool: &Path, db_url: &str, extra: &[(&str, &str)]) -> Daemon {
        Self::start_with_config(spool, db_url, extra, None)
    }

    /// As [`start`](Self::start), reading `config` (`serve --config`) under the environment.
    pub fn start_with_config(
        spool: &Path,
        db_url: &str,
        extra: &[(&str, &str)],
        config: Option<&Path>,
    ) -> Daemon {
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("BRAINAGED__DICOM__BIND".into(), format!("127.0.0.1:{port}")),
            ("BRAINAGED__DICOM__ACCEPT_ANY_CALLER".into(), "true".into()),
            ("BRAINAGED__SPOOL__DIR".into(), spool.display().to_string()),
            ("BRAINAGED__TRACKER__POLL_INTERVAL_MS".into(), "100".into()),
        ];
        if !db_url.is_empty() {
            env.push(("BRAINAGED__DATABASE__URL".into(), db_url.into()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = spool.with_extension(format!("daemon-{port}.log"));
        let mut daemon = Daemon {
            child: None,
            port,
            spool: spool.into(),
            db_url: db_url.into(),
            env,
            config: config.map(Path::to_path_buf),
            log,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).expect("log directory");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_brainaged"));
        command.arg("serve");
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn brainaged serve");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited early ({status}):\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not start listening:\n{}", self.log_text());
    }

    /// Starts the daemon again after it stopped, same port, same configuration.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("daemon did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGHUP, as `systemctl reload` does, and waits until the log reports the reload
    /// done or refused; returns the log from the signal on.
    pub fn reload(&self) -> String {
        let before = self.log_text().len();
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
        let mut since = String::new();
        let done = wait_until(30, || {
            since = self
                .log_text()
                .get(before..)
                .unwrap_or_default()
                .to_string();
            since.contains("configuration reloaded") || since.contains("reload refused")
        });
        assert!(
            done,
            "no reload within 30 s of SIGHUP:\n{}",
            self.log_text()
        );
        since
    }

    /// The running daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Runs another `brainaged` command (`status`, `jobs`, ...) on this daemon's state, with its
    /// configuration; returns what it printed and its exit status.
    pub fn command(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_brainaged"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run brainaged")
    }

    /// Everything the daemon logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// DCMTK's storescu (by absolute path: pynetdicom installs a `storescu` of its own) sending
/// `paths` (files or folders, recursively) to the daemon as `calling_ae`, verbose, proposing
/// the transfer syntax each file has.
pub fn storescu_command(port: u16, calling_ae: &str, paths: &[&Path]) -> Command {
    let mut cmd = Command::new("/usr/bin/storescu");
    cmd.env("TCP_NODELAY", "1")
        .args([
            "-v",
            "-aet",
            calling_ae,
            "-aec",
            "BRAINAGED",
            "+sd",
            "+r",
            "-nh",
        ])
        .arg("127.0.0.1")
        .arg(port.to_string());
    cmd.args(paths);
    cmd
}

/// Runs storescu to completion.
pub fn storescu(port: u16, calling_ae: &str, paths: &[&Path]) -> Output {
    storescu_command(port, calling_ae, paths)
        .output()
        .expect("run /usr/bin/storescu")
}

/// Files storescu reported as stored with a success status, from its verbose log.
pub fn acknowledged_files(log: &str) -> Vec<PathBuf> {
    let mut acked = Vec::new();
    let mut current: Option<PathBuf> = None;
    for line in log.lines() {
        if let Some(file) = line.strip_prefix("I: Sending file: ") {
            current = Some(PathBuf::from(file.trim()));
        } else if line.contains("Received Store Response (Success)")
            && let Some(f) = current.take()
        {
            acked.push(f);
        }
    }
    acked
}

/// SOP Instance UID of a DICOM file, read with dicom-rs.
pub fn sop_instance_uid(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    obj.meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .trim()
        .to_string()
}

/// Every DICOM part-10 file under `dir` (files with the DICM magic), sorted.
pub fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| is_part10(p) && p.file_name().is_some_and(|n| n != "DICOMDIR"))
        .collect();
    out.sort();
    out
}

fn is_part10(path: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && &buf[128..132] == b"DICM"
}

/// Waits until `cond` holds, polling every 100 ms, for at most `secs` seconds.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// The test process's peak resident memory so far (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The largest peak resident memory of any child process this test process has waited for, in
/// bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    usage.ru_maxrss as u64 * 1024
}

/// Where the top-level Pixel Data element of an explicit VR little endian dataset (or part-10
/// file) starts: the last (7FE0,0010) header with VR OW or OB.
pub fn pixel_data_at(bytes: &[u8]) -> usize {
    bytes
        .windows(6)
        .rposition(|w| w == b"\xe0\x7f\x10\x00OW" || w == b"\xe0\x7f\x10\x00OB")
        .expect("explicit VR pixel data")
}

/// An explicit VR little endian dataset (or part-10 file) with an element that announces 4 GiB
/// and brings 8 bytes, inserted before its Pixel Data: dicom-rs allocates and fills what a
/// length announces before it reads the value.
pub fn with_long_value(bytes: &[u8]) -> Vec<u8> {
    let at = pixel_data_at(bytes);
    let mut hostile = bytes[..at].to_vec();
    hostile.extend_from_slice(&[0x08, 0x00, 0x00, 0x41]); // (0008,4100), a UT
    hostile.extend_from_slice(b"UT\0\0");
    hostile.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    hostile.extend_from_slice(b"12345678");
    hostile.extend_from_slice(&bytes[at..]);
    hostile
}

/// A private cluster the test may stop and start; its directory must be reachable by the
/// `postgres` user the cluster runs as when the test runs as root.
pub fn private_cluster_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("brainaged-pg")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
