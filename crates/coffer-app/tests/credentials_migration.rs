//! The credentials every realm shares, on SQLite and on PostgreSQL.
//! Migration 0017 moved the customers' and the staff's credentials into one
//! set of tables: a database made before it (here: migrations 1 to 15, with
//! rows written in their old shape) still signs everyone in afterwards
//! (passwords, TOTP with its last step, recovery codes, open links). And in
//! the shared tables no realm's link, ticket or session serves another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::accounts::{AccountService, PasswordPool, StaffService};
use coffer_app::config::{MailConfig, MailTransport};
use coffer_app::mail::Outbox;
use coffer_app::privacy::{CustomerService, FileKeyProvider, Vault};
use coffer_app::{AppError, SystemClock};
use coffer_crypto::{FieldContext, seal_field, token_hash};
use coffer_domain::Realm;
use coffer_domain::{Actor, Clock, CustomerDetails, DataKeyId, StaffId};
use coffer_store::{Backend, CredentialWriter, Db, DbOptions, KeyStore, LinkPurpose, LinkUse};
use coffer_testkit::{TestBackend, TestDatabase};
use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};
use std::borrow::Cow;
use std::sync::Arc;

const OLD_PASSWORD: &str = "orbit velvet canyon 42 lantern";

/// The migrations a database had before 0017, from the same files.
#[derive(Debug)]
struct Before17(Vec<(i64, String, String)>);

impl MigrationSource<'static> for Before17 {
    fn resolve(self) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let migrations = self
            .0
            .into_iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

