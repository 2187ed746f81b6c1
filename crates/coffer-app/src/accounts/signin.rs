//! One sign-in for every realm: password (with the lock-out), the second
//! factor (TOTP, each step once, or a recovery code), one-time links and
//! server-side sessions. A realm brings only its [`RealmPolicy`] and a
//! [`Directory`] that finds its people; the vendor portal's users will be a
//! third realm with no copy of this code.

use super::errors::AccountError;
use super::passwords::PasswordPool;
use crate::AppError;
use crate::privacy::Vault;
use coffer_crypto::{DataKey, FieldContext, Sealed, new_token, open_field, seal_field, token_hash};
use coffer_domain::{Clock, DataKeyId, Millis, Realm};
use coffer_store::{CredentialWriter, Db, LinkPurpose, LinkUse, Subject, UnitFuture, WriteTx};
use secrecy::SecretString;
use std::sync::Arc;
use zeroize::Zeroizing;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// Failures allowed before an address (or a second step) is locked.
pub const FREE_FAILURES: i64 = 5;
/// Activity is written at most once a minute.
pub const LAST_SEEN_EVERY_MS: i64 = MINUTE;

/// How long an address is locked after `failures` failed sign-ins: nothing
/// for the first five, then 1 s doubling up to 15 minutes.
pub fn lock_for_ms(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = u32::try_from((failures - FREE_FAILURES).clamp(0, 20)).unwrap_or(20);
    (1_000i64 << doublings).min(15 * MINUTE)
}

/// What a realm decides about sign-in; everything else is shared.
#[derive(Debug)]
pub struct RealmPolicy {
    pub realm: Realm,
    /// Whether every sign-in needs the second factor (else only accounts
    /// that turned it on).
    pub second_factor_mandatory: bool,
    /// An emailed sign-in or reset link.
    pub link_ttl_ms: i64,
    /// The first link a person gets (a customer's invitation in the first
    /// order email, a staff member's enrolment link).
    pub invitation_ttl_ms: i64,
    /// The step between a right password and the code.
    pub second_factor_ttl_ms: i64,
    /// A session ends after this long without activity…
    pub session_idle_ms: i64,
    /// …and this long after sign-in in any case.
    pub session_absolute_ms: i64,
    /// The table named in the authenticated data of the realm's sealed
    /// secrets. Staff secrets were sealed in `staff_members` before
    /// migration 0017 moved them; the name stays so they still open.
    pub sealed_as: &'static str,
}

pub const CUSTOMERS: RealmPolicy = RealmPolicy {
    realm: Realm::Customer,
    second_factor_mandatory: false,
    link_ttl_ms: 15 * MINUTE,
    invitation_ttl_ms: 7 * DAY,
    second_factor_ttl_ms: 5 * MINUTE,
    session_idle_ms: 30 * MINUTE,
    session_absolute_ms: 12 * 60 * MINUTE,
    sealed_as: "accounts",
};

/// Staff get no emailed links; the enrolment link is printed.
pub const STAFF: RealmPolicy = RealmPolicy {
    realm: Realm::Staff,
    second_factor_mandatory: true,
    invitation_ttl_ms: 3 * DAY,
    sealed_as: "staff_members",
    ..CUSTOMERS
};

/// Reserved for the vendor portal (a later issue): its users handle
/// customers' orders, so the second factor is mandatory as for staff.
pub const VENDOR_USERS: RealmPolicy = RealmPolicy { realm: Realm::Vendor, sealed_as: "accounts", ..STAFF };

impl RealmPolicy {
    pub fn of(realm: Realm) -> &'static RealmPolicy {
        match realm {
            Realm::Customer => &CUSTOMERS,
            Realm::Staff => &STAFF,
            Realm::Vendor => &VENDOR_USERS,
        }
    }

    /// The throttle key of an address tried at sign-in. The realms count
    /// apart: a customer's failures never lock out a staff member with the
    /// same address, nor the reverse. The customer key predates realms and
    /// stays the bare blind index, so counts survive the upgrade.
    fn address_throttle(&self, index: [u8; 32]) -> [u8; 32] {
        match self.realm {
            Realm::Customer => index,
            realm => token_hash(&format!("{}:{}", realm.as_str(), hex::encode(index))),
        }
    }

    /// The throttle key of a subject's second step (its own count, so a
    /// stolen password cannot lock the owner out of their address).
    fn second_factor_throttle(&self, id: &str) -> [u8; 32] {
        match self.realm {
            Realm::Customer => token_hash(&format!("second-factor:{id}")),
            realm => token_hash(&format!("{}-second-factor:{id}", realm.as_str())),
        }
    }
}

