//! What customer and staff sign-in share: the lock-out in the database and
//! server-side sessions (one table, told apart by the subject's kind).

use super::service::{LAST_SEEN_EVERY_MS, SESSION_ABSOLUTE_MS, SESSION_IDLE_MS, SignInError, lock_for_ms};
use crate::AppError;
use coffer_crypto::{new_token, token_hash};
use coffer_domain::{Clock, Millis};
use coffer_store::{AccountWriter, Db};
use secrecy::SecretString;

/// `Some` when the throttle key is locked now.
pub(super) async fn locked(db: &Db, key: &[u8; 32], now: Millis) -> Result<Option<SignInError>, AppError> {
    let (_, locked_until) = db.sign_in_throttle(key).await?;
    Ok((locked_until > now).then_some(SignInError::Locked { retry_after_ms: locked_until.0 - now.0 }))
}

/// Counts a failure against the key; the answer to give.
pub(super) async fn failed(db: &Db, key: [u8; 32], clock: &dyn Clock) -> Result<SignInError, AppError> {
    let (_, until) = db.record_sign_in_failure(key, clock.now(), lock_for_ms).await?;
    let now = clock.now();
    Ok(if until > now { SignInError::Locked { retry_after_ms: until.0 - now.0 } } else { SignInError::Invalid })
}

/// A new session for the subject; the token for the cookie.
pub(super) async fn open_session(
    db: &Db,
    clock: &dyn Clock,
    kind: &'static str,
    subject: &str,
) -> Result<SecretString, AppError> {
    let (token, hash) = new_token()?;
    let now = clock.now();
    let subject = subject.to_owned();
    db.write(move |tx| {
        Box::pin(async move { tx.insert_session(&hash, kind, &subject, now).await.map_err(AppError::from) })
    })
    .await?;
    Ok(SecretString::from(token))
}

/// The subject id of a live session of this kind: not revoked, not idle
/// for 30 minutes, not older than 12 hours. Activity is written at most
/// once a minute.
pub(super) async fn live_subject(
    db: &Db,
    clock: &dyn Clock,
    kind: &str,
    token: &str,
) -> Result<Option<String>, AppError> {
    let hash = token_hash(token);
    let Some(row) = db.live_session(&hash).await? else { return Ok(None) };
    let now = clock.now();
    if row.subject_kind != kind
        || now.0 - row.last_seen_at.0 >= SESSION_IDLE_MS
        || now.0 - row.created_at.0 >= SESSION_ABSOLUTE_MS
    {
        return Ok(None);
    }
    if now.0 - row.last_seen_at.0 >= LAST_SEEN_EVERY_MS {
        db.touch_session(hash, now).await?;
    }
    Ok(Some(row.subject_id))
}