fn before_17(backend: Backend) -> Before17 {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(folder);
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let old = files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_owned();
            let (version, description) = name.split_once('_')?;
            let version: i64 = version.parse().ok()?;
            (version < 17).then(|| (version, description.to_owned(), std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    Before17(old)
}

async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(2).connect(url).await.unwrap()
}

fn ctx<'a>(table: &'a str, column: &'a str, row: &'a str, key_id: &'a DataKeyId) -> FieldContext<'a> {
    FieldContext { table, column, row_id: row, data_key_id: key_id.as_str() }
}

async fn seal_password(pool: &PasswordPool, key: &coffer_crypto::DataKey, ctx: &FieldContext<'_>) -> Vec<u8> {
    let phc = pool.hash(SecretString::from(OLD_PASSWORD)).await.unwrap();
    seal_field(key, ctx, phc.as_bytes()).unwrap().as_bytes().to_vec()
}

/// The services of both realms over one database (migrated or not: none
/// of them touches it until called).
struct Realms {
    vault: Arc<Vault>,
    customers: CustomerService,
    accounts: AccountService,
    staff: StaffService,
    pool: PasswordPool,
    clock: Arc<dyn Clock>,
}

async fn realms(db: &Db, data: &TestDatabase, key_db: &TestDatabase) -> Realms {
    let keys = KeyStore::open(&key_db.key_store_url(), &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provider = FileKeyProvider::open(&data.dir.path().join("keys")).unwrap();
    let vault = Arc::new(Vault::open(Arc::new(provider), keys, clock.clone()).await.unwrap());
    let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone());
    let pool = PasswordPool::new(2);
    let mail =
        MailConfig { transport: MailTransport::File, smtp_url: None, from: "Coffer <no-reply@coffer.test>".into() };
    let outbox = Outbox::new(&mail, data.dir.path(), db.clone(), vault.clone(), clock.clone()).unwrap();
    let accounts = AccountService::new(
        db.clone(),
        vault.clone(),
        customers.clone(),
        outbox,
        pool.clone(),
        clock.clone(),
        String::new(),
    );
    let staff = StaffService::new(db.clone(), vault.clone(), pool.clone(), clock.clone(), String::new());
    Realms { vault, customers, accounts, staff, pool, clock }
}

coffer_testkit::on_both_backends_with!(run;
    credentials_made_before_0017_still_sign_in,
    no_realm_takes_another_realms_link_ticket_or_session,
);

/// A backend, for the macro.
async fn run(backend: TestBackend) -> TestBackend {
    backend
}

async fn credentials_made_before_0017_still_sign_in(backend: TestBackend) {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let raw = raw_pool(&data.url).await;
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    Migrator::new(before_17(db.backend())).await.unwrap().run(&raw).await.unwrap();

    let Realms { vault, customers, accounts, staff: staff_service, pool, clock } = realms(&db, &data, &key_db).await;
    let now = clock.now().0;
    let step_now = now / 1000 / 30;

    // A customer with a password, in the old `accounts` shape, and an open
    // sign-in link of theirs.
    let details = CustomerDetails {
        name: "Old Customer".into(),
        email: "old.customer@example.org".into(),
        phone: None,
        address: None,
    };
    let customer = customers.create(&details, &Actor::Cli("test".into())).await.unwrap().id;
    let (_, key_id, key) = customers.own_record_and_key(&customer).await.unwrap();
    let sealed = seal_password(&pool, &key, &ctx("accounts", "password_hash", customer.as_str(), &key_id)).await;
    sqlx::query("INSERT INTO accounts (customer_id, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3)")
        .bind(customer.as_str())
        .bind(sealed)
        .bind(now)
        .execute(&raw)
        .await
        .unwrap();
    let (link, link_hash) = coffer_crypto::new_token().unwrap();
    sqlx::query(
        "INSERT INTO sign_in_links (token_hash, customer_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, 'reset', $3, $4)",
    )
    .bind(link_hash.to_vec())
    .bind(customer.as_str())
    .bind(now)
    .bind(now + 600_000)
    .execute(&raw)
    .await
    .unwrap();

    // An enrolled staff member with password, TOTP (last step long ago) and
    // a recovery code, in the old `staff_members` shape.
    let staff = StaffId::generate();
    let staff_key_id = DataKeyId::generate();
    let staff_key = vault.new_data_key(&staff_key_id).await.unwrap();
    let email = "old.admin@example.org";
    let row = staff.as_str();
    let sealed_email = seal_field(&staff_key, &ctx("staff_members", "email", row, &staff_key_id), email.as_bytes());
    let sealed_password =
        seal_password(&pool, &staff_key, &ctx("staff_members", "password_hash", row, &staff_key_id)).await;
    let secret = coffer_crypto::new_totp_secret().unwrap();
    let sealed_secret = seal_field(&staff_key, &ctx("staff_members", "totp_secret", row, &staff_key_id), &secret);
    sqlx::query(
        "INSERT INTO staff_members (id, role, email_index, email, data_key_id, password_hash, totp_secret, \
         totp_last_step, enrolled_at, created_at, updated_at) VALUES ($1, 'admin', $2, $3, $4, $5, $6, $7, $8, $8, $8)",
    )
    .bind(row)
    .bind(vault.blind_index().email(email).to_vec())
    .bind(sealed_email.unwrap().as_bytes().to_vec())
    .bind(staff_key_id.as_str())
    .bind(sealed_password)
    .bind(sealed_secret.unwrap().as_bytes().to_vec())
    .bind(step_now - 100)
    .bind(now)
    .execute(&raw)
    .await
    .unwrap();
    sqlx::query("INSERT INTO staff_recovery_codes (code_hash, staff_id) VALUES ($1, $2)")
        .bind(token_hash("abcd-efgh").to_vec())
        .bind(row)
        .execute(&raw)
        .await
        .unwrap();

    db.migrate().await.expect("0017 applies to a database with credentials in the old tables");

    // The customer signs in with the old password, and the old link works once.
    let signed_in = accounts.sign_in("old.customer@example.org", SecretString::from(OLD_PASSWORD)).await.unwrap();
    let session = signed_in.expect("the old password").session().expect("no second factor");
    assert_eq!(accounts.session(session.token.expose_secret()).await.unwrap(), Some(customer.clone()));
    let new_password = SecretString::from("harbour quartz meadow 17 ember");
    let from_link = accounts.set_password_with_link(&link, new_password.clone(), None).await.unwrap();
    assert_eq!(from_link.customer, customer);
    let again = accounts.set_password_with_link(&link, new_password, None).await.unwrap_err();
    assert!(matches!(again, AppError::LinkGone(_)), "{again:?}");

    // The staff member signs in with the old password and a code of the
    // old secret; the old recovery code works once, in its place.
    let ticket = staff_service.sign_in(email, SecretString::from(OLD_PASSWORD)).await.unwrap().expect("old password");
    let code = coffer_crypto::totp_code(&secret, u64::try_from(now / 1000).unwrap()).unwrap();
    let session = staff_service.complete_sign_in(ticket.expose_secret(), &code).await.unwrap().expect("old secret");
    assert_eq!(session.member.id, staff);
    let member = staff_service.session(session.token.expose_secret()).await.unwrap().expect("a live session");
    assert_eq!(member.role, coffer_domain::StaffRole::Admin);
    for expected in [true, false] {
        let ticket = staff_service.sign_in(email, SecretString::from(OLD_PASSWORD)).await.unwrap().unwrap();
        let done = staff_service.complete_sign_in(ticket.expose_secret(), "ABCD-EFGH").await.unwrap();
        assert_eq!(done.is_ok(), expected, "the recovery code works once");
    }
    // The staff member's address is still theirs, and still sealed.
    assert_eq!(staff_service.email_of(&staff).await.unwrap(), email);
}

async fn no_realm_takes_another_realms_link_ticket_or_session(backend: TestBackend) {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let Realms { customers, accounts, staff, clock, .. } = realms(&db, &data, &key_db).await;

    // A staff member's enrolment link is no customer's password link.
    let link = staff
        .add("both@example.org", coffer_domain::StaffRole::Support, &coffer_app::request::RequestContext::cli("test"))
        .await
        .unwrap();
    let token = link.expose_secret().rsplit('/').next().unwrap().to_owned();
    assert_eq!(accounts.link_needs_code(&token).await.unwrap(), None);
    let taken = accounts.set_password_with_link(&token, SecretString::from(OLD_PASSWORD), None).await.unwrap_err();
    assert!(matches!(taken, AppError::LinkGone(_)), "{taken:?}");

    // The member enrols (the link still works) and signs in: the ticket and
    // the session are the staff realm's only.
    let setup = staff.start_enrolment(&token, None).await.unwrap();
    let secret = coffer_crypto::totp_secret_from_base32(setup.secret.expose_secret()).unwrap();
    let seconds = u64::try_from(clock.now().0 / 1000).unwrap();
    let code = coffer_crypto::totp_code(&secret, seconds - 30).unwrap();
    let enrolled = staff.enrol(&token, SecretString::from(OLD_PASSWORD), setup.secret.expose_secret(), &code).await;
    let session = enrolled.unwrap().session.token;
    assert_eq!(accounts.session(session.expose_secret()).await.unwrap(), None, "a staff session is no customer's");
    let ticket = staff.sign_in("both@example.org", SecretString::from(OLD_PASSWORD)).await.unwrap().unwrap();
    let code = coffer_crypto::totp_code(&secret, seconds).unwrap();
    let crossed = accounts.complete_second_factor(ticket.expose_secret(), &code).await.unwrap();
    assert_eq!(crossed.unwrap_err(), coffer_app::accounts::SignInError::Invalid);
    let own = staff.complete_sign_in(ticket.expose_secret(), &code).await.unwrap();
    assert!(own.is_ok(), "the ticket still serves its own realm");

    // The staff realm's policy asks for the code even of a member whose
    // factor were gone (as if removed by hand): a password alone never
    // opens a staff session.
    let member = coffer_store::Subject::new(
        Realm::Staff,
        staff.session(session.expose_secret()).await.unwrap().unwrap().id.as_str(),
    );
    let at = clock.now();
    db.write(move |tx| Box::pin(async move { tx.set_totp(&member, None, at).await })).await.unwrap();
    let ticket = staff.sign_in("both@example.org", SecretString::from(OLD_PASSWORD)).await.unwrap();
    let ticket = ticket.expect("the code step, not a session");
    let refused = staff.complete_sign_in(ticket.expose_secret(), &code).await.unwrap();
    assert!(refused.is_err(), "no factor, no staff session");

    // The store names the realm in the query: a ticket stored for one
    // realm is found for no other, whatever its purpose.
    let (_, hash) = coffer_crypto::new_token().unwrap();
    let now = clock.now();
    let subject = coffer_store::Subject::new(Realm::Staff, "stf_same_id");
    db.write(move |tx| {
        Box::pin(async move {
            tx.insert_link(&hash, &subject, LinkPurpose::SecondFactor, now, coffer_domain::Millis(now.0 + 60_000)).await
        })
    })
    .await
    .unwrap();
    for (realm, owner) in
        [(Realm::Customer, None), (Realm::Vendor, None), (Realm::Staff, Some("stf_same_id".to_owned()))]
    {
        assert_eq!(db.link_owner(&hash, realm, LinkUse::SecondFactor, now).await.unwrap(), owner, "{realm:?}");
    }

    // A customer with the same address: the staff password is not theirs.
    let details =
        CustomerDetails { name: "Both Ways".into(), email: "both@example.org".into(), phone: None, address: None };
    let customer = customers.create(&details, &Actor::Cli("test".into())).await.unwrap().id;
    let refused = accounts.sign_in("both@example.org", SecretString::from(OLD_PASSWORD)).await.unwrap();
    assert_eq!(refused.unwrap_err(), coffer_app::accounts::SignInError::Invalid);
    assert!(!accounts.has_password(&customer).await.unwrap());
}
