//! Loading [`Config`]: defaults, then `coffer.toml` (or `--config FILE`),
//! then `COFFER_*` variables (nested settings with `__`, e.g.
//! `COFFER_HTTP__BODY_LIMIT_BYTES`), then flags.

use clap::Args;
use coffer_app::Config;
use coffer_app::config::SETTINGS;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags every command takes.
#[derive(Args, Debug, Default)]
pub struct GlobalArgs {
    /// Configuration file [default: ./coffer.toml when present]
    #[arg(long, global = true, value_name = "FILE", env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: SQLite file, mail and file folders [default: ./coffer-data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key directory, beside and never inside the data directory [default: DATA_DIR.keys]
    #[arg(long, global = true, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// postgres://… to keep data in PostgreSQL [default: SQLite in DATA_DIR]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// postgres://… for a key store shared by several servers
    #[arg(long, global = true, value_name = "URL")]
    pub key_store_url: Option<String>,
}

/// The flags that override settings; unset flags leave them alone.
#[derive(Serialize)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_store_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error(transparent)]
    Rule(#[from] coffer_app::ConfigError),
}

pub fn load(args: &GlobalArgs, listen: Option<SocketAddr>) -> Result<Config, LoadError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match &args.config {
        Some(file) if !file.exists() => return Err(LoadError::MissingFile(file.clone())),
        Some(file) => figment = figment.merge(Toml::file_exact(file)),
        None if std::path::Path::new("coffer.toml").exists() => {
            figment = figment.merge(Toml::file_exact("coffer.toml"))
        }
        None => {}
    }
    let env = Env::prefixed("COFFER_")
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            SETTINGS.iter().any(|s| key == *s || key.starts_with(&format!("{s}__")))
        })
        .split("__");
    figment = figment.merge(env).merge(Serialized::defaults(FlagOverrides {
        data_dir: args.data_dir.clone(),
        key_dir: args.key_dir.clone(),
        database_url: args.database_url.clone(),
        key_store_url: args.key_store_url.clone(),
        listen,
    }));
    let config: Config = figment.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}
