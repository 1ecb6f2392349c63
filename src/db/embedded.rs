//! The embedded default: a private PostgreSQL cluster under the daemon's data directory.
//!
//! When `database.url` is absent the daemon runs its own cluster with the system's PostgreSQL
//! binaries (`initdb`, `pg_ctl`), listening only on a Unix socket inside the data directory, and
//! stops it on exit. A cluster left running by a daemon that was killed is reused, not restarted.
//! PostgreSQL refuses to run as root, so when the daemon is root the cluster runs as the
//! `postgres` system user (the owner of the Debian package's files).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DbError;

/// The database name inside the private cluster.
const DATABASE: &str = "brainaged";
/// The superuser `initdb` creates.
const SUPERUSER: &str = "brainaged";

/// A running private cluster; stopped by [`EmbeddedCluster::stop`] (or on drop).
#[derive(Debug)]
pub struct EmbeddedCluster {
    data: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Whether dropping this handle stops the cluster: true when we started it, or when the
    /// daemon adopted one left running by a predecessor that was killed.
    owned: bool,
}

impl EmbeddedCluster {
    /// Initialises (first time) and starts the cluster under `dir`.
    pub fn start(dir: &Path) -> Result<Self, DbError> {
        let bin = find_bin_dir()?;
        let data = dir.join("pgdata");
        let socket_dir = dir.join("pgsocket");
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(lookup_user("postgres")?)
        } else {
            None
        };
        for d in [dir, &socket_dir] {
            std::fs::create_dir_all(d).map_err(|e| fail(format!("create {}: {e}", d.display())))?;
        }
        let mut cluster = Self {
            data,
            socket_dir,
            bin,
            run_as,
            owned: false,
        };
        cluster.chown(dir)?;
        cluster.chown(&cluster.socket_dir)?;
        if !cluster.data.join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        if !cluster.is_running() {
            cluster.pg_ctl_start()?;
            cluster.owned = true;
        }
        Ok(cluster)
    }

    /// Makes this handle responsible for stopping the cluster even if another process started
    /// it. The daemon adopts; short-lived commands (`status`, `migrate`) stop only what they
    /// started, so they never take the database away from a running daemon.
    pub fn adopt(&mut self) {
        self.owned = true;
    }

    /// Connection URL for the cluster's maintenance database.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/postgres?host={}",
            self.socket_dir.display()
        )
    }

    /// Connection URL for brainaged's database.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{DATABASE}?host={}",
            self.socket_dir.display()
        )
    }

    /// Creates brainaged's database if it does not exist yet.
    pub async fn ensure_database(&self) -> Result<(), DbError> {
        let admin = sqlx::PgPool::connect(&self.admin_url()).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&admin)
                .await?;
        if !exists {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        Ok(())
    }

    /// Stops the cluster (fast shutdown: connections are closed, nothing committed is lost).
    pub fn stop(&mut self) -> Result<(), DbError> {
        if !self.owned {
            return Ok(());
        }
        self.owned = false;
        self.run(self.pg_ctl().args(["stop", "-m", "fast", "-w"]))
    }

    fn initdb(&self) -> Result<(), DbError> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("initdb"));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir("/").arg("-D").arg(&self.data).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        self.run(&mut cmd)
    }

    fn pg_ctl_start(&self) -> Result<(), DbError> {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=100",
            self.socket_dir.display()
        );
        let log = self.data.join("server.log");
        self.run(
            self.pg_ctl()
                .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
                .arg(log),
        )
    }

    fn is_running(&self) -> bool {
        self.data.join("postmaster.pid").exists() && self.run(self.pg_ctl().arg("status")).is_ok()
    }

    /// `pg_ctl -D data`, as the cluster's user (PostgreSQL tools refuse to run as root).
    fn pg_ctl(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(&self.data);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        // The postgres user cannot read root's working directory.
        cmd.current_dir("/");
        cmd
    }

    fn run(&self, cmd: &mut Command) -> Result<(), DbError> {
        let out = cmd.output().map_err(|e| fail(format!("{cmd:?}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(fail(format!(
                "{:?} failed: {}{}",
                cmd.get_program(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    fn chown(&self, path: &Path) -> Result<(), DbError> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| fail(format!("chown {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "embedded database did not stop cleanly");
        }
    }
}

fn fail(msg: String) -> DbError {
    DbError::Embedded(msg)
}

/// The PostgreSQL server binaries: `BRAINAGED_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/N/bin`, else whatever `initdb` is on PATH.
fn find_bin_dir() -> Result<PathBuf, DbError> {
    if let Ok(dir) = std::env::var("BRAINAGED_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).find(|d| d.join("initdb").exists()))
        .ok_or_else(|| {
            fail(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql \
                  package or set database.url"
                    .into(),
            )
        })
}

fn lookup_user(name: &str) -> Result<(u32, u32), DbError> {
    let cname = CString::new(name).map_err(|_| fail("bad user name".into()))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two integers
    // out before any other call could overwrite it.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return Err(fail(format!(
            "running as root, and there is no '{name}' user to run the embedded PostgreSQL as"
        )));
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}
