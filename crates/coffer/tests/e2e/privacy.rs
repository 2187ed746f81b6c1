//! The privacy core end to end: the real server and CLI, on SQLite and
//! PostgreSQL, checked from the outside (raw database files, dumps, logs).

use crate::{client, on_both_backends};
use base64::Engine;
use coffer_app::SystemClock;
use coffer_app::privacy::{CustomerService, FileKeyProvider, Reader, Vault};
use coffer_domain::{Actor, Clock, CustomerDetails, MailingAddress};
use coffer_store::{Db, DbOptions, KeyStore};
use coffer_testkit::{TestBackend, TestServer};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

on_both_backends!(
    p10_no_plaintext_at_rest_or_in_logs,
    audit_verify_cli_names_the_first_bad_entry,
    export_cli_prints_json_and_html,
    erase_cli_shreds_and_unknown_email_is_an_error,
    staged_key_rotation_from_the_cli,
);

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The server's customer service, opened from the test process on the same
/// databases and key directory (as a second server would).
pub(crate) async fn customers(server: &TestServer) -> CustomerService {
    let db = Db::open(&server.database_url(), &DbOptions::default()).await.unwrap();
    let keys = KeyStore::open(&server.key_store_url(), &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provider = FileKeyProvider::open(&server.key_dir()).unwrap();
    let vault = Arc::new(Vault::open(Arc::new(provider), keys, clock.clone()).await.unwrap());
    CustomerService::new(db, vault, clock)
}

/// Unique strings for every personal field of one customer.
struct Canaries {
    details: CustomerDetails,
    strings: Vec<String>,
}

/// A Luhn-valid card number no one else uses.
fn canary_card() -> String {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let digits: String = tag.chars().rev().take(14).map(|c| char::from(b'0' + (c as u8 % 10))).collect();
    let body = format!("5{digits}");
    (0..10).map(|d| format!("{body}{d}")).find(|n| coffer_domain::order::luhn_valid(n)).unwrap()
}

fn guardian_canary(name: &str) -> String {
    format!("Guardian of {name}")
}

fn canaries() -> Canaries {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let tag = &tag[tag.len() - 12..];
    let digits: String = tag.chars().map(|c| char::from(b'0' + (c as u8 % 10))).collect();
    let phone = format!("+1 {}", &digits[..10]);
    let details = CustomerDetails {
        name: format!("Canaryname {tag}"),
        email: format!("canarymail{tag}@example.org"),
        phone: Some(phone.clone()),
        address: Some(MailingAddress {
            line1: format!("Canaryline {tag}"),
            line2: format!("Canaryflat {tag}"),
            city: format!("Canarycity {tag}"),
            region: format!("Canaryregion {tag}"),
            postal_code: format!("Z{}", &digits[..9]),
            country: "NL".into(),
        }),
    };
    let address = details.address.clone().unwrap();
    let strings = vec![
        details.name.clone(),
        details.email.clone(),
        phone,
        address.line1,
        address.line2,
        address.city,
        address.region,
        address.postal_code,
    ];
    Canaries { details, strings }
}

/// The forms a leaked value could take: plain, hex, and base64 at each of
/// the three alignments.
fn encodings(value: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![value.as_bytes().to_vec()];
    forms.push(value.bytes().map(|b| format!("{b:02x}")).collect::<String>().into_bytes());
    for offset in 0..3 {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&value.as_bytes()[offset..]);
        // Drop the last block, which depends on what follows the value.
        forms.push(encoded.as_bytes()[..encoded.len().saturating_sub(4)].to_vec());
    }
    forms
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn hits(haystack: &[u8], strings: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for value in strings {
        for form in encodings(value) {
            if form.len() >= 8 && haystack.windows(form.len()).any(|w| w == form.as_slice()) {
                found.push(format!("{value} (as {})", String::from_utf8_lossy(&form)));
            }
        }
    }
    found
}

async fn p10_no_plaintext_at_rest_or_in_logs(server: TestServer) {
    let service = customers(&server).await;
    let people: Vec<Canaries> = (0..4).map(|_| canaries()).collect();
    let mut ids = Vec::new();
    for person in &people {
        ids.push(service.create(&person.details, &Actor::System).await.unwrap().id);
    }
    // The flows that exist: reads by others, an update, lookups, export,
    // erasure, audit verification, backups, and requests that carry a
    // canary in the path and query.
    service.get(&ids[0], &Reader::Other(Actor::Cli("dpo".into()))).await.unwrap();
    let mut moved = people[1].details.clone();
    moved.name = format!("{} Updated", moved.name);
    service.update(&ids[1], &moved, &Actor::System).await.unwrap();
    let mut cli_logs = Vec::new();
    let export = server.cli(&["export", "--email", &people[2].details.email]);
    ok(&export);
    cli_logs.extend(export.stderr);
    let erase = server.cli(&["erase", "--email", &people[3].details.email]);
    ok(&erase);
    cli_logs.extend(erase.stderr);
    let verify = server.cli(&["audit", "verify"]);
    ok(&verify);
    cli_logs.extend(verify.stderr);
    let http = client();
    for person in &people {
        let email = &person.details.email;
        http.get(server.url(&format!("/api/v1/products?vendor={email}"))).send().await.unwrap();
        http.get(server.url(&format!("/products/{email}"))).send().await.unwrap();
    }
    // Checkout: orders by two of them, paid with canary card numbers (the
    // number and CVC go to the gateway only) and, for one, a guardian.
    let version = crate::checkout::policy_version(&server).await;
    let mut card_canaries = Vec::new();
    for (n, person) in people.iter().take(2).enumerate() {
        let card = canary_card();
        let mut body = crate::checkout::order(&server, &version, &card, &person.details.email);
        body["customer"] = serde_json::to_value(&person.details).unwrap();
        body["customer"]["address"]["country"] = serde_json::json!("DE");
        if n == 1 {
            body["age"] = serde_json::json!({"adult": false, "guardian_name": guardian_canary(&person.strings[0]), "guardian_consents": true});
        }
        let (status, placed) = crate::checkout::post_order(&server, &body).await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{placed}");
        card_canaries.push(card);
    }
    let mut strings: Vec<String> = people.iter().flat_map(|p| p.strings.clone()).collect();
    strings.push(moved.name.clone());
    strings.extend(card_canaries);
    strings.push(guardian_canary(&people[1].strings[0]));

    // The mail worker has delivered the order emails before anything is
    // searched (looking earlier would miss what it writes).
    let pool = sqlx::AnyPool::connect(&server.database_url()).await.unwrap();
    for attempt in 0.. {
        let (pending,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox_emails WHERE status = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(attempt < 200, "the mail worker did not deliver");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The file transport is a local mailbox: the buyers' messages are there
    // (which shows the search below would see them)...
    let mail_dir = server.data_dir.join("mail");
    let mail_text = |dir: &Path| {
        let mut files = Vec::new();
        files_under(dir, &mut files);
        files.iter().flat_map(|f| std::fs::read(f).unwrap_or_default()).collect::<Vec<u8>>()
    };
    assert!(!hits(&mail_text(&mail_dir), &people[0].strings).is_empty(), "the first buyer's mail was delivered");
    // ...and the first buyer's copies go with their erasure.
    ok(&server.cli(&["erase", "--email", &people[0].details.email]));
    assert!(hits(&mail_text(&mail_dir), &people[0].strings).is_empty(), "erasure deleted the buyer's mail files");

    let mut files = Vec::new();
    files_under(server.root(), &mut files);
    let backup = server.root().join("backup.db");
    if server.database.backend == TestBackend::Sqlite {
        ok(&server.cli(&["backup", "create", backup.to_str().unwrap()]));
        files.push(backup.clone());
        assert!(files.iter().any(|f| f.to_string_lossy().ends_with("coffer.db-wal")), "the -wal file is searched");
    }
    let mut leaks = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        // The mailbox holds what was sent to the living buyer, by design;
        // everything else must hold no one's data in the clear.
        let searched: Vec<String> = if file.starts_with(&mail_dir) {
            strings.iter().filter(|s| !people[1].strings.contains(s)).cloned().collect()
        } else {
            strings.clone()
        };
        for hit in hits(&bytes, &searched) {
            leaks.push(format!("{}: {hit}", file.display()));
        }
    }
    if server.database.backend == TestBackend::Postgres {
        let dump = std::process::Command::new("pg_dump").arg(&server.database.url).output().unwrap();
        assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
        assert!(String::from_utf8_lossy(&dump.stdout).contains("CREATE TABLE public.customers"));
        for hit in hits(&dump.stdout, &strings) {
            leaks.push(format!("pg_dump: {hit}"));
        }
    }
    for hit in hits(server.logs().as_bytes(), &strings).into_iter().chain(hits(&cli_logs, &strings)) {
        leaks.push(format!("logs: {hit}"));
    }
    assert!(leaks.is_empty(), "personal data found outside ciphertext:\n{}", leaks.join("\n"));
    // The search itself works: the export's stdout (meant for the DPO) has them.
    assert!(!hits(&export.stdout, &people[2].strings).is_empty());
}

async fn audit_verify_cli_names_the_first_bad_entry(server: TestServer) {
    let service = customers(&server).await;
    for _ in 0..3 {
        service.create(&canaries().details, &Actor::System).await.unwrap();
    }
    let out = ok(&server.cli(&["audit", "verify"]));
    assert!(out.contains("The audit chain is intact"), "{out}");
    // The edit goes around the store, as an attacker's would.
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&server.database_url()).await.unwrap();
    sqlx::query("UPDATE audit_log SET action = 'customer.read' WHERE seq = 2").execute(&pool).await.unwrap();
    let err = failed(&server.cli(&["audit", "verify"]));
    assert!(err.contains("audit entry 2") && err.contains("altered"), "{err}");
}

async fn export_cli_prints_json_and_html(server: TestServer) {
    let json = ok(&server.cli(&["export", "--email", "Dana@Demo.Coffer.Test"]));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let fields = value["personal_data"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["field"] == "customers.name" && f["value"] == "Dana Demo"), "{json}");
    let html = ok(&server.cli(&["export", "--email", "dana@demo.coffer.test", "--format", "html"]));
    assert!(html.starts_with("<!doctype html>") && html.contains("Dana Demo") && html.contains("Why we hold it"));
    let err = failed(&server.cli(&["export", "--email", "nobody@example.org"]));
    assert!(err.contains("no customer has this email address"), "{err}");
    assert!(!err.contains("nobody@"), "the error does not repeat the address: {err}");
}

