//! The privacy core through its services, on SQLite and on PostgreSQL
//! (`<test>::sqlite`, `<test>::postgres`): each test has a fresh data
//! database, a fresh key store (SQLite file, or a PostgreSQL database) and
//! its own key directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::AppError;
use coffer_app::SystemClock;
use coffer_app::privacy::audit::{AuditService, ChainBroken};
use coffer_app::privacy::{CustomerService, FileKeyProvider, Reader, Vault};
use coffer_crypto::CryptoError;
use coffer_domain::inventory::{INVENTORY, NON_PERSONAL_BINARY_COLUMNS};
use coffer_domain::{Actor, Clock, CustomerDetails, CustomerId, MailingAddress};
use coffer_store::prelude::*;
use coffer_store::{Backend, CustomerReader, CustomerWriter, Db, DbOptions, Erasure, KeyStore};
use coffer_testkit::{TestBackend, TestDatabase};
use sqlx::Row;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

struct Fixture {
    db: Db,
    keys: KeyStore,
    key_dir: PathBuf,
    vault: Arc<Vault>,
    customers: CustomerService,
    audit: AuditService,
    clock: Arc<dyn Clock>,
    key_store_url: String,
    _data: TestDatabase,
    _key_db: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let key_store_url = key_db.key_store_url();
    let key_dir = data.dir.path().join("keys");
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let keys = KeyStore::open(&key_store_url, &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let vault = open_vault(&key_dir, &keys, &clock).await.unwrap();
    let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone());
    let audit = AuditService::new(db.clone(), vault.clone(), clock.clone());
    Fixture { db, keys, key_dir, vault, customers, audit, clock, key_store_url, _data: data, _key_db: key_db }
}

