//! Connection pools and the write path (units of work, group commit).

use crate::batch::WriteCommands;
use crate::direct::{Access, DirectPool, from_sqlite};
use crate::error::StoreError;
use crate::migrations::{self, EmbeddedMigrations};
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

/// Threads with a direct SQLite reader connection each: their reads are
/// short (one row by key) and the machine has few cores.
const DIRECT_READERS: usize = 4;

/// The key store's connections: its reads are one small row by key, most
/// of them answered from the vault's cache, so a few connections serve it.
/// Each SQLite connection keeps a page cache of up to 2 MiB (and sqlx's a
/// thread); the key store had as many as the data database.
const KEY_STORE_READERS: u32 = 2;
const KEY_STORE_DIRECT_READERS: usize = 1;
const KEY_STORE_POSTGRES_CONNECTIONS: u32 = 4;

/// Which database engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config("the database URL must start with sqlite: or postgres:".into()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Tuning for [`Db::open`]; the defaults suit a small server.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Reader connections on SQLite (the writer is always one more).
    pub sqlite_readers: u32,
    /// Connections on PostgreSQL, shared by reads and writes.
    pub postgres_connections: u32,
    /// Most units the SQLite writer commits together.
    pub write_batch_max: usize,
    /// How long SQLite waits for a lock held by another process (a CLI command).
    pub busy_timeout: Duration,
    /// How long a caller waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// SQLite: WAL frames (pages) past which the checkpointer starts the
    /// WAL over (see [`checkpointer`]).
    pub wal_limit_frames: i64,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            sqlite_readers: 8,
            postgres_connections: 16,
            write_batch_max: 256,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            // 64 MiB of 4 KiB pages.
            wal_limit_frames: 16_384,
        }
    }
}

/// The transaction handle a unit of work writes through. Aggregate write
/// traits (e.g. [`crate::CatalogWriter`]) are implemented on it.
pub struct WriteTx {
    conn: PoolConnection<Any>,
    backend: Backend,
}

impl WriteTx {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    async fn run(&mut self, sql: &'static str) -> Result<(), StoreError> {
        Executor::execute(&mut *self.conn, sql).await.map(drop).map_err(StoreError::from)
    }

    /// Ends a failed transaction; a connection that cannot even roll back is
    /// closed instead of going back to the pool in an unknown state.
    async fn abandon(mut self) {
        if self.run("ROLLBACK").await.is_err() {
            self.conn.close_on_drop();
        }
    }
}

/// The future a unit of work returns.
pub type UnitFuture<'t, T, E> = BoxFuture<'t, Result<T, E>>;

/// A unit of work for [`Db::write`] (and the key store's write path): the
/// transaction's name and a body that may `.await`, as in
/// `db.write(unit!(|tx| tx.publish_policy(..).await))`. It stands for
/// `move |tx| Box::pin(async move { body })`: the body takes what it uses
/// by value, and its future stays `Send` for the SQLite writer task that
/// runs it. Written like a closure so rustfmt formats the body.
#[macro_export]
macro_rules! unit {
    (|$tx:ident| $body:expr) => {
        move |$tx| ::std::boxed::Box::pin(async move { $body })
    };
}

/// The key store's side of a unit of work: only its own tables are written
/// through it, so no data writer trait (implemented on [`WriteTx`]) is
/// reachable from key-store code.
pub(crate) struct KeyTx<'t> {
    tx: &'t mut WriteTx,
}

impl KeyTx<'_> {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.tx.conn()
    }
}

/// Tells a caller how its unit ended, once the batch's fate is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A unit waiting for the SQLite writer, its result type erased.
trait Queued: Send {
    /// Runs the unit; says whether it succeeded and hands back the reply to
    /// send once the batch has committed (or failed).
    fn run<'t>(self: Box<Self>, tx: &'t mut WriteTx) -> BoxFuture<'t, (bool, Reply)>;
    /// Answers the caller without running (the batch failed before it).
    fn fail(self: Box<Self>, error: StoreError);
}

type QueuedUnit = Box<dyn Queued>;

/// What waits for the SQLite writer: a unit of work written as a closure
/// over sqlx, or one that runs on the writer's direct connection (see
/// `direct`): commands decided in full, or a job reading and writing
/// through rusqlite.
enum Pending {
    Unit(QueuedUnit),
    Direct(DirectUnit, Durability),
}

/// When a direct unit's writes must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before its caller hears of the commit (`synchronous = FULL`).
    AtCommit,
    /// With the next commit that is durable at once, or the next
    /// checkpoint: SQLite's WAL is written in order, so the fsync of any
    /// later commit covers this one too. A crash before that loses it, and
    /// readers see it meanwhile. For records whose loss a crash may cost
    /// (see [`crate::FraudAttemptStore`]), not for anything acknowledged
    /// to a person.
    WithTheNext,
}

