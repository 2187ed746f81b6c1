//! The commands besides `serve`: keys, erase, export, audit verify,
//! backup, erasure replay, staff and retention. Each builds the services
//! with [`coffer_app::App::build`], as the server does.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use coffer_app::{App, AppError, Config, Surroundings};
use coffer_domain::{Actor, AuditAction, AuditEntry};
use coffer_store::prelude::*;
use coffer_store::{Db, MasterKeyState};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Show master key versions and how many wraps each holds.
    Status,
    /// Create a new master key version (standby: it unwraps but does not wrap yet).
    Add,
    /// Make the newest standby version (or VERSION) the one new wraps use.
    Activate { version: Option<u32> },
    /// Retire standby versions no wrap uses any more (or only VERSION).
    Retire { version: Option<u32> },
    /// One server: add, activate, re-wrap everything, retire the old version.
    Rotate,
}

#[derive(Args)]
pub struct EmailArgs {
    /// The customer's email address.
    #[arg(long)]
    pub email: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Html,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub email: String,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ExportFormat,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit hash chain against its latest signed head.
    Verify,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Write a consistent copy of the data database (never keys) to FILE.
    Create { file: PathBuf },
    /// Replace the data database with FILE, then replay the erasure ledger.
    /// Stop the server first.
    Restore { file: PathBuf },
}

#[derive(Subcommand)]
pub enum StaffCommand {
    /// Create a staff account and print its one-time enrolment link (valid
    /// 3 days). Enrolment sets the password and the mandatory TOTP factor.
    /// For an address not yet enrolled, prints a new link.
    Add {
        #[arg(long)]
        email: String,
        /// support, reviewer, dpo or admin.
        #[arg(long, value_parser = ["support", "reviewer", "dpo", "admin"])]
        role: String,
    },
    /// List staff accounts (id, role, address, enrolled or not).
    List,
}

#[derive(Subcommand)]
pub enum VendorsCommand {
    /// Create a vendor and print its owner's one-time enrolment link (valid
    /// 3 days). Enrolment sets the password and the mandatory TOTP factor;
    /// the owner accepts the data-processing terms in the portal.
    Add {
        /// The vendor's handle: 2 to 40 of a-z, 0-9 and '-', starting with a letter.
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
    },
    /// List vendors (slug, name, status, terms, users, products).
    List,
    /// Suspend a vendor: its API keys answer 401 at once, its portal
    /// sessions end, its webhooks stop and its products leave the storefront.
    Suspend {
        slug: String,
        /// Said to the vendor in its portal.
        #[arg(long)]
        reason: String,
    },
    /// Lift a vendor's suspension.
    Reinstate { slug: String },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Delete what has passed its retention period and print counts per category.
    Run,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List background jobs given up after their attempts (newest first):
    /// id, kind, attempts, the last error (a code, nobody's data), when.
    Failed,
}

#[derive(Subcommand)]
pub enum ErasureCommand {
    /// Re-apply the erasure ledger after a restore done with other tools.
    Replay,
}

/// The operator running a command, as the audit log names them.
pub fn cli_actor() -> Actor {
    cli_context().actor()
}

/// The operator running a command, as services check and audit them:
/// whoever may run the binary on the server may do what an admin may.
pub fn cli_context() -> coffer_app::request::RequestContext {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    coffer_app::request::RequestContext::cli(user)
}

/// Every service, for a command run by the operator on `db` (migrated).
pub async fn open(config: &Config, db: Db) -> anyhow::Result<App> {
    let around = Surroundings {
        base_url: config.base_url(None),
        policy_version: coffer_web::privacy_policy(&config.operator).version,
        actor: cli_actor(),
    };
    Ok(App::build(config, db, around).await?)
}

async fn audit_action(privacy: &App, action: AuditAction, subject: Option<String>) -> anyhow::Result<()> {
    let entry = AuditEntry::new(privacy.clock.now(), &cli_actor(), action, subject);
    privacy.db.write(move |tx| Box::pin(async move { tx.append_audit(&entry).await.map_err(AppError::from) })).await?;
    Ok(())
}