async fn erase_cli_shreds_and_unknown_email_is_an_error(server: TestServer) {
    let out = ok(&server.cli(&["erase", "--email", "dana@demo.coffer.test"]));
    assert!(out.contains("erased"), "{out}");
    let err = failed(&server.cli(&["export", "--email", "dana@demo.coffer.test"]));
    assert!(err.contains("no customer has this email address"), "{err}");
    let err = failed(&server.cli(&["erase", "--email", "dana@demo.coffer.test"]));
    assert!(err.contains("no customer has this email address"), "{err}");
    // The running server still answers and knows nothing of her.
    let health = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let service = customers(&server).await;
    assert_eq!(service.find_by_email("dana@demo.coffer.test").await.unwrap(), None);
}

async fn staged_key_rotation_from_the_cli(server: TestServer) {
    let out = ok(&server.cli(&["keys", "add"]));
    assert!(out.contains("version 2 added"), "{out}");
    let out = ok(&server.cli(&["keys", "activate"]));
    assert!(out.contains("version 2 is active"), "{out}");
    // The running server re-wraps in the background (it checks every 5 s);
    // until then `retire` refuses.
    let mut retired = false;
    for _ in 0..100 {
        let out = server.cli(&["keys", "retire"]);
        if out.status.success() {
            retired = true;
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("still wraps"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(retired, "the server re-wrapped everything and retire went through");
    let status = ok(&server.cli(&["keys", "status"]));
    assert!(status.contains("version 1: Retired, 0 wraps") && status.contains("version 2: Active"), "{status}");
    // Data still opens, for the server and for a fresh process.
    let json = ok(&server.cli(&["export", "--email", "dana@demo.coffer.test"]));
    assert!(json.contains("Dana Demo"));
    let out = ok(&server.cli(&["keys", "rotate"]));
    assert!(out.contains("version 3 is active"), "{out}");
    ok(&server.cli(&["audit", "verify"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p09_erasure_survives_backup_restore() {
    let server = crate::server(TestBackend::Sqlite).await;
    let backup = server.root().join("before-erasure.db");
    ok(&server.cli(&["backup", "create", backup.to_str().unwrap()]));
    let err = failed(&server.cli(&["backup", "create", backup.to_str().unwrap()]));
    assert!(err.contains("already exists"), "{err}");
    // Signed audit entries after the backup, which the restore will lose.
    for _ in 0..3 {
        ok(&server.cli(&["export", "--email", "dana@demo.coffer.test"]));
    }
    ok(&server.cli(&["erase", "--email", "dana@demo.coffer.test"]));
    let err = failed(&server.cli(&["backup", "restore", backup.to_str().unwrap()]));
    assert!(err.contains("stop it before restoring"), "a live server's database is never swapped: {err}");
    let bytes = std::fs::read(&backup).unwrap();
    assert!(hits(&bytes, &["Dana Demo".to_owned()]).is_empty(), "backups hold ciphertext only");
    // Finding 14: the backup, the data database and the key store (with
    // their -wal files) are readable by their owner only.
    let mode = |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions());
    let key_store = server.key_dir().join("keystore.db");
    let data = server.data_dir.join("coffer.db");
    for file in [
        backup.clone(),
        key_store.clone(),
        data.clone(),
        data.with_extension("db-wal"),
        key_store.with_extension("db-wal"),
    ] {
        if file.exists() {
            assert_eq!(mode(&file) & 0o077, 0, "{} is {:o}", file.display(), mode(&file));
        }
    }
    assert!(key_store.exists() && data.exists());
    restore_after_stopping(server, &backup);
}

/// Stops the server, restores the backup and checks the erased customer
/// stays erased.
fn restore_after_stopping(mut server: TestServer, backup: &Path) {
    server.terminate();
    assert!(server.wait_exit(std::time::Duration::from_secs(20)).is_some());
    let out = ok(&server.cli(&["backup", "restore", backup.to_str().unwrap()]));
    assert!(out.contains("1 erasures re-applied"), "{out}");
    assert!(out.contains("signed anew"), "the restored chain is re-signed: {out}");
    let err = failed(&server.cli(&["export", "--email", "dana@demo.coffer.test"]));
    assert!(err.contains("no customer has this email address"), "{err}");
    let verified = ok(&server.cli(&["audit", "verify"]));
    assert!(verified.contains("intact"), "{verified}");
    let err = failed(&server.cli(&["backup", "restore", "/etc/hostname"]));
    assert!(err.contains("not a SQLite backup"), "{err}");
}

/// Several `coffer` processes append and seal at once against one
/// PostgreSQL database while the server's own sealer runs: the chain never
/// forks and every entry is sealed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sealing_at_once_never_fork_the_chain_on_postgres() {
    let server = crate::server(TestBackend::Postgres).await;
    let server = Arc::new(server);
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || server.cli(&["export", "--email", "dana@demo.coffer.test"]))
        })
        .collect();
    for run in runs {
        ok(&run.join().unwrap());
    }
    let out = ok(&server.cli(&["audit", "verify"]));
    // Seeding: customer.created, staff.added + staff.enrolled for each of
    // the four demo staff, and for each of the two demo vendors its owner's
    // vendor_user.invited + vendor_user.enrolled, its API key's
    // vendor_api_key.created and its vendor.terms_accepted; then the six
    // exports.
    assert!(out.contains("intact: 23 entries"), "{out}");
}

/// Keys readable by group or others stop the server before it serves, with
/// the fix in the message.
#[test]
fn serve_refuses_a_key_directory_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first =
        std::process::Command::new(crate::BIN).args(["seed", "--demo", "--data-dir"]).arg(&data).output().unwrap();
    ok(&first);
    let keys = dir.path().join("data.keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(crate::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("open to group or others") && err.contains("chmod 700"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it never served");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(keys.join("master-v1.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = failed(
        &std::process::Command::new(crate::BIN).args(["audit", "verify", "--data-dir"]).arg(&data).output().unwrap(),
    );
    assert!(err.contains("master-v1.key") && err.contains("chmod 600"), "{err}");
}
