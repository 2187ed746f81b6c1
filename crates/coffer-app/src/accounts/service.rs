//! The customer realm: sign-in by the shared [`SignIn`] (second factor
//! optional), one-time links by email, and what a signed-in customer does
//! with their account. Every answer that could tell whether an address has
//! an account is the same either way.

use super::errors::AccountError;
use super::passwords::PasswordPool;
use super::signin::{CUSTOMERS, Directory, RealmPolicy, SignIn, Step, TotpSetup, link_gone};
use crate::AppError;
use crate::mail::{Letter, Outbox};
use crate::privacy::{CustomerService, Reader, Vault};
use crate::request::RequestContext;
use coffer_crypto::{DataKey, new_token, token_hash};
use coffer_domain::{Clock, CustomerId, DataKeyId, Millis, Realm, check_new_password};
use coffer_store::prelude::*;
use coffer_store::{Db, LinkPurpose, LinkUse};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

pub use super::signin::SignInError;

const MINUTE: i64 = 60_000;
/// A link asked for on the sign-in page (or for a reset).
pub const LINK_TTL_MS: i64 = CUSTOMERS.link_ttl_ms;
/// The invitation in the first order email.
pub const INVITATION_TTL_MS: i64 = CUSTOMERS.invitation_ttl_ms;

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

/// A signed-in session: the cookie value and who it is for.
#[derive(Debug)]
pub struct NewSession {
    /// The 256-bit session id for the cookie; stored only hashed.
    pub token: SecretString,
    pub customer: CustomerId,
}

/// Customers, as the sign-in finds them: by address, any customer (one
/// without a password simply never matches).
#[derive(Clone)]
pub struct Customers {
    customers: CustomerService,
    db: Db,
    vault: Arc<Vault>,
}

impl Directory for Customers {
    const POLICY: &'static RealmPolicy = &CUSTOMERS;

    async fn find(&self, email: &str) -> Result<Option<String>, AppError> {
        Ok(self.customers.find_by_email(email).await?.map(|id| id.to_string()))
    }

    async fn data_key(&self, id: &str) -> Result<Option<(DataKeyId, DataKey)>, AppError> {
        let Ok(id) = CustomerId::parse(id) else { return Ok(None) };
        let Some(stored) = self.db.customer(&id).await? else { return Ok(None) };
        Ok(self.vault.data_key(&stored.data_key_id).await?.map(|key| (stored.data_key_id, key)))
    }
}

#[derive(Clone)]
pub struct AccountService {
    db: Db,
    vault: Arc<Vault>,
    customers: CustomerService,
    outbox: Outbox,
    sign_in: SignIn<Customers>,
    clock: Arc<dyn Clock>,
    base_url: String,
}

