//! Credentials of every realm (customers, staff, vendor users), one-time
//! links, sessions and the sign-in throttle. Everything is keyed by realm and
//! subject, so one realm's link, code or session never serves another.
//! Secrets are never stored: links and sessions are found by a SHA-256 of
//! the token the user holds, and the password hash itself is sealed.

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{Millis, Realm};
use sqlx::Row;

/// Whose credentials: a subject (customer, staff member, vendor user) in
/// its realm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    pub realm: Realm,
    pub id: String,
}

impl Subject {
    pub fn new(realm: Realm, id: impl Into<String>) -> Self {
        Subject { realm, id: id.into() }
    }
}

/// What a one-time link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    SignIn,
    Invitation,
    Reset,
    /// Printed for a new staff member: sets the password and the second
    /// factor together.
    Enrolment,
    /// Between a right password and the TOTP code (never emailed).
    SecondFactor,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::SignIn => "sign_in",
            LinkPurpose::Invitation => "invitation",
            LinkPurpose::Reset => "reset",
            LinkPurpose::Enrolment => "enrolment",
            LinkPurpose::SecondFactor => "second_factor",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        [
            LinkPurpose::SignIn,
            LinkPurpose::Invitation,
            LinkPurpose::Reset,
            LinkPurpose::Enrolment,
            LinkPurpose::SecondFactor,
        ]
        .into_iter()
        .find(|purpose| purpose.as_str() == s)
        .ok_or_else(|| StoreError::corrupt("sign_in_links.purpose"))
    }
}

/// What a link is being used for, checked in the query that finds or spends
/// it: a ticket of the second step never sets a password, an emailed link
/// never stands in for the second factor, and only an enrolment link enrols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkUse {
    /// An emailed link: sign-in, invitation or reset; it sets a password.
    SetPassword,
    /// An enrolment link: sets the password and the second factor.
    Enrol,
    /// The ticket between a right password and the code.
    SecondFactor,
}

impl LinkUse {
    /// The stored purposes this use accepts, padded to three for one fixed
    /// `purpose IN ($a, $b, $c)`.
    fn purposes(self) -> [&'static str; 3] {
        match self {
            LinkUse::SetPassword => ["sign_in", "invitation", "reset"],
            LinkUse::Enrol => ["enrolment"; 3],
            LinkUse::SecondFactor => ["second_factor"; 3],
        }
    }
}

/// A subject's sealed secrets, as stored.
#[derive(Clone, Debug, Default)]
pub struct StoredCredentials {
    pub password_hash: Option<Sealed>,
    pub totp_secret: Option<Sealed>,
}

/// A live session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub subject_kind: String,
    pub subject_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

/// A customer's invitation link, written with the order that earns it.
pub(crate) const INSERT_LINK: &str = "INSERT INTO sign_in_links (token_hash, realm, subject_id, purpose, created_at, \
     expires_at) VALUES ($1, 'customer', $2, $3, $4, $5)";