/// Why a sign-in step was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Wrong address, password, code or ticket: never which.
    #[error("the email address or password is not right")]
    Invalid,
    /// Too many failures for this address; try again after this many ms.
    #[error("too many attempts; try again later")]
    Locked { retry_after_ms: i64 },
}

/// Where a realm's people are.
pub trait Directory: Clone + Send + Sync + 'static {
    const POLICY: &'static RealmPolicy;

    /// The id of the person with this address who may sign in now (a
    /// staff member only once enrolled).
    fn find(&self, email: &str) -> impl Future<Output = Result<Option<String>, AppError>> + Send;

    /// The data key the person's secrets are sealed under; `None` once it
    /// is destroyed (erasure).
    fn data_key(&self, id: &str) -> impl Future<Output = Result<Option<(DataKeyId, DataKey)>, AppError>> + Send;
}

/// What a right password leads to.
#[derive(Debug)]
pub enum Step {
    /// Signed in: the session token for the cookie, and whose it is.
    Session { token: SecretString, id: String },
    /// Ask for the code with this ticket (single use, stored hashed).
    NeedsCode { ticket: SecretString },
}

/// A second factor being set up: shown to the person once.
#[derive(Debug)]
pub struct TotpSetup {
    /// The secret in base32, to type into an authenticator app.
    pub secret: SecretString,
    /// The same as an `otpauth://` URI.
    pub uri: SecretString,
}

impl TotpSetup {
    pub(super) fn new(secret: &[u8], email: &str) -> Result<Self, AppError> {
        Ok(TotpSetup {
            secret: SecretString::from(coffer_crypto::totp_base32(secret)),
            uri: SecretString::from(coffer_crypto::totp_uri(secret, email)?),
        })
    }
}

/// The second factor being turned on: the secret and the first code's step.
pub(super) struct NewFactor {
    pub(super) sealed: Sealed,
    pub(super) step: i64,
    pub(super) recovery_codes: Vec<String>,
}

/// More writes in the unit that takes a link: given the subject's id and
/// the time.
pub(super) type AlsoInUnit = for<'t> fn(&'t mut WriteTx, String, Millis) -> UnitFuture<'t, (), AppError>;

/// A link made but not yet stored.
pub(super) struct PendingLink {
    hash: [u8; 32],
    subject: Subject,
    purpose: LinkPurpose,
    at: Millis,
    expires_at: Millis,
}

impl PendingLink {
    pub(super) async fn insert(&self, tx: &mut WriteTx) -> Result<(), AppError> {
        Ok(tx.insert_link(&self.hash, &self.subject, self.purpose, self.at, self.expires_at).await?)
    }
}

/// The sign-in of one realm.
#[derive(Clone)]
pub struct SignIn<D> {
    db: Db,
    vault: Arc<Vault>,
    passwords: PasswordPool,
    clock: Arc<dyn Clock>,
    directory: D,
}

impl<D: Directory> SignIn<D> {
    pub fn new(db: Db, vault: Arc<Vault>, passwords: PasswordPool, clock: Arc<dyn Clock>, directory: D) -> Self {
        SignIn { db, vault, passwords, clock, directory }
    }

