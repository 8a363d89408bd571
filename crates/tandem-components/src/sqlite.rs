//! The SQLite file behind tandem's embedded components (`pubsub.sqlite`,
//! `state.sqlite`): one connection per component, WAL mode so several sidecars can
//! share the file, and every call run on a blocking thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::Connection;

/// Why a call to the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("SQLite database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The blocking thread running the call panicked or was cancelled.
    #[error("SQLite task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One connection, used from blocking threads: SQLite calls are short but synchronous.
#[derive(Clone)]
pub(crate) struct Database {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Database {
    /// Opens (creating if needed) the file and its folder, and applies `schema`.
    pub async fn open(path: PathBuf, schema: &'static str) -> Result<Self, String> {
        tokio::task::spawn_blocking(move || Self::open_now(path, schema))
            .await
            .map_err(|error| error.to_string())?
    }

    fn open_now(path: PathBuf, schema: &str) -> Result<Self, String> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        let connection = Connection::open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .and_then(|_| connection.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| connection.execute_batch(schema))
            .map_err(|error| format!("cannot prepare {}: {error}", path.display()))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path,
        })
    }

    /// The database file, for error messages.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `work` on a blocking thread; errors name the database file.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DatabaseError> {
        let connection = self.connection.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in `work` unwinds through the guard without poisoning the lock:
            // the next call still gets the connection.
            let mut connection = connection.lock();
            work(&mut connection)
        })
        .await?
        .map_err(|source| DatabaseError::Sqlite { path, source })
    }
}

/// When a value written now with `ttl` expires, in [`now_ms`] terms; `None` when that
/// is past what the column can hold (callers refuse such TTLs before writing).
pub(crate) fn expiry_ms(ttl: Duration) -> Option<i64> {
    i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ttl| now_ms().checked_add(ttl))
}

/// Milliseconds since the Unix epoch: how expiry and leases are stored.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Where the database file is: `connectionString` is a path (optionally `file:`-prefixed,
/// with `?options` ignored), `~/` meaning the home directory.
pub fn database_path(connection_string: &str) -> PathBuf {
    let path = connection_string
        .strip_prefix("file:")
        .unwrap_or(connection_string);
    let path = path.split('?').next().unwrap_or(path);
    match path.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().unwrap_or_default().join(rest),
        None => PathBuf::from(path),
    }
}