/// A direct unit, its result type erased: runs on the connection, says
/// whether it succeeded and hands back the reply to send after the commit.
type DirectUnit = Box<dyn FnOnce(&rusqlite::Connection) -> (bool, Reply) + Send>;

struct TypedUnit<F, T, E> {
    unit: F,
    reply_to: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Queued for TypedUnit<F, T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'t> FnOnce(&'t mut WriteTx) -> UnitFuture<'t, T, E> + Send + 'static,
{
    fn run<'t>(self: Box<Self>, tx: &'t mut WriteTx) -> BoxFuture<'t, (bool, Reply)> {
        let TypedUnit { unit, reply_to } = *self;
        Box::pin(async move {
            let outcome = run_guarded(unit, tx).await;
            let ok = outcome.is_ok();
            let reply: Reply = Box::new(move |commit: Result<(), StoreError>| {
                let result = match commit {
                    Ok(()) => outcome,
                    Err(e) => outcome.and(Err(E::from(e))),
                };
                // The caller may have gone away; the work is settled either way.
                let _ = reply_to.send(result);
            });
            (ok, reply)
        })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply_to.send(Err(E::from(error)));
    }
}

/// Runs a unit, turning a panic into an error so the writer survives it.
async fn run_guarded<T, E, F>(unit: F, tx: &mut WriteTx) -> Result<T, E>
where
    E: From<StoreError>,
    F: for<'t> FnOnce(&'t mut WriteTx) -> UnitFuture<'t, T, E>,
{
    AssertUnwindSafe(unit(tx)).catch_unwind().await.unwrap_or_else(|_| Err(E::from(StoreError::UnitPanicked)))
}

/// Counters of the write path, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (on SQLite, one per batch).
    pub commits: u64,
    /// Units that ran, successful or not.
    pub units: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    units: AtomicU64,
    /// SQLite: the checkpointer found the WAL past its limit; the writer
    /// starts it over after its batch (see `checkpointer`).
    wal_over_limit: AtomicBool,
}

enum Writes {
    /// SQLite: units go to the single writer task.
    Queue(mpsc::Sender<Pending>),
    /// PostgreSQL: each unit takes a connection and runs its own transaction.
    Direct(AnyPool),
}

struct Inner {
    backend: Backend,
    readers: AnyPool,
    /// SQLite: reader connections driven directly, for the hottest reads.
    direct_readers: Option<DirectPool>,
    writes: Writes,
    /// Held by the writer task around each batch; [`Db::hold_writes`] takes it
    /// to let writes queue up (maintenance, and tests of batching).
    gate: Arc<Mutex<()>>,
    counters: Arc<Counters>,
    /// The writer's pool on SQLite, the only pool on PostgreSQL.
    migrations: AnyPool,
}

/// A database: reader pool and write path. Cheap to clone. What it holds
/// is told by its kind, so the data database ([`Db`]) and the key store's
/// are distinct types and the aggregates' traits reach only the first.
pub struct Database<K> {
    inner: Arc<Inner>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Database<K> {
    fn clone(&self) -> Self {
        Database { inner: self.inner.clone(), kind: PhantomData }
    }
}

/// The kind of the data database: customers, orders, the catalog, the outbox.
pub enum Data {}

/// The kind of the key store's database (see [`crate::KeyStore`]).
pub(crate) enum Keys {}

/// The data database.
pub type Db = Database<Data>;

/// While held, no SQLite batch starts; queued units wait.
pub struct WriteHold {
    _guard: OwnedMutexGuard<()>,
}

impl Db {
    /// Connects to the data database the URL names. SQLite: the file is
    /// created if missing and put in WAL mode; one writer connection,
    /// several readers.
    pub async fn open(url: &str, options: &DbOptions) -> Result<Db, StoreError> {
        Database::connect(url, options, DIRECT_READERS).await
    }

