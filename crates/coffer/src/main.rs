//! The `coffer` binary: the command line around the services. `serve` runs
//! the HTTP server; `migrate` and `seed` prepare a database. Configuration
//! comes from defaults, `coffer.toml`, `COFFER_*` variables and flags, in that
//! order of precedence (see `config.rs`). Errors go to stderr with a
//! non-zero exit code.

mod commands;
mod config;
mod tls;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coffer_app::{App, Config, LogFormat, Surroundings};
use coffer_store::Db;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "coffer", version, about = "Coffer: a privacy-first commerce platform for selling software")]
struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first).
    Serve(ServeArgs),
    /// Create or upgrade the database schema.
    Migrate,
    /// Insert demo data.
    Seed(SeedArgs),
    /// Master key versions: status, add, activate, retire, rotate.
    #[command(subcommand)]
    Keys(commands::KeysCommand),
    /// Erase a customer (crypto-shredding), as account deletion does.
    Erase(commands::EmailArgs),
    /// Write everything held about one customer to stdout (audited).
    Export(commands::ExportArgs),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(commands::AuditCommand),
    /// Consistent backup and restore of the data side (never keys).
    #[command(subcommand)]
    Backup(commands::BackupCommand),
    /// The erasure ledger.
    #[command(subcommand)]
    Erasure(commands::ErasureCommand),
    /// Operator staff accounts.
    #[command(subcommand)]
    Staff(commands::StaffCommand),
    /// Vendors: onboarding, the list, suspension.
    #[command(subcommand)]
    Vendors(commands::VendorsCommand),
    /// Delete what has passed its retention period.
    #[command(subcommand)]
    Retention(commands::RetentionCommand),
    /// The background job queue (email, money back through the gateway).
    #[command(subcommand)]
    Jobs(commands::JobsCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Seed demo data on first start and write DATA_DIR/demo-credentials.json.
    #[arg(long)]
    demo: bool,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve HTTPS only with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct SeedArgs {
    /// Insert the demo vendors and products (the only seed there is).
    #[arg(long, required = true)]
    demo: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let serve_flags = match &cli.command {
        Command::Serve(args) => {
            config::ServeFlags { listen: args.listen, tls_cert: args.tls_cert.clone(), tls_key: args.tls_key.clone() }
        }
        _ => config::ServeFlags::default(),
    };
    let config = match config::load(&cli.global, &serve_flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coffer: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let mut filter: tracing_subscriber::filter::Targets = config
        .log_level
        .parse()
        .unwrap_or_else(|_| tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO));
    // PostgreSQL's notices ("relation _sqlx_migrations already exists,
    // skipping" on every migrate) are not news to an operator, unless the
    // log level names sqlx itself.
    if !config.log_level.contains("sqlx") {
        filter = filter.with_target("sqlx::postgres::notice", tracing::Level::WARN);
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry.with(lines.json()).try_init(),
        LogFormat::Text => registry.with(lines).try_init(),
    };
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(config, args.demo).await,
        Command::Migrate => {
            let db = open_db(&config).await?;
            db.migrate().await.context("migrating the database")?;
            println!("The {} schema is up to date.", db.backend().name());
            Ok(())
        }
        Command::Seed(_) => {
            let db = open_db(&config).await?;
            db.migrate().await.context("migrating the database")?;
            let privacy = commands::open(&config, db.clone()).await?;
            let customer = coffer_app::demo::seed_customer(&privacy.customers).await.context("seeding demo data")?;
            coffer_app::demo::seed_customer_password(&privacy.customers, &privacy.accounts)
                .await
                .context("seeding demo data")?;
            coffer_app::demo::seed_staff(&privacy.staff).await.context("seeding demo data")?;
            privacy.audit.seal_and_sign().await?;
            if coffer_app::demo::seed(&db, privacy.clock.as_ref()).await.context("seeding demo data")? || customer {
                println!("Demo data inserted.");
            } else {
                println!("Demo data was already there; nothing inserted.");
            }
            Ok(())
        }
        Command::Keys(command) => commands::keys(&config, migrated_db(&config).await?, command).await,
        Command::Erase(args) => commands::erase(&config, migrated_db(&config).await?, args).await,
        Command::Export(args) => commands::export(&config, migrated_db(&config).await?, args).await,
        Command::Audit(commands::AuditCommand::Verify) => {
            commands::audit_verify(&config, migrated_db(&config).await?).await
        }
        Command::Backup(command) => commands::backup(&config, command).await,
        Command::Erasure(commands::ErasureCommand::Replay) => {
            commands::erasure_replay(&config, migrated_db(&config).await?).await
        }
        Command::Staff(command) => commands::staff(&config, migrated_db(&config).await?, command).await,
        Command::Vendors(command) => commands::vendors(&config, migrated_db(&config).await?, command).await,
        Command::Retention(commands::RetentionCommand::Run) => {
            commands::retention(&config, migrated_db(&config).await?).await
        }
        Command::Jobs(command) => commands::jobs(migrated_db(&config).await?, command).await,
    }
}

