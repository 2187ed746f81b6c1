//! Wiring in one place: [`App::build`] opens the key store and the vault
//! over a data database and makes every service from the configuration; the
//! server and every command use it. [`App::supervise`] starts the
//! background loops of a serving process under one supervisor.

use crate::accounts::{AccountService, PasswordPool, StaffService};
use crate::checkout::{CheckoutDeps, CheckoutService, CheckoutSettings, SimulatedGateway};
use crate::files::LocalFileStore;
use crate::mail::Outbox;
use crate::privacy::audit::AuditService;
use crate::privacy::{CustomerService, FileKeyProvider, Vault};
use crate::supervisor::Supervisor;
use crate::vendors::VendorService;
use crate::{AppError, CatalogService, Config, HealthCheck, SystemClock};
use coffer_domain::{Actor, AuditAction, AuditEntry, Clock};
use coffer_store::prelude::*;
use coffer_store::{Db, DbOptions, KeyStore, MasterKeyState};
use std::sync::Arc;
use std::time::Duration;

/// Every service of a Coffer process, over one data database and key store.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub vault: Arc<Vault>,
    pub clock: Arc<dyn Clock>,
    pub customers: CustomerService,
    pub audit: AuditService,
    pub outbox: Outbox,
    pub catalog: CatalogService,
    pub accounts: AccountService,
    pub staff: StaffService,
    pub checkout: CheckoutService,
    pub vendors: VendorService,
}

/// What a process knows besides its configuration.
pub struct Surroundings {
    /// Where links in mail point (the public URL, or where the server listens).
    pub base_url: String,
    /// The privacy policy version orders consent to.
    pub policy_version: String,
    /// Who the startup's housekeeping (destroying expired key versions) is
    /// audited as: the operator running a command, or the system.
    pub actor: Actor,
}

impl App {
    /// The pool options the configuration asks for.
    pub fn db_options(config: &Config) -> DbOptions {
        DbOptions {
            sqlite_readers: config.database.sqlite_readers,
            postgres_connections: config.database.postgres_connections,
            write_batch_max: config.database.write_batch_max,
            busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
            ..DbOptions::default()
        }
    }

    /// Opens the data database, creating the data directory (owner-only)
    /// for the embedded SQLite file. Not migrated: see [`Db::migrate`].
    pub async fn open_database(config: &Config) -> Result<Db, AppError> {
        create_private_dir(&config.data_dir)
            .map_err(|e| AppError::Files(format!("creating the data directory: {}", e.kind())))?;
        Ok(Db::open(&config.database_url(), &Self::db_options(config)).await?)
    }