async fn open_vault(
    key_dir: &std::path::Path,
    keys: &KeyStore,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<Vault>, AppError> {
    let provider = FileKeyProvider::open(key_dir)?;
    Ok(Arc::new(Vault::open(Arc::new(provider), keys.clone(), clock.clone()).await?))
}

coffer_testkit::on_both_backends_with!(fixture;
    customer_round_trips_through_ciphertext_only,
    email_lookup_uses_the_normalised_blind_index,
    ciphertext_moved_to_another_row_does_not_open,
    tampered_wrapped_key_is_a_clear_error,
    erasure_shreds_the_key_clears_the_row_and_is_audited,
    each_ledger_is_replayed_onto_the_other_side,
    rotation_rewraps_everything_while_reads_go_on,
    rewrap_step_skips_changed_wraps_and_hands_on_the_next_batch,
    a_damaged_wrap_is_named_and_does_not_hold_up_the_rest_of_a_rotation,
    retire_refuses_while_a_wrap_uses_the_version,
    wrong_master_key_file_is_refused_by_name,
    audit_chain_verifies_and_names_each_kind_of_tampering,
    audit_verify_across_pages_finds_breaks_at_page_edges,
    concurrent_sealers_never_fork_the_chain,
    inventory_matches_the_schema,
    export_follows_the_inventory_and_is_audited,
    mail_is_enqueued_with_its_change_and_delivered_to_files,
    smtp_delivery_retries_with_backoff_until_the_server_answers,
    erasure_shreds_pending_mail,
    a_claim_whose_worker_died_is_delivered_after_its_lease,
    one_off_key_is_destroyed_once_its_message_is_sent,
    the_mail_sweep_removes_files_whose_key_is_gone,
    link_sets_a_password_once_and_signs_in,
    links_expire_after_fifteen_minutes,
    lock_out_grows_and_treats_unknown_addresses_alike,
    sessions_end_idle_absolute_and_on_sign_out,
    erasure_ends_the_account_and_its_sessions,
    unknown_addresses_run_the_same_verification,
    staff_enrol_with_totp_and_always_need_the_code,
    staff_sign_in_refuses_replays_and_the_unenrolled,
    disclosures_are_listed_in_the_export,
    data_services_refuse_a_principal_without_the_permission,
);

fn operator() -> Actor {
    Actor::Cli("test".into())
}

/// The operator at the command line, as services check them.
fn cli() -> coffer_app::request::RequestContext {
    coffer_app::request::RequestContext::cli("test")
}

fn details(n: usize) -> CustomerDetails {
    CustomerDetails {
        name: format!("Customer Number{n}"),
        email: format!("customer{n}@example.org"),
        phone: Some(format!("+1 555 01{n:02}")),
        address: Some(MailingAddress {
            line1: format!("{n} Canary Street"),
            line2: String::new(),
            city: "Springfield".into(),
            region: "IL".into(),
            postal_code: "62701".into(),
            country: "US".into(),
        }),
    }
}

async fn raw_customer_bytes(f: &Fixture, id: &CustomerId) -> Vec<u8> {
    let row = sqlx::query("SELECT name, email, phone, address FROM customers WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&raw_pool(&f._data.url).await)
        .await
        .unwrap();
    let mut all = Vec::new();
    for column in ["name", "email", "phone", "address"] {
        all.extend(row.try_get::<Option<Vec<u8>>, _>(column).unwrap().unwrap_or_default());
    }
    all
}

async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(2).connect(url).await.unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn customer_round_trips_through_ciphertext_only(f: Fixture) {
    let created = f.customers.create(&details(1), &operator()).await.unwrap();
    let read = f.customers.get(&created.id, &Reader::TheCustomer).await.unwrap();
    assert_eq!(read.details, details(1).validated().unwrap());
    let raw = raw_customer_bytes(&f, &created.id).await;
    for plain in ["Number1", "customer1@example.org", "555 0101", "Canary Street", "Springfield"] {
        assert!(!contains(&raw, plain), "{plain} is stored in plaintext");
    }
    let mut changed = details(1);
    changed.name = "Renamed Person".into();
    changed.address = None;
    let updated = f.customers.update(&created.id, &changed, &operator()).await.unwrap();
    assert_eq!(updated.details.name, "Renamed Person");
    let read = f.customers.get(&created.id, &Reader::TheCustomer).await.unwrap();
    assert_eq!((read.details.name.as_str(), read.details.address), ("Renamed Person", None));
}

async fn email_lookup_uses_the_normalised_blind_index(f: Fixture) {
    let created = f.customers.create(&details(2), &operator()).await.unwrap();
    assert_eq!(f.customers.find_by_email("  CUSTOMER2@Example.ORG ").await.unwrap(), Some(created.id.clone()));
    assert_eq!(f.customers.find_by_email("customer3@example.org").await.unwrap(), None);
    let mut same = details(3);
    same.email = "Customer2@EXAMPLE.org".into();
    assert!(matches!(f.customers.create(&same, &operator()).await, Err(AppError::Conflict)));
    // Another customer cannot take the address by an update either.
    let other = f.customers.create(&details(3), &operator()).await.unwrap();
    assert!(matches!(f.customers.update(&other.id, &same, &operator()).await, Err(AppError::Conflict)));
}

async fn ciphertext_moved_to_another_row_does_not_open(f: Fixture) {
    let a = f.customers.create(&details(4), &operator()).await.unwrap();
    let b = f.customers.create(&details(5), &operator()).await.unwrap();
    let pool = raw_pool(&f._data.url).await;
    // A's name into B's row; then A's email into A's name column.
    sqlx::query("UPDATE customers SET name = (SELECT name FROM customers WHERE id = $1) WHERE id = $2")
        .bind(a.id.as_str())
        .bind(b.id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let err = f.customers.get(&b.id, &Reader::TheCustomer).await.unwrap_err();
    assert!(matches!(err, AppError::Crypto(CryptoError::DoesNotOpen { what: "a sealed field" })), "{err:?}");
    sqlx::query("UPDATE customers SET name = email WHERE id = $1").bind(a.id.as_str()).execute(&pool).await.unwrap();
    assert!(matches!(f.customers.get(&a.id, &Reader::TheCustomer).await, Err(AppError::Crypto(_))));
}

async fn tampered_wrapped_key_is_a_clear_error(f: Fixture) {
    let a = f.customers.create(&details(6), &operator()).await.unwrap();
    let stored = f.db.customer(&a.id).await.unwrap().unwrap();
    let pool = raw_pool(&f.key_store_url).await;
    let wrapped: Vec<u8> = sqlx::query("SELECT wrapped FROM data_keys WHERE id = $1")
        .bind(stored.data_key_id.as_str())
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("wrapped");
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE id = $2")
        .bind(bad)
        .bind(stored.data_key_id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let err = f.customers.get(&a.id, &Reader::TheCustomer).await.unwrap_err();
    assert!(matches!(err, AppError::Crypto(CryptoError::DoesNotOpen { what: "a wrapped key" })), "{err:?}");
    assert!(!err.to_string().contains("customer6"), "{err}");
}

async fn erasure_shreds_the_key_clears_the_row_and_is_audited(f: Fixture) {
    let a = f.customers.create(&details(7), &operator()).await.unwrap();
    let keep = f.customers.create(&details(8), &operator()).await.unwrap();
    let stored = f.db.customer(&a.id).await.unwrap().unwrap();
    f.customers.erase(&a.id, &cli()).await.unwrap();

    assert!(matches!(f.customers.get(&a.id, &Reader::Other(operator())).await, Err(AppError::Erased)));
    assert_eq!(f.customers.find_by_email("customer7@example.org").await.unwrap(), None);
    assert!(f.keys.data_key(stored.data_key_id.as_str()).await.unwrap().is_none(), "the data key is destroyed");
    assert!(raw_customer_bytes(&f, &a.id).await.is_empty(), "every personal column is cleared");
    let erased =
        Erasure { customer_id: a.id.clone(), data_key_id: stored.data_key_id.clone(), erased_at: stored.created_at };
    assert_eq!(
        f.keys.erasures().await.unwrap().iter().map(|e| &e.customer_id).collect::<Vec<_>>(),
        vec![&erased.customer_id]
    );
    assert_eq!(
        f.db.erasures().await.unwrap().iter().map(|e| &e.customer_id).collect::<Vec<_>>(),
        vec![&erased.customer_id]
    );
    // The old ciphertext (as a backup would hold it) no longer opens.
    let key = f.vault.data_key(&stored.data_key_id).await.unwrap();
    assert!(key.is_none());
    // Others are untouched; erasing again changes nothing.
    assert_eq!(f.customers.get(&keep.id, &Reader::TheCustomer).await.unwrap().details.email, "customer8@example.org");
    f.customers.erase(&a.id, &cli()).await.unwrap();
    assert_eq!(f.keys.erasures().await.unwrap().len(), 1);
    // Audited by id, without personal data.
    let entries = f.db.audit_entries_for_subject(a.id.as_str()).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"customer.erased"), "{actions:?}");
    for e in &entries {
        assert!(!format!("{e:?}").contains("customer7"), "{e:?}");
    }
}

async fn each_ledger_is_replayed_onto_the_other_side(f: Fixture) {
    let a = f.customers.create(&details(9), &operator()).await.unwrap();
    let b = f.customers.create(&details(10), &operator()).await.unwrap();
    let a_key = f.db.customer(&a.id).await.unwrap().unwrap().data_key_id;
    let b_key = f.db.customer(&b.id).await.unwrap().unwrap().data_key_id;
    let now = f.clock.now();
    // A: erased in the key store only (as after restoring an old data backup).
    f.keys.shred(Erasure { customer_id: a.id.clone(), data_key_id: a_key.clone(), erased_at: now }).await.unwrap();
    // B: erased on the data side only (as after restoring an old key-store backup).
    let erasure = Erasure { customer_id: b.id.clone(), data_key_id: b_key.clone(), erased_at: now };
    f.db.write(move |tx| Box::pin(async move { tx.erase_customer(&erasure).await })).await.unwrap();
    assert!(f.keys.data_key(b_key.as_str()).await.unwrap().is_some());

    let report = f.customers.replay_erasures(&operator()).await.unwrap();
    assert_eq!((report.data_side, report.key_side), (1, 1));
    assert!(raw_customer_bytes(&f, &a.id).await.is_empty());
    assert_eq!(f.customers.find_by_email("customer9@example.org").await.unwrap(), None);
    assert!(f.keys.data_key(b_key.as_str()).await.unwrap().is_none());
    let again = f.customers.replay_erasures(&operator()).await.unwrap();
    assert_eq!((again.data_side, again.key_side), (0, 0), "replay is idempotent");
}

async fn rotation_rewraps_everything_while_reads_go_on(f: Fixture) {
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(f.customers.create(&details(100 + n), &operator()).await.unwrap().id);
    }
    f.vault.provider().create(2).unwrap();
    f.keys.add_master_key(2, f.clock.now()).await.unwrap();
    f.vault.reload().await.unwrap();
    assert_eq!(f.vault.active_version().unwrap(), 1, "a standby version is not used yet");
    f.keys.activate_master_key(2, f.clock.now()).await.unwrap();
    f.vault.reload().await.unwrap();

    // Readers and a writer keep going while the re-wrap runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (customers, ids, stop) = (f.customers.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut done = 0usize;
            let mut n = 1_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || done == 0 {
                for id in &ids {
                    customers.get(id, &Reader::TheCustomer).await.expect("reads work during rotation");
                    done += 1;
                }
                customers.create(&details(n), &Actor::System).await.expect("writes work during rotation");
                n += 1;
            }
            done
        })
    };
    // Small batches with rests, so traffic runs between them.
    let rewrapped = f.vault.rewrap_all(7, 0.5).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = traffic.await.unwrap();
    assert!(reads > 0);
    assert!(rewrapped >= 40 + 2, "40 data keys and 2 secrets, got {rewrapped}");
    // Keys created during the re-wrap were wrapped under v2 already: a
    // second pass finds nothing.
    assert_eq!(f.vault.rewrap_all(100, 0.0).await.unwrap(), 0);
    assert_eq!(f.keys.wraps_under(1).await.unwrap(), 0);
    let now = f.clock.now();
    assert!(f.keys.retire_master_key(1, now, now).await.unwrap());
    // After a restart with v1 destroyed, everything still opens.
    f.vault.provider().destroy(1).unwrap();
    f.keys.mark_master_key_destroyed(1).await.unwrap();
    let vault = open_vault(&f.key_dir, &f.keys, &f.clock).await.unwrap();
    let customers = CustomerService::new(f.db.clone(), vault, f.clock.clone());
    for id in &ids {
        customers.get(id, &Reader::TheCustomer).await.unwrap();
    }
    assert_eq!(customers.find_by_email("customer100@example.org").await.unwrap(), Some(ids[0].clone()));
}

/// Deletes the spare keys no customer took, as the sweep does an hour on,
/// so the key store holds exactly the customers' keys. The test's vault
/// takes no key after this (its spares are gone).
async fn without_unused_spares(f: &Fixture) {
    let later = coffer_domain::Millis(f.clock.now().0 + 2 * 60 * 60 * 1000);
    let deleted = coffer_app::retention::sweep_spare_keys(&f.db, &f.keys, later).await.unwrap();
    assert!(deleted > 0, "a batch of spares was made");
}

