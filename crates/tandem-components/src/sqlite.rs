//! The SQLite file behind tandem's embedded components (`pubsub.sqlite`,
//! `state.sqlite`): one connection per component, WAL mode so several sidecars can
//! share the file, every call run on a blocking thread, and WAL checkpoints made by a
//! second connection in the background.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::{Connection, TransactionBehavior};

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
    /// The file's folder could not be made.
    #[error("cannot create {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A step of opening the file failed (`step` says which).
    #[error("cannot {step} {}: {source}", path.display())]
    Open {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// One connection, used from blocking threads: SQLite calls are short but synchronous.
#[derive(Clone)]
pub(crate) struct Database {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Set by every call, cleared by the checkpointer when it looks.
    used: Arc<AtomicBool>,
}

/// WAL pages at which a commit checkpoints by itself. Only a backstop should the
/// background checkpointer fall behind: SQLite's default (1000) puts the checkpoint,
/// and its fsyncs of 1–5 ms, inside every few-hundredth commit, in front of every call
/// queued behind it (the p99 of actor activations and state writes).
const WAL_BACKSTOP_PAGES: i64 = 10_000;

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

impl Database {
    /// Opens (creating if needed) the file and its folder, and applies `schema`.
    pub async fn open(path: PathBuf, schema: &'static str) -> Result<Self, DatabaseError> {
        let (database, checkpointer) =
            tokio::task::spawn_blocking(move || -> Result<_, DatabaseError> {
                let database = Self::open_now(path, schema)?;
                let checkpointer = database.open_checkpointer()?;
                Ok((database, checkpointer))
            })
            .await??;
        tokio::spawn(checkpoint_while_open(
            Arc::downgrade(&database.connection),
            database.used.clone(),
            checkpointer,
        ));
        Ok(database)
    }

    /// The checkpointer's own connection: in WAL mode a passive checkpoint on it runs
    /// beside the component's reads and writes instead of inside one of its commits.
    fn open_checkpointer(&self) -> Result<Connection, DatabaseError> {
        Connection::open(&self.path).map_err(|source| DatabaseError::Open {
            step: "open the checkpointer's connection to",
            path: self.path.clone(),
            source,
        })
    }

    fn open_now(path: PathBuf, schema: &str) -> Result<Self, DatabaseError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| DatabaseError::Folder {
                path: parent.to_owned(),
                source,
            })?;
        }
        let step = |step: &'static str| {
            let path = path.clone();
            move |source| DatabaseError::Open { step, path, source }
        };
        let mut connection = Connection::open(&path).map_err(step("open"))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(step("prepare"))?;
        when_not_busy(|| switch_to_wal(&connection)).map_err(step("switch to WAL mode"))?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(step("prepare"))?;
        connection
            .pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)
            .map_err(step("prepare"))?;
        when_not_busy(|| apply_schema(&mut connection, schema))
            .map_err(step("create the tables in"))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            path,
            used: Arc::new(AtomicBool::new(false)),
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
        self.used.store(true, Ordering::Relaxed);
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

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] after the component used the file,
/// until the component is gone. Passive: it never waits for, nor blocks, a reader or
/// the writer of this or another process; what it cannot copy now it copies next time.
async fn checkpoint_while_open(
    component: Weak<Mutex<Connection>>,
    used: Arc<AtomicBool>,
    checkpointer: Connection,
) {
    let checkpointer = Arc::new(Mutex::new(checkpointer));
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if component.strong_count() == 0 {
            return;
        }
        if !used.swap(false, Ordering::Relaxed) {
            continue;
        }
        let checkpointer = checkpointer.clone();
        let done = tokio::task::spawn_blocking(move || {
            checkpointer
                .lock()
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            // The commit-time backstop still bounds the WAL.
            Ok(Err(error)) => tracing::debug!("SQLite WAL checkpoint failed: {error}"),
            Err(error) => tracing::debug!("SQLite WAL checkpoint task failed: {error}"),
        }
    }
}

/// When a value written now with `ttl` expires, in [`now_ms`] terms; `None` when that
/// is past what the column can hold (callers refuse such TTLs before writing).
pub(crate) fn expiry_ms(ttl: Duration) -> Option<i64> {
    i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ttl| now_ms().checked_add(ttl))
}