pub async fn keys(config: &Config, db: Db, command: KeysCommand) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    let vault = &privacy.vault;
    let store = vault.key_store();
    let now = privacy.clock.now();
    let newest = |records: &[coffer_store::MasterKeyRecord]| records.iter().map(|r| r.version).max().unwrap_or(0);
    match command {
        KeysCommand::Status => {
            for record in store.master_keys().await? {
                let wraps = store.wraps_under(record.version).await?;
                println!("version {}: {:?}, {} wraps", record.version, record.state, wraps);
            }
        }
        KeysCommand::Add => {
            let version = newest(&store.master_keys().await?) + 1;
            vault.provider().create(version)?;
            store.add_master_key(version, now).await?;
            audit_action(&privacy, AuditAction::MasterKeyAdded, Some(format!("v{version}"))).await?;
            println!(
                "Master key version {version} added (standby). Let every server load it, then run `coffer keys activate`."
            );
        }
        KeysCommand::Activate { version } => {
            let records = store.master_keys().await?;
            let version = match version {
                Some(v) => v,
                None => records
                    .iter()
                    .filter(|r| r.state == MasterKeyState::Standby)
                    .map(|r| r.version)
                    .max()
                    .context("there is no standby master key version; run `coffer keys add` first")?,
            };
            if !store.activate_master_key(version, now).await? {
                bail!("master key version {version} cannot be activated (unknown, retired or destroyed)");
            }
            audit_action(&privacy, AuditAction::MasterKeyActivated, Some(format!("v{version}"))).await?;
            println!("Master key version {version} is active; running servers re-wrap older wraps in the background.");
        }
        KeysCommand::Retire { version } => keys_retire(config, &privacy, version).await?,
        KeysCommand::Rotate => keys_rotate(config, &privacy).await?,
    }
    privacy.audit.seal_and_sign().await?;
    Ok(())
}

/// The retention window of a retired master key version, in ms.
fn retired_window_ms(config: &Config) -> i64 {
    i64::from(config.keys.retired_key_retention_days).saturating_mul(86_400_000)
}

/// `keys retire`: standby versions no wrap uses any more (or only VERSION).
async fn keys_retire(config: &Config, privacy: &App, version: Option<u32>) -> anyhow::Result<()> {
    let store = privacy.vault.key_store();
    let now = privacy.clock.now();
    let window_ms = retired_window_ms(config);
    let records = store.master_keys().await?;
    let candidates: Vec<u32> = records
        .iter()
        .filter(|r| r.state == MasterKeyState::Standby && version.is_none_or(|v| v == r.version))
        .map(|r| r.version)
        .collect();
    if candidates.is_empty() {
        bail!("no standby master key version to retire");
    }
    for v in candidates {
        let wraps = store.wraps_under(v).await?;
        if wraps > 0 {
            bail!(
                "master key version {v} still wraps {wraps} keys; wait for the re-wrap (or run `coffer keys rotate`)"
            );
        }
        if store.retire_master_key(v, now, now.plus_ms(window_ms)).await? {
            audit_action(privacy, AuditAction::MasterKeyRetired, Some(format!("v{v}"))).await?;
            println!(
                "Master key version {v} retired; its file is destroyed after {} days (the backup-retention window).",
                config.keys.retired_key_retention_days
            );
        }
    }
    Ok(())
}

/// `keys rotate`: add, activate, re-wrap everything, retire the old version.
async fn keys_rotate(config: &Config, privacy: &App) -> anyhow::Result<()> {
    let (vault, store) = (&privacy.vault, privacy.vault.key_store());
    let now = privacy.clock.now();
    let window_ms = retired_window_ms(config);
    let newest = |records: &[coffer_store::MasterKeyRecord]| records.iter().map(|r| r.version).max().unwrap_or(0);
    let old = vault.active_version()?;
    let version = newest(&store.master_keys().await?) + 1;
    vault.provider().create(version)?;
    store.add_master_key(version, now).await?;
    audit_action(privacy, AuditAction::MasterKeyAdded, Some(format!("v{version}"))).await?;
    store.activate_master_key(version, now).await?;
    audit_action(privacy, AuditAction::MasterKeyActivated, Some(format!("v{version}"))).await?;
    vault.reload().await?;
    let rewrapped = vault.rewrap_all(1_000, 0.0).await?;
    audit_action(privacy, AuditAction::KeysRewrapped, Some(format!("v{version}"))).await?;
    let retired = store.retire_master_key(old, now, now.plus_ms(window_ms)).await?;
    if retired {
        audit_action(privacy, AuditAction::MasterKeyRetired, Some(format!("v{old}"))).await?;
    }
    println!(
        "Rotated: version {version} is active, {rewrapped} wraps re-wrapped, version {old} {}.",
        if retired { "retired" } else { "left in standby (still in use)" }
    );
    Ok(())
}

pub async fn erase(config: &Config, db: Db, args: EmailArgs) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    let id = privacy.customers.find_by_email(&args.email).await?.context("no customer has this email address")?;
    privacy.customers.erase(&id, &cli_context()).await?;
    privacy.audit.seal_and_sign().await?;
    println!("Customer {id} erased: their data key is destroyed and their personal data can no longer be read.");
    Ok(())
}