async fn migrated_db(config: &Config) -> anyhow::Result<Db> {
    let db = open_db(config).await?;
    db.migrate().await.context("migrating the database")?;
    Ok(db)
}

/// Opens the data database (see [`App::open_database`]).
pub(crate) async fn open_db(config: &Config) -> anyhow::Result<Db> {
    App::open_database(config).await.context("opening the database")
}

/// Takes the data directory's lock file: `serve` holds it while running, so
/// `backup restore` can refuse to swap the database under a live server.
pub(crate) fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    coffer_app::create_private_dir(&config.data_dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.data_dir.join("serve.lock"))
        .context("opening the data directory's lock file")?;
    file.try_lock().map_err(|_| anyhow::anyhow!("the data directory is in use by a running server"))?;
    Ok(file)
}

async fn serve(mut config: Config, demo: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    // A demo shows a demo bank account unless one is configured.
    if demo && config.operator.bank.is_none() {
        config.operator.bank = Some(coffer_app::config::BankAccountConfig::demo());
    }
    if demo && config.operator.vat_number.is_none() {
        config.operator.vat_number = Some("DE000000000".into());
    }
    let db = open_db(&config).await?;
    // Only one server per data directory; the lock also keeps `backup restore` away.
    let _lock = if config.uses_embedded_sqlite() { Some(lock_data_dir(&config)?) } else { None };
    db.migrate().await.context("migrating the database")?;
    let (listener, address) = bind(&config).await?;
    // What it listens on (printed, and the demo credentials' base_url);
    // links in mail use `public_url` when set.
    let base_url = format!("{}://{address}", if config.tls.enabled() { "https" } else { "http" });
    // The privacy policy of this operator, published once per version:
    // orders record the version consented to.
    let policy = coffer_web::privacy_policy(&config.operator);
    let around = Surroundings {
        base_url: config.base_url(Some(address)),
        policy_version: policy.version.clone(),
        actor: commands::cli_actor(),
    };
    let app = App::build(&config, db.clone(), around).await?;
    let replayed = app.customers.replay_erasures(&commands::cli_actor()).await?;
    if replayed != coffer_app::privacy::ReplayReport::default() {
        tracing::info!(data_side = replayed.data_side, key_side = replayed.key_side, "erasure ledger replayed");
    }
    let published = app.publish_policy(&policy.version, &policy.html).await.context("publishing the privacy policy")?;
    let policy = policy.published_on(published);
    if demo {
        seed_demo(&app).await.context("seeding demo data")?;
    }
    let mut supervisor = coffer_app::supervisor::Supervisor::new();
    app.supervise(&config, &mut supervisor);
    // Over TLS (built in or at a trusted proxy): `__Host-` cookies and HSTS.
    let cookie_rule = coffer_web::CookieRule { secure_transport: config.secure_transport() };
    let services = coffer_web::Services {
        catalog: app.catalog.clone(),
        accounts: app.accounts.clone(),
        staff: app.staff.clone(),
        checkout: app.checkout.clone(),
        vendors: app.vendors.clone(),
    };
    let state = coffer_web::AppState::new(services, app.health(), policy, cookie_rule, &config.http);
    let router = coffer_web::router(state, &config.http);

    println!("Coffer is listening on {base_url}");
    if demo {
        let path = config.data_dir.join("demo-credentials.json");
        let credentials = coffer_app::demo::credentials(&db, &app.staff, &app.checkout, &app.vendors, &base_url)
            .await
            .context("reading demo data")?;
        let json = serde_json::to_vec_pretty(&credentials).context("writing demo credentials")?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("Demo data is loaded; what exists is listed in {}", path.display());
    }
    std::io::stdout().flush().ok();
    tracing::info!(
        backend = db.backend().name(),
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "ready"
    );
    serve_then_stop(listener, router, supervisor, &app).await
}