    /// Applies the migrations of this backend that have not run yet. On
    /// SQLite they run on the writer's own connection, between batches; on
    /// PostgreSQL sqlx takes an advisory lock, so several servers may start
    /// at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.run_migrations(match self.backend() {
            Backend::Sqlite => EmbeddedMigrations(migrations::SQLITE),
            Backend::Postgres => EmbeddedMigrations(migrations::POSTGRES),
        })
        .await
    }

    /// Runs a unit of work and returns its result once it is durable.
    ///
    /// The unit does its writes through the [`WriteTx`] it is given; when it
    /// returns an error (or panics) everything it wrote is rolled back and
    /// other units are unaffected. No network calls, password hashing or
    /// signing inside a unit: do them before, so the writer never waits.
    /// [`unit!`](crate::unit) writes the closure.
    pub async fn write<T, E, F>(&self, unit: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> UnitFuture<'t, T, E> + Send + 'static,
    {
        self.run_unit(unit).await
    }

    /// Runs commands as one unit of work and returns once they are durable.
    /// On SQLite they join the writer's batches like any unit (a savepoint
    /// each) but run on the writer's direct connection, with no hand-off
    /// per statement; on PostgreSQL they are one statement (see `batch`).
    pub async fn write_commands(&self, commands: WriteCommands) -> Result<(), StoreError> {
        match &self.inner.writes {
            Writes::Queue(_) => self.write_direct(move |conn| commands.statements.run_on(conn)).await,
            Writes::Direct(pool) => {
                // One statement: atomic without BEGIN and COMMIT.
                let (pool, counters) = (pool.clone(), self.inner.counters.clone());
                // Spawned so a caller that gives up cannot cut it off half-sent.
                let task = tokio::spawn(async move {
                    let mut conn = pool.acquire().await?;
                    counters.units.fetch_add(1, Ordering::Relaxed);
                    commands.statements.execute_on(Backend::Postgres, &mut conn).await?;
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                });
                task.await.map_err(|_| StoreError::UnitPanicked)?
            }
        }
    }
}

impl Database<Keys> {
    /// Connects to the key store's database and applies its migrations
    /// (`migrations/keystore-*`).
    pub(crate) async fn open_key_store(url: &str, options: &DbOptions) -> Result<Self, StoreError> {
        let options = DbOptions {
            sqlite_readers: options.sqlite_readers.min(KEY_STORE_READERS),
            postgres_connections: options.postgres_connections.min(KEY_STORE_POSTGRES_CONNECTIONS),
            ..options.clone()
        };
        let db = Database::connect(url, &options, KEY_STORE_DIRECT_READERS).await?;
        db.run_migrations(match db.backend() {
            Backend::Sqlite => EmbeddedMigrations(migrations::KEYSTORE_SQLITE),
            Backend::Postgres => EmbeddedMigrations(migrations::KEYSTORE_POSTGRES),
        })
        .await?;
        Ok(db)
    }

    /// A unit of work on the key store, as [`Db::write`], through a [`KeyTx`].
    pub(crate) async fn write<T, F>(&self, unit: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'k, 't> FnOnce(&'k mut KeyTx<'t>) -> UnitFuture<'k, T, StoreError> + Send + 'static,
    {
        self.run_unit(unit!(|tx| unit(&mut KeyTx { tx }).await)).await
    }
}

impl<K> Database<K> {
    /// Connects to the database the URL names (see [`Db::open`]), with
    /// `direct_readers` direct reader threads on SQLite.
    async fn connect(url: &str, options: &DbOptions, direct_readers: usize) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Mutex::new(()));
        let inner = match backend {
            Backend::Sqlite => {
                private_sqlite_file(url)?;
                let writer_pool = sqlite_pool(url, 1, false, options).await?;
                {
                    let mut conn = writer_pool.acquire().await?;
                    // Persistent in the file; readers then see WAL too.
                    Executor::execute(&mut *conn, "PRAGMA journal_mode = WAL").await?;
                }
                let readers = sqlite_pool(url, options.sqlite_readers.max(1), true, options).await?;
                // Checkpoints run beside the writer, not inside its commits
                // (where SQLite's automatic ones would stall every write
                // behind an fsync of the database file).
                tokio::spawn(checkpointer(
                    sqlite_pool(url, 1, false, options).await?,
                    sqlite_file_path(url).and_then(database_file_for_sync),
                    options.wal_limit_frames,
                    Arc::downgrade(&counters),
                ));
                let (tx, rx) = mpsc::channel(options.write_batch_max.max(1) * 4);
                let writer = Writer {
                    pool: writer_pool.clone(),
                    direct: DirectPool::open(url, 1, Access::Write, options.busy_timeout, "coffer-sqlite-writer")?,
                    busy_timeout: options.busy_timeout,
                    batch_max: options.write_batch_max.max(1),
                    gate: gate.clone(),
                    counters: counters.clone(),
                };
                tokio::spawn(writer_task(writer, rx));
                let direct_readers =
                    DirectPool::open(url, direct_readers, Access::Read, options.busy_timeout, "coffer-sqlite-reader")?;
                Inner {
                    backend,
                    readers,
                    direct_readers: Some(direct_readers),
                    writes: Writes::Queue(tx),
                    gate,
                    counters,
                    migrations: writer_pool,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.postgres_connections.max(2))
                    .acquire_timeout(options.acquire_timeout)
                    .connect(url)
                    .await?;
                Inner {
                    backend,
                    readers: pool.clone(),
                    direct_readers: None,
                    writes: Writes::Direct(pool.clone()),
                    gate,
                    counters,
                    migrations: pool,
                }
            }
        };
        Ok(Database { inner: Arc::new(inner), kind: PhantomData })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The pool for reads. On SQLite its connections are `query_only`.
    pub(crate) fn readers(&self) -> &AnyPool {
        &self.inner.readers
    }

