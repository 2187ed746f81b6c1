//! Customer sign-in: one-time links by email, passwords, sessions, and the
//! lock-out against guessing. Every answer that could tell whether an
//! address has an account is the same either way.

use super::common;
use super::passwords::PasswordPool;
use crate::AppError;
use crate::mail::{Letter, Outbox};
use crate::privacy::{CustomerService, Reader, Vault};
use coffer_crypto::{FieldContext, new_token, open_field, seal_field, token_hash};
use coffer_domain::{Clock, CustomerId, Millis, check_new_password};
use coffer_store::prelude::*;
use coffer_store::{AccountWriter, CustomerReader, Db, LinkPurpose, LinkUse, OutboxWriter};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

const MINUTE: i64 = 60_000;
/// A link asked for on the sign-in page (or for a reset) lives 15 minutes.
pub const LINK_TTL_MS: i64 = 15 * MINUTE;
/// The invitation in the first order email lives 7 days.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 60 * MINUTE;
/// A session ends after 30 minutes without activity…
pub const SESSION_IDLE_MS: i64 = 30 * MINUTE;
/// …and 12 hours after sign-in in any case.
pub const SESSION_ABSOLUTE_MS: i64 = 12 * 60 * MINUTE;
/// Activity is written at most once a minute.
pub const LAST_SEEN_EVERY_MS: i64 = MINUTE;
/// Failures allowed before the address is locked.
pub const FREE_FAILURES: i64 = 5;

/// How long an address is locked after `failures` failed sign-ins: nothing
/// for the first five, then 1 s doubling up to 15 minutes.
pub fn lock_for_ms(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = u32::try_from((failures - FREE_FAILURES).clamp(0, 20)).unwrap_or(20);
    (1_000i64 << doublings).min(15 * MINUTE)
}

/// How long the step between password and TOTP code may take.
pub const SECOND_FACTOR_TTL_MS: i64 = 5 * MINUTE;

/// What a right password leads to.
#[derive(Debug)]
pub enum SignedIn {
    Session(NewSession),
    /// The account has a second factor: ask for the code with this ticket
    /// (single use, 5 minutes, stored hashed).
    NeedsCode {
        ticket: SecretString,
    },
}

impl SignedIn {
    /// The session, when no second factor is asked for.
    pub fn session(self) -> Option<NewSession> {
        match self {
            SignedIn::Session(session) => Some(session),
            SignedIn::NeedsCode { .. } => None,
        }
    }
}

/// A second factor being set up: shown to the customer once.
#[derive(Debug)]
pub struct TotpSetup {
    /// The secret in base32, to type into an authenticator app.
    pub secret: SecretString,
    /// The same as an `otpauth://` URI.
    pub uri: SecretString,
}

/// A signed-in session: the cookie value and who it is for.
#[derive(Debug)]
pub struct NewSession {
    /// The 256-bit session id for the cookie; stored only hashed.
    pub token: SecretString,
    pub customer: CustomerId,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Wrong address or wrong password: never which.
    #[error("the email address or password is not right")]
    Invalid,
    /// Too many failures for this address; try again after this many ms.
    #[error("too many attempts; try again later")]
    Locked { retry_after_ms: i64 },
}

#[derive(Clone)]
pub struct AccountService {
    db: Db,
    vault: Arc<Vault>,
    customers: CustomerService,
    outbox: Outbox,
    passwords: PasswordPool,
    clock: Arc<dyn Clock>,
    base_url: String,
}

fn totp_ctx<'a>(customer: &'a CustomerId, key_id: &'a coffer_domain::DataKeyId) -> FieldContext<'a> {
    FieldContext { table: "accounts", column: "totp_secret", row_id: customer.as_str(), data_key_id: key_id.as_str() }
}

fn password_ctx<'a>(customer: &'a CustomerId, key_id: &'a coffer_domain::DataKeyId) -> FieldContext<'a> {
    FieldContext { table: "accounts", column: "password_hash", row_id: customer.as_str(), data_key_id: key_id.as_str() }
}