/// One step of a re-wrap at the key store: a wrap erased or re-wrapped
/// since it was read is left alone, and the next batch follows the step's
/// highest id.
async fn rewrap_step_skips_changed_wraps_and_hands_on_the_next_batch(f: Fixture) {
    use coffer_crypto::{unwrap_secret, wrap_secret};
    use coffer_store::{WrapKind, WrappedSecret};
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(f.customers.create(&details(400 + n), &operator()).await.unwrap().id);
    }
    without_unused_spares(&f).await;
    f.vault.provider().create(2).unwrap();
    f.keys.add_master_key(2, f.clock.now()).await.unwrap();
    f.keys.activate_master_key(2, f.clock.now()).await.unwrap();
    let (v1, v2) = (f.vault.provider().load(1).unwrap(), f.vault.provider().load(2).unwrap());
    let first = f.keys.wraps_to_rewrap(WrapKind::DataKey, 2, "", 3).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0].id < w[1].id), "in id order");
    // The customer holding the first key is erased after the batch was read.
    let mut erased = None;
    for id in &ids {
        if f.db.customer(id).await.unwrap().unwrap().data_key_id.as_str() == first[0].id {
            erased = Some(id.clone());
        }
    }
    let erased = erased.unwrap();
    f.customers.erase(&erased, &cli()).await.unwrap();
    let rewrap = |old: &WrappedSecret| {
        let secret = unwrap_secret(&v1, "data-key", &old.id, &old.wrapped).unwrap();
        let new = WrappedSecret {
            id: old.id.clone(),
            kek_version: 2,
            wrapped: wrap_secret(&v2, "data-key", &old.id, &secret).unwrap(),
        };
        (old.clone(), new)
    };
    let replacements: Vec<_> = first.iter().map(rewrap).collect();
    let (changed, next) =
        f.keys.replace_wraps_and_fetch_next(WrapKind::DataKey, replacements.clone(), &first[2].id, 2, 3).await.unwrap();
    assert_eq!(changed, 2, "the erased key stays erased");
    assert!(f.keys.data_key(&first[0].id).await.unwrap().is_none());
    assert_eq!(next.len(), 2, "the two keys after the step");
    assert!(next.iter().all(|w| w.id > first[2].id && w.kek_version == 1));
    // The same step again changes nothing: those wraps are not under v1 now.
    let (again, _) =
        f.keys.replace_wraps_and_fetch_next(WrapKind::DataKey, replacements, &first[2].id, 2, 3).await.unwrap();
    assert_eq!(again, 0);
    // The last step: nothing follows it.
    let (changed, after) = f
        .keys
        .replace_wraps_and_fetch_next(WrapKind::DataKey, next.iter().map(rewrap).collect(), &next[1].id, 2, 3)
        .await
        .unwrap();
    assert_eq!((changed, after.len()), (2, 0));
    assert!(f.keys.wraps_to_rewrap(WrapKind::DataKey, 2, "", 100).await.unwrap().is_empty());
    f.vault.reload().await.unwrap();
    for id in ids.iter().filter(|id| **id != erased) {
        f.customers.get(id, &Reader::TheCustomer).await.unwrap();
    }
}

async fn a_damaged_wrap_is_named_and_does_not_hold_up_the_rest_of_a_rotation(f: Fixture) {
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(f.customers.create(&details(500 + n), &operator()).await.unwrap().id);
    }
    without_unused_spares(&f).await;
    // One data key in the middle of the id order is damaged at rest.
    let pool = raw_pool(&f.key_store_url).await;
    let all: Vec<String> = sqlx::query_scalar("SELECT id FROM data_keys ORDER BY id").fetch_all(&pool).await.unwrap();
    let broken = all[all.len() / 2].clone();
    let wrapped: Vec<u8> =
        sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE id = $1").bind(&broken).fetch_one(&pool).await.unwrap();
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE id = $2")
        .bind(bad)
        .bind(&broken)
        .execute(&pool)
        .await
        .unwrap();
    f.vault.provider().create(2).unwrap();
    f.keys.add_master_key(2, f.clock.now()).await.unwrap();
    f.keys.activate_master_key(2, f.clock.now()).await.unwrap();
    f.vault.reload().await.unwrap();

    // Small batches: the damaged key sits in a batch with good ones, and
    // batches follow it.
    let err = f.vault.rewrap_all(3, 0.0).await.unwrap_err().to_string();
    assert!(err.contains("1 wrapped key(s) do not open") && err.contains(&broken), "{err}");
    assert!(!err.contains("customer5"), "no personal data: {err}");
    // Everything else moved to version 2; the damaged key stays under 1,
    // so version 1 cannot be retired.
    assert_eq!(f.keys.wraps_under(1).await.unwrap(), 1);
    let now = f.clock.now();
    assert!(!f.keys.retire_master_key(1, now, now).await.unwrap());
    let mut readable = 0;
    for id in &ids {
        if f.customers.get(id, &Reader::TheCustomer).await.is_ok() {
            readable += 1;
        }
    }
    assert_eq!(readable, ids.len() - 1, "only the damaged key's customer is unreadable");
    // Running again touches only the damaged key and says so again.
    let again = f.vault.rewrap_all(3, 0.0).await.unwrap_err().to_string();
    assert!(again.contains(&broken) && again.contains("everything else was re-wrapped (0)"), "{again}");
}

async fn retire_refuses_while_a_wrap_uses_the_version(f: Fixture) {
    f.customers.create(&details(11), &operator()).await.unwrap();
    f.vault.provider().create(2).unwrap();
    f.keys.add_master_key(2, f.clock.now()).await.unwrap();
    f.keys.activate_master_key(2, f.clock.now()).await.unwrap();
    let now = f.clock.now();
    assert!(!f.keys.retire_master_key(1, now, now).await.unwrap(), "v1 still wraps keys");
    f.vault.reload().await.unwrap();
    f.vault.rewrap_all(100, 0.0).await.unwrap();
    assert!(f.keys.retire_master_key(1, now, now).await.unwrap());
    assert!(!f.keys.retire_master_key(2, now, now).await.unwrap(), "the active version is never retired");
}

async fn wrong_master_key_file_is_refused_by_name(f: Fixture) {
    f.customers.create(&details(12), &operator()).await.unwrap();
    let file = f.key_dir.join("master-v1.key");
    let other = coffer_crypto::MasterKey::generate(1).unwrap();
    std::fs::write(&file, other.to_file_text().as_bytes()).unwrap();
    let err = open_vault(&f.key_dir, &f.keys, &f.clock).await.err().unwrap().to_string();
    assert!(err.contains("do not open this key store"), "{err}");
    std::fs::remove_file(&file).unwrap();
    let err = open_vault(&f.key_dir, &f.keys, &f.clock).await.err().unwrap().to_string();
    assert!(err.contains("master key version 1 is missing"), "{err}");
}

/// Makes a chain of `n` sealed, signed entries.
async fn signed_chain(f: &Fixture, n: usize) {
    for i in 0..n {
        f.customers.create(&details(200 + i), &operator()).await.unwrap();
    }
    f.audit.seal_and_sign().await.unwrap();
}

async fn sql(f: &Fixture, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned())).execute(&raw_pool(&f._data.url).await).await.unwrap();
}

async fn broken(f: &Fixture) -> ChainBroken {
    f.audit.verify().await.unwrap().expect_err("tampering must be detected")
}