    /// SQLite: connections for reads run without sqlx (see `direct`); for
    /// the few reads every order makes. `None` on PostgreSQL.
    pub(crate) fn direct_readers(&self) -> Option<&DirectPool> {
        self.inner.direct_readers.as_ref()
    }

    async fn run_migrations(&self, embedded: EmbeddedMigrations) -> Result<(), StoreError> {
        let migrator = sqlx::migrate::Migrator::new(embedded).await?;
        let _gate = self.inner.gate.lock().await;
        let mut conn = self.inner.migrations.acquire().await?;
        migrator.run(&mut *conn).await?;
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(self.readers()).await.is_ok()
    }

    /// Runs a unit of work and returns its result once it is durable.
    async fn run_unit<T, E, F>(&self, unit: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut WriteTx) -> UnitFuture<'t, T, E> + Send + 'static,
    {
        match &self.inner.writes {
            Writes::Queue(queue) => {
                let (reply_to, answer) = oneshot::channel::<Result<T, E>>();
                let queued: QueuedUnit = Box::new(TypedUnit { unit, reply_to });
                queue.send(Pending::Unit(queued)).await.map_err(|_| E::from(StoreError::WriterStopped))?;
                answer.await.map_err(|_| E::from(StoreError::WriterStopped))?
            }
            Writes::Direct(pool) => {
                let pool = pool.clone();
                let counters = self.inner.counters.clone();
                let backend = self.inner.backend;
                // Spawned so a caller that gives up mid-way cannot leave a
                // transaction open on a pooled connection.
                let task = tokio::spawn(async move {
                    let conn = pool.acquire().await.map_err(|e| E::from(StoreError::from(e)))?;
                    let mut tx = WriteTx { conn, backend };
                    tx.run("BEGIN").await?;
                    counters.units.fetch_add(1, Ordering::Relaxed);
                    let outcome = run_guarded(unit, &mut tx).await;
                    match outcome {
                        Ok(value) => match tx.run("COMMIT").await {
                            Ok(()) => {
                                counters.commits.fetch_add(1, Ordering::Relaxed);
                                Ok(value)
                            }
                            Err(e) => {
                                tx.abandon().await;
                                Err(E::from(e))
                            }
                        },
                        Err(e) => {
                            tx.abandon().await;
                            Err(e)
                        }
                    }
                });
                task.await.map_err(|_| E::from(StoreError::UnitPanicked))?
            }
        }
    }

    /// SQLite only: runs `unit` as a unit of work on the writer's direct
    /// connection (rusqlite, on the writer's thread), in the writer's
    /// batches like any unit. Its error or panic rolls back its writes only.
    /// Keep it short: the writer waits for it.
    pub(crate) async fn write_direct<T, F>(&self, unit: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_direct_with(Durability::AtCommit, unit).await
    }