impl AccountService {
    pub fn new(
        db: Db,
        vault: Arc<Vault>,
        customers: CustomerService,
        outbox: Outbox,
        passwords: PasswordPool,
        clock: Arc<dyn Clock>,
        base_url: String,
    ) -> Self {
        AccountService { db, vault, customers, outbox, passwords, clock, base_url }
    }

    /// Emails a one-time link to the address if it belongs to a customer;
    /// does nothing visible otherwise. The caller answers the same way in
    /// both cases.
    pub async fn request_link(&self, email: &str, purpose: LinkPurpose) -> Result<(), AppError> {
        let Some(customer) = self.customers.find_by_email(email).await? else { return Ok(()) };
        self.send_link(&customer, purpose).await
    }

    /// [`Self::request_link`] after the answer: the caller answers at once,
    /// so how long the answer takes never tells whether the address has an
    /// account. A failure is logged (without the address).
    pub fn request_link_after_answer(&self, email: String, purpose: LinkPurpose) {
        let accounts = self.clone();
        tokio::spawn(async move {
            if let Err(e) = accounts.request_link(&email, purpose).await {
                tracing::warn!(error = %e, "a requested sign-in link could not be sent");
            }
        });
    }

    /// A sign-in link by email, after the answer (see [`Self::request_link_after_answer`]).
    pub fn request_sign_in_link_after_answer(&self, email: String) {
        self.request_link_after_answer(email, LinkPurpose::SignIn);
    }

    /// The invoice number of one of the customer's orders, once numbered.
    pub async fn invoice_number_of(&self, order: &coffer_domain::OrderId) -> Result<Option<i64>, AppError> {
        Ok(self.db.invoice_of(order).await?.map(|i| i.number))
    }

    /// One of the customer's own invoices by number; `None` for anyone
    /// else's, exactly as for one that does not exist.
    pub async fn own_invoice(
        &self,
        customer: &CustomerId,
        number: i64,
    ) -> Result<Option<coffer_store::Invoice>, AppError> {
        let Some(invoice) = self.db.invoice(number).await? else { return Ok(None) };
        let owner = self.db.order(&invoice.order_id).await?.map(|o| o.customer_id);
        Ok((owner.as_ref() == Some(customer)).then_some(invoice))
    }

    /// [`Self::submit_privacy_request`] after the answer, for the same reason.
    pub fn submit_privacy_request_after_answer(
        &self,
        email: String,
        kind: coffer_domain::RequestKind,
        jurisdiction: coffer_domain::Jurisdiction,
    ) {
        let accounts = self.clone();
        tokio::spawn(async move {
            if let Err(e) = accounts.submit_privacy_request(&email, kind, jurisdiction).await {
                tracing::warn!(error = %e, "a written data request could not be recorded");
            }
        });
    }

    /// Sends a link to a known customer (also used by checkout's invitation).
    pub async fn send_link(&self, customer: &CustomerId, purpose: LinkPurpose) -> Result<(), AppError> {
        let (record, key_id, key) = self.customers.own_record_and_key(customer).await?;
        let (token, hash) = new_token()?;
        let now = self.clock.now();
        let ttl = if purpose == LinkPurpose::Invitation { INVITATION_TTL_MS } else { LINK_TTL_MS };
        let link = format!("{}/account/link/{token}", self.base_url.trim_end_matches('/'));
        let (subject, body) = match purpose {
            LinkPurpose::Reset => (
                "Reset your Coffer password",
                format!(
                    "Hello {},\n\nOpen this link within 15 minutes to choose a new password:\n\n{link}\n\nIf you did not ask for it, ignore this message; your password stays as it is.\n",
                    record.details.name
                ),
            ),
            LinkPurpose::SignIn => (
                "Your Coffer sign-in link",
                format!(
                    "Hello {},\n\nOpen this link within 15 minutes to sign in and set your password:\n\n{link}\n\nIf you did not ask for it, ignore this message.\n",
                    record.details.name
                ),
            ),
            LinkPurpose::SecondFactor => {
                return Err(AppError::Refused("second-factor tickets are never emailed".into()));
            }
            LinkPurpose::Invitation => (
                "Your Coffer account",
                format!(
                    "Hello {},\n\nYour purchases are in your Coffer account. Open this link within 7 days to set your password:\n\n{link}\n",
                    record.details.name
                ),
            ),
        };
        let letter = Letter { kind: purpose.as_str(), to: &record.details.email, subject, body: &body };
        let email = self.outbox.seal(&letter, &key, &key_id, false)?;
        let customer = customer.clone();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_link(&hash, &customer, purpose, now, Millis(now.0 + ttl)).await?;
                    tx.enqueue_email(&email).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await
    }

