use sqlx::Connection;

/// The database engines tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("COFFER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    pub backend: TestBackend,
    /// Holds the SQLite file (and any other test files) until drop.
    pub dir: tempfile::TempDir,
    postgres_name: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: TestBackend) -> TestDatabase {
        let dir = tempfile::Builder::new().prefix("coffer-test-").tempdir().expect("creating a temporary directory");
        match backend {
            TestBackend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("coffer.db").display());
                TestDatabase { url, backend, dir, postgres_name: None }
            }
            TestBackend::Postgres => {
                let name = format!("coffer_t_{}", uuid::Uuid::now_v7().simple());
                let admin = postgres_admin_url();
                let mut conn = connect_admin(&admin).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a test database");
                conn.close().await.ok();
                let url = replace_database(&admin, &name);
                TestDatabase { url, backend, dir, postgres_name: Some(name) }
            }
        }
    }
}

impl TestDatabase {
    /// This database as a key store's URL: a `keystore.db` file of its own
    /// on SQLite (the key store is never the data file), itself on PostgreSQL.
    pub fn key_store_url(&self) -> String {
        match self.backend {
            TestBackend::Sqlite => format!("sqlite://{}?mode=rwc", self.dir.path().join("keystore.db").display()),
            TestBackend::Postgres => self.url.clone(),
        }
    }
}

async fn connect_admin(admin: &str) -> sqlx::PgConnection {
    match sqlx::PgConnection::connect(admin).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {admin} ({e}). PostgreSQL tests never skip: run `scripts/test`, \
             which starts it, or set COFFER_TEST_POSTGRES_URL."
        ),
    }
}

/// The admin URL with its database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else { return };
        // Drop runs inside the test's runtime; use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.ok()?;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await.ok()
            })
        });
        let _ = dropped.join();
    }
}