    /// As [`Database::write_direct`], its writes durable as `durability` says.
    pub(crate) async fn write_direct_with<T, F>(&self, durability: Durability, unit: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Writes::Queue(queue) = &self.inner.writes else {
            return Err(StoreError::Config("a direct write needs SQLite".into()));
        };
        let (reply_to, answer) = oneshot::channel::<Result<T, StoreError>>();
        let direct: DirectUnit = Box::new(move |conn: &rusqlite::Connection| {
            let outcome =
                std::panic::catch_unwind(AssertUnwindSafe(|| unit(conn))).unwrap_or(Err(StoreError::UnitPanicked));
            let ok = outcome.is_ok();
            let reply: Reply = Box::new(move |commit: Result<(), StoreError>| {
                // The caller may have gone away; the work is settled either way.
                let _ = reply_to.send(commit.and(outcome));
            });
            (ok, reply)
        });
        queue.send(Pending::Direct(direct, durability)).await.map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// SQLite: moves the WAL into the database file and truncates it, so
    /// bytes overwritten by an erasure no longer sit in the `-wal` file.
    /// Runs between write batches. A no-op on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend() != Backend::Sqlite {
            return Ok(());
        }
        let _gate = self.inner.gate.lock().await;
        let mut conn = self.inner.migrations.acquire().await?;
        Executor::execute(&mut *conn, "PRAGMA wal_checkpoint(TRUNCATE)").await?;
        Ok(())
    }

    /// SQLite: writes a consistent copy of the database to `file` (which
    /// must not exist), between write batches. Not for PostgreSQL, whose
    /// operators back up with their own tools.
    pub async fn backup_to(&self, file: &std::path::Path) -> Result<(), StoreError> {
        if self.backend() != Backend::Sqlite {
            return Err(StoreError::Config("backup create is for SQLite; back up PostgreSQL with pg_dump".into()));
        }
        let path = file.to_str().ok_or_else(|| StoreError::Config("the backup path is not valid UTF-8".into()))?;
        // Created empty and owner-only first: VACUUM INTO fills an empty
        // file and keeps its mode (it would make a new one world-readable).
        create_private(file).map_err(|e| StoreError::Config(format!("creating the backup file: {}", e.kind())))?;
        let _gate = self.inner.gate.lock().await;
        let mut conn = self.inner.migrations.acquire().await?;
        sqlx::query("VACUUM INTO $1").bind(path.to_owned()).execute(&mut *conn).await?;
        Ok(())
    }

    /// Stops new SQLite batches from starting until the hold is dropped.
    pub async fn hold_writes(&self) -> WriteHold {
        WriteHold { _guard: self.inner.gate.clone().lock_owned().await }
    }

    /// Units waiting for the SQLite writer (always 0 on PostgreSQL).
    pub fn queued_writes(&self) -> usize {
        match &self.inner.writes {
            Writes::Queue(q) => q.max_capacity() - q.capacity(),
            Writes::Direct(_) => 0,
        }
    }

    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            commits: self.inner.counters.commits.load(Ordering::Relaxed),
            units: self.inner.counters.units.load(Ordering::Relaxed),
        }
    }

    /// Closes the pools; queued units still finish first on SQLite.
    pub async fn close(&self) {
        self.inner.readers.close().await;
    }
}

