//! The command line as a new user meets it.

use crate::BIN;
use std::process::{Command, Output};

fn coffer(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("COFFER_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn migrate_and_seed_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = coffer(dir.path(), &["migrate"], &[]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(stdout(&migrate).contains("sqlite schema is up to date"));
    assert!(dir.path().join("coffer-data/coffer.db").exists(), "the default data directory is ./coffer-data");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("coffer-data")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the data directory is private to its owner");
    assert!(coffer(dir.path(), &["migrate"], &[]).status.success());

    let first = coffer(dir.path(), &["seed", "--demo"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("Demo data inserted."));
    let second = coffer(dir.path(), &["seed", "--demo"], &[]);
    assert!(second.status.success());
    assert!(stdout(&second).contains("already there"), "{}", stdout(&second));
}

#[test]
fn seed_without_demo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = coffer(dir.path(), &["seed"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--demo"));
}

#[test]
fn invalid_environment_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = coffer(dir.path(), &["migrate"], &[("COFFER_LISTEN", "not-an-address")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("listen") && err.contains("COFFER_LISTEN"), "{err}");
    let out = coffer(dir.path(), &["migrate"], &[("COFFER_HTTP__CONCURRENCY_LIMIT", "0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("http.concurrency_limit"), "{}", stderr(&out));
}

#[test]
fn invalid_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("coffer.toml"), "[http]\nrequest_timeout_ms = \"soon\"\n").unwrap();
    let out = coffer(dir.path(), &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("request_timeout_ms") && err.contains("coffer.toml"), "{err}");

    std::fs::write(dir.path().join("coffer.toml"), "colour = \"blue\"\n").unwrap();
    let out = coffer(dir.path(), &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("colour"), "unknown settings are typos: {}", stderr(&out));

    let out = coffer(dir.path(), &["migrate", "--config", "missing.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"));
}

#[test]
fn settings_come_from_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("coffer.toml"), "data_dir = \"from-file\"\n").unwrap();
    assert!(coffer(dir.path(), &["migrate"], &[]).status.success());
    assert!(dir.path().join("from-file/coffer.db").exists());
    assert!(coffer(dir.path(), &["migrate"], &[("COFFER_DATA_DIR", "from-env")]).status.success());
    assert!(dir.path().join("from-env/coffer.db").exists());
    let flags = coffer(dir.path(), &["migrate", "--data-dir", "from-flag"], &[("COFFER_DATA_DIR", "from-env")]);
    assert!(flags.status.success());
    assert!(dir.path().join("from-flag/coffer.db").exists());
}

#[test]
fn key_dir_inside_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = coffer(dir.path(), &["migrate", "--data-dir", "d", "--key-dir", "d/keys"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("key_dir"), "{}", stderr(&out));
    let out = coffer(dir.path(), &["migrate", "--database-url", "mysql://localhost/x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("database_url"));
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = coffer(dir.path(), &["migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("opening the database"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