/// A customer's id from a subject id the sign-in stored for the realm.
fn customer_id(id: &str) -> Result<CustomerId, AppError> {
    CustomerId::parse(id).map_err(|_| AppError::Store(coffer_store::StoreError::corrupt_public("accounts.subject_id")))
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
        let directory = Customers { customers: customers.clone(), db: db.clone(), vault: vault.clone() };
        let sign_in = SignIn::new(db.clone(), vault.clone(), passwords, clock.clone(), directory);
        AccountService { db, vault, customers, outbox, sign_in, clock, base_url }
    }

    /// The realm's sign-in (the pages of every realm drive it the same way).
    pub fn sign_in_service(&self) -> &SignIn<Customers> {
        &self.sign_in
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
        crate::request::spawn_for_request(async move {
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

    /// [`Self::submit_privacy_request`] after the answer, for the same reason.
    pub fn submit_privacy_request_after_answer(
        &self,
        email: String,
        kind: coffer_domain::RequestKind,
        jurisdiction: coffer_domain::Jurisdiction,
    ) {
        let accounts = self.clone();
        crate::request::spawn_for_request(async move {
            if let Err(e) = accounts.submit_privacy_request(&email, kind, jurisdiction).await {
                tracing::warn!(error = %e, "a written data request could not be recorded");
            }
        });
    }

    /// Sends a link to a known customer.
    pub async fn send_link(&self, customer: &CustomerId, purpose: LinkPurpose) -> Result<(), AppError> {
        let (record, key_id, key) = self.customers.own_record_and_key(customer).await?;
        let (token, link) = self.sign_in.new_link(customer.as_str(), purpose)?;
        let url = format!("{}/account/link/{}", self.base_url.trim_end_matches('/'), token.expose_secret());
        let name = &record.details.name;
        let (subject, body) = match purpose {
            LinkPurpose::Reset => (
                "Reset your Coffer password",
                format!(
                    "Hello {name},\n\nOpen this link within 15 minutes to choose a new password:\n\n{url}\n\nIf you did not ask for it, ignore this message; your password stays as it is.\n"
                ),
            ),
            LinkPurpose::SignIn => (
                "Your Coffer sign-in link",
                format!(
                    "Hello {name},\n\nOpen this link within 15 minutes to sign in and set your password:\n\n{url}\n\nIf you did not ask for it, ignore this message.\n"
                ),
            ),
            LinkPurpose::Invitation => (
                "Your Coffer account",
                format!(
                    "Hello {name},\n\nYour purchases are in your Coffer account. Open this link within 7 days to set your password:\n\n{url}\n"
                ),
            ),
            // A caller's mistake, not the customer's: never emailed.
            LinkPurpose::SecondFactor | LinkPurpose::Enrolment => {
                return Err(AppError::Keys(format!("a {} link is never emailed", purpose.as_str())));
            }
        };
        let letter = Letter { kind: purpose.as_str(), to: &record.details.email, subject, body: &body };
        let email = self.outbox.seal(&letter, &key, &key_id, false)?;
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    link.insert(tx).await?;
                    tx.enqueue_email(&email).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await
    }

    /// Whether the owner of a live emailed link has two-step sign-in on, so
    /// the link's page must ask for a code too. `None`: the link is gone.
    pub async fn link_needs_code(&self, token: &str) -> Result<Option<bool>, AppError> {
        match self.sign_in.link_owner(token, LinkUse::SetPassword).await? {
            Some(owner) => Ok(Some(self.sign_in.has_totp(&owner).await?)),
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
        // Checked before the link is spent, so a weak password can be retried.
        let owner = self
            .sign_in
            .link_owner(token, LinkUse::SetPassword)
            .await?
            .ok_or(AppError::LinkGone(link_gone(Realm::Customer)))?;
        let customer = customer_id(&owner)?;
        // The password's rule first: a weak password must not use up a code.
        let sealed = self.seal_new_password(&customer, password).await?;
        if self.sign_in.has_totp(&owner).await? {
            match self.sign_in.check_second_factor(&owner, code.unwrap_or("")).await? {
                Ok(()) => {}
                Err(SignInError::Invalid) => return Err(AccountError::WrongCode.into()),
                Err(SignInError::Locked { retry_after_ms }) => {
                    return Err(AppError::TooManyAttempts { retry_after_ms });
                }
            }
        }
        let (token, id) = self.sign_in.take_link(token, LinkUse::SetPassword, sealed, None, None).await?;
        Ok(NewSession { token, customer: customer_id(&id)? })
    }

    /// Signs in with email and password. Unknown addresses run the same
    /// argon2id verification (against a dummy) and get the same answer.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Result<SignedIn, SignInError>, AppError> {
        Ok(match self.sign_in.sign_in(email, password).await? {
            Ok(Step::Session { token, id }) => Ok(SignedIn::Session(NewSession { token, customer: customer_id(&id)? })),
            Ok(Step::NeedsCode { ticket }) => Ok(SignedIn::NeedsCode { ticket }),
            Err(refused) => Err(refused),
        })
    }

    /// The second step: a TOTP code (each accepted once) or an unused
    /// recovery code. Failures count towards the account's lock-out.
    pub async fn complete_second_factor(
        &self,
        ticket: &str,
        code: &str,
    ) -> Result<Result<NewSession, SignInError>, AppError> {
        Ok(match self.sign_in.complete_second_factor(ticket, code).await? {
            Ok((token, id)) => Ok(NewSession { token, customer: customer_id(&id)? }),
            Err(refused) => Err(refused),
        })
    }

    /// Checks a new password against the rule (the person's own name and
    /// email count against it), hashes it on the pool and seals the hash.
    async fn seal_new_password(
        &self,
        customer: &CustomerId,
        password: SecretString,
    ) -> Result<coffer_crypto::Sealed, AppError> {
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        check_new_password(password.expose_secret(), &[&record.details.name, &record.details.email])
            .map_err(AccountError::from)?;
        self.sign_in.seal_password(customer.as_str(), password).await
    }

    /// A fresh secret to show; nothing is stored until [`Self::enable_totp`].
    pub async fn start_totp(&self, ctx: &RequestContext) -> Result<TotpSetup, AppError> {
        let customer = &ctx.own_account()?;
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        TotpSetup::new(&coffer_crypto::new_totp_secret()?, &record.details.email)
    }

    /// Turns the second factor on once a code from the app matches the
    /// secret and the password is confirmed; returns the recovery codes,
    /// shown once. Refused while one is on (turning it off needs the
    /// password), so a stolen session can never swap the factor and lock
    /// the owner out.
    pub async fn enable_totp(
        &self,
        ctx: &RequestContext,
        secret_base32: &str,
        code: &str,
        password: SecretString,
    ) -> Result<Vec<String>, AppError> {
        let customer = &ctx.own_account()?;
        let at = self.sign_in.now();
        if self.sign_in.has_totp(customer.as_str()).await? {
            return Err(AccountError::TotpAlreadyOn.into());
        }
        self.confirm_password(customer, password).await?;
        let (secret, step) = self.sign_in.check_new_factor(secret_base32, code, at)?;
        let factor = self.sign_in.new_factor(customer.as_str(), &secret, step).await?;
        self.sign_in.set_factor(customer.as_str(), Some(factor)).await
    }

    /// Checks a signed-in customer's current password under the same
    /// lock-out as sign-in: a session is no licence to guess.
    async fn confirm_password(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        let record = self.customers.get(customer, &Reader::TheCustomer).await?;
        self.sign_in.confirm_password(customer.as_str(), &record.details.email, password).await
    }

    /// Turns the second factor off after checking the password.
    pub async fn disable_totp(&self, ctx: &RequestContext, password: SecretString) -> Result<(), AppError> {
        let customer = &ctx.own_account()?;
        self.confirm_password(customer, password).await?;
        self.sign_in.set_factor(customer.as_str(), None).await.map(drop)
    }

    pub async fn has_totp(&self, ctx: &RequestContext) -> Result<bool, AppError> {
        let customer = &ctx.own_account()?;
        self.sign_in.has_totp(customer.as_str()).await
    }

    /// The customer a session cookie belongs to, if the session is live.
    /// Records activity at most once a minute.
    pub async fn session(&self, token: &str) -> Result<Option<CustomerId>, AppError> {
        let subject = self.sign_in.session(token).await?;
        Ok(subject.and_then(|id| CustomerId::parse(id.as_str()).ok()))
    }

    /// Changes the password after checking the current one; every session
    /// ends and a fresh one is returned (a new id at a privilege change).
    pub async fn change_password(
        &self,
        ctx: &RequestContext,
        current: SecretString,
        new: SecretString,
    ) -> Result<NewSession, AppError> {
        let customer = &ctx.own_account()?;
        self.confirm_password(customer, current).await?;
        let sealed = self.seal_new_password(customer, new).await?;
        let token = self.sign_in.replace_password(customer.as_str(), sealed).await?;
        Ok(NewSession { token, customer: customer.clone() })
    }

    /// Deletes the account after checking the password: a confirmation is
    /// sealed under a one-off key (destroyed once sent) and queued in the
    /// same unit that erases the customer through the privacy core.
    pub async fn delete_account(&self, ctx: &RequestContext, password: SecretString) -> Result<(), AppError> {
        let customer = &ctx.own_account()?;
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
        self.customers.erase_with_message(customer, ctx, Some(email)).await
    }

    /// The customer changes their own name, phone or address (audited).
    pub async fn update_own_details(
        &self,
        ctx: &RequestContext,
        details: &coffer_domain::CustomerDetails,
    ) -> Result<(), AppError> {
        let customer = &ctx.own_account()?;
        self.customers.update(customer, details, &ctx.actor()).await.map(drop)
    }

    /// The customer's own orders with their license keys (newest first).
    pub async fn own_orders(&self, ctx: &RequestContext) -> Result<Vec<crate::privacy::OrderRecord>, AppError> {
        let customer = &ctx.own_account()?;
        let (_, _, key) = self.customers.own_record_and_key(customer).await?;
        self.customers.orders_with_key(customer, &key).await
    }

    /// Everything held about the customer, for their own download.
    pub async fn own_export(&self, ctx: &RequestContext) -> Result<crate::privacy::AccessExport, AppError> {
        let customer = &ctx.own_account()?;
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
    /// Whether a confirmation link would still confirm its request, for
    /// the link's page to say so before the button is pressed.
    pub async fn privacy_request_awaits(&self, token: &str) -> Result<bool, AppError> {
        if token.len() > 100 {
            return Ok(false);
        }
        Ok(self.db.privacy_request_awaits(&token_hash(token), self.clock.now()).await?)
    }

    pub async fn confirm_privacy_request(&self, token: &str) -> Result<i64, AppError> {
        let hash = token_hash(token);
        let now = self.clock.now();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let Some((id, kind, customer, deadline)) = tx.confirm_privacy_request(&hash, now).await? else {
                        return Err(AccountError::ConfirmationGone.into());
                    };
                    let actor = coffer_domain::Actor::Customer(customer.to_string());
                    let entry = crate::request::audit_entry(
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
    pub async fn own_record(&self, ctx: &RequestContext) -> Result<crate::privacy::CustomerRecord, AppError> {
        let customer = &ctx.own_account()?;
        self.customers.get(customer, &Reader::TheCustomer).await
    }

    pub async fn has_password(&self, customer: &CustomerId) -> Result<bool, AppError> {
        self.sign_in.has_password(customer.as_str()).await
    }

    /// Sets a password without a link: for the demo customer only.
    pub async fn set_demo_password(&self, customer: &CustomerId, password: SecretString) -> Result<(), AppError> {
        let sealed = self.sign_in.seal_password(customer.as_str(), password).await?;
        self.sign_in.set_password(customer.as_str(), sealed).await
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        self.sign_in.sign_out(token).await
    }

    /// Ends every session of the customer.
    pub async fn sign_out_everywhere(&self, ctx: &RequestContext) -> Result<u64, AppError> {
        let customer = &ctx.own_account()?;
        self.sign_in.sign_out_everywhere(customer.as_str()).await
    }
}
