use crate::database::{TestBackend, TestDatabase};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real `coffer` binary serving on 127.0.0.1 with a random port, with
/// demo data, on a database of its own. Killed when dropped.
pub struct TestServer {
    pub base_url: String,
    pub data_dir: PathBuf,
    pub database: TestDatabase,
    log_file: PathBuf,
    child: Child,
    bin: String,
    env: Vec<(String, String)>,
}

/// Spawns `coffer serve --demo` and waits for the address it prints.
fn spawn(
    bin: &str,
    database: &TestDatabase,
    data_dir: &std::path::Path,
    log_file: &std::path::Path,
    env: &[(String, String)],
) -> (Child, String) {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_file).expect("opening the server log");
    let mut command = Command::new(bin);
    command
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if database.backend == TestBackend::Postgres {
        command.args(["--database-url", &database.url]);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("COFFER_") {
            command.env_remove(name);
        }
    }
    command.env("COFFER_LOG_FORMAT", "json");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("starting the coffer binary");
    let stdout = child.stdout.take().expect("server stdout");
    let (found, lines) = std::sync::mpsc::channel();
    let log_copy = log_file.with_extension("stdout");
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("Coffer is listening on ") {
                let _ = found.send(url.to_owned());
            }
            printed.push_str(&line);
            printed.push('\n');
            let _ = std::fs::write(&log_copy, &printed);
        }
    });
    match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => (child, url),
        Err(_) => {
            let _ = child.kill();
            panic!("the server did not start; its log:\n{}", std::fs::read_to_string(log_file).unwrap_or_default());
        }
    }
}

impl TestServer {
    /// Starts `coffer serve --demo`; `bin` is `env!("CARGO_BIN_EXE_coffer")`.
    pub async fn start(bin: &str, backend: TestBackend) -> TestServer {
        Self::start_with(bin, backend, &[]).await
    }

    /// As [`TestServer::start`], with extra environment variables.
    pub async fn start_with(bin: &str, backend: TestBackend, env: &[(&str, &str)]) -> TestServer {
        let database = TestDatabase::new(backend).await;
        let data_dir = database.dir.path().join("data");
        let log_file = database.dir.path().join("server.log");
        let env: Vec<(String, String)> = env.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let (child, base_url) = spawn(bin, &database, &data_dir, &log_file, &env);
        let server = TestServer { base_url, data_dir, database, log_file, child, bin: bin.to_owned(), env };
        server.wait_until_healthy().await;
        server
    }

    /// Starts the server again on the same data, keys and settings (after
    /// it exited); it may listen on another port. Its log goes on in the
    /// same file.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base_url) = spawn(&self.bin, &self.database, &self.data_dir, &self.log_file, &self.env);
        self.child = child;
        self.base_url = base_url;
        self.wait_until_healthy().await;
    }

    async fn wait_until_healthy(&self) {
        let client = crate::http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never became healthy; its log:\n{}", self.logs());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.base_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the base URL")
    }

    /// The database URL the server uses (SQLite file or PostgreSQL).
    pub fn database_url(&self) -> String {
        match self.database.backend {
            TestBackend::Sqlite => format!("sqlite://{}?mode=rwc", self.data_dir.join("coffer.db").display()),
            TestBackend::Postgres => self.database.url.clone(),
        }
    }

    /// The key directory the server uses (the default, beside the data directory).
    pub fn key_dir(&self) -> PathBuf {
        self.data_dir.with_file_name("data.keys")
    }

    /// The key store URL the server uses (the default SQLite file).
    pub fn key_store_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.key_dir().join("keystore.db").display())
    }

    /// The directory holding the server's files, logs and databases.
    pub fn root(&self) -> &std::path::Path {
        self.database.dir.path()
    }

    /// Runs a `coffer` command on the same data and keys as the server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(&self.bin);
        command.args(args).arg("--data-dir").arg(&self.data_dir);
        if self.database.backend == TestBackend::Postgres {
            command.args(["--database-url", &self.database.url]);
        }
        for (name, _) in std::env::vars() {
            if name.starts_with("COFFER_") {
                command.env_remove(name);
            }
        }
        command.env("COFFER_LOG_FORMAT", "json").output().expect("running the coffer binary")
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn demo_credentials(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.data_dir.join("demo-credentials.json")).expect("demo-credentials.json");
        serde_json::from_str(&text).expect("demo-credentials.json is JSON")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager would.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("running kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL, as a power cut would look to the databases: nothing
    /// of the server runs after it, no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the killed server");
    }

    /// Waits for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