    /// Every service over `db` (migrated): the key store and vault from the
    /// configuration's key directory, master key versions past their
    /// retention destroyed, then the privacy core, accounts, catalog,
    /// checkout and vendors.
    pub async fn build(config: &Config, db: Db, around: Surroundings) -> Result<App, AppError> {
        let provider = FileKeyProvider::open(&config.key_dir())?;
        let store = KeyStore::open(&config.key_store_url(), &Self::db_options(config)).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let vault = Arc::new(Vault::open(Arc::new(provider), store, clock.clone()).await?);
        destroy_expired_versions(&vault, &db, clock.as_ref(), &around.actor).await?;
        let audit = AuditService::new(db.clone(), vault.clone(), clock.clone());
        let outbox = Outbox::new(&config.mail, &config.data_dir, db.clone(), vault.clone(), clock.clone())?;
        let files = Arc::new(LocalFileStore::new(config.data_dir.join("files"))?);
        let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone())
            .with_files(outbox.mail_folder(), files.clone());
        // Customers and staff share one password pool: two hashing threads,
        // as the policy says (at most 2 × 19 MiB).
        let passwords = PasswordPool::new(2);
        let staff =
            StaffService::new(db.clone(), vault.clone(), passwords.clone(), clock.clone(), around.base_url.clone());
        let (passwords_for_vendors, vendor_base_url) = (passwords.clone(), around.base_url.clone());
        let accounts = AccountService::new(
            db.clone(),
            vault.clone(),
            customers.clone(),
            outbox.clone(),
            passwords,
            clock.clone(),
            around.base_url.clone(),
        );
        let catalog = CatalogService::new(db.clone(), clock.clone(), config.http.catalog_cache_ms);
        let checkout = CheckoutService::new(
            CheckoutDeps {
                db: db.clone(),
                catalog: catalog.clone(),
                vault: vault.clone(),
                customers: customers.clone(),
                outbox: outbox.clone(),
                gateway: Arc::new(SimulatedGateway),
                files,
                clock: clock.clone(),
            },
            CheckoutSettings {
                fraud: config.fraud.settings(),
                seller: crate::checkout::Seller {
                    name: config.operator.name.clone(),
                    postal_address: config.operator.postal_address.clone(),
                    vat_number: config.operator.vat_number.clone(),
                },
                taxes: config.operator.tax_table().map_err(|_| AppError::Config("operator.tax_rates"))?,
                bank: config.operator.bank_account().map_err(|_| AppError::Config("operator.bank"))?,
                transfer_expiry_ms: i64::from(config.operator.transfer_expiry_days) * 24 * 60 * 60 * 1000,
                policy_version: around.policy_version,
                base_url: around.base_url,
            },
        )?;
        let vendor_users = crate::accounts::VendorUserService::new(
            db.clone(),
            vault.clone(),
            passwords_for_vendors,
            clock.clone(),
            vendor_base_url.clone(),
        );
        let sender = crate::webhooks::sender::WebhookSender::new(crate::webhooks::sender::SenderSettings {
            allow_private: config.webhooks.allow_private,
            timeout: Duration::from_millis(config.webhooks.timeout_ms),
            max_response_bytes: config.webhooks.max_response_bytes,
        })?;
        let vendor_settings = crate::vendors::VendorSettings {
            sender,
            fees: config.vendors.clone(),
            outbox: outbox.clone(),
            base_url: vendor_base_url.clone(),
            fulfilment: checkout.fulfilment().clone(),
        };
        let vendors = VendorService::new(
            db.clone(),
            vault.clone(),
            clock.clone(),
            catalog.clone(),
            vendor_users,
            vendor_settings,
        );
        Ok(App { db, vault, clock, customers, audit, outbox, catalog, accounts, staff, checkout, vendors })
    }

    /// Whether the data database and the key store answer.
    pub fn health(&self) -> HealthCheck {
        HealthCheck::new(self.db.clone(), self.vault.key_store().clone())
    }

    /// Publishes a privacy policy version once (orders record the version
    /// consented to).
    /// Returns when the version was first published (its date names it).
    pub async fn publish_policy(&self, version: &str, html: &str) -> Result<coffer_domain::Millis, AppError> {
        let (owned, html, now) = (version.to_owned(), html.to_owned(), self.clock.now());
        self.db.write(unit!(|tx| tx.publish_policy(&owned, &html, now).await.map_err(AppError::from))).await?;
        Ok(self.db.policy_published_at(version).await?.unwrap_or(now))
    }

    /// The background work of a serving process, under `supervisor`: seal
    /// the audit log every second and sign its head every
    /// `audit.sign_interval_ms`; number invoices after their orders commit;
    /// run the job queue (email, money back through the gateway); pick up
    /// new key versions and re-wrap older wraps; retention every minute.
    pub fn supervise(&self, config: &Config, supervisor: &mut Supervisor) {
        self.supervise_audit(Duration::from_millis(config.audit.sign_interval_ms), supervisor);
        Self::supervise_memory(supervisor);
        let (db, clock, checkout) = (self.db.clone(), self.clock.clone(), self.checkout.clone());
        // Invoices may wait for their email: at start (a crash left some),
        // after numbering, and after a run that failed.
        let unsent = Arc::new(std::sync::atomic::AtomicBool::new(true));
        supervisor.every("numbering", Duration::from_millis(500), move |stop| {
            let (db, clock, checkout, unsent) = (db.clone(), clock.clone(), checkout.clone(), unsent.clone());
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                // In units of 100, so checkouts queued behind one wait little.
                while !stop.is_cancelled() {
                    match db.number_invoices(clock.now(), 100).await {
                        Ok(numbered) => {
                            if !numbered.is_empty() {
                                unsent.store(true, Relaxed);
                            }
                            if numbered.len() < 100 {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "numbering invoices failed; will retry");
                            break;
                        }
                    }
                }
                // Credit notes refer to their invoice: numbered after it.
                match db.number_credit_notes(clock.now(), 100).await {
                    Ok(issued) if !issued.is_empty() => unsent.store(true, Relaxed),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "numbering credit notes failed; will retry"),
                }
                // Then each new invoice's and credit note's PDF to its buyer.
                if unsent.swap(false, Relaxed)
                    && let Err(e) = checkout.email_invoices().await
                {
                    unsent.store(true, Relaxed);
                    tracing::warn!(error = %e, "emailing invoices failed; will retry");
                }
            }
        });
        let outbox = self.outbox.clone();
        supervisor.every("mail", Duration::from_secs(1), move |stop| {
            let outbox = outbox.clone();
            async move {
                match outbox.deliver_due_until(&stop).await {
                    // The mail of a burst is sent after it: memory is
                    // given back once that is done too.
                    Ok(sent) if sent > 0 => crate::memory::note_work(),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "email delivery failed; will retry"),
                }
            }
        });
        // Order events to the vendors' ledger and webhooks, then the
        // deliveries due: never on a checkout's path.
        let vendors = self.vendors.clone();
        supervisor.every("webhooks", Duration::from_millis(250), move |stop| {
            let vendors = vendors.clone();
            async move {
                if let Err(e) = vendors.relay_events().await {
                    tracing::warn!(error = %e, "relaying order events failed; will retry");
                }
                if let Err(e) = vendors.run_webhooks(&stop).await {
                    tracing::warn!(error = %e, "sending webhooks failed; will retry");
                }
            }
        });
        let payments = self.checkout.clone();
        supervisor.every("payments", Duration::from_secs(1), move |stop| {
            let payments = payments.clone();
            async move {
                if let Err(e) = payments.staff().run_give_backs(&stop).await {
                    tracing::warn!(error = %e, "giving money back failed; will retry");
                }
            }
        });
        self.supervise_keys((i64::from(config.keys.rewrap_batch), config.keys.rewrap_rest), supervisor);
        let retention = self.checkout.clone();
        supervisor.every("retention", Duration::from_secs(60), move |stop| {
            let retention = retention.clone();
            async move {
                match retention.run_retention_until(&stop).await {
                    Ok(report) if report == crate::retention::RetentionReport::default() => {}
                    Ok(report) => tracing::info!(?report, "retention: expired data deleted"),
                    Err(e) => tracing::warn!(error = %e, "the retention job failed; it runs again in a minute"),
                }
            }
        });
    }

    /// Once requests stop, the allocator's free memory goes back to the
    /// system (see [`crate::memory`]).
    fn supervise_memory(supervisor: &mut Supervisor) {
        supervisor.every("memory", Duration::from_secs(1), |_| async {
            if crate::memory::time_to_release() {
                let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
            }
        });
    }

    fn supervise_audit(&self, sign_every: Duration, supervisor: &mut Supervisor) {
        let audit = self.audit.clone();
        let last_signed = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
        supervisor.every("audit", Duration::from_secs(1), move |_| {
            let (audit, last_signed) = (audit.clone(), last_signed.clone());
            async move {
                let sign = {
                    let mut last = last_signed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let due = last.elapsed() >= sign_every;
                    if due {
                        *last = tokio::time::Instant::now();
                    }
                    due
                };
                let result = if sign { audit.seal_and_sign().await } else { audit.seal().await.map(drop) };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "audit sealing failed; will retry");
                }
            }
        });
    }

    fn supervise_keys(&self, (rewrap_batch, rewrap_rest): (i64, f64), supervisor: &mut Supervisor) {
        let (vault, db, clock) = (self.vault.clone(), self.db.clone(), self.clock.clone());
        supervisor.every("keys", Duration::from_secs(5), move |stop| {
            let (vault, db, clock) = (vault.clone(), db.clone(), clock.clone());
            async move {
                if let Err(e) = vault.reload().await {
                    tracing::warn!(error = %e, "reloading master keys failed");
                    return;
                }
                match vault.rewrap_until(rewrap_batch, rewrap_rest, &stop).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(rewrapped = n, "re-wrapped keys under the active master key");
                        let subject = vault.active_version().ok().map(|v| format!("v{v}"));
                        let entry = AuditEntry::new(clock.now(), &Actor::System, AuditAction::KeysRewrapped, subject);
                        let written = db.write(unit!(|tx| tx.append_audit(&entry).await.map_err(AppError::from))).await;
                        if let Err(e) = written {
                            tracing::warn!(error = %e, "auditing the re-wrap failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "re-wrapping failed; will retry"),
                }
                if let Err(e) = destroy_expired_versions(&vault, &db, clock.as_ref(), &Actor::System).await {
                    tracing::warn!(error = %e, "destroying expired master key versions failed");
                }
            }
        });
    }
}

/// Destroys retired master key versions whose backup-retention window has
/// passed, and audits each destruction.
pub async fn destroy_expired_versions(
    vault: &Vault,
    db: &Db,
    clock: &dyn Clock,
    actor: &Actor,
) -> Result<(), AppError> {
    let now = clock.now();
    for record in vault.key_store().master_keys().await? {
        if record.state == MasterKeyState::Retired && record.destroy_after.is_some_and(|t| t <= now) {
            vault.provider().destroy(record.version)?;
            vault.key_store().mark_master_key_destroyed(record.version).await?;
            let entry =
                AuditEntry::new(now, actor, AuditAction::MasterKeyDestroyed, Some(format!("v{}", record.version)));
            db.write(unit!(|tx| tx.append_audit(&entry).await.map_err(AppError::from))).await?;
            tracing::info!(version = record.version, "master key version destroyed after its retention window");
        }
    }
    Ok(())
}

/// Creates `dir` (and its parents) readable by the owner only.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