pub async fn staff(config: &Config, db: Db, command: StaffCommand) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    let staff = &privacy.staff;
    match command {
        StaffCommand::Add { email, role } => {
            let role = coffer_domain::StaffRole::parse(&role).context("unknown role")?;
            let link = match staff.add(&email, role, &cli_context()).await {
                Err(AppError::Account(refused)) => bail!("{refused}"),
                Err(AppError::Customer(e)) => bail!("the email address {}", e.reason),
                other => other?,
            };
            privacy.audit.seal_and_sign().await?;
            println!(
                "Staff account added ({}). Send this one-time enrolment link to the new staff member;",
                role.label()
            );
            println!("it works once, within 3 days, and sets their password and second factor:");
            println!();
            println!("{}", secrecy::ExposeSecret::expose_secret(&link));
            if config.public_url.is_none() {
                println!();
                println!("(The link uses the listening address; set public_url to the address people open.)");
            }
        }
        StaffCommand::List => {
            for (id, role, email, enrolled) in staff.list().await? {
                let state = if enrolled { "enrolled" } else { "not enrolled yet" };
                println!("{id}\t{}\t{email}\t{state}", role.as_str());
            }
        }
    }
    Ok(())
}

pub async fn vendors(config: &Config, db: Db, command: VendorsCommand) -> anyhow::Result<()> {
    let app = open(config, db).await?;
    let vendors = &app.vendors;
    let ctx = cli_context();
    let refused = |e: AppError| -> anyhow::Error {
        match e {
            AppError::Vendor(refused) => anyhow::anyhow!("{refused}"),
            AppError::Catalog(e) => anyhow::anyhow!("{e}"),
            AppError::Customer(e) => anyhow::anyhow!("the {} {}", e.field.replace('_', " "), e.reason),
            other => other.into(),
        }
    };
    match command {
        VendorsCommand::Add { slug, name, owner_email } => {
            let added = vendors.add_vendor(&ctx, &slug, &name, &owner_email).await.map_err(refused)?;
            app.audit.seal_and_sign().await?;
            println!("Vendor {} added ({}).", added.vendor.slug, added.vendor.id);
            println!("Send this one-time enrolment link to its owner; it works once, within 3 days,");
            println!("and sets their password and second factor:");
            println!();
            println!("{}", secrecy::ExposeSecret::expose_secret(&added.enrolment_link));
            if config.public_url.is_none() {
                println!();
                println!("(The link uses the listening address; set public_url to the address people open.)");
            }
        }
        VendorsCommand::List => {
            println!("slug\tname\tstatus\tterms\tusers\tproducts");
            for listing in vendors.list_vendors(&ctx).await? {
                let v = &listing.vendor;
                let terms = if v.terms_accepted_at.is_some() { "accepted" } else { "not accepted" };
                println!(
                    "{}\t{}\t{}\t{terms}\t{}\t{}",
                    v.slug,
                    v.name,
                    v.status.as_str(),
                    listing.users,
                    listing.products
                );
            }
        }
        VendorsCommand::Suspend { slug, reason } => {
            let vendor = vendors.suspend(&ctx, &slug, &reason).await.map_err(refused)?;
            app.audit.seal_and_sign().await?;
            println!("Vendor {} suspended: its API keys, sessions, webhooks and listings have stopped.", vendor.slug);
        }
        VendorsCommand::Reinstate { slug } => {
            let vendor = vendors.reinstate(&ctx, &slug).await.map_err(refused)?;
            app.audit.seal_and_sign().await?;
            println!("Vendor {} reinstated.", vendor.slug);
        }
    }
    Ok(())
}

pub async fn retention(config: &Config, db: Db) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    // The same job the server runs: it voids expired holds through the gateway.
    let checkout = &privacy.checkout;
    let report = checkout.run_retention().await?;
    // The voids of the holds it cancelled, now rather than at the server's next turn.
    checkout.staff().run_give_backs(&coffer_app::supervisor::CancellationToken::new()).await?;
    for (category, count) in report.lines() {
        println!("{count}\t{category}");
    }
    Ok(())
}

pub async fn jobs(db: Db, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Failed => {
            let failed = db.failed_jobs(1000).await?;
            if failed.is_empty() {
                println!("No background job has failed.");
            }
            for job in failed {
                let at = job.finished_at.map(coffer_domain::order::rfc3339_utc).unwrap_or_default();
                println!(
                    "{}\t{}\t{} attempts\t{}\t{at}\t{}",
                    job.id,
                    job.kind,
                    job.attempts,
                    job.last_error.as_deref().unwrap_or("-"),
                    job.payload
                );
            }
        }
    }
    Ok(())
}

