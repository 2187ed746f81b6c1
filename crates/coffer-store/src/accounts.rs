//! Accounts, one-time sign-in links, sessions and the sign-in throttle.
//! Secrets are never stored: links and sessions are found by a SHA-256 of
//! the token the user holds, and the password hash itself is sealed.

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{CustomerId, Millis};
use sqlx::Row;

/// What a one-time link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    SignIn,
    Invitation,
    Reset,
    /// Between a right password and the TOTP code (never emailed).
    SecondFactor,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::SignIn => "sign_in",
            LinkPurpose::Invitation => "invitation",
            LinkPurpose::Reset => "reset",
            LinkPurpose::SecondFactor => "second_factor",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "sign_in" => Ok(LinkPurpose::SignIn),
            "invitation" => Ok(LinkPurpose::Invitation),
            "second_factor" => Ok(LinkPurpose::SecondFactor),
            "reset" => Ok(LinkPurpose::Reset),
            _ => Err(StoreError::corrupt("sign_in_links.purpose")),
        }
    }
}

/// What a link is being used for, checked in the query that finds or spends
/// it: a ticket of the second step never sets a password, and an emailed
/// link never stands in for the second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkUse {
    /// An emailed link: sign-in, invitation or reset; it sets a password.
    SetPassword,
    /// The ticket between a right password and the code.
    SecondFactor,
}

impl LinkUse {
    /// The stored purposes this use accepts, padded to three for one fixed
    /// `purpose IN ($a, $b, $c)`.
    fn purposes(self) -> [&'static str; 3] {
        match self {
            LinkUse::SetPassword => ["sign_in", "invitation", "reset"],
            LinkUse::SecondFactor => ["second_factor"; 3],
        }
    }
}

/// A live session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub subject_kind: String,
    pub subject_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

pub(crate) const INSERT_LINK: &str =
    "INSERT INTO sign_in_links (token_hash, customer_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";

