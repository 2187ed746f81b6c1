//! SQLite driven through rusqlite on threads of its own, for the hot paths.
//!
//! sqlx runs each SQLite connection on a thread and hands every statement
//! to it and every row back through channels. Under checkout load a
//! profile showed about a third of the server's samples in the kernel
//! switching threads for those hand-offs. Here a job (a closure doing any
//! number of statements) crosses once to a thread that owns its connection
//! and its answer crosses once back. sqlx stays the driver of everything
//! else; the SQL is the same text, `$1`-style parameters included.

use crate::batch::Val;
use crate::error::StoreError;
use rusqlite::{Connection, OpenFlags, ffi};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Connections on threads of their own, sharing one queue of jobs.
pub(crate) struct DirectPool {
    jobs: flume::Sender<Job>,
}

/// How the connections of a pool are set up.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    /// The writer's: `wal_autocheckpoint` off (the checkpointer does it).
    Write,
    /// `query_only`.
    Read,
}

/// The file path of a `sqlite:` URL, as a SQLite URI filename (so its
/// `?mode=rwc`-style options keep their meaning).
fn uri_of(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Config("the database URL must start with sqlite:".into()))?;
    if rest.is_empty() || rest.starts_with(":memory:") || rest.contains("mode=memory") {
        return Err(StoreError::Config("an in-memory SQLite database cannot be shared by connections".into()));
    }
    Ok(format!("file:{rest}"))
}

impl DirectPool {
    /// Opens `threads` connections to the database of `url`, each on a
    /// thread named `name`. Fails if any connection cannot be opened.
    pub(crate) fn open(
        url: &str,
        threads: usize,
        access: Access,
        busy_timeout: Duration,
        name: &str,
    ) -> Result<DirectPool, StoreError> {
        let uri = uri_of(url)?;
        let (jobs, queue) = flume::unbounded::<Job>();
        for _ in 0..threads.max(1) {
            let conn = connect(&uri, access, busy_timeout)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    let mut conn = conn;
                    // Ends when the pool (every sender) is gone.
                    while let Ok(job) = queue.recv() {
                        job(&mut conn);
                    }
                })
                .map_err(|e| StoreError::Unavailable(format!("could not start a database thread: {e}")))?;
        }
        Ok(DirectPool { jobs })
    }

    /// Runs `job` on one of the pool's connections and returns its result.
    /// A panic in the job becomes an error; the connection goes on.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_to, answer) = oneshot::channel();
        let boxed: Job = Box::new(move |conn: &mut Connection| {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(conn)))
                .unwrap_or_else(|_| Err(StoreError::UnitPanicked));
            // The caller may have gone away; the job is done either way.
            let _ = reply_to.send(outcome);
        });
        self.jobs.send(boxed).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Reads at most one row of `sql` (parameters `$1`…`$n` for `values`).
    pub(crate) async fn read_row<T, F>(
        &self,
        sql: &'static str,
        values: Vec<Val>,
        row: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(move |conn| query_optional(conn, sql, &values, row)).await
    }
}

/// At most one row of `sql`, through `row`.
pub(crate) fn query_optional<T>(
    conn: &Connection,
    sql: &str,
    values: &[Val],
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
    bind(&mut statement, values)?;
    let mut rows = statement.raw_query();
    match rows.next().map_err(from_sqlite)? {
        Some(found) => row(found).map(Some).map_err(from_sqlite),
        None => Ok(None),
    }
}

/// The one row `sql` answers (an error if none), through `row`.
pub(crate) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    values: &[Val],
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    query_optional(conn, sql, values, row)?
        .ok_or_else(|| StoreError::Corrupt(format!("no row where one was expected ({sql:.40})")))
}

/// Runs one statement of `sql` with `values`, prepared once per connection
/// and kept.
pub(crate) fn execute(conn: &Connection, sql: &str, values: &[Val]) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
    bind(&mut statement, values)?;
    statement.raw_execute().map(drop).map_err(from_sqlite)
}

/// Binds `values` to the statement's `$1`…`$n`. SQLite numbers such
/// parameters by first appearance, so each is found by its name.
pub(crate) fn bind(statement: &mut rusqlite::Statement<'_>, values: &[Val]) -> Result<(), StoreError> {
    let mut name = String::with_capacity(4);
    for (i, value) in values.iter().enumerate() {
        name.clear();
        name.push('$');
        name.push_str(&(i + 1).to_string());
        if let Some(index) = statement.parameter_index(&name).map_err(from_sqlite)? {
            statement.raw_bind_parameter(index, value).map_err(from_sqlite)?;
        }
    }
    Ok(())
}

fn connect(uri: &str, access: Access, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags).map_err(from_sqlite)?;
    conn.busy_timeout(busy_timeout).map_err(from_sqlite)?;
    // As sqlx's connections are set up (see `db::sqlite_pool`).
    let mut pragmas = String::from(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY; ",
    );
    pragmas.push_str(match access {
        Access::Write => "PRAGMA wal_autocheckpoint = 0;",
        Access::Read => "PRAGMA query_only = ON;",
    });
    conn.execute_batch(&pragmas).map_err(from_sqlite)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// rusqlite's errors in the store's terms, as `From<sqlx::Error>` maps
/// sqlx's: SQLite's messages name columns and constraints, never values.
pub(crate) fn from_sqlite(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(code, message) => {
            let message = message.clone().unwrap_or_else(|| code.to_string());
            match code.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => StoreError::Conflict(message),
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::MissingReference(message),
                _ if matches!(code.code, ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked) => {
                    StoreError::Unavailable(message)
                }
                _ => StoreError::Database(message),
            }
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_sqlite_uris() {
        assert_eq!(uri_of("sqlite:///tmp/a.db?mode=rwc").unwrap(), "file:/tmp/a.db?mode=rwc");
        assert_eq!(uri_of("sqlite:data.db").unwrap(), "file:data.db");
        assert!(uri_of("sqlite::memory:").is_err());
        assert!(uri_of("postgres://x").is_err());
    }
}