async fn sqlite_pool(url: &str, size: u32, read_only: bool, options: &DbOptions) -> Result<AnyPool, StoreError> {
    let busy_ms = u64::try_from(options.busy_timeout.as_millis()).unwrap_or(u64::MAX);
    AnyPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // busy_timeout first: the others may need a lock.
                let busy = format!("PRAGMA busy_timeout = {busy_ms}");
                sqlx::raw_sql(sqlx::AssertSqlSafe(busy)).execute(&mut *conn).await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                // FULL: an acknowledged order must survive power loss.
                conn.execute("PRAGMA synchronous = FULL").await?;
                // Freed pages are overwritten, so erased ciphertext leaves the file.
                conn.execute("PRAGMA secure_delete = ON").await?;
                // Savepoint journals (one per unit of a batch) stay in memory
                // instead of temporary files.
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                if read_only {
                    conn.execute("PRAGMA query_only = ON").await?;
                } else {
                    // The checkpointer task does this work (see `checkpointer`).
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(StoreError::from)
}

/// Copies the WAL into the database file every quarter second from a
/// connection of its own (PASSIVE: it never waits for the writer), until
/// the `Db` is gone.
///
/// SQLite starts the WAL over only when a write begins after every frame
/// was copied and no reader still reads from the WAL. Under steady writes
/// and reads that moment never comes, so the WAL grows without end (2.6 GB
/// after 120 k orders in `scripts/bench --only growth`), and every read
/// searches a longer WAL index: checkout slowed as the data grew. So once
/// the WAL holds more than `limit_frames`, this asks the writer to start it
/// over between two batches (`restart_wal`). Done here instead, the
/// checkpoint held the write lock while it waited for readers, and the
/// writer, refused, slept in SQLite's busy steps (up to 100 ms each) long
/// after the readers were gone: p99 at 4 clients rose to 165–300 ms.
///
/// SQLite syncs the database file only after a checkpoint that copied the
/// whole WAL, which under steady writes never happens (frames keep coming
/// while it copies). Everything copied then waited for the WAL restart's
/// sync, on the writer: 10–18 ms at 1,500 orders/s, every request behind
/// it waiting too. So the checkpointer syncs what it copied itself, on
/// its own handle of the file (`db_file`), and the restart's sync finds
/// little left to write.
async fn checkpointer(
    pool: AnyPool,
    db_file: Option<Arc<std::fs::File>>,
    limit_frames: i64,
    alive: std::sync::Weak<Counters>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    // What the last checkpoint reported: (frames in the WAL, frames copied).
    let mut last = (0, 0);
    let mut last_sync = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(counters) = alive.upgrade() else {
            pool.close().await;
            return;
        };
        let done = async {
            let mut conn = pool.acquire().await?;
            let (_, frames, copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
            drop(conn);
            let copied_any = copied > 0 && (frames, copied) != last;
            last = (frames, copied);
            // The WAL's length is looked at often; the file is synced at
            // most every SYNC_EVERY (each sync competes with the commits'
            // own syncs of the WAL).
            if copied_any
                && last_sync.elapsed() >= SYNC_EVERY
                && let Some(file) = db_file.clone()
            {
                last_sync = tokio::time::Instant::now();
                let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
                if !matches!(synced, Ok(Ok(()))) {
                    tracing::debug!("syncing the database file after a checkpoint failed; the WAL restart syncs it");
                }
            }
            if frames > limit_frames {
                counters.wal_over_limit.store(true, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = done.await {
            tracing::debug!(error = %e, "a WAL checkpoint did not run; the next one will");
        }
    }
}

/// How often the checkpointer copies the WAL into the database and looks
/// at its length: the WAL stays as long as its limit and what this much
/// time of writes adds.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How often, at most, the checkpointer syncs the database file.
const SYNC_EVERY: Duration = Duration::from_millis(250);

/// How long the writer waits for readers still on the WAL before it gives
/// up starting it over (and tries again after a later batch).
const RESTART_WAIT: Duration = Duration::from_millis(200);

/// Starts the WAL over on the writer's own connection, between batches: no
/// other writer waits, and readers still on the WAL (each a short query)
/// are waited for in steps of a tenth of a millisecond.
///
/// RESTART, not TRUNCATE: the file keeps its size and the next frames
/// overwrite it from the start. Truncating took 83–101 ms at 1 client
/// (the file system freeing 64 MiB, then allocating it again as the WAL
/// grew back); RESTART took 2–9 ms. The WAL file stays as large as the
/// limit and a quarter second of writes. An erasure still truncates it
/// ([`Db::checkpoint`]), so erased bytes do not stay in it.
async fn restart_wal(direct: &DirectPool, busy_timeout: Duration) {
    fn short_steps(tries: i32) -> bool {
        let limit = RESTART_WAIT.as_micros() / 100;
        if u128::try_from(tries).unwrap_or(u128::MAX) >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
        true
    }
    let done = direct
        .run(move |conn| {
            conn.busy_handler(Some(short_steps)).map_err(from_sqlite)?;
            let restarted = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get::<_, i64>(0));
            // Back to the writer's own wait for its batches.
            conn.busy_timeout(busy_timeout).map_err(from_sqlite)?;
            match restarted.map_err(from_sqlite)? {
                0 => Ok(()),
                _ => Err(StoreError::Unavailable("readers kept the WAL".into())),
            }
        })
        .await;
    if let Err(e) = done {
        tracing::debug!(error = %e, "the WAL was not started over; the next batch tries again");
    }
}

struct Writer {
    pool: AnyPool,
    direct: DirectPool,
    /// The direct connection's busy timeout, restored after a WAL restart.
    busy_timeout: Duration,
    batch_max: usize,
    gate: Arc<Mutex<()>>,
    counters: Arc<Counters>,
}

/// Takes what is queued (up to `batch_max`) as one batch. Closure units and
/// commands run on different connections, so a batch holding both commits
/// in turns: each run of one kind, in queue order, as a transaction.
async fn writer_task(writer: Writer, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let _gate = writer.gate.lock().await;
        let mut batch = vec![first];
        while batch.len() < writer.batch_max {
            match queue.try_recv() {
                Ok(unit) => batch.push(unit),
                Err(_) => break,
            }
        }
        let mut units = Vec::new();
        // Direct units, and whether any of them must be durable at commit.
        let (mut commands, mut durable) = (Vec::new(), false);
        for pending in batch {
            match pending {
                Pending::Unit(unit) => {
                    if !commands.is_empty() {
                        let run = std::mem::take(&mut commands);
                        run_direct_batch(&writer.direct, run, std::mem::take(&mut durable), &writer.counters).await;
                    }
                    units.push(unit);
                }
                Pending::Direct(command, durability) => {
                    if !units.is_empty() {
                        run_batch(&writer.pool, std::mem::take(&mut units), &writer.counters).await;
                    }
                    commands.push(command);
                    durable |= durability == Durability::AtCommit;
                }
            }
        }
        if !units.is_empty() {
            run_batch(&writer.pool, units, &writer.counters).await;
        }
        if !commands.is_empty() {
            run_direct_batch(&writer.direct, commands, durable, &writer.counters).await;
        }
        if writer.counters.wal_over_limit.swap(false, Ordering::Relaxed) {
            restart_wal(&writer.direct, writer.busy_timeout).await;
        }
    }
}

/// Direct units in one transaction on the writer's direct connection, a
/// savepoint per unit (none for a unit alone); every caller is answered
/// after the commit, from the database thread itself.
async fn run_direct_batch(direct: &DirectPool, batch: Vec<DirectUnit>, durable: bool, counters: &Arc<Counters>) {
    let counters = counters.clone();
    let ran = direct
        .run(move |conn| {
            commit_direct(conn, batch, durable, &counters);
            Ok(())
        })
        .await;
    if let Err(e) = ran {
        tracing::error!(error = %e, "a write batch failed");
    }
}

fn commit_direct(conn: &rusqlite::Connection, batch: Vec<DirectUnit>, durable: bool, counters: &Counters) {
    let step = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.raw_execute()).map(drop).map_err(from_sqlite);
    // Answers every unit that ran, then the rest without running them.
    let fail_all = |ran: Vec<Reply>, not_run: Vec<DirectUnit>, e: StoreError| {
        tracing::error!(error = %e, "a write batch failed");
        // SQLite may have ended the transaction itself already.
        if !conn.is_autocommit() {
            let _ = step("ROLLBACK");
        }
        ran.into_iter().for_each(|reply| reply(Err(e.clone())));
        // A unit that never ran is answered by dropping it: its caller
        // hears that the write path could not take it.
        drop(not_run);
    };
    let alone = batch.len() == 1;
    let mut replies = Vec::with_capacity(batch.len());
    let mut any_ok = false;
    // Every batch sets its own level, so no batch inherits another's.
    let level = if durable { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
    if let Err(e) = step(level).and_then(|()| step("BEGIN IMMEDIATE")) {
        return fail_all(replies, batch, e);
    }
    let mut units = batch.into_iter();
    while let Some(unit) = units.next() {
        counters.units.fetch_add(1, Ordering::Relaxed);
        if alone {
            let (ok, reply) = unit(conn);
            any_ok |= ok;
            replies.push(reply);
            continue;
        }
        if let Err(e) = step("SAVEPOINT unit") {
            return fail_all(replies, std::iter::once(unit).chain(units).collect(), e);
        }
        let (ok, reply) = unit(conn);
        replies.push(reply);
        any_ok |= ok;
        // A failed unit's writes are undone; if even that fails, none of
        // the batch may commit.
        let end = if ok { step("RELEASE unit") } else { step("ROLLBACK TO unit").and_then(|()| step("RELEASE unit")) };
        if let Err(e) = end {
            return fail_all(replies, units.collect(), e);
        }
    }
    let end = if any_ok { step("COMMIT") } else { step("ROLLBACK") };
    if let Err(e) = end {
        return fail_all(replies, Vec::new(), e);
    }
    if any_ok {
        counters.commits.fetch_add(1, Ordering::Relaxed);
    }
    // A unit that failed answers with its own error.
    replies.into_iter().for_each(|reply| reply(Ok(())));
}

/// One transaction for the whole batch, a savepoint per unit, replies after
/// the commit. A failed commit fails every unit of the batch.
async fn run_batch(pool: &AnyPool, batch: Vec<QueuedUnit>, counters: &Counters) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut tx = match pool.acquire().await {
        Ok(conn) => WriteTx { conn, backend: Backend::Sqlite },
        Err(e) => return fail_all(batch, replies, StoreError::from(e)).await,
    };
    if let Err(e) = tx.run("BEGIN IMMEDIATE").await {
        tx.abandon().await;
        return fail_all(batch, replies, e).await;
    }
    // A unit alone needs no savepoint: the transaction is its own. Every
    // statement is a round trip to sqlx's SQLite thread, so two fewer count.
    let mut batch = batch;
    if batch.len() == 1
        && let Some(unit) = batch.pop()
    {
        counters.units.fetch_add(1, Ordering::Relaxed);
        let (ok, reply) = unit.run(&mut tx).await;
        let end = if ok { tx.run("COMMIT").await } else { tx.run("ROLLBACK").await };
        match end {
            Ok(()) if ok => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                reply(Ok(()));
            }
            // The unit failed and was rolled back: it answers with its own error.
            Ok(()) => reply(Ok(())),
            Err(e) => {
                tracing::error!(error = %e, "commit of a write batch failed");
                tx.abandon().await;
                reply(Err(e));
            }
        }
        return;
    }
    let mut units = batch.into_iter();
    while let Some(unit) = units.next() {
        counters.units.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = tx.run("SAVEPOINT unit").await {
            tx.abandon().await;
            return fail_all(std::iter::once(unit).chain(units).collect(), replies, e).await;
        }
        let (ok, reply) = unit.run(&mut tx).await;
        replies.push(reply);
        let end = if ok {
            tx.run("RELEASE unit").await
        } else {
            match tx.run("ROLLBACK TO unit").await {
                Ok(()) => tx.run("RELEASE unit").await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = end {
            // SQLite may have rolled back the whole transaction itself.
            tx.abandon().await;
            return fail_all(units.collect(), replies, e).await;
        }
    }
    match tx.run("COMMIT").await {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            replies.into_iter().for_each(|reply| reply(Ok(())));
        }
        Err(e) => {
            tracing::error!(error = %e, "commit of a write batch failed");
            tx.abandon().await;
            replies.into_iter().for_each(|reply| reply(Err(e.clone())));
        }
    }
}

/// Answers every unit of a batch that could not commit. Units that did not
/// run yet are answered without running.
async fn fail_all(not_run: Vec<QueuedUnit>, ran: Vec<Reply>, error: StoreError) {
    tracing::error!(error = %error, "a write batch failed");
    for reply in ran {
        reply(Err(error.clone()));
    }
    for unit in not_run {
        unit.fail(error.clone());
    }
}

/// Creates `path` empty and readable by its owner only, or narrows an
/// existing file to that.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// The file path of a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_file_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:") && !url.contains("mode=memory")).then_some(path)
}

