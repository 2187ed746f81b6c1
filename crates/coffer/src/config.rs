//! Loading [`Config`]: defaults, then `coffer.toml` (or `--config FILE`),
//! then `COFFER_*` variables (nested settings with `__`, e.g.
//! `COFFER_HTTP__BODY_LIMIT_BYTES`), then flags.
//!
//! The layers are merged as TOML tables and read into [`Config`] once, so
//! serde's defaults and `deny_unknown_fields` apply to the result; every key
//! remembers where it came from, so an error names the file, variable or
//! flag to fix.

use clap::Args;
use coffer_app::Config;
use coffer_app::config::SETTINGS;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

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

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration file {file} could not be read: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("invalid setting `{setting}` (from {origin}): {reason}")]
    Invalid { setting: String, origin: String, reason: String },
    #[error(transparent)]
    Rule(#[from] coffer_app::ConfigError),
}

/// The merged settings and, per dotted key, the source that set it.
#[derive(Default)]
struct Layers {
    table: Table,
    origins: BTreeMap<String, String>,
}

impl Layers {
    fn set(&mut self, path: &[String], value: Value, origin: &str) {
        let Some((last, parents)) = path.split_last() else { return };
        let mut table = &mut self.table;
        for key in parents {
            let entry = table.entry(key.clone()).or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(inner) = entry else { return };
            table = inner;
        }
        table.insert(last.clone(), value);
        self.origins.insert(path.join("."), origin.to_owned());
    }

    /// Merges a parsed file key by key, so a later layer overrides single
    /// nested settings rather than whole sections.
    fn merge(&mut self, prefix: &mut Vec<String>, table: Table, origin: &str) {
        for (key, value) in table {
            prefix.push(key);
            match value {
                Value::Table(inner) => self.merge(prefix, inner, origin),
                value => self.set(prefix, value, origin),
            }
            prefix.pop();
        }
    }

    /// The source of `setting`, or of the nearest section that holds it.
    fn origin_of(&self, setting: &str) -> String {
        let mut key = setting;
        loop {
            if let Some(origin) = self.origins.get(key) {
                return origin.clone();
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => {
                    return self
                        .origins
                        .iter()
                        .find(|(k, _)| k.starts_with(&format!("{setting}.")))
                        .map(|(_, origin)| origin.clone())
                        .unwrap_or_else(|| "the defaults".to_owned());
                }
            }
        }
    }
}

/// An environment value as TOML when it reads as a number or boolean,
/// otherwise as the plain string it is.
fn env_value(raw: &str) -> Value {
    if let Ok(n) = raw.parse::<i64>() {
        return Value::Integer(n);
    }
    if let Ok(x) = raw.parse::<f64>()
        && x.is_finite()
    {
        return Value::Float(x);
    }
    match raw {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => Value::String(raw.to_owned()),
    }
}

fn read_file(layers: &mut Layers, file: &Path) -> Result<(), LoadError> {
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| LoadError::Unreadable { file: file.to_owned(), reason: e.kind().to_string() })?;
    let table: Table = toml::from_str(&text)
        .map_err(|e| LoadError::Unreadable { file: file.to_owned(), reason: e.message().to_owned() })?;
    layers.merge(&mut Vec::new(), table, &origin);
    Ok(())
}

/// The flags only `serve` takes that are settings too.
#[derive(Default)]
pub struct ServeFlags {
    pub listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

pub fn load(args: &GlobalArgs, serve: &ServeFlags) -> Result<Config, LoadError> {
    let mut layers = Layers::default();
    match &args.config {
        Some(file) if !file.exists() => return Err(LoadError::MissingFile(file.clone())),
        Some(file) => read_file(&mut layers, file)?,
        None if Path::new("coffer.toml").exists() => read_file(&mut layers, Path::new("coffer.toml"))?,
        None => {}
    }
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, _)| key.starts_with("COFFER_"))
        .collect();
    env.sort();
    for (key, value) in env {
        let path: Vec<String> = key["COFFER_".len()..].to_ascii_lowercase().split("__").map(str::to_owned).collect();
        // COFFER_CONFIG and variables of other tools are not settings.
        if path.first().is_some_and(|top| SETTINGS.contains(&top.as_str())) {
            layers.set(&path, env_value(&value), &format!("environment variable {key}"));
        }
    }
    let path_flag =
        |name: &str, value: &Option<PathBuf>| value.as_ref().map(|v| (name.to_owned(), v.display().to_string()));
    let flags = [
        path_flag("data_dir", &args.data_dir),
        path_flag("key_dir", &args.key_dir),
        args.database_url.clone().map(|v| ("database_url".to_owned(), v)),
        args.key_store_url.clone().map(|v| ("key_store_url".to_owned(), v)),
        serve.listen.map(|v| ("listen".to_owned(), v.to_string())),
    ];
    for (setting, value) in flags.into_iter().flatten() {
        let origin = format!("flag --{}", setting.replace('_', "-"));
        layers.set(&[setting], Value::String(value), &origin);
    }
    for (setting, flag, value) in
        [("cert_file", "--tls-cert", &serve.tls_cert), ("key_file", "--tls-key", &serve.tls_key)]
    {
        if let Some(path) = value {
            let path_setting = ["tls".to_owned(), setting.to_owned()];
            layers.set(&path_setting, Value::String(path.display().to_string()), &format!("flag {flag}"));
        }
    }

    let config: Config = serde_path_to_error::deserialize(Value::Table(layers.table.clone())).map_err(|e| {
        let setting = e.path().to_string();
        let reason = e.inner().message().to_owned();
        // An unknown key is reported at its parent; name it from the message.
        let setting = match (setting.as_str(), reason.strip_prefix("unknown field `")) {
            (".", Some(rest)) => rest.split('`').next().unwrap_or_default().to_owned(),
            (parent, Some(rest)) => format!("{parent}.{}", rest.split('`').next().unwrap_or_default()),
            _ => setting,
        };
        LoadError::Invalid { origin: layers.origin_of(&setting), setting, reason }
    })?;
    config.validate()?;
    Ok(config)
}