async fn audit_chain_verifies_and_names_each_kind_of_tampering(f: Fixture) {
    signed_chain(&f, 6).await;
    let ok = f.audit.verify().await.unwrap().unwrap();
    assert_eq!((ok.entries, ok.signed_seq), (6, Some(6)));
    let snapshot = "CREATE TABLE audit_copy AS SELECT * FROM audit_log";
    sql(&f, snapshot).await;
    let restore = "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM audit_copy";

    // Edit; the restore re-signing never blesses it.
    sql(&f, "UPDATE audit_log SET actor = 'cli:someone-else' WHERE seq = 3").await;
    assert!(matches!(broken(&f).await, ChainBroken::BadLink { seq: 3, .. }));
    assert!(matches!(
        f.audit.rebase_after_restore().await,
        Err(AppError::AuditChainBroken(ChainBroken::BadLink { seq: 3, .. }))
    ));
    // The sealer does not sign over a break either.
    f.audit.seal_and_sign().await.unwrap();
    assert!(matches!(broken(&f).await, ChainBroken::BadLink { seq: 3, .. }));
    sql(&f, restore).await;
    assert!(f.audit.verify().await.unwrap().is_ok());
    // Deletion in the middle.
    sql(&f, "DELETE FROM audit_log WHERE seq = 2").await;
    assert_eq!(broken(&f).await, ChainBroken::Gap { previous: 1, seq: 3 });
    sql(&f, restore).await;
    // Insertion: a forged entry renumbered into the middle.
    sql(&f, "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4").await;
    sql(&f, "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 104").await;
    sql(
        &f,
        "INSERT INTO audit_log (id, at, actor, action, subject, request_id, seq, link_hash) \
         SELECT 'aud_00000000000000000000000000000000', at, actor, action, subject, request_id, 4, link_hash \
         FROM audit_copy WHERE seq = 3",
    )
    .await;
    assert!(matches!(broken(&f).await, ChainBroken::BadLink { seq: 4, .. }));
    sql(&f, restore).await;
    // Reordering: two entries swap places.
    sql(&f, "UPDATE audit_log SET seq = -1 WHERE seq = 2").await;
    sql(&f, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    sql(&f, "UPDATE audit_log SET seq = 3 WHERE seq = -1").await;
    assert!(matches!(broken(&f).await, ChainBroken::BadLink { seq: 2, .. }));
    sql(&f, restore).await;
    // Truncation before the signed head, with the head row rewound to match.
    sql(&f, "DELETE FROM audit_log WHERE seq > 4").await;
    sql(&f, "UPDATE audit_chain_head SET seq = 4, hash = (SELECT link_hash FROM audit_log WHERE seq = 4)").await;
    assert_eq!(broken(&f).await, ChainBroken::SignedHeadMismatch { seq: 6 });
    f.audit.seal_and_sign().await.unwrap();
    assert_eq!(broken(&f).await, ChainBroken::SignedHeadMismatch { seq: 6 }, "the sealer never signs a truncation");
    sql(&f, restore).await;
    sql(&f, "UPDATE audit_chain_head SET seq = 6, hash = (SELECT link_hash FROM audit_log WHERE seq = 6)").await;
    assert!(f.audit.verify().await.unwrap().is_ok());
}

async fn audit_verify_across_pages_finds_breaks_at_page_edges(f: Fixture) {
    let fill = match f.db.backend() {
        Backend::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000) \
             INSERT INTO audit_log (id, at, actor, action, subject) \
             SELECT printf('aud_f%031x', i), i, 'system', 'customer.read', NULL FROM n"
        }
        Backend::Postgres => {
            "INSERT INTO audit_log (id, at, actor, action, subject) \
             SELECT 'aud_f' || lpad(to_hex(i), 31, '0'), i, 'system', 'customer.read', NULL \
             FROM generate_series(1, 25000) AS i"
        }
    };
    sql(&f, fill).await;
    f.audit.seal_and_sign().await.unwrap();
    assert_eq!(f.audit.verify().await.unwrap().unwrap().entries, 25_000);
    sql(&f, "CREATE TABLE audit_copy AS SELECT * FROM audit_log").await;
    let restore = "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM audit_copy";
    // The last entry of the first page, and the first of the second.
    sql(&f, "DELETE FROM audit_log WHERE seq = 10000").await;
    assert_eq!(broken(&f).await, ChainBroken::Gap { previous: 9_999, seq: 10_001 });
    sql(&f, restore).await;
    sql(&f, "DELETE FROM audit_log WHERE seq = 10001").await;
    assert_eq!(broken(&f).await, ChainBroken::Gap { previous: 10_000, seq: 10_002 });
    sql(&f, restore).await;
    // Two breaks: the earlier one is named.
    sql(&f, "UPDATE audit_log SET at = 1 WHERE seq IN (20001, 12345)").await;
    assert!(matches!(broken(&f).await, ChainBroken::BadLink { seq: 12_345, .. }));
    sql(&f, restore).await;
    assert!(f.audit.verify().await.unwrap().is_ok());
}

async fn concurrent_sealers_never_fork_the_chain(f: Fixture) {
    // A second handle on the same database stands for a second process.
    let other = Db::open(&f._data.url, &DbOptions::default()).await.unwrap();
    let second = CustomerService::new(other.clone(), f.vault.clone(), f.clock.clone());
    let first = f.customers.clone();
    let writers = [(first, 0usize), (second, 50usize)].map(|(service, base)| {
        tokio::spawn(async move {
            for i in 0..20 {
                service.create(&details(300 + base + i), &Actor::System).await.unwrap();
            }
        })
    });
    let sealers = [f.db.clone(), other.clone()].map(|db| {
        tokio::spawn(async move {
            for _ in 0..30 {
                db.seal_audit(3).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    });
    for task in writers.into_iter().chain(sealers) {
        task.await.unwrap();
    }
    f.audit.seal_and_sign().await.unwrap();
    let chain = f.audit.verify().await.unwrap().unwrap();
    assert_eq!(chain.entries, 40, "every entry sealed exactly once, in one line");
}

async fn inventory_matches_the_schema(f: Fixture) {
    let sql = match f.db.backend() {
        Backend::Sqlite => {
            "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND upper(p.type) = 'BLOB'"
        }
        Backend::Postgres => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type = 'bytea'"
        }
    };
    let rows = sqlx::query(sql).fetch_all(&raw_pool(&f._data.url).await).await.unwrap();
    let schema: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r.get::<String, _>("table_name"), r.get::<String, _>("column_name"))).collect();
    let known: BTreeSet<(String, String)> = INVENTORY
        .iter()
        .map(|field| (field.table.to_owned(), field.column.to_owned()))
        .chain(NON_PERSONAL_BINARY_COLUMNS.iter().map(|(t, c, _)| ((*t).to_owned(), (*c).to_owned())))
        .collect();
    assert_eq!(schema, known, "binary columns in the schema vs. the data inventory");
}

async fn export_follows_the_inventory_and_is_audited(f: Fixture) {
    let a = f.customers.create(&details(13), &operator()).await.unwrap();
    let export = serde_json::to_value(f.customers.export("Customer13@example.org", &cli()).await.unwrap()).unwrap();
    let fields = export["personal_data"].as_array().unwrap();
    assert_eq!(fields.len(), INVENTORY.iter().filter(|f| f.table == "customers").count());
    let by_name = |name: &str| fields.iter().find(|f| f["field"] == name).unwrap().clone();
    assert_eq!(by_name("customers.email")["value"], "customer13@example.org");
    assert_eq!(by_name("customers.address")["value"]["city"], "Springfield");
    assert_eq!(by_name("customers.name")["legal_basis"], "contract");
    assert!(matches!(f.customers.export("nobody@example.org", &cli()).await, Err(AppError::NotFound)));
    let actions: Vec<String> =
        f.db.audit_entries_for_subject(a.id.as_str()).await.unwrap().into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"customer.exported".to_owned()), "{actions:?}");
}

// ---- the email outbox ----

use coffer_app::config::{MailConfig, MailTransport};
use coffer_app::mail::{Letter, Outbox};
use coffer_domain::ManualClock;
use coffer_store::{AuditWriter, OutboxWriter};

fn mail_config(smtp: Option<String>) -> MailConfig {
    MailConfig {
        transport: if smtp.is_some() { MailTransport::Smtp } else { MailTransport::File },
        smtp_url: smtp.map(secrecy::SecretString::from),
        from: "Coffer <no-reply@coffer.test>".into(),
    }
}

fn outbox(f: &Fixture, smtp: Option<String>, clock: Arc<ManualClock>) -> Outbox {
    Outbox::new(&mail_config(smtp), &f.key_dir.with_file_name("data"), f.db.clone(), f.vault.clone(), clock).unwrap()
}

fn now_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(SystemClock.now().0))
}

/// Enqueues a message to a customer together with an audit entry, in one
/// unit, as a service does. Returns the message id.
async fn enqueue_for(f: &Fixture, outbox: &Outbox, id: &CustomerId, subject: &str, body: &str) -> String {
    let stored = f.db.customer(id).await.unwrap().unwrap();
    let key = f.vault.data_key(&stored.data_key_id).await.unwrap().unwrap();
    let to = f.customers.get(id, &Reader::TheCustomer).await.unwrap().details.email;
    let letter = Letter { kind: "test_message", to: &to, subject, body };
    let email = outbox.seal(&letter, &key, &stored.data_key_id, false).unwrap();
    let email_id = email.id.clone();
    let audit = coffer_domain::AuditEntry::new(
        f.clock.now(),
        &operator(),
        coffer_domain::AuditAction::CustomerUpdated,
        Some(id.to_string()),
    );
    f.db.write(move |tx| {
        Box::pin(async move {
            tx.enqueue_email(&email).await?;
            tx.append_audit(&audit).await
        })
    })
    .await
    .unwrap();
    email_id
}