/// A read-only handle on a database file, for syncing it beside SQLite
/// ([`checkpointer`]): one per path, kept for the life of the process and
/// never closed. Closing any descriptor of a file drops every POSIX lock
/// the process holds on it, SQLite's own included (SQLite defers closing
/// its descriptors for this; a descriptor of ours it does not know of).
fn database_file_for_sync(path: &str) -> Option<Arc<std::fs::File>> {
    static OPEN: std::sync::Mutex<std::collections::BTreeMap<String, Arc<std::fs::File>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut open = OPEN.lock().ok()?;
    if let Some(file) = open.get(path) {
        return Some(file.clone());
    }
    let file = Arc::new(std::fs::File::open(path).ok()?);
    open.insert(path.to_owned(), file.clone());
    Some(file)
}

/// The SQLite file of `url` (and its -wal and -shm files, which SQLite
/// makes with the file's own mode) is readable by its owner only: the data
/// database holds ciphertext, the key store wrapped keys.
fn private_sqlite_file(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file_path(url) else { return Ok(()) };
    let narrow = |path: &str| -> Result<(), StoreError> {
        create_private(std::path::Path::new(path))
            .map_err(|e| StoreError::Config(format!("making the SQLite file private: {}", e.kind())))
    };
    narrow(path)?;
    for suffix in ["-wal", "-shm"] {
        let side = format!("{path}{suffix}");
        if std::path::Path::new(&side).exists() {
            narrow(&side)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_testkit::{TestBackend, TestDatabase};

    /// The checkpointer's handle on a database file is opened once per
    /// path and kept: a second handle, closed again, would drop SQLite's
    /// locks on the file.
    #[test]
    fn a_database_file_is_opened_once_for_syncing() {
        let dir = std::env::temp_dir().join(format!(
            "coffer-sync-{}-{}",
            std::process::id(),
            std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.db");
        std::fs::write(&path, b"").unwrap();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let first = sqlite_file_path(&url).and_then(database_file_for_sync).expect("a handle");
        let second = sqlite_file_path(&url).and_then(database_file_for_sync).expect("a handle");
        assert!(Arc::ptr_eq(&first, &second), "one handle per path");
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
        assert_eq!(sqlite_file_path("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file_path(&url), Some(path.to_str().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `PRAGMA synchronous` as a direct unit of `durability` sees it: the
    /// level its batch commits at.
    async fn level_of_a(db: &Db, durability: Durability) -> i64 {
        db.write_direct_with(durability, |conn| {
            conn.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0)).map_err(from_sqlite)
        })
        .await
        .unwrap()
    }

    /// A write that may wait for the next commit is committed without an
    /// fsync of its own; a write that must be durable at once never
    /// commits at that level, alone, after such a write or batched with one.
    #[tokio::test]
    async fn a_write_durable_at_commit_is_never_committed_lazily() {
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        let database = TestDatabase::new(TestBackend::Sqlite).await;
        let db = Db::open(&database.url, &DbOptions::default()).await.unwrap();
        assert_eq!(level_of_a(&db, Durability::WithTheNext).await, NORMAL);
        assert_eq!(level_of_a(&db, Durability::AtCommit).await, FULL, "right after a lazy batch");
        assert_eq!(level_of_a(&db, Durability::WithTheNext).await, NORMAL);
        // Queued together, they share one commit, which must be durable.
        let hold = db.hold_writes().await;
        let (lazy, durable) = (db.clone(), db.clone());
        let lazy = tokio::spawn(async move { level_of_a(&lazy, Durability::WithTheNext).await });
        let durable = tokio::spawn(async move { level_of_a(&durable, Durability::AtCommit).await });
        // The writer holds the first, waiting for the hold; the second waits in the queue.
        while db.queued_writes() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(hold);
        assert_eq!((lazy.await.unwrap(), durable.await.unwrap()), (FULL, FULL));
    }
}