    /// Whether the owner of a live emailed link has two-step sign-in on, so
    /// the link's page must ask for a code too. `None`: the link is gone.
    pub async fn link_needs_code(&self, token: &str) -> Result<Option<bool>, AppError> {
        let now = self.clock.now();
        match self.db.link_owner(&token_hash(token), LinkUse::SetPassword, now).await? {
            Some(owner) => Ok(Some(self.db.account_totp(&owner).await?.is_some())),
            None => Ok(None),
        }
    }

    /// Uses an emailed link (once) to set a password; signs the customer in
    /// with a fresh session and ends every other session and open link. When
    /// the account has a second factor, a right `code` is needed too: a
    /// link proves the mailbox, not the second factor.
    pub async fn set_password_with_link(
        &self,
        token: &str,
        password: SecretString,
        code: Option<&str>,
    ) -> Result<NewSession, AppError> {
        let hash = token_hash(token);
        // Checked before the link is spent, so a weak password can be retried.
        let now = self.clock.now();
        let owner = self.link_owner(&hash, now).await?;
        // The password's rule first: a weak password must not use up a code.
        let sealed = self.seal_new_password(&owner, password).await?;
        if self.db.account_totp(&owner).await?.is_some() {
            match self.check_second_factor(&owner, code.unwrap_or(""), now).await? {
                Ok(()) => {}
                Err(SignInError::Invalid) => return Err(AppError::Refused(CODE_WRONG.into())),
                Err(SignInError::Locked { retry_after_ms }) => {
                    return Err(AppError::TooManyAttempts { retry_after_ms });
                }
            }
        }
        let (session, session_hash) = new_token()?;
        let now = self.clock.now();
        let customer = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let Some((customer, _)) = tx.use_link(&hash, LinkUse::SetPassword, now).await? else {
                        return Err(AppError::LinkGone(LINK_GONE));
                    };
                    tx.set_password(&customer, &sealed, now).await?;
                    tx.spend_links_of(&customer, now).await?;
                    tx.revoke_sessions_of("customer", customer.as_str(), now).await?;
                    tx.insert_session(&session_hash, "customer", customer.as_str(), now).await?;
                    Ok::<_, AppError>(customer)
                })
            })
            .await?;
        Ok(NewSession { token: SecretString::from(session), customer })
    }

    async fn link_owner(&self, hash: &[u8; 32], now: Millis) -> Result<CustomerId, AppError> {
        self.db.link_owner(hash, LinkUse::SetPassword, now).await?.ok_or(AppError::LinkGone(LINK_GONE))
    }

    /// Signs in with email and password. Unknown addresses run the same
    /// argon2id verification (against a dummy) and get the same answer.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Result<SignedIn, SignInError>, AppError> {
        let key = self.vault.blind_index().email(email);
        if let Some(locked) = common::locked(&self.db, &key, self.clock.now()).await? {
            return Ok(Err(locked));
        }
        let customer = self.customers.find_by_email(email).await?;
        let stored_hash = match &customer {
            Some(id) => self.password_hash(id).await?,
            None => None,
        };
        let ok = self.passwords.verify(password, stored_hash).await?;
        let Some(customer) = customer.filter(|_| ok) else {
            return Ok(Err(common::failed(&self.db, key, self.clock.as_ref()).await?));
        };
        self.db.clear_sign_in_failures(key).await?;
        if self.db.account_totp(&customer).await?.is_some() {
            let (ticket, hash) = new_token()?;
            let (id, now) = (customer.clone(), self.clock.now());
            self.db
                .write(move |tx| {
                    Box::pin(async move {
                        tx.insert_link(&hash, &id, LinkPurpose::SecondFactor, now, Millis(now.0 + SECOND_FACTOR_TTL_MS))
                            .await
                            .map_err(AppError::from)
                    })
                })
                .await?;
            return Ok(Ok(SignedIn::NeedsCode { ticket: SecretString::from(ticket) }));
        }
        Ok(Ok(SignedIn::Session(self.new_session(&customer).await?)))
    }

    /// The second step: a TOTP code (each accepted once) or an unused
    /// recovery code. Failures count towards the account's lock-out.
    pub async fn complete_second_factor(
        &self,
        ticket: &str,
        code: &str,
    ) -> Result<Result<NewSession, SignInError>, AppError> {
        let hash = token_hash(ticket);
        let now = self.clock.now();
        let Some(customer) = self.db.link_owner(&hash, LinkUse::SecondFactor, now).await? else {
            return Ok(Err(SignInError::Invalid));
        };
        if let Err(refused) = self.check_second_factor(&customer, code, now).await? {
            return Ok(Err(refused));
        }
        let spent = self
            .db
            .write(move |tx| {
                Box::pin(async move { tx.use_link(&hash, LinkUse::SecondFactor, now).await.map_err(AppError::from) })
            })
            .await?;
        if spent.is_none() {
            return Ok(Err(SignInError::Invalid));
        }
        Ok(Ok(self.new_session(&customer).await?))
    }

    /// Checks a TOTP code (each step accepted once) or spends a recovery
    /// code, under the account's own lock-out for second-factor guesses.
    async fn check_second_factor(
        &self,
        customer: &CustomerId,
        code: &str,
        now: Millis,
    ) -> Result<Result<(), SignInError>, AppError> {
        let throttle = token_hash(&format!("second-factor:{customer}"));
        if let Some(locked) = common::locked(&self.db, &throttle, now).await? {
            return Ok(Err(locked));
        }
        let accepted = match self.totp_secret(customer).await? {
            Some(secret) => {
                let seconds = u64::try_from(now.0 / 1000).unwrap_or(0);
                match coffer_crypto::check_totp(&secret, code, seconds) {
                    Some(step) => self.db.accept_totp_step(customer, i64::try_from(step).unwrap_or(i64::MAX)).await?,
                    None => {
                        self.db
                            .use_recovery_code(customer, token_hash(&super::staff::normalise_code(code)), now)
                            .await?
                    }
                }
            }
            None => false,
        };
        if !accepted {
            return Ok(Err(common::failed(&self.db, throttle, self.clock.as_ref()).await?));
        }
        self.db.clear_sign_in_failures(throttle).await?;
        Ok(Ok(()))
    }

    async fn totp_secret(&self, customer: &CustomerId) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, AppError> {
        let Some(sealed) = self.db.account_totp(customer).await? else { return Ok(None) };
        self.open_account_field(customer, &sealed, totp_ctx).await
    }

    /// Opens a sealed field of the account row; `None` once the key is gone.
    async fn open_account_field(
        &self,
        customer: &CustomerId,
        sealed: &coffer_crypto::Sealed,
        context: for<'a> fn(&'a CustomerId, &'a coffer_domain::DataKeyId) -> FieldContext<'a>,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, AppError> {
        let stored = self.db.customer(customer).await?.ok_or(AppError::NotFound)?;
        let Some(key) = self.vault.data_key(&stored.data_key_id).await? else { return Ok(None) };
        Ok(Some(open_field(&key, &context(customer, &stored.data_key_id), sealed)?))
    }

    /// Checks a new password against the rule (the person's own name and
    /// email count against it), hashes it on the pool and seals the hash.
    async fn seal_new_password(
        &self,
        customer: &CustomerId,
        password: SecretString,
    ) -> Result<coffer_crypto::Sealed, AppError> {
        let (record, key_id, key) = self.customers.own_record_and_key(customer).await?;
        check_new_password(password.expose_secret(), &[&record.details.name, &record.details.email])
            .map_err(|e| AppError::Refused(e.to_string()))?;
        self.seal_password(customer, &key_id, &key, password).await
    }

    async fn seal_password(
        &self,
        customer: &CustomerId,
        key_id: &coffer_domain::DataKeyId,
        key: &coffer_crypto::DataKey,
        password: SecretString,
    ) -> Result<coffer_crypto::Sealed, AppError> {
        let phc = self.passwords.hash(password).await?;
        Ok(seal_field(key, &password_ctx(customer, key_id), phc.as_bytes())?)
    }

    /// A fresh secret to show; nothing is stored until [`Self::enable_totp`].
    pub async fn start_totp(&self, customer: &CustomerId) -> Result<TotpSetup, AppError> {
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        let secret = coffer_crypto::new_totp_secret()?;
        Ok(TotpSetup {
            secret: SecretString::from(coffer_crypto::totp_base32(&secret)),
            uri: SecretString::from(coffer_crypto::totp_uri(&secret, &record.details.email)?),
        })
    }

    /// Turns the second factor on once a code from the app matches the
    /// secret and the password is confirmed; returns the recovery codes,
    /// shown once. Refused while one is on (turning it off needs the
    /// password), so a stolen session can never swap the factor and lock
    /// the owner out.
    pub async fn enable_totp(
        &self,
        customer: &CustomerId,
        secret_base32: &str,
        code: &str,
        password: SecretString,
    ) -> Result<Vec<String>, AppError> {
        if self.db.account_totp(customer).await?.is_some() {
            return Err(AppError::Refused("two-step sign-in is already on; turn it off first".into()));
        }
        self.confirm_password(customer, password).await?;
        let secret = coffer_crypto::totp_secret_from_base32(secret_base32)
            .ok_or_else(|| AppError::Refused("the secret is not valid; start again".into()))?;
        let seconds = u64::try_from(self.clock.now().0 / 1000).unwrap_or(0);
        let step = coffer_crypto::check_totp(&secret, code, seconds)
            .ok_or_else(|| AppError::Refused("that code does not match; check the time on your device".into()))?;
        let (_, key_id, key) = self.customers.own_record_and_key(customer).await?;
        let sealed = seal_field(&key, &totp_ctx(customer, &key_id), &secret)?;
        let codes = coffer_crypto::new_recovery_codes()?;
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| token_hash(c)).collect();
        let (id, now) = (customer.clone(), self.clock.now());
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    coffer_store::set_totp(tx, &id, Some((&sealed, step, &hashes))).await?;
                    // A link sent before now would sign in without the new factor.
                    tx.spend_links_of(&id, now).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(codes)
    }

    /// Checks a signed-in customer's current password under the same
    /// lock-out as sign-in: a session is no licence to guess.
    async fn confirm_password(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        let key = self.vault.blind_index().email(&record.details.email);
        if let Some(SignInError::Locked { retry_after_ms }) = common::locked(&self.db, &key, self.clock.now()).await? {
            return Err(AppError::TooManyAttempts { retry_after_ms });
        }
        if self.passwords.verify(password, self.password_hash(customer).await?).await? {
            return Ok(());
        }
        match common::failed(&self.db, key, self.clock.as_ref()).await? {
            SignInError::Locked { retry_after_ms } => Err(AppError::TooManyAttempts { retry_after_ms }),
            SignInError::Invalid => Err(AppError::Refused("the password is not right".into())),
        }
    }

    /// Turns the second factor off after checking the password.
    pub async fn disable_totp(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        self.confirm_password(customer, password).await?;
        let id = customer.clone();
        self.db
            .write(move |tx| {
                Box::pin(async move { coffer_store::set_totp(tx, &id, None).await.map_err(AppError::from) })
            })
            .await
    }

    pub async fn has_totp(&self, customer: &CustomerId) -> Result<bool, AppError> {
        Ok(self.db.account_totp(customer).await?.is_some())
    }

    async fn password_hash(&self, customer: &CustomerId) -> Result<Option<String>, AppError> {
        let Some(sealed) = self.db.account_password(customer).await? else { return Ok(None) };
        let phc = self.open_account_field(customer, &sealed, password_ctx).await?;
        Ok(phc.and_then(|phc| String::from_utf8(phc.to_vec()).ok()))
    }

    /// A new session id (at sign-in and at any privilege change).
    async fn new_session(&self, customer: &CustomerId) -> Result<NewSession, AppError> {
        let token = common::open_session(&self.db, self.clock.as_ref(), "customer", customer.as_str()).await?;
        Ok(NewSession { token, customer: customer.clone() })
    }

    /// The customer a session cookie belongs to, if the session is live.
    /// Records activity at most once a minute.
    pub async fn session(&self, token: &str) -> Result<Option<CustomerId>, AppError> {
        let subject = common::live_subject(&self.db, self.clock.as_ref(), "customer", token).await?;
        Ok(subject.and_then(|id| CustomerId::parse(id.as_str()).ok()))
    }

    /// Changes the password after checking the current one; every session
    /// ends and a fresh one is returned (a new id at a privilege change).
    pub async fn change_password(
        &self,
        customer: &CustomerId,
        current: SecretString,
        new: SecretString,
    ) -> Result<NewSession, AppError> {
        self.confirm_password(customer, current).await?;
        let sealed = self.seal_new_password(customer, new).await?;
        let (token, hash) = new_token()?;
        let (id, now) = (customer.clone(), self.clock.now());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.set_password(&id, &sealed, now).await?;
                    tx.spend_links_of(&id, now).await?;
                    tx.revoke_sessions_of("customer", id.as_str(), now).await?;
                    tx.insert_session(&hash, "customer", id.as_str(), now).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(NewSession { token: SecretString::from(token), customer: customer.clone() })
    }

    /// Deletes the account after checking the password: a confirmation is
    /// sealed under a one-off key (destroyed once sent) and queued in the
    /// same unit that erases the customer through the privacy core.
    pub async fn delete_account(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        self.confirm_password(customer, password).await?;
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        let key_id = coffer_domain::DataKeyId::generate();
        let key = self.vault.new_data_key(&key_id).await?;
        // No name: this message goes out after the erasure, so it carries
        // only the address it must be sent to.
        let body = "Hello,\n\nYour Coffer account and the personal data in it have been deleted. \
             Invoices stay, without your name or address, because tax law requires them.\n\n\
             This is the last message we send you.\n"
            .to_owned();
        let letter = Letter {
            kind: "account_deleted",
            to: &record.details.email,
            subject: "Your Coffer account is deleted",
            body: &body,
        };
        let email = self.outbox.seal(&letter, &key, &key_id, true)?;
        // Queued in the erasure's own unit: sent exactly when it happened.
        let actor = coffer_domain::Actor::Customer(customer.to_string());
        self.customers.erase_with_message(customer, &actor, Some(email)).await
    }

    /// The customer changes their own name, phone or address (audited).
    pub async fn update_own_details(
        &self,
        customer: &CustomerId,
        details: &coffer_domain::CustomerDetails,
        actor: &coffer_domain::Actor,
    ) -> Result<(), AppError> {
        self.customers.update(customer, details, actor).await.map(drop)
    }

    /// The customer's own orders with their license keys (newest first).
    pub async fn own_orders(&self, customer: &CustomerId) -> Result<Vec<crate::privacy::OrderRecord>, AppError> {
        let (_, _, key) = self.customers.own_record_and_key(customer).await?;
        self.customers.orders_with_key(customer, &key).await
    }

    /// Everything held about the customer, for their own download.
    pub async fn own_export(&self, customer: &CustomerId) -> Result<serde_json::Value, AppError> {
        self.customers.export_by_id(customer, &Reader::TheCustomer).await
    }

    /// A written request without sign-in: if the address belongs to a
    /// customer, the request is recorded and a challenge is emailed to the
    /// address on file; otherwise nothing happens. The caller answers the
    /// same way in both cases.
    pub async fn submit_privacy_request(
        &self,
        email: &str,
        kind: coffer_domain::RequestKind,
        jurisdiction: coffer_domain::Jurisdiction,
    ) -> Result<(), AppError> {
        let Some(customer) = self.customers.find_by_email(email).await? else { return Ok(()) };
        let (record, key_id, key) = self.customers.own_record_and_key(&customer).await?;
        let (token, hash) = new_token()?;
        let now = self.clock.now();
        let link = format!("{}/privacy/request/confirm/{token}", self.base_url.trim_end_matches('/'));
        let body = format!(
            "Hello {},\n\nWe received a request for {} held by Coffer. To confirm that it comes from you, \
             open this link within 7 days:\n\n{link}\n\nIf you did not make this request, ignore this message: \
             nothing happens without your confirmation.\n",
            record.details.name,
            kind.describe()
        );
        let letter = Letter {
            kind: "privacy_request",
            to: &record.details.email,
            subject: "Confirm your data request",
            body: &body,
        };
        let email = self.outbox.seal(&letter, &key, &key_id, false)?;
        let request = coffer_store::NewPrivacyRequest {
            id: coffer_domain::PrivacyRequestId::generate().to_string(),
            customer,
            kind,
            jurisdiction,
            challenge_hash: hash,
            at: now,
            challenge_expires_at: Millis(now.0 + INVITATION_TTL_MS),
        };
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_privacy_request(&request).await?;
                    tx.enqueue_email(&email).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await
    }

    /// Confirms a written request from its emailed challenge (once); the
    /// legal deadline starts now. Returns the days until it.
    pub async fn confirm_privacy_request(&self, token: &str) -> Result<i64, AppError> {
        let hash = token_hash(token);
        let now = self.clock.now();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let Some((id, kind, customer, deadline)) = tx.confirm_privacy_request(&hash, now).await? else {
                        return Err(AppError::Refused("this confirmation link has expired or was already used".into()));
                    };
                    let actor = coffer_domain::Actor::Customer(customer.to_string());
                    let entry = coffer_domain::AuditEntry::new(
                        now,
                        &actor,
                        coffer_domain::AuditAction::PrivacyRequestConfirmed,
                        Some(format!("{id} {kind}")),
                    );
                    coffer_store::AuditWriter::append_audit(tx, &entry).await?;
                    Ok::<_, AppError>((deadline.0 - now.0) / (24 * 60 * MINUTE))
                })
            })
            .await
    }

    /// A random value for the pre-session anti-forgery cookie.
    pub fn new_form_cookie(&self) -> Result<String, AppError> {
        Ok(new_token()?.0)
    }

    /// The CSRF token forms of this session carry.
    pub fn csrf_token(&self, session: &str) -> String {
        coffer_crypto::csrf_token(self.vault.csrf_key(), session)
    }

    pub fn csrf_matches(&self, session: &str, given: &str) -> bool {
        coffer_crypto::csrf_matches(self.vault.csrf_key(), session, given)
    }

    /// The signed-in customer's own record (their own read: not audited).
    pub async fn own_record(&self, customer: &CustomerId) -> Result<crate::privacy::CustomerRecord, AppError> {
        self.customers.get(customer, &Reader::TheCustomer).await
    }

    pub async fn has_password(&self, customer: &CustomerId) -> Result<bool, AppError> {
        Ok(self.db.account_password(customer).await?.is_some())
    }

    /// Sets a password without a link: for the demo customer only.
    pub async fn set_demo_password(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        let (_, key_id, key) = self.customers.own_record_and_key(customer).await?;
        let sealed = self.seal_password(customer, &key_id, &key, password).await?;
        let (id, now) = (customer.clone(), self.clock.now());
        self.db
            .write(move |tx| Box::pin(async move { tx.set_password(&id, &sealed, now).await.map_err(AppError::from) }))
            .await
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        Ok(self.db.revoke_session(token_hash(token), self.clock.now()).await?)
    }

    /// Ends every session of the customer.
    pub async fn sign_out_everywhere(&self, customer: &CustomerId) -> Result<u64, AppError> {
        let (id, now) = (customer.clone(), self.clock.now());
        self.db
            .write(move |tx| {
                Box::pin(
                    async move { tx.revoke_sessions_of("customer", id.as_str(), now).await.map_err(AppError::from) },
                )
            })
            .await
    }
}

const LINK_GONE: &str = "this link has expired or was already used; ask for a new one";
const CODE_WRONG: &str = "the code from your authenticator app or the recovery code is not right";