    pub fn policy(&self) -> &'static RealmPolicy {
        D::POLICY
    }

    fn subject(id: &str) -> Subject {
        Subject::new(D::POLICY.realm, id)
    }

    pub(super) fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The first step: email and password. Unknown addresses run the same
    /// argon2id verification (against a dummy) and get the same answer. A
    /// right password leads to the code step when the realm requires the
    /// second factor or the account has it on, else to a session.
    pub async fn sign_in(&self, email: &str, password: SecretString) -> Result<Result<Step, SignInError>, AppError> {
        let throttle = D::POLICY.address_throttle(self.vault.blind_index().email(email));
        if let Some(locked) = self.locked(&throttle).await? {
            return Ok(Err(locked));
        }
        let id = self.directory.find(email).await?;
        let stored = match &id {
            Some(id) => self.password_hash(id).await?,
            None => None,
        };
        let ok = self.passwords.verify(password, stored).await?;
        let Some(id) = id.filter(|_| ok) else { return Ok(Err(self.failed(throttle).await?)) };
        self.db.clear_sign_in_failures(throttle).await?;
        if !D::POLICY.second_factor_mandatory && !self.has_totp(&id).await? {
            return Ok(Ok(Step::Session { token: self.open_session(&id).await?, id }));
        }
        let (ticket, hash) = new_token()?;
        let (subject, now) = (Self::subject(&id), self.now());
        let expires = Millis(now.0 + D::POLICY.second_factor_ttl_ms);
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_link(&hash, &subject, LinkPurpose::SecondFactor, now, expires)
                        .await
                        .map_err(AppError::from)
                })
            })
            .await?;
        Ok(Ok(Step::NeedsCode { ticket: SecretString::from(ticket) }))
    }

    /// The second step: a TOTP code (each step accepted once) or an unused
    /// recovery code, with the ticket of the first step (spent once).
    pub async fn complete_second_factor(
        &self,
        ticket: &str,
        code: &str,
    ) -> Result<Result<(SecretString, String), SignInError>, AppError> {
        let hash = token_hash(ticket);
        let now = self.now();
        let realm = D::POLICY.realm;
        let Some(id) = self.db.link_owner(&hash, realm, LinkUse::SecondFactor, now).await? else {
            return Ok(Err(SignInError::Invalid));
        };
        if let Err(refused) = self.check_second_factor(&id, code).await? {
            return Ok(Err(refused));
        }
        let spent = self
            .db
            .write(move |tx| {
                Box::pin(
                    async move { tx.use_link(&hash, realm, LinkUse::SecondFactor, now).await.map_err(AppError::from) },
                )
            })
            .await?;
        if spent.is_none() {
            return Ok(Err(SignInError::Invalid));
        }
        Ok(Ok((self.open_session(&id).await?, id)))
    }

    /// Checks a TOTP code (each step accepted once) or spends a recovery
    /// code, under the subject's own lock-out for second-factor guesses.
    pub(super) async fn check_second_factor(&self, id: &str, code: &str) -> Result<Result<(), SignInError>, AppError> {
        let throttle = D::POLICY.second_factor_throttle(id);
        let now = self.now();
        if let Some(locked) = self.locked(&throttle).await? {
            return Ok(Err(locked));
        }
        let subject = Self::subject(id);
        let accepted = match self.totp_secret(id).await? {
            Some(secret) => match coffer_crypto::check_totp(&secret, code, seconds(now)) {
                Some(step) => self.db.accept_totp_step(&subject, i64::try_from(step).unwrap_or(i64::MAX)).await?,
                None => self.db.use_recovery_code(&subject, token_hash(&normalise_code(code)), now).await?,
            },
            None => false,
        };
        if !accepted {
            return Ok(Err(self.failed(throttle).await?));
        }
        self.db.clear_sign_in_failures(throttle).await?;
        Ok(Ok(()))
    }

    /// Checks a signed-in person's current password under the same lock-out
    /// as sign-in: a session is no licence to guess.
    pub(super) async fn confirm_password(&self, id: &str, email: &str, password: SecretString) -> Result<(), AppError> {
        let throttle = D::POLICY.address_throttle(self.vault.blind_index().email(email));
        if let Some(SignInError::Locked { retry_after_ms }) = self.locked(&throttle).await? {
            return Err(AppError::TooManyAttempts { retry_after_ms });
        }
        if self.passwords.verify(password, self.password_hash(id).await?).await? {
            return Ok(());
        }
        match self.failed(throttle).await? {
            SignInError::Locked { retry_after_ms } => Err(AppError::TooManyAttempts { retry_after_ms }),
            SignInError::Invalid => Err(AccountError::WrongPassword.into()),
        }
    }

    /// `Some` when the throttle key is locked now.
    async fn locked(&self, key: &[u8; 32]) -> Result<Option<SignInError>, AppError> {
        let (_, locked_until) = self.db.sign_in_throttle(key).await?;
        let now = self.now();
        Ok((locked_until > now).then_some(SignInError::Locked { retry_after_ms: locked_until.0 - now.0 }))
    }

    /// Counts a failure against the key; the answer to give.
    async fn failed(&self, key: [u8; 32]) -> Result<SignInError, AppError> {
        let (_, until) = self.db.record_sign_in_failure(key, self.now(), lock_for_ms).await?;
        let now = self.now();
        Ok(if until > now { SignInError::Locked { retry_after_ms: until.0 - now.0 } } else { SignInError::Invalid })
    }

    /// A new session for the subject (at sign-in and at any privilege
    /// change); the token for the cookie.
    pub async fn open_session(&self, id: &str) -> Result<SecretString, AppError> {
        let (token, hash) = new_token()?;
        let (subject, now) = (Self::subject(id), self.now());
        self.db
            .write(move |tx| {
                Box::pin(async move { tx.insert_session(&hash, &subject, now).await.map_err(AppError::from) })
            })
            .await?;
        Ok(SecretString::from(token))
    }

    /// The subject of a live session of this realm: not revoked, not idle
    /// too long, not too old. Activity is written at most once a minute.
    pub async fn session(&self, token: &str) -> Result<Option<String>, AppError> {
        let hash = token_hash(token);
        let Some(row) = self.db.live_session(&hash).await? else { return Ok(None) };
        let now = self.now();
        if row.subject_kind != D::POLICY.realm.as_str()
            || now.0 - row.last_seen_at.0 >= D::POLICY.session_idle_ms
            || now.0 - row.created_at.0 >= D::POLICY.session_absolute_ms
        {
            return Ok(None);
        }
        if now.0 - row.last_seen_at.0 >= LAST_SEEN_EVERY_MS {
            self.db.touch_session(hash, now).await?;
        }
        Ok(Some(row.subject_id))
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        Ok(self.db.revoke_session(token_hash(token), self.now()).await?)
    }

    /// Ends every session of the subject.
    pub async fn sign_out_everywhere(&self, id: &str) -> Result<u64, AppError> {
        let (subject, now) = (Self::subject(id), self.now());
        self.db
            .write(move |tx| {
                Box::pin(async move { tx.revoke_sessions_of(&subject, now).await.map_err(AppError::from) })
            })
            .await
    }

    /// A new link of `purpose` for the subject, to store in the caller's
    /// unit (with the email that carries it); its token.
    pub(super) fn new_link(&self, id: &str, purpose: LinkPurpose) -> Result<(SecretString, PendingLink), AppError> {
        let ttl = match purpose {
            LinkPurpose::Invitation | LinkPurpose::Enrolment => D::POLICY.invitation_ttl_ms,
            LinkPurpose::SignIn | LinkPurpose::Reset => D::POLICY.link_ttl_ms,
            LinkPurpose::SecondFactor => D::POLICY.second_factor_ttl_ms,
        };
        let (token, hash) = new_token()?;
        let now = self.now();
        let link = PendingLink { hash, subject: Self::subject(id), purpose, at: now, expires_at: Millis(now.0 + ttl) };
        Ok((SecretString::from(token), link))
    }

    /// Whose a live link serving `what` is, without spending it.
    pub(super) async fn link_owner(&self, token: &str, what: LinkUse) -> Result<Option<String>, AppError> {
        Ok(self.db.link_owner(&token_hash(token), D::POLICY.realm, what, self.now()).await?)
    }

    /// Uses a link (once) to set a new password and, at enrolment, the
    /// second factor; every other link and session of the subject ends and
    /// a fresh session starts. `also` runs in the same unit.
    pub(super) async fn take_link(
        &self,
        token: &str,
        what: LinkUse,
        password: Sealed,
        factor: Option<(Sealed, i64, Vec<[u8; 32]>)>,
        also: Option<AlsoInUnit>,
    ) -> Result<(SecretString, String), AppError> {
        let hash = token_hash(token);
        let (session, session_hash) = new_token()?;
        let (realm, now) = (D::POLICY.realm, self.now());
        let id = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let Some((id, _)) = tx.use_link(&hash, realm, what, now).await? else {
                        return Err(AppError::LinkGone(link_gone(realm)));
                    };
                    let subject = Subject::new(realm, id.clone());
                    tx.set_password(&subject, &password, now).await?;
                    if let Some((secret, step, codes)) = &factor {
                        tx.set_totp(&subject, Some((secret, *step, codes)), now).await?;
                    }
                    tx.spend_links_of(&subject, now).await?;
                    tx.revoke_sessions_of(&subject, now).await?;
                    tx.insert_session(&session_hash, &subject, now).await?;
                    if let Some(also) = also {
                        also(tx, id.clone(), now).await?;
                    }
                    Ok::<_, AppError>(id)
                })
            })
            .await?;
        Ok((SecretString::from(session), id))
    }

    /// Sets a new password (already checked and sealed) after the current
    /// one was confirmed: every link and session ends; a fresh session.
    pub(super) async fn replace_password(&self, id: &str, sealed: Sealed) -> Result<SecretString, AppError> {
        let (token, hash) = new_token()?;
        let (subject, now) = (Self::subject(id), self.now());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.set_password(&subject, &sealed, now).await?;
                    tx.spend_links_of(&subject, now).await?;
                    tx.revoke_sessions_of(&subject, now).await?;
                    tx.insert_session(&hash, &subject, now).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(SecretString::from(token))
    }

    /// The TOTP secret an enrolment page shows: a fresh one, or `keep`
    /// again when the form comes back with an error. Nothing is stored.
    pub(super) fn enrolment_setup(keep: Option<&str>, email: &str) -> Result<TotpSetup, AppError> {
        let secret = match keep.and_then(coffer_crypto::totp_secret_from_base32) {
            Some(kept) => kept,
            None => coffer_crypto::new_totp_secret()?.to_vec(),
        };
        TotpSetup::new(&secret, email)
    }

    /// Finishes an enrolment by a live link (spent once): a password that
    /// passes the rule, a code from the authenticator for the secret shown;
    /// `also` runs in the same unit. The new session, the subject and the
    /// recovery codes (shown once).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enrol(
        &self,
        token: &str,
        id: &str,
        email: &str,
        password: SecretString,
        secret_base32: &str,
        code: &str,
        also: AlsoInUnit,
    ) -> Result<(SecretString, String, Vec<String>), AppError> {
        let at = self.now();
        coffer_domain::check_new_password(secrecy::ExposeSecret::expose_secret(&password), &[email])
            .map_err(AccountError::from)?;
        let (secret, step) = self.check_new_factor(secret_base32, code, at)?;
        let sealed = self.seal_password(id, password).await?;
        let factor = self.new_factor(id, &secret, step).await?;
        let hashes: Vec<[u8; 32]> = factor.recovery_codes.iter().map(|c| token_hash(c)).collect();
        let (session, id) = self
            .take_link(token, LinkUse::Enrol, sealed, Some((factor.sealed, factor.step, hashes)), Some(also))
            .await?;
        Ok((session, id, factor.recovery_codes))
    }

    /// Demo only: a code for a secret just shown, one step back, so the
    /// demo person's first sign-in (this step's code) is still accepted.
    pub(super) fn demo_code(&self, setup: &TotpSetup) -> Result<String, AppError> {
        let secret = coffer_crypto::totp_secret_from_base32(secrecy::ExposeSecret::expose_secret(&setup.secret))
            .ok_or_else(|| AppError::Keys("a fresh TOTP secret did not decode".into()))?;
        let seconds = u64::try_from(self.now().0 / 1000).unwrap_or(0);
        coffer_crypto::totp_code(&secret, seconds.saturating_sub(30))
            .ok_or_else(|| AppError::Keys("a TOTP code could not be computed".into()))
    }

    /// Sets a password with nothing else (the demo's own accounts).
    pub(super) async fn set_password(&self, id: &str, sealed: Sealed) -> Result<(), AppError> {
        let (subject, now) = (Self::subject(id), self.now());
        self.db
            .write(move |tx| {
                Box::pin(async move { tx.set_password(&subject, &sealed, now).await.map_err(AppError::from) })
            })
            .await
    }

    /// Checks a secret typed into an authenticator and a code from it; the
    /// raw secret and the code's step.
    /// `at`: when the request came (a code is checked against that time).
    pub(super) fn check_new_factor(
        &self,
        secret_base32: &str,
        code: &str,
        at: Millis,
    ) -> Result<(Vec<u8>, i64), AccountError> {
        let secret = coffer_crypto::totp_secret_from_base32(secret_base32).ok_or(AccountError::InvalidSecret)?;
        let step = coffer_crypto::check_totp(&secret, code, seconds(at)).ok_or(AccountError::CodeMismatch)?;
        Ok((secret, i64::try_from(step).unwrap_or(i64::MAX)))
    }

    /// Seals a checked new factor with fresh recovery codes (shown once).
    pub(super) async fn new_factor(&self, id: &str, secret: &[u8], step: i64) -> Result<NewFactor, AppError> {
        Ok(NewFactor {
            sealed: self.seal(id, "totp_secret", secret).await?,
            step,
            recovery_codes: coffer_crypto::new_recovery_codes()?,
        })
    }

    /// Turns the second factor on (or off with `None`). Turning it on spends
    /// every open link: one sent before would sign in without the factor.
    pub(super) async fn set_factor(&self, id: &str, factor: Option<NewFactor>) -> Result<Vec<String>, AppError> {
        let (subject, now) = (Self::subject(id), self.now());
        let (stored, codes) = match factor {
            Some(f) => {
                let hashes: Vec<[u8; 32]> = f.recovery_codes.iter().map(|c| token_hash(c)).collect();
                (Some((f.sealed, f.step, hashes)), f.recovery_codes)
            }
            None => (None, Vec::new()),
        };
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    match &stored {
                        Some((sealed, step, hashes)) => {
                            tx.set_totp(&subject, Some((sealed, *step, hashes)), now).await?;
                            tx.spend_links_of(&subject, now).await?;
                        }
                        None => tx.set_totp(&subject, None, now).await?,
                    }
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(codes)
    }

    pub async fn has_totp(&self, id: &str) -> Result<bool, AppError> {
        Ok(self.db.credentials(&Self::subject(id)).await?.totp_secret.is_some())
    }

    pub async fn has_password(&self, id: &str) -> Result<bool, AppError> {
        Ok(self.db.credentials(&Self::subject(id)).await?.password_hash.is_some())
    }

    /// Hashes a password (already checked against the rule) on the pool and
    /// seals the hash.
    pub(super) async fn seal_password(&self, id: &str, password: SecretString) -> Result<Sealed, AppError> {
        let phc = self.passwords.hash(password).await?;
        self.seal(id, "password_hash", phc.as_bytes()).await
    }

    async fn seal(&self, id: &str, column: &'static str, plain: &[u8]) -> Result<Sealed, AppError> {
        let (key_id, key) = self.directory.data_key(id).await?.ok_or(AppError::Erased)?;
        let ctx = FieldContext { table: D::POLICY.sealed_as, column, row_id: id, data_key_id: key_id.as_str() };
        Ok(seal_field(&key, &ctx, plain)?)
    }

    /// Opens a sealed secret; `None` once the key is gone.
    async fn open(
        &self,
        id: &str,
        column: &'static str,
        sealed: &Sealed,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, AppError> {
        let Some((key_id, key)) = self.directory.data_key(id).await? else { return Ok(None) };
        let ctx = FieldContext { table: D::POLICY.sealed_as, column, row_id: id, data_key_id: key_id.as_str() };
        Ok(Some(open_field(&key, &ctx, sealed)?))
    }

    async fn password_hash(&self, id: &str) -> Result<Option<String>, AppError> {
        let Some(sealed) = self.db.credentials(&Self::subject(id)).await?.password_hash else { return Ok(None) };
        let phc = self.open(id, "password_hash", &sealed).await?;
        Ok(phc.and_then(|phc| String::from_utf8(phc.to_vec()).ok()))
    }

    /// The opened TOTP secret, when the second factor is on.
    pub(super) async fn totp_secret(&self, id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, AppError> {
        let Some(sealed) = self.db.credentials(&Self::subject(id)).await?.totp_secret else { return Ok(None) };
        self.open(id, "totp_secret", &sealed).await
    }
}

/// What a dead link's page says, by realm.
pub(super) fn link_gone(realm: Realm) -> &'static str {
    match realm {
        Realm::Staff => "this enrolment link has expired or was already used; ask an administrator for a new one",
        Realm::Customer | Realm::Vendor => "this link has expired or was already used; ask for a new one",
    }
}

fn seconds(now: Millis) -> u64 {
    u64::try_from(now.0 / 1000).unwrap_or(0)
}

/// Recovery codes are matched lowercased, with the dash, without spaces.
fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()
}