async fn mail_is_enqueued_with_its_change_and_delivered_to_files(f: Fixture) {
    let a = f.customers.create(&details(400), &operator()).await.unwrap();
    let clock = now_clock();
    let outbox = outbox(&f, None, clock);
    let id = enqueue_for(&f, &outbox, &a.id, "Your order", "Thank you, Canarybody400.").await;
    let raw = sqlx::query("SELECT recipient, subject, body FROM outbox_emails")
        .fetch_all(&raw_pool(&f._data.url).await)
        .await
        .unwrap();
    let bytes: Vec<u8> = raw.iter().flat_map(|r| r.get::<Vec<u8>, _>("body")).collect();
    assert!(!contains(&bytes, "Canarybody400"), "bodies are sealed");
    assert_eq!(outbox.deliver_due().await.unwrap(), 1);
    // Named by the data key, the time and the message: `<dek>.<ms>.<id>.eml`.
    let folder = f.key_dir.with_file_name("data").join("mail");
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&format!(".{id}.eml")))
        .expect("the message's file");
    let key_id = f.db.customer(&a.id).await.unwrap().unwrap().data_key_id;
    assert!(file.file_name().unwrap().to_string_lossy().starts_with(&format!("{key_id}.")));
    let eml = std::fs::read_to_string(&file).unwrap();
    assert!(
        eml.contains("Subject: Your order")
            && eml.contains("Canarybody400")
            && eml.contains("To: customer400@example.org"),
        "{eml}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "mail files are private");
    assert_eq!(f.db.email_status(&id).await.unwrap().unwrap().0, "sent");
    assert_eq!(outbox.deliver_due().await.unwrap(), 0, "sent once");
}

async fn smtp_delivery_retries_with_backoff_until_the_server_answers(f: Fixture) {
    let a = f.customers.create(&details(401), &operator()).await.unwrap();
    let mut server = coffer_testkit::SmtpServer::start();
    let port = server.port;
    server.stop();
    let clock = now_clock();
    let outbox = outbox(&f, Some(format!("smtp://127.0.0.1:{port}")), clock.clone());
    let id = enqueue_for(&f, &outbox, &a.id, "Sign-in link", "Open this link.").await;
    assert_eq!(outbox.deliver_due().await.unwrap(), 0);
    let (status, attempts, error) = f.db.email_status(&id).await.unwrap().unwrap();
    assert_eq!((status.as_str(), attempts, error.as_deref()), ("pending", 1, Some("smtp_unreachable")));
    clock.advance(4_000);
    assert_eq!(outbox.deliver_due().await.unwrap(), 0, "not due before its backoff");
    let server = coffer_testkit::SmtpServer::start_on(port);
    clock.advance(1_001);
    assert_eq!(outbox.deliver_due().await.unwrap(), 1);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: Sign-in link") && messages[0].contains("customer401@example.org"));
    let (status, attempts, error) = f.db.email_status(&id).await.unwrap().unwrap();
    assert_eq!((status.as_str(), attempts, error), ("sent".to_owned().as_str(), 2, None));
}

