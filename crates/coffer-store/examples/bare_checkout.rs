//! The ceiling for checkout on SQLite (`scripts/bench --only checkout`): a
//! bare rusqlite loop writing the rows the server writes for one approved
//! one-line card order, in one transaction per order, on Coffer's own
//! schema (migrated here) with the server's pragmas. A new buyer's order
//! also writes a data key (kept in the key store by the server, in this
//! file here: the ceiling has one commit per order), the customer row, its
//! audit entry and the invitation link; `--repeat` writes a repeat buyer's.
//!
//! `cargo run --release -p coffer-store --example bare_checkout -- DIR SECONDS [--repeat]`
//! prints `orders/s N`. With `--migrate URL` it only migrates that database
//! (the PostgreSQL ceiling, pgbench, writes the same rows on it: see
//! `scripts/bench`).

use rusqlite::{Connection, params};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--migrate"), Some(url)) = (args.get(1).map(String::as_str), args.get(2)) {
        return migrate(url);
    }
    let (Some(dir), Some(seconds)) = (args.get(1), args.get(2).and_then(|s| s.parse::<f64>().ok())) else {
        return Err("usage: bare_checkout DIR SECONDS [--repeat]".into());
    };
    let repeat = args.iter().any(|a| a == "--repeat");
    let path = std::path::Path::new(dir).join("bare.db");
    migrate(&format!("sqlite://{}?mode=rwc", path.display()))?;
    let mut conn = Connection::open(&path)?;
    // The server's writer connection (coffer-store/src/direct.rs).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; \
         PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0; \
         CREATE TABLE IF NOT EXISTS data_keys (id TEXT PRIMARY KEY NOT NULL, kek_version INTEGER NOT NULL, \
         wrapped BLOB NOT NULL, created_at INTEGER NOT NULL);",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO privacy_policy_versions (version, html, published_at) VALUES ('v1', '<p>x</p>', 1)",
        [],
    )?;
    // As the server does: the WAL is checkpointed beside the writer.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || -> rusqlite::Result<()> {
            let conn = Connection::open(path)?;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(())
        })
    };
    let (sealed, key) = (vec![7u8; 96], vec![9u8; 300]);
    let (started, mut orders) = (Instant::now(), 0u64);
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        write_order(&mut conn, orders, repeat, &sealed, &key)?;
        orders += 1;
    }
    let rate = orders as f64 / started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer.join().map_err(|_| "the checkpointer stopped")??;
    println!("orders/s {rate:.0}");
    Ok(())
}

/// Coffer's schema, by the store's own migrations.
fn migrate(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let db = coffer_store::Db::open(url, &coffer_store::DbOptions::default()).await?;
        db.migrate().await?;
        db.close().await;
        Ok::<_, coffer_store::StoreError>(())
    })?;
    Ok(())
}

/// One order's rows in one transaction.
fn write_order(conn: &mut Connection, n: u64, repeat: bool, sealed: &[u8], key: &[u8]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let (order, customer, data_key) =
        (format!("ord_{n}"), if repeat { "cus_0".to_owned() } else { format!("cus_{n}") }, format!("dk_{n}"));
    if !repeat || n == 0 {
        tx.prepare_cached("INSERT INTO data_keys (id, kek_version, wrapped, created_at) VALUES (?1, 1, ?2, 1)")?
            .execute(params![data_key, &sealed[..48]])?;
        tx.prepare_cached(
            "INSERT INTO customers (id, data_key_id, email_index, email_index_version, name, email, phone, address, \
             created_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4, ?4, 1, 1)",
        )?
        .execute(params![customer, data_key, format!("index-{n}").into_bytes(), sealed])?;
        audit(&tx, &format!("aud_c{n}"), "customer.created", &customer)?;
        tx.prepare_cached(
            "INSERT INTO sign_in_links (token_hash, realm, subject_id, purpose, created_at, expires_at) \
             VALUES (?1, 'customer', ?2, 'invitation', 1, 2)",
        )?
        .execute(params![format!("link-{n}").into_bytes(), customer])?;
    }
    tx.prepare_cached(
        "INSERT INTO orders (id, customer_id, data_key_id, status, currency, subtotal, tax, total, tax_country, \
         payment_method, name, email, phone, address, card, adult, policy_version, consent_at, consent_channel, \
         fraud_score, fraud_reasons, created_at, updated_at, tax_rate, payment_token) VALUES (?1, ?2, ?3, \
         'fulfilled', 'USD', 1999, 380, 2379, 'DE', 'card', ?4, ?4, ?4, ?4, ?4, 1, 'v1', 1, 'api', 0, '', 1, 1, \
         1900, ?4)",
    )?
    .execute(params![order, customer, data_key, sealed])?;
    tx.prepare_cached(
        "INSERT INTO order_lines (order_id, line_no, product_id, vendor_id, quantity, unit_price, line_total) \
         VALUES (?1, 1, 'prd_1', 'ven_1', 1, 1999, 1999)",
    )?
    .execute(params![order])?;
    tx.prepare_cached(
        "INSERT INTO license_keys (order_id, line_no, product_id, vendor_id, license_key, issued_at) \
         VALUES (?1, 1, 'prd_1', 'ven_1', ?2, 1)",
    )?
    .execute(params![order, key])?;
    tx.prepare_cached("INSERT INTO invoice_queue (order_id, queued_at) VALUES (?1, 1)")?.execute(params![order])?;
    tx.prepare_cached(
        "INSERT INTO order_events (order_id, seq, at, from_status, to_status, actor, reason) \
         VALUES (?1, 1, 1, NULL, 'fulfilled', ?2, 'payment approved; delivered')",
    )?
    .execute(params![order, format!("customer:{customer}")])?;
    audit(&tx, &format!("aud_o{n}"), "order.placed", &order)?;
    let email = format!("eml_{n}");
    tx.prepare_cached(
        "INSERT INTO outbox_emails (id, kind, data_key_id, one_off_key, recipient, subject, body, status, created_at) \
         VALUES (?1, 'order_placed', ?2, 0, ?3, ?3, ?4, 'pending', 1)",
    )?
    .execute(params![email, data_key, sealed, key])?;
    tx.prepare_cached(
        "INSERT INTO jobs (id, kind, payload, status, attempts, next_attempt_at, created_at) \
         VALUES (?1, 'email', ?2, 'pending', 0, 1, 1)",
    )?
    .execute(params![email, format!("{{\"message\":\"{email}\"}}")])?;
    tx.commit()
}

fn audit(tx: &rusqlite::Transaction<'_>, id: &str, action: &str, subject: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (id, at, actor, action, subject, request_id) VALUES (?1, 1, 'customer:c', ?2, ?3, ?1)",
    )?
    .execute(params![id, action, subject])?;
    Ok(())
}