pub trait CredentialWriter {
    fn set_password(
        &mut self,
        subject: &Subject,
        sealed_hash: &Sealed,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Turns the second factor on (with its first accepted step and recovery
    /// code hashes) or off (`None`); earlier recovery codes stop working.
    fn set_totp(
        &mut self,
        subject: &Subject,
        totp: Option<(&Sealed, i64, &[[u8; 32]])>,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn insert_link(
        &mut self,
        token_hash: &[u8; 32],
        subject: &Subject,
        purpose: LinkPurpose,
        at: Millis,
        expires_at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a link of the realm used if it is unused, unexpired and serves
    /// `what`; returns whose it was.
    fn use_link(
        &mut self,
        token_hash: &[u8; 32],
        realm: Realm,
        what: LinkUse,
        now: Millis,
    ) -> impl Future<Output = Result<Option<(String, LinkPurpose)>, StoreError>> + Send;
    /// Spends every open link and second-step ticket of a subject (at a
    /// password change, enrolment, or when two-step sign-in is turned on);
    /// returns how many.
    fn spend_links_of(
        &mut self,
        subject: &Subject,
        now: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn insert_session(
        &mut self,
        id_hash: &[u8; 32],
        subject: &Subject,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Revokes every live session of a subject; returns how many.
    fn revoke_sessions_of(
        &mut self,
        subject: &Subject,
        at: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl CredentialWriter for WriteTx {
    async fn set_password(&mut self, subject: &Subject, sealed_hash: &Sealed, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO accounts (realm, subject_id, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (realm, subject_id) DO UPDATE SET password_hash = excluded.password_hash, \
             updated_at = excluded.updated_at",
        )
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(sealed_hash.as_bytes().to_vec())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_totp(
        &mut self,
        subject: &Subject,
        totp: Option<(&Sealed, i64, &[[u8; 32]])>,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE realm = $1 AND subject_id = $2")
            .bind(subject.realm.as_str())
            .bind(subject.id.clone())
            .execute(self.conn())
            .await?;
        let (secret, step) = match totp {
            Some((secret, step, codes)) => {
                for code in codes {
                    sqlx::query("INSERT INTO recovery_codes (code_hash, realm, subject_id) VALUES ($1, $2, $3)")
                        .bind(code.to_vec())
                        .bind(subject.realm.as_str())
                        .bind(subject.id.clone())
                        .execute(self.conn())
                        .await?;
                }
                (Some(secret.as_bytes().to_vec()), Some(step))
            }
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO accounts (realm, subject_id, totp_secret, totp_last_step, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (realm, subject_id) DO UPDATE SET \
             totp_secret = excluded.totp_secret, totp_last_step = excluded.totp_last_step, updated_at = excluded.updated_at",
        )
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(secret)
        .bind(step)
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn insert_link(
        &mut self,
        token_hash: &[u8; 32],
        subject: &Subject,
        purpose: LinkPurpose,
        at: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sign_in_links (token_hash, realm, subject_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash.to_vec())
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(purpose.as_str())
        .bind(at.0)
        .bind(expires_at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn use_link(
        &mut self,
        token_hash: &[u8; 32],
        realm: Realm,
        what: LinkUse,
        now: Millis,
    ) -> Result<Option<(String, LinkPurpose)>, StoreError> {
        let [a, b, c] = what.purposes();
        let row = sqlx::query(
            "UPDATE sign_in_links SET used_at = $2 WHERE token_hash = $1 AND realm = $3 AND used_at IS NULL \
             AND expires_at > $2 AND purpose IN ($4, $5, $6) RETURNING subject_id, purpose",
        )
        .bind(token_hash.to_vec())
        .bind(now.0)
        .bind(realm.as_str())
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_optional(self.conn())
        .await?;
        row.map(|row| {
            let purpose: String = row.try_get("purpose")?;
            Ok((row.try_get("subject_id")?, LinkPurpose::parse(&purpose)?))
        })
        .transpose()
    }

    async fn spend_links_of(&mut self, subject: &Subject, now: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sign_in_links SET used_at = $3 WHERE realm = $1 AND subject_id = $2 AND used_at IS NULL",
        )
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(now.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    async fn insert_session(&mut self, id_hash: &[u8; 32], subject: &Subject, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, subject_kind, subject_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id_hash.to_vec())
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn revoke_sessions_of(&mut self, subject: &Subject, at: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL",
        )
        .bind(subject.realm.as_str())
        .bind(subject.id.clone())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }
}

impl Db {
    /// A subject's sealed password hash and TOTP secret (each if set).
    pub async fn credentials(&self, subject: &Subject) -> Result<StoredCredentials, StoreError> {
        let row = sqlx::query("SELECT password_hash, totp_secret FROM accounts WHERE realm = $1 AND subject_id = $2")
            .bind(subject.realm.as_str())
            .bind(subject.id.clone())
            .fetch_optional(self.readers())
            .await?;
        let Some(row) = row else { return Ok(StoredCredentials::default()) };
        let sealed = |column: &str| -> Result<Option<Sealed>, StoreError> {
            Ok(row.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
        };
        Ok(StoredCredentials { password_hash: sealed("password_hash")?, totp_secret: sealed("totp_secret")? })
    }

    /// Accepts a TOTP step once: true only if it is after the last one used.
    pub async fn accept_totp_step(&self, subject: &Subject, step: i64) -> Result<bool, StoreError> {
        let subject = subject.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE accounts SET totp_last_step = $3 WHERE realm = $1 AND subject_id = $2 \
                     AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $3)",
                )
                .bind(subject.realm.as_str())
                .bind(subject.id)
                .bind(step)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Uses a recovery code of the subject once.
    pub async fn use_recovery_code(
        &self,
        subject: &Subject,
        code_hash: [u8; 32],
        now: Millis,
    ) -> Result<bool, StoreError> {
        let subject = subject.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $4 WHERE code_hash = $1 AND realm = $2 AND subject_id = $3 \
                     AND used_at IS NULL",
                )
                .bind(code_hash.to_vec())
                .bind(subject.realm.as_str())
                .bind(subject.id)
                .bind(now.0)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Whose an unused, unexpired link of the realm serving `what` is
    /// (without spending it).
    pub async fn link_owner(
        &self,
        token_hash: &[u8; 32],
        realm: Realm,
        what: LinkUse,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let [a, b, c] = what.purposes();
        let row = sqlx::query(
            "SELECT subject_id FROM sign_in_links WHERE token_hash = $1 AND realm = $3 AND used_at IS NULL \
             AND expires_at > $2 AND purpose IN ($4, $5, $6)",
        )
        .bind(token_hash.to_vec())
        .bind(now.0)
        .bind(realm.as_str())
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| r.try_get("subject_id").map_err(StoreError::from)).transpose()
    }

    /// A session that is not revoked.
    pub async fn live_session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT subject_kind, subject_id, created_at, last_seen_at FROM sessions \
             WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(id_hash.to_vec())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                subject_kind: r.try_get("subject_kind")?,
                subject_id: r.try_get("subject_id")?,
                created_at: Millis(r.try_get("created_at")?),
                last_seen_at: Millis(r.try_get("last_seen_at")?),
            })
        })
        .transpose()
    }

    /// Records activity on a session.
    pub async fn touch_session(&self, id_hash: [u8; 32], now: Millis) -> Result<(), StoreError> {
        self.session_update(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2",
            id_hash,
            now,
        )
        .await
    }

    pub async fn revoke_session(&self, id_hash: [u8; 32], now: Millis) -> Result<(), StoreError> {
        self.session_update(
            "UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
            id_hash,
            now,
        )
        .await
    }

    async fn session_update(&self, sql: &'static str, id_hash: [u8; 32], now: Millis) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(sql).bind(id_hash.to_vec()).bind(now.0).execute(tx.conn()).await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }

    /// `(failures, locked_until)` for an address key.
    pub async fn sign_in_throttle(&self, key: &[u8; 32]) -> Result<(i64, Millis), StoreError> {
        let row = sqlx::query("SELECT failures, locked_until FROM sign_in_throttle WHERE account_key = $1")
            .bind(key.to_vec())
            .fetch_optional(self.readers())
            .await?;
        Ok(match row {
            Some(r) => (r.try_get("failures")?, Millis(r.try_get("locked_until")?)),
            None => (0, Millis(0)),
        })
    }

    /// Counts a failed sign-in; `lock_for` maps the new failure count to
    /// how long the address is then locked. Returns the new state.
    pub async fn record_sign_in_failure(
        &self,
        key: [u8; 32],
        now: Millis,
        lock_for: fn(i64) -> i64,
    ) -> Result<(i64, Millis), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO sign_in_throttle (account_key, failures, locked_until, updated_at) VALUES ($1, 1, 0, $2) \
                     ON CONFLICT (account_key) DO UPDATE SET failures = sign_in_throttle.failures + 1, updated_at = $2 \
                     RETURNING failures",
                )
                .bind(key.to_vec())
                .bind(now.0)
                .fetch_one(tx.conn())
                .await?;
                let failures: i64 = row.try_get("failures")?;
                let until = Millis(now.0.saturating_add(lock_for(failures)));
                sqlx::query("UPDATE sign_in_throttle SET locked_until = $2 WHERE account_key = $1")
                    .bind(key.to_vec())
                    .bind(until.0)
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>((failures, until))
            })
        })
        .await
    }

    pub async fn clear_sign_in_failures(&self, key: [u8; 32]) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM sign_in_throttle WHERE account_key = $1")
                    .bind(key.to_vec())
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }
}