/// Binds the configured address; with a certificate the port speaks HTTPS
/// only, and a bad pair stops here.
async fn bind(config: &Config) -> anyhow::Result<(Listening, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr().context("reading the listening address")?;
    let listener = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Listening::Tls(tls::TlsListener::new(listener, cert.clone(), key.clone())?),
        _ => Listening::Plain(listener),
    };
    Ok((listener, address))
}

/// The demo vendors, products and files, the demo customer and staff.
async fn seed_demo(app: &App) -> Result<(), coffer_app::AppError> {
    coffer_app::demo::seed(&app.db, app.clock.as_ref()).await?;
    coffer_app::demo::seed_customer(&app.customers).await?;
    coffer_app::demo::seed_customer_password(&app.customers, &app.accounts).await?;
    coffer_app::demo::seed_staff(&app.staff).await?;
    coffer_app::demo::seed_files(&app.db, &app.checkout).await
}

/// Serves until SIGINT or SIGTERM, then stops within [`SHUTDOWN_WITHIN`]
/// of the signal: at the signal the listener closes and the background
/// loops start no new unit; requests in flight get [`HTTP_GRACE`] while the
/// loops' units under way finish; the audit log is sealed last, and the
/// databases closed, within what is left.
async fn serve_then_stop(
    listener: Listening,
    router: axum::Router,
    supervisor: coffer_app::supervisor::Supervisor,
    app: &App,
) -> anyhow::Result<()> {
    let signalled = Arc::new(tokio::sync::Notify::new());
    let signal_at = Arc::new(std::sync::OnceLock::new());
    let serving = serve_until_signal(listener, router, supervisor.stop_token(), signalled.clone(), signal_at.clone());
    let stopping = async {
        signalled.notified().await;
        tokio::time::sleep(HTTP_GRACE).await;
    };
    tokio::select! {
        served = serving => served?,
        () = stopping => {
            tracing::warn!("requests were still in flight when the grace ran out; they are cut off");
        }
    }
    let deadline = signal_at.get().copied().unwrap_or_else(Instant::now) + SHUTDOWN_WITHIN;
    let left = || deadline.saturating_duration_since(Instant::now());
    // The last second is kept for the audit seal and the close.
    let late = supervisor.shutdown(left().saturating_sub(FINAL_STEPS)).await;
    if !late.is_empty() {
        tracing::warn!(
            jobs = ?late,
            "background work was cut off at shutdown; claimed jobs run again when their lease ends, other work at \
             the next start"
        );
    }
    // What was audited while serving is sealed before the process ends.
    match tokio::time::timeout(left(), app.audit.seal_and_sign()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "sealing the audit log at shutdown failed"),
        Err(_) => tracing::warn!("sealing the audit log at shutdown took too long; the next start seals it"),
    }
    // How many units of work shared each commit (SQLite's group commit).
    let stats = app.db.writer_stats();
    tracing::info!(units = stats.units, commits = stats.commits, "write path");
    if tokio::time::timeout(left().max(Duration::from_millis(200)), app.db.close()).await.is_err() {
        tracing::warn!("closing the database took too long");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long requests in flight may take after SIGTERM.
const HTTP_GRACE: Duration = Duration::from_secs(6);
/// Everything is finished (requests, background units, the audit seal) within this.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(9);
/// What the audit seal and the close are left at least, of [`SHUTDOWN_WITHIN`].
const FINAL_STEPS: Duration = Duration::from_secs(1);

/// Serves until SIGINT or SIGTERM, then until the requests in flight are
/// answered; at the signal `background` is cancelled, `signalled` told,
/// and `signal_at` set.
async fn serve_until_signal(
    listener: Listening,
    app: axum::Router,
    background: coffer_app::supervisor::CancellationToken,
    signalled: Arc<tokio::sync::Notify>,
    signal_at: Arc<std::sync::OnceLock<Instant>>,
) -> anyhow::Result<()> {
    let signal = async move {
        shutdown_signal().await;
        let _ = signal_at.set(Instant::now());
        // Background loops finish their units while requests drain.
        background.cancel();
        signalled.notify_one();
    };
    match listener {
        Listening::Tls(tls) => {
            use axum::serve::ListenerExt;
            // `tap_io` lets the handlers see the client's address as with TCP.
            axum::serve(tls.tap_io(|_| {}), app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(signal)
                .await
                .context("serving HTTPS")
        }
        Listening::Plain(tcp) => axum::serve(tcp, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(signal)
            .await
            .context("serving HTTP"),
    }
}

/// The port: plain HTTP, or HTTPS only.
enum Listening {
    Plain(tokio::net::TcpListener),
    Tls(tls::TlsListener),
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
