//! PostgreSQL: the pool, migrations, the embedded private cluster, and the queries stages share.
//!
//! Queries are checked at compile time against the migrations (`sqlx::query!`); the query data
//! lives in `.sqlx/` so that the crate builds without a database (`SQLX_OFFLINE=true`).

mod commit;
pub mod conversions;
pub mod embedded;
pub mod instances;
pub mod jobs;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("embedded database: {0}")]
    Embedded(String),
}

impl DbError {
    /// True when the failure is the database being unreachable or overloaded rather than a
    /// problem with the data: the caller should answer "out of resources" and let the peer retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sql(e) => unavailable(e),
            DbError::Migrate(_) => false,
            DbError::Embedded(_) => true,
        }
    }
}

/// True when `e` says the server could not be reached (or the connection to it broke, or the
/// server is shutting down or starting up), rather than that it refused the statement.
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08, connection exception, and class 57, operator intervention: the
        // session was ended by an administrator or a shutdown, the server is not accepting
        // connections yet, or a statement was cancelled (a timeout on an overloaded server).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
        _ => false,
    }
}

/// A handle on the index database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    /// The connection index commits go through, outside the pool (see [`commit`]).
    commits: Arc<commit::CommitConnection>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Db {
    /// Connects to `url`. Connections are made lazily and re-made after the server comes back,
    /// so a database restart costs failed requests, not a daemon restart.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            commits: Arc::default(),
        })
    }

    /// Applies pending migrations from `migrations/` (embedded in the binary).
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for stage-specific queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.commits.close().await;
        self.pool.close().await;
    }

    /// A fresh, migrated database on the test server (`BRAINAGED_TEST_PG`, default the local
    /// server), named uniquely so that tests can run in parallel. Returns the handle and its URL.
    pub async fn connect_for_test() -> Result<(Self, String), DbError> {
        let admin_url = test_server_url();
        let name = format!(
            "brainaged_test_{}_{}",
            std::process::id(),
            TEST_DB_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await?;
        // Once per test process: concurrent DROP DATABASEs of the same leftovers only queue up.
        static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        CLEANED
            .get_or_try_init(|| drop_stale_test_databases(&admin))
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let db = Db::connect(&url, 8).await?;
        db.migrate().await?;
        Ok((db, url))
    }
}

/// Test databases are named after the test process; those of processes that no longer exist
/// are dropped here, so the shared server does not fill up with the leftovers of old runs.
async fn drop_stale_test_databases(admin: &PgPool) -> Result<(), DbError> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'brainaged_test_%'")
            .fetch_all(admin)
            .await?;
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // Another test process may be dropping the same leftover: not an error worth failing on.
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await;
        }
    }
    Ok(())
}

static TEST_DB_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The server tests use: `BRAINAGED_TEST_PG` or the machine's PostgreSQL.
pub fn test_server_url() -> String {
    std::env::var("BRAINAGED_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/a?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