/// How long one statement waits for another connection's lock (SQLite's busy handler).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening keeps retrying what SQLite refuses with SQLITE_BUSY at once.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// Switches the file to WAL mode (a no-op when it already is).
///
/// This is the statement that fails first when sidecars start together on a new file
/// (found by starting 6 at once in a loop, and by the test below): on a new file the
/// switch writes the file header, and SQLite does it as a read transaction upgraded to
/// an exclusive write (`sqlite3BtreeSetVersion`). When another connection holds the
/// write lock at that instant — another sidecar in the middle of the very same switch —
/// the upgrade fails with SQLITE_BUSY at once: SQLite calls the busy handler only for a
/// connection that holds no transaction yet, since waiting while holding a read lock
/// could deadlock. So the busy timeout does not help here; the caller retries.
fn switch_to_wal(connection: &Connection) -> rusqlite::Result<()> {
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still a working database (e.g. a file system without shared memory), only
        // with readers and the writer waiting for each other.
        tracing::warn!("SQLite kept journal mode `{mode}` instead of WAL");
    }
    Ok(())
}

/// Creates what is missing of `schema` in one `BEGIN IMMEDIATE` transaction: it takes the
/// write lock before reading anything (so the busy handler applies, and no read has to
/// be upgraded), and a sidecar never sees half a schema another one is creating.
fn apply_schema(connection: &mut Connection, schema: &str) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute_batch(schema)?;
    transaction.commit()
}

/// Runs `step` again while SQLite answers SQLITE_BUSY, with a growing, jittered pause
/// (so processes that collided do not collide again in step), for at most
/// [`OPEN_PATIENCE`]; any other answer, or the last busy one, is returned.
fn when_not_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + OPEN_PATIENCE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pause = tandem_resiliency::exponential_wait(
            attempt,
            Duration::from_millis(2),
            Duration::from_millis(200),
        );
        match step() {
            Err(error) if is_busy(&error) && Instant::now() + pause < deadline => {
                std::thread::sleep(jittered(pause));
            }
            answer => return answer,
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// `pause` scaled by a random factor between 0.5 and 1.5.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(0.5 + rand::random::<f64>())
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

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        INSERT OR IGNORE INTO things (id, name) VALUES (0, 'first');
    ";

    /// Another process in the middle of the WAL switch on a new file holds its write
    /// lock for a moment. SQLite answers the upgrade of our read to a write with
    /// SQLITE_BUSY at once, without the busy handler: opening must wait its turn.
    #[test]
    fn opening_waits_for_another_process_switching_a_new_file_to_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("ROLLBACK").unwrap();
        });
        let database = Database::open_now(path.clone(), SCHEMA).map(|_| ());
        release.join().unwrap();
        database.unwrap();
        // What it left in the file, seen by a connection of its own.
        let connection = Connection::open(&path).unwrap();
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let name: String = connection
            .query_row("SELECT name FROM things WHERE id = 0", [], |row| row.get(0))
            .unwrap();
        assert_eq!(name, "first");
    }

    /// Several processes opening the same new file at once all get it, in WAL mode
    /// with the schema, whatever the interleaving.
    #[test]
    fn many_open_a_new_file_at_once() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tandem.db");
            let start = Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Database::open_now(path, SCHEMA).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
    }

    /// Commits leave their pages in the WAL; the background checkpointer, not a later
    /// commit, copies them into the database file (the request connection's own
    /// checkpoint threshold is far above what is written here).
    #[tokio::test]
    async fn the_checkpointer_copies_commits_into_the_file_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.db");
        let database = Database::open(path.clone(), SCHEMA).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        database
            .run(|connection| {
                let transaction = connection.transaction()?;
                for id in 1..=200 {
                    transaction.execute(
                        "INSERT INTO things (id, name) VALUES (?1, ?2)",
                        rusqlite::params![id, "x".repeat(1024)],
                    )?;
                }
                transaction.commit()
            })
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            before,
            "written at commit"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&path).unwrap().len() < before + 200 * 1024 {
            assert!(Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