pub async fn export(config: &Config, db: Db, args: ExportArgs) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    let data = match privacy.customers.export(&args.email, &cli_context()).await {
        Err(AppError::NotFound) => bail!("no customer has this email address"),
        other => other?,
    };
    privacy.audit.seal_and_sign().await?;
    match args.format {
        ExportFormat::Json => println!("{}", serde_json::to_string_pretty(&data)?),
        ExportFormat::Html => print!("{}", coffer_app::privacy::export_html(&data)),
    }
    Ok(())
}

pub async fn audit_verify(config: &Config, db: Db) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    privacy.audit.seal_and_sign().await?;
    match privacy.audit.verify().await? {
        Ok(chain) => {
            match chain.signed_seq {
                Some(seq) => {
                    println!("The audit chain is intact: {} entries; signed head at entry {seq}.", chain.entries)
                }
                None => println!("The audit chain is intact: {} entries; no signed head yet.", chain.entries),
            }
            Ok(())
        }
        Err(broken) => bail!("the audit chain is broken: {broken}"),
    }
}

pub async fn backup(config: &Config, command: BackupCommand) -> anyhow::Result<()> {
    if !config.uses_embedded_sqlite() {
        bail!(
            "backup create/restore is for the embedded SQLite database; back up PostgreSQL with pg_dump and run `coffer erasure replay` after a restore"
        );
    }
    match command {
        BackupCommand::Create { file } => {
            if file.exists() {
                bail!("{} already exists; choose a new file", file.display());
            }
            let db = App::open_database(config).await?;
            db.migrate().await?;
            let privacy = open(config, db).await?;
            audit_action(&privacy, AuditAction::BackupCreated, None).await?;
            privacy.audit.seal_and_sign().await?;
            privacy.db.backup_to(&file).await.context("writing the backup")?;
            println!("Backup written to {} (data only; keys are never in a backup).", file.display());
        }
        BackupCommand::Restore { file } => {
            let _lock = crate::lock_data_dir(config)
                .context("a server seems to be running on this data directory; stop it before restoring")?;
            restore_file(config, &file)?;
            let db = App::open_database(config).await?;
            db.migrate().await?;
            let privacy = open(config, db).await?;
            let report = privacy.customers.replay_erasures(&cli_actor()).await?;
            audit_action(&privacy, AuditAction::BackupRestored, None).await?;
            if let Some(seq) = privacy.audit.rebase_after_restore().await? {
                println!(
                    "The audit log is back at the backup's point; the entries after it (up to signed entry {seq}) are gone with the restore, and the restored chain is signed anew."
                );
            }
            println!(
                "Restored from {}; erasure ledger replayed: {} erasures re-applied to the data, {} data keys destroyed.",
                file.display(),
                report.data_side,
                report.key_side
            );
        }
    }
    Ok(())
}

/// Puts a backup in place of the SQLite file: checked, copied beside it,
/// then renamed over it, so a failure leaves the old file as it was.
fn restore_file(config: &Config, file: &Path) -> anyhow::Result<()> {
    let mut header = [0u8; 16];
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    std::io::Read::read_exact(&mut f, &mut header).ok();
    if &header != b"SQLite format 3\0" {
        bail!("{} is not a SQLite backup", file.display());
    }
    coffer_app::create_private_dir(&config.data_dir)?;
    let target = config.data_dir.join("coffer.db");
    let staging = config.data_dir.join("coffer.db.restoring");
    std::fs::copy(file, &staging).with_context(|| format!("copying {}", file.display()))?;
    for suffix in ["-wal", "-shm"] {
        let side = config.data_dir.join(format!("coffer.db{suffix}"));
        if side.exists() {
            std::fs::remove_file(&side).with_context(|| format!("removing {}", side.display()))?;
        }
    }
    std::fs::rename(&staging, &target).context("putting the backup in place")?;
    Ok(())
}

pub async fn erasure_replay(config: &Config, db: Db) -> anyhow::Result<()> {
    let privacy = open(config, db).await?;
    let report = privacy.customers.replay_erasures(&cli_actor()).await?;
    println!(
        "Erasure ledger replayed: {} erasures re-applied to the data, {} data keys destroyed.",
        report.data_side, report.key_side
    );
    // Run after a restore made with other tools: the chain may be shorter
    // than its last signed head, which only this re-signs.
    if let Some(seq) = privacy.audit.rebase_after_restore().await? {
        println!(
            "The audit log was shorter than its last signed head (entry {seq}), as after a restore; the restored chain is signed anew."
        );
    }
    Ok(())
}