async fn erasure_shreds_pending_mail(f: Fixture) {
    let a = f.customers.create(&details(402), &operator()).await.unwrap();
    let clock = now_clock();
    let outbox = outbox(&f, None, clock);
    let id = enqueue_for(&f, &outbox, &a.id, "Receipt", "Secret body").await;
    f.customers.erase(&a.id, &cli()).await.unwrap();
    assert_eq!(outbox.deliver_due().await.unwrap(), 0);
    assert_eq!(f.db.email_status(&id).await.unwrap().unwrap().0, "shredded");
    assert!(!f.key_dir.with_file_name("data").join("mail").join(format!("{id}.eml")).exists());
    let left: Option<Vec<u8>> = sqlx::query("SELECT body FROM outbox_emails WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&raw_pool(&f._data.url).await)
        .await
        .unwrap()
        .get("body");
    assert_eq!(left, None, "the unreadable ciphertext is dropped too");
}

async fn a_claim_whose_worker_died_is_delivered_after_its_lease(f: Fixture) {
    let a = f.customers.create(&details(403), &operator()).await.unwrap();
    let clock = now_clock();
    let outbox = outbox(&f, None, clock.clone());
    let id = enqueue_for(&f, &outbox, &a.id, "Receipt", "Body").await;
    // A worker claims it and dies before recording anything.
    let claimed = f.db.claim_emails(clock.now(), 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(outbox.deliver_due().await.unwrap(), 0, "another worker leaves a live claim alone");
    clock.advance(60_001);
    assert_eq!(outbox.deliver_due().await.unwrap(), 1, "nothing is lost");
    assert_eq!(f.db.email_status(&id).await.unwrap().unwrap().0, "sent");
}

async fn one_off_key_is_destroyed_once_its_message_is_sent(f: Fixture) {
    let clock = now_clock();
    let outbox = outbox(&f, None, clock);
    let key_id = coffer_domain::DataKeyId::generate();
    let key = f.vault.new_data_key(&key_id).await.unwrap();
    let letter = Letter { kind: "deletion_confirmation", to: "gone@example.org", subject: "Deleted", body: "Bye" };
    let email = outbox.seal(&letter, &key, &key_id, true).unwrap();
    let id = email.id.clone();
    f.db.write(move |tx| Box::pin(async move { tx.enqueue_email(&email).await })).await.unwrap();
    assert_eq!(outbox.deliver_due().await.unwrap(), 1);
    assert!(f.keys.data_key(key_id.as_str()).await.unwrap().is_none(), "the one-off key is destroyed after sending");
    assert_eq!(f.db.email_status(&id).await.unwrap().unwrap().0, "sent");
}

/// Files whose key was destroyed behind this process's back (an erasure
/// that crashed before deleting them; a message delivered while an erasure
/// ran) go at the next sweep. After a process's first sweep, which looks
/// at every file, a sweep looks only at files written since the last one:
/// an erasure deletes the older ones itself.
async fn the_mail_sweep_removes_files_whose_key_is_gone(f: Fixture) {
    let clock = now_clock();
    let (gone, kept) = (
        f.customers.create(&details(404), &operator()).await.unwrap().id,
        f.customers.create(&details(405), &operator()).await.unwrap().id,
    );
    let key_of = |id: CustomerId| {
        let db = f.db.clone();
        async move { db.customer(&id).await.unwrap().unwrap().data_key_id }
    };
    let files_of = |key: &coffer_domain::DataKeyId| {
        let folder = f.key_dir.with_file_name("data").join("mail");
        let prefix = format!("{key}.");
        std::fs::read_dir(folder)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    };
    let sender = outbox(&f, None, clock.clone());
    enqueue_for(&f, &sender, &gone, "Receipt", "Body").await;
    enqueue_for(&f, &sender, &kept, "Receipt", "Body").await;
    assert_eq!(sender.deliver_due().await.unwrap(), 2);
    let (gone_key, kept_key) = (key_of(gone).await, key_of(kept.clone()).await);
    f.keys.delete_data_key(gone_key.as_str()).await.unwrap();
    clock.advance(60 * 60 * 1000);

    // A process's first sweep looks at every file, however old.
    let sweeper = outbox(&f, None, clock.clone());
    assert_eq!(sweeper.sweep_mail_folder(clock.now()).await.unwrap(), 1);
    assert_eq!((files_of(&gone_key), files_of(&kept_key)), (0, 1));

    // A message delivered while an erasure ran, after it deleted the files.
    clock.advance(60 * 1000);
    enqueue_for(&f, &sender, &kept, "Receipt", "Written late").await;
    assert_eq!(sender.deliver_due().await.unwrap(), 1);
    f.keys.delete_data_key(kept_key.as_str()).await.unwrap();
    clock.advance(60 * 1000);
    assert_eq!(sweeper.sweep_mail_folder(clock.now()).await.unwrap(), 1, "the late file goes");
    // The older file was looked at by the first sweep, and the erasure
    // deletes such files itself: it is not looked at again.
    assert_eq!(files_of(&kept_key), 1);
    // A new process looks at everything again.
    let restarted = outbox(&f, None, clock.clone());
    assert_eq!(restarted.sweep_mail_folder(clock.now()).await.unwrap(), 1);
    assert_eq!(files_of(&kept_key), 0);
}

// ---- accounts ----

use coffer_app::accounts::{AccountService, PasswordPool, SignInError};
use coffer_store::LinkPurpose;
use secrecy::{ExposeSecret, SecretString};

const STRONG: &str = "orbit velvet canyon 42 lantern";

fn accounts(f: &Fixture, clock: Arc<ManualClock>) -> (AccountService, Outbox) {
    let outbox = outbox(f, None, clock.clone());
    let service = AccountService::new(
        f.db.clone(),
        f.vault.clone(),
        f.customers.clone(),
        outbox.clone(),
        PasswordPool::new(2),
        clock,
        "http://127.0.0.1:8080".into(),
    );
    (service, outbox)
}

/// The token in the newest link email, read from the file transport as the
/// customer would read the message.
async fn link_from_mail(f: &Fixture, outbox: &Outbox) -> String {
    outbox.deliver_due().await.unwrap();
    let dir = f.key_dir.with_file_name("data").join("mail");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let raw = std::fs::read_to_string(files.last().unwrap()).unwrap();
    // Undo quoted-printable soft line breaks, as a mail client does.
    let text = raw.replace("=\r\n", "").replace("=\n", "");
    let start = text.find("/account/link/").expect("a link in the message") + "/account/link/".len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Customer `n` with a password set through an emailed link: the account
/// service, its clock, the customer's id and the session the link opened.
async fn signed_up(
    f: &Fixture,
    n: usize,
) -> (AccountService, Arc<ManualClock>, CustomerId, coffer_app::accounts::NewSession) {
    let id = f.customers.create(&details(n), &operator()).await.unwrap().id;
    let clock = now_clock();
    let (accounts, outbox) = accounts(f, clock.clone());
    accounts.request_link(&format!("customer{n}@example.org"), LinkPurpose::SignIn).await.unwrap();
    let token = link_from_mail(f, &outbox).await;
    let session = accounts.set_password_with_link(&token, SecretString::from(STRONG), None).await.unwrap();
    (accounts, clock, id, session)
}

/// Signs in with the right password; the account has no second factor.
async fn sign_in_ok(accounts: &AccountService, email: &str) -> coffer_app::accounts::NewSession {
    accounts.sign_in(email, SecretString::from(STRONG)).await.unwrap().unwrap().session().unwrap()
}

async fn link_sets_a_password_once_and_signs_in(f: Fixture) {
    let a = f.customers.create(&details(500), &operator()).await.unwrap();
    let clock = now_clock();
    let (accounts, outbox) = accounts(&f, clock.clone());
    accounts.request_link(" CUSTOMER500@example.org", LinkPurpose::SignIn).await.unwrap();
    accounts.request_link("nobody@example.org", LinkPurpose::SignIn).await.unwrap();
    let token = link_from_mail(&f, &outbox).await;
    assert_eq!(token.len(), 43);
    // A weak password is refused and the link stays usable.
    let weak = accounts.set_password_with_link(&token, SecretString::from("password1234"), None).await.unwrap_err();
    assert!(weak.to_string().contains("too easy to guess"), "{weak}");
    let session = accounts.set_password_with_link(&token, SecretString::from(STRONG), None).await.unwrap();
    assert_eq!(session.customer, a.id);
    assert_eq!(accounts.session(session.token.expose_secret()).await.unwrap(), Some(a.id.clone()));
    let reused = accounts.set_password_with_link(&token, SecretString::from(STRONG), None).await.unwrap_err();
    assert!(reused.to_string().contains("expired or was already used"), "{reused}");
    // The stored hash is sealed, not a readable PHC string.
    let raw = sqlx::query("SELECT password_hash FROM accounts").fetch_all(&raw_pool(&f._data.url).await).await.unwrap();
    let bytes: Vec<u8> = raw.iter().flat_map(|r| r.get::<Vec<u8>, _>("password_hash")).collect();
    assert!(!contains(&bytes, "argon2id"));

    let signed_in = sign_in_ok(&accounts, "customer500@example.org").await;
    assert_ne!(signed_in.token.expose_secret(), session.token.expose_secret(), "a new session id at sign-in");
    let wrong =
        accounts.sign_in("customer500@example.org", SecretString::from("orbit velvet canyon 43")).await.unwrap();
    let unknown = accounts.sign_in("nobody@example.org", SecretString::from(STRONG)).await.unwrap();
    assert_eq!(wrong.unwrap_err(), SignInError::Invalid);
    assert_eq!(unknown.unwrap_err(), SignInError::Invalid, "the same answer for an unknown address");
}

async fn links_expire_after_fifteen_minutes(f: Fixture) {
    f.customers.create(&details(501), &operator()).await.unwrap();
    let clock = now_clock();
    let (accounts, outbox) = accounts(&f, clock.clone());
    accounts.request_link("customer501@example.org", LinkPurpose::Reset).await.unwrap();
    let token = link_from_mail(&f, &outbox).await;
    clock.advance(15 * 60_000 + 1);
    let err = accounts.set_password_with_link(&token, SecretString::from(STRONG), None).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = accounts.set_password_with_link("not-a-real-token", SecretString::from(STRONG), None).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

async fn lock_out_grows_and_treats_unknown_addresses_alike(f: Fixture) {
    let (accounts, clock, _, _) = signed_up(&f, 502).await;
    for address in ["customer502@example.org", "ghost@example.org"] {
        for _ in 0..4 {
            let r = accounts.sign_in(address, SecretString::from("wrong wrong wrong")).await.unwrap();
            assert_eq!(r.unwrap_err(), SignInError::Invalid);
        }
        let fifth = accounts.sign_in(address, SecretString::from("wrong wrong wrong")).await.unwrap();
        assert_eq!(fifth.unwrap_err(), SignInError::Locked { retry_after_ms: 1_000 });
        // While locked even the right password is not tried.
        let locked = accounts.sign_in(address, SecretString::from(STRONG)).await.unwrap();
        assert!(matches!(locked, Err(SignInError::Locked { .. })));
        clock.advance(1_000);
        let sixth = accounts.sign_in(address, SecretString::from("wrong wrong wrong")).await.unwrap();
        assert_eq!(sixth.unwrap_err(), SignInError::Locked { retry_after_ms: 2_000 }, "the delay grows");
        clock.advance(2_000);
    }
    // The right password after the lock resets the count.
    assert!(accounts.sign_in("customer502@example.org", SecretString::from(STRONG)).await.unwrap().is_ok());
    let after = accounts.sign_in("customer502@example.org", SecretString::from("wrong wrong wrong")).await.unwrap();
    assert_eq!(after.unwrap_err(), SignInError::Invalid);
}

async fn sessions_end_idle_absolute_and_on_sign_out(f: Fixture) {
    let (accounts, clock, _, first) = signed_up(&f, 503).await;
    let first = first.token.expose_secret().to_owned();
    // Idle: activity every 29 minutes keeps it; 30 minutes without ends it.
    clock.advance(29 * 60_000);
    assert!(accounts.session(&first).await.unwrap().is_some());
    clock.advance(29 * 60_000);
    assert!(accounts.session(&first).await.unwrap().is_some(), "activity was recorded");
    clock.advance(30 * 60_000);
    assert!(accounts.session(&first).await.unwrap().is_none(), "idle for 30 minutes");
    // Absolute: 12 hours after sign-in, however active.
    let second = sign_in_ok(&accounts, "customer503@example.org").await;
    let second = second.token.expose_secret().to_owned();
    for _ in 0..35 {
        clock.advance(20 * 60_000);
        assert!(accounts.session(&second).await.unwrap().is_some());
    }
    clock.advance(20 * 60_000);
    assert!(accounts.session(&second).await.unwrap().is_none(), "12 hours after sign-in");
    // Sign out, and sign out everywhere.
    let a = sign_in_ok(&accounts, "customer503@example.org").await;
    let b = sign_in_ok(&accounts, "customer503@example.org").await;
    accounts.sign_out(a.token.expose_secret()).await.unwrap();
    assert!(accounts.session(a.token.expose_secret()).await.unwrap().is_none(), "no replay after sign-out");
    assert!(accounts.session(b.token.expose_secret()).await.unwrap().is_some());
    let own = coffer_app::request::RequestContext::new(coffer_domain::Principal::Customer(b.customer.to_string()));
    assert_eq!(accounts.sign_out_everywhere(&own).await.unwrap(), 3, "b, and the two that had expired");
    assert!(accounts.session(b.token.expose_secret()).await.unwrap().is_none());
}

async fn erasure_ends_the_account_and_its_sessions(f: Fixture) {
    let (accounts, _, id, session) = signed_up(&f, 504).await;
    f.customers.erase(&id, &cli()).await.unwrap();
    assert!(accounts.session(session.token.expose_secret()).await.unwrap().is_none());
    let again = accounts.sign_in("customer504@example.org", SecretString::from(STRONG)).await.unwrap();
    assert_eq!(again.unwrap_err(), SignInError::Invalid);
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(&raw_pool(&f._data.url).await).await.unwrap();
    assert_eq!(rows, 0);
}

async fn unknown_addresses_run_the_same_verification(f: Fixture) {
    let clock = now_clock();
    let pool = PasswordPool::new(2);
    let outbox = outbox(&f, None, clock.clone());
    let accounts = AccountService::new(
        f.db.clone(),
        f.vault.clone(),
        f.customers.clone(),
        outbox,
        pool.clone(),
        clock,
        String::new(),
    );
    let id = f.customers.create(&details(530), &operator()).await.unwrap().id;
    accounts.set_demo_password(&id, SecretString::from(STRONG)).await.unwrap();
    for address in ["customer530@example.org", "ghost530@example.org"] {
        let before = pool.verifications();
        let answer = accounts.sign_in(address, SecretString::from("wrong wrong wrong")).await.unwrap();
        assert_eq!(answer.unwrap_err(), SignInError::Invalid, "{address}: the same answer");
        assert_eq!(pool.verifications(), before + 1, "{address}: one argon2id verification");
    }
}

// ---- staff ----

use coffer_app::accounts::{AccountError, StaffService};
use coffer_domain::StaffRole;

fn staff(f: &Fixture, clock: Arc<ManualClock>) -> (StaffService, PasswordPool) {
    let pool = PasswordPool::new(2);
    (StaffService::new(f.db.clone(), f.vault.clone(), pool.clone(), clock, "http://coffer.test".into()), pool)
}

fn seconds(clock: &ManualClock) -> u64 {
    u64::try_from(clock.now().0 / 1000).unwrap()
}

/// Adds and enrols a staff member; the TOTP secret and the session token.
async fn enrolled_staff(staff: &StaffService, clock: &ManualClock, email: &str, role: StaffRole) -> (Vec<u8>, String) {
    let link = staff.add(email, role, &cli()).await.unwrap();
    let token = link.expose_secret().rsplit('/').next().unwrap().to_owned();
    let setup = staff.start_enrolment(&token, None).await.unwrap();
    let secret = coffer_crypto::totp_secret_from_base32(setup.secret.expose_secret()).unwrap();
    let code = coffer_crypto::totp_code(&secret, seconds(clock)).unwrap();
    let enrolled = staff.enrol(&token, SecretString::from(STRONG), setup.secret.expose_secret(), &code).await.unwrap();
    (secret, enrolled.session.token.expose_secret().to_owned())
}

async fn staff_enrol_with_totp_and_always_need_the_code(f: Fixture) {
    let clock = now_clock();
    let (staff, _) = staff(&f, clock.clone());
    let link = staff.add(" Ops.Lead@Example.org ", StaffRole::Dpo, &cli()).await.unwrap();
    let link = link.expose_secret().to_owned();
    assert!(link.starts_with("http://coffer.test/staff/enrol/"), "{link}");
    let token = link.rsplit('/').next().unwrap();
    // Adding again before enrolment gives a new link; with another role, a clear refusal.
    assert!(staff.add("ops.lead@example.org", StaffRole::Dpo, &cli()).await.is_ok());
    assert!(matches!(
        staff.add("ops.lead@example.org", StaffRole::Admin, &cli()).await,
        Err(AppError::Account(AccountError::RoleMismatch("dpo")))
    ));
    assert!(matches!(staff.add("not an address", StaffRole::Dpo, &cli()).await, Err(AppError::Customer(_))));

    let setup = staff.start_enrolment(token, None).await.unwrap();
    assert!(setup.uri.expose_secret().starts_with("otpauth://totp/"));
    let secret = coffer_crypto::totp_secret_from_base32(setup.secret.expose_secret()).unwrap();
    let code = coffer_crypto::totp_code(&secret, seconds(&clock)).unwrap();
    // A weak password and a wrong code are refused, and the link stays usable.
    let weak = staff.enrol(token, SecretString::from("password1234"), setup.secret.expose_secret(), &code).await;
    assert!(matches!(weak, Err(AppError::Account(AccountError::WeakPassword(_)))), "{weak:?}");
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let bad_code = staff.enrol(token, SecretString::from(STRONG), setup.secret.expose_secret(), &wrong).await;
    assert!(matches!(bad_code, Err(AppError::Account(AccountError::CodeMismatch))), "{bad_code:?}");
    let enrolled = staff.enrol(token, SecretString::from(STRONG), setup.secret.expose_secret(), &code).await.unwrap();
    assert_eq!(enrolled.recovery_codes.len(), 10);
    let member = staff.session(enrolled.session.token.expose_secret()).await.unwrap().unwrap();
    assert_eq!(member.role, StaffRole::Dpo);
    assert_eq!(staff.email_of(&member.id).await.unwrap(), "Ops.Lead@Example.org");
    // The link works once; an enrolled address cannot be added again.
    let again = staff.enrol(token, SecretString::from(STRONG), setup.secret.expose_secret(), &code).await;
    assert!(matches!(again, Err(AppError::LinkGone(_))), "{again:?}");
    assert!(matches!(
        staff.add("OPS.LEAD@example.org", StaffRole::Dpo, &cli()).await,
        Err(AppError::Account(AccountError::AlreadyEnrolled))
    ));

    // A right password gives a ticket, never a session: the code is required.
    let ticket = staff.sign_in("ops.lead@example.org", SecretString::from(STRONG)).await.unwrap().unwrap();
    assert!(staff.session(ticket.expose_secret()).await.unwrap().is_none(), "a ticket is not a session");
    // The enrolment's own step was spent: the same code does not sign in.
    let replay = staff.complete_sign_in(ticket.expose_secret(), &code).await.unwrap();
    assert_eq!(replay.unwrap_err(), SignInError::Invalid);
    clock.advance(30_000);
    let next = coffer_crypto::totp_code(&secret, seconds(&clock)).unwrap();
    let session = staff.complete_sign_in(ticket.expose_secret(), &next).await.unwrap().unwrap();
    assert_eq!(session.member, member);
    // Recovery codes: once each, with spaces and capitals forgiven.
    let ticket = staff.sign_in("ops.lead@example.org", SecretString::from(STRONG)).await.unwrap().unwrap();
    let recovery = enrolled.recovery_codes[0].to_uppercase();
    assert!(staff.complete_sign_in(ticket.expose_secret(), &format!(" {recovery} ")).await.unwrap().is_ok());
    let ticket = staff.sign_in("ops.lead@example.org", SecretString::from(STRONG)).await.unwrap().unwrap();
    let reused = staff.complete_sign_in(ticket.expose_secret(), &recovery).await.unwrap();
    assert_eq!(reused.unwrap_err(), SignInError::Invalid);
    // Sign-out ends the session.
    staff.sign_out(session.token.expose_secret()).await.unwrap();
    assert!(staff.session(session.token.expose_secret()).await.unwrap().is_none());
    // Added and enrolled are audited, by id only.
    let added = f.db.audit_entries_for_subject(&format!("{} dpo", member.id)).await.unwrap();
    assert_eq!(added.iter().filter(|e| e.action == "staff.added").count(), 2, "two links were issued");
    let enrolled = f.db.audit_entries_for_subject(member.id.as_str()).await.unwrap();
    assert_eq!(enrolled.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["staff.enrolled"]);
}

async fn staff_sign_in_refuses_replays_and_the_unenrolled(f: Fixture) {
    let clock = now_clock();
    let (staff, pool) = staff(&f, clock.clone());
    // Not enrolled yet: the same answer and the same work as an unknown address.
    staff.add("new.hire@example.org", StaffRole::Support, &cli()).await.unwrap();
    for address in ["new.hire@example.org", "nobody@example.org"] {
        let before = pool.verifications();
        let answer = staff.sign_in(address, SecretString::from(STRONG)).await.unwrap();
        assert_eq!(answer.unwrap_err(), SignInError::Invalid, "{address}");
        assert_eq!(pool.verifications(), before + 1, "{address}: one argon2id verification");
    }
    let (secret, _) = enrolled_staff(&staff, &clock, "reviewer@example.org", StaffRole::Reviewer).await;
    clock.advance(30_000);
    let code = coffer_crypto::totp_code(&secret, seconds(&clock)).unwrap();
    let first = staff.sign_in("reviewer@example.org", SecretString::from(STRONG)).await.unwrap().unwrap();
    assert!(staff.complete_sign_in(first.expose_secret(), &code).await.unwrap().is_ok());
    // The ticket is spent, and the same code is not accepted for another ticket.
    assert_eq!(staff.complete_sign_in(first.expose_secret(), &code).await.unwrap().unwrap_err(), SignInError::Invalid);
    let second = staff.sign_in("reviewer@example.org", SecretString::from(STRONG)).await.unwrap().unwrap();
    assert_eq!(staff.complete_sign_in(second.expose_secret(), &code).await.unwrap().unwrap_err(), SignInError::Invalid);
    // Wrong codes (the replay above was the first) lock the second step.
    for _ in 0..3 {
        let r = staff.complete_sign_in(second.expose_secret(), "000000").await.unwrap();
        assert_eq!(r.unwrap_err(), SignInError::Invalid);
    }
    let locked = staff.complete_sign_in(second.expose_secret(), "000000").await.unwrap();
    assert!(matches!(locked, Err(SignInError::Locked { .. })), "{locked:?}");
    // Tickets expire after five minutes.
    clock.advance(5 * 60_000);
    let late = coffer_crypto::totp_code(&secret, seconds(&clock)).unwrap();
    assert_eq!(staff.complete_sign_in(second.expose_secret(), &late).await.unwrap().unwrap_err(), SignInError::Invalid);
    // Wrong passwords lock the address; a customer's failures never count here.
    for _ in 0..5 {
        let _ = staff.sign_in("reviewer@example.org", SecretString::from("wrong wrong wrong")).await.unwrap();
    }
    let locked = staff.sign_in("reviewer@example.org", SecretString::from(STRONG)).await.unwrap();
    assert!(matches!(locked, Err(SignInError::Locked { .. })));
}

async fn disclosures_are_listed_in_the_export(f: Fixture) {
    let id = f.customers.create(&details(540), &operator()).await.unwrap().id;
    let other = f.customers.create(&details(541), &operator()).await.unwrap().id;
    let now = f.clock.now();
    let records =
        [(&id, "vendor", "ven_01"), (&id, "authority", "District Court of Example"), (&other, "vendor", "ven_02")];
    for (n, (customer, kind, recipient)) in records.into_iter().enumerate() {
        let record = coffer_store::Disclosure {
            id: coffer_domain::DisclosureId::generate().to_string(),
            customer_id: customer.clone(),
            recipient_kind: kind.to_owned(),
            recipient: recipient.to_owned(),
            fields: vec!["customers.name".into(), "customers.email".into()],
            purpose: "Filling the order".into(),
            legal_basis: "contract".into(),
            disclosed_at: coffer_domain::Millis(now.0 + i64::try_from(n).unwrap()),
        };
        f.db.write(move |tx| Box::pin(async move { coffer_store::insert_disclosure(tx, &record).await }))
            .await
            .unwrap();
    }
    let export = serde_json::to_value(f.customers.export_by_id(&id, &Reader::TheCustomer).await.unwrap()).unwrap();
    let listed = export["disclosures"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "only this customer's records: {listed:?}");
    assert_eq!(listed[0]["recipient_kind"], "vendor");
    assert_eq!(listed[1]["recipient"], "District Court of Example");
    assert_eq!(listed[0]["fields"], serde_json::json!(["customers.name", "customers.email"]));
}

/// Issue 13: exporting, erasing, adding staff and reading a vendor's
/// orders check a named permission inside the service, so a caller that
/// skips the web's checks (the command line, a future route) is refused
/// all the same, and nothing is read, written or audited.
async fn data_services_refuse_a_principal_without_the_permission(f: Fixture) {
    use coffer_app::request::RequestContext;
    use coffer_domain::{Permission, Principal};
    let a = f.customers.create(&details(60), &operator()).await.unwrap();
    let b = f.customers.create(&details(61), &operator()).await.unwrap();
    let member = |role| RequestContext::new(Principal::Staff { id: "stf_x".into(), role });
    let customer = |id: &CustomerId| RequestContext::new(Principal::Customer(id.to_string()));
    let audited = || async { count_audit(&f).await };
    let before = audited().await;
    for principal in [member(StaffRole::Support), member(StaffRole::Reviewer), customer(&a.id)] {
        let refused = f.customers.export("customer60@example.org", &principal).await;
        assert!(matches!(refused, Err(AppError::Forbidden(Permission::ExportCustomerData))), "{principal:?}");
    }
    // A customer erases their own account only; support erases nobody.
    let refused = f.customers.erase(&b.id, &customer(&a.id)).await;
    assert!(matches!(refused, Err(AppError::Forbidden(Permission::EraseCustomer))));
    let refused = f.customers.erase(&b.id, &member(StaffRole::Support)).await;
    assert!(matches!(refused, Err(AppError::Forbidden(Permission::EraseCustomer))));
    assert_eq!(audited().await, before, "a refusal reads and audits nothing");
    assert!(f.customers.get(&b.id, &Reader::Other(operator())).await.is_ok(), "b is still there");
    // The DPO exports and erases; only an admin adds staff.
    assert!(f.customers.export("customer60@example.org", &member(StaffRole::Dpo)).await.is_ok());
    f.customers.erase(&b.id, &member(StaffRole::Dpo)).await.unwrap();
    f.customers.erase(&a.id, &customer(&a.id)).await.unwrap();
    let (staff, _) = staff(&f, Arc::new(ManualClock::at(SystemClock.now().0)));
    let refused = staff.add("new.dpo@example.org", StaffRole::Dpo, &member(StaffRole::Dpo)).await;
    assert!(matches!(refused, Err(AppError::Forbidden(Permission::AddStaff))));
    assert!(staff.add("new.dpo@example.org", StaffRole::Dpo, &member(StaffRole::Admin)).await.is_ok());
    // Vendor orders: a vendor's own principal only, never staff or a
    // customer (every vendor method finds its vendor this way first).
    use coffer_app::accounts::vendor_users::own_vendor;
    for principal in [member(StaffRole::Admin), cli(), customer(&a.id)] {
        let refused = own_vendor(&principal, Permission::ReadOwnVendorOrders);
        assert!(matches!(refused, Err(AppError::Forbidden(Permission::ReadOwnVendorOrders))), "{principal:?}");
    }
    let id = coffer_domain::VendorId::generate();
    let vendor = RequestContext::new(Principal::VendorKey(id.to_string()));
    assert_eq!(own_vendor(&vendor, Permission::ReadOwnVendorOrders).unwrap(), id);
    // A customer's own-account methods serve only a signed-in customer.
    assert!(matches!(vendor.own_account(), Err(AppError::Forbidden(Permission::UseOwnAccount))));
    assert!(matches!(cli().own_account(), Err(AppError::Forbidden(Permission::UseOwnAccount))));
    assert!(matches!(member(StaffRole::Admin).own_account(), Err(AppError::Forbidden(Permission::UseOwnAccount))));
    let c = f.customers.create(&details(62), &operator()).await.unwrap();
    assert_eq!(customer(&c.id).own_account().unwrap(), c.id);
}

async fn count_audit(f: &Fixture) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log").fetch_one(&raw_pool(&f._data.url).await).await.unwrap();
    n
}