pub trait AccountWriter {
    fn set_password(
        &mut self,
        customer: &CustomerId,
        sealed_hash: &Sealed,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn insert_link(
        &mut self,
        token_hash: &[u8; 32],
        customer: &CustomerId,
        purpose: LinkPurpose,
        at: Millis,
        expires_at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a link used if it is unused, unexpired and serves `what`;
    /// returns whose it was.
    fn use_link(
        &mut self,
        token_hash: &[u8; 32],
        what: LinkUse,
        now: Millis,
    ) -> impl Future<Output = Result<Option<(CustomerId, LinkPurpose)>, StoreError>> + Send;
    /// Spends every open link and second-step ticket of a customer (at a
    /// password change or when two-step sign-in is turned on); returns how many.
    fn spend_links_of(
        &mut self,
        customer: &CustomerId,
        now: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn insert_session(
        &mut self,
        id_hash: &[u8; 32],
        subject_kind: &str,
        subject_id: &str,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Revokes every live session of a subject; returns how many.
    fn revoke_sessions_of(
        &mut self,
        subject_kind: &str,
        subject_id: &str,
        at: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl AccountWriter for WriteTx {
    async fn set_password(
        &mut self,
        customer: &CustomerId,
        sealed_hash: &Sealed,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO accounts (customer_id, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (customer_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(customer.as_str())
        .bind(sealed_hash.as_bytes().to_vec())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn insert_link(
        &mut self,
        token_hash: &[u8; 32],
        customer: &CustomerId,
        purpose: LinkPurpose,
        at: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(INSERT_LINK)
            .bind(token_hash.to_vec())
            .bind(customer.as_str())
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
        what: LinkUse,
        now: Millis,
    ) -> Result<Option<(CustomerId, LinkPurpose)>, StoreError> {
        let [a, b, c] = what.purposes();
        let row = sqlx::query(
            "UPDATE sign_in_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             AND purpose IN ($3, $4, $5) RETURNING customer_id, purpose",
        )
        .bind(token_hash.to_vec())
        .bind(now.0)
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_optional(self.conn())
        .await?;
        row.map(|row| {
            let customer: String = row.try_get("customer_id")?;
            let purpose: String = row.try_get("purpose")?;
            Ok((CustomerId::parse(&customer).map_err(StoreError::corrupt)?, LinkPurpose::parse(&purpose)?))
        })
        .transpose()
    }

    async fn spend_links_of(&mut self, customer: &CustomerId, now: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE sign_in_links SET used_at = $2 WHERE customer_id = $1 AND used_at IS NULL")
            .bind(customer.as_str())
            .bind(now.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_session(
        &mut self,
        id_hash: &[u8; 32],
        subject_kind: &str,
        subject_id: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, subject_kind, subject_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id_hash.to_vec())
        .bind(subject_kind.to_owned())
        .bind(subject_id.to_owned())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn revoke_sessions_of(
        &mut self,
        subject_kind: &str,
        subject_id: &str,
        at: Millis,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL",
        )
        .bind(subject_kind.to_owned())
        .bind(subject_id.to_owned())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }
}

/// Turns the second factor on (with its first accepted step and recovery
/// code hashes) or off (`None`).
pub async fn set_totp(
    tx: &mut WriteTx,
    customer: &CustomerId,
    totp: Option<(&Sealed, i64, &[[u8; 32]])>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM recovery_codes WHERE customer_id = $1").bind(customer.as_str()).execute(tx.conn()).await?;
    let (secret, step) = match totp {
        Some((secret, step, codes)) => {
            for code in codes {
                sqlx::query("INSERT INTO recovery_codes (code_hash, customer_id) VALUES ($1, $2)")
                    .bind(code.to_vec())
                    .bind(customer.as_str())
                    .execute(tx.conn())
                    .await?;
            }
            (Some(secret.as_bytes().to_vec()), Some(step))
        }
        None => (None, None),
    };
    sqlx::query("UPDATE accounts SET totp_secret = $2, totp_last_step = $3 WHERE customer_id = $1")
        .bind(customer.as_str())
        .bind(secret)
        .bind(step)
        .execute(tx.conn())
        .await?;
    Ok(())
}

impl Db {
    /// The sealed TOTP secret, when the second factor is on.
    pub async fn account_totp(&self, customer: &CustomerId) -> Result<Option<Sealed>, StoreError> {
        let row = sqlx::query("SELECT totp_secret FROM accounts WHERE customer_id = $1")
            .bind(customer.as_str())
            .fetch_optional(self.readers())
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<Vec<u8>>, _>("totp_secret").ok().flatten()).map(Sealed::from_stored))
    }

    /// Accepts a TOTP step once: true only if it is after the last one used.
    pub async fn accept_totp_step(&self, customer: &CustomerId, step: i64) -> Result<bool, StoreError> {
        let id = customer.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE accounts SET totp_last_step = $2 WHERE customer_id = $1 \
                     AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(id.as_str())
                .bind(step)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Uses a recovery code once.
    pub async fn use_recovery_code(
        &self,
        customer: &CustomerId,
        code_hash: [u8; 32],
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = customer.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $3 WHERE code_hash = $1 AND customer_id = $2 AND used_at IS NULL",
                )
                .bind(code_hash.to_vec())
                .bind(id.as_str())
                .bind(now.0)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Whose an unused, unexpired link serving `what` is (without spending it).
    pub async fn link_owner(
        &self,
        token_hash: &[u8; 32],
        what: LinkUse,
        now: Millis,
    ) -> Result<Option<CustomerId>, StoreError> {
        let [a, b, c] = what.purposes();
        let row = sqlx::query(
            "SELECT customer_id FROM sign_in_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             AND purpose IN ($3, $4, $5)",
        )
        .bind(token_hash.to_vec())
        .bind(now.0)
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            let customer: String = r.try_get("customer_id")?;
            CustomerId::parse(&customer).map_err(StoreError::corrupt)
        })
        .transpose()
    }

    /// The sealed password hash of a customer's account, if one is set.
    pub async fn account_password(&self, customer: &CustomerId) -> Result<Option<Sealed>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM accounts WHERE customer_id = $1")
            .bind(customer.as_str())
            .fetch_optional(self.readers())
            .await?;
        Ok(row.and_then(|r| r.try_get::<Option<Vec<u8>>, _>("password_hash").ok().flatten()).map(Sealed::from_stored))
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
