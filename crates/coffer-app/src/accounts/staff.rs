//! Staff accounts: added by an operator on the command line, enrolled by a
//! one-time link that sets the password and the TOTP secret together (the
//! second factor is mandatory), signed in with both, every time.

use super::common;
use super::passwords::PasswordPool;
use super::service::{SECOND_FACTOR_TTL_MS, SignInError};
use crate::AppError;
use crate::privacy::Vault;
use coffer_crypto::{DataKey, FieldContext, Sealed, new_token, open_field, seal_field, token_hash};
use coffer_domain::{Actor, AuditAction, AuditEntry, Clock, DataKeyId, Millis, StaffId, StaffRole, check_new_password};
use coffer_store::prelude::*;
use coffer_store::{AuditWriter, Db, NewStaffMember, StaffEnrolment, StaffLinkPurpose, StaffRow};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use zeroize::Zeroizing;

/// An enrolment link printed by `coffer staff add` lives 3 days.
pub const ENROLMENT_TTL_MS: i64 = 3 * 24 * 60 * 60 * 1000;

/// A signed-in staff member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffMember {
    pub id: StaffId,
    pub role: StaffRole,
}

/// A new staff session: the cookie value and who it is for.
#[derive(Debug)]
pub struct StaffSession {
    pub token: SecretString,
    pub member: StaffMember,
}

/// What enrolment shows once: the secret to type into an authenticator.
#[derive(Debug)]
pub struct StaffTotpSetup {
    pub secret: SecretString,
    pub uri: SecretString,
}

/// The outcome of a finished enrolment.
#[derive(Debug)]
pub struct Enrolled {
    pub session: StaffSession,
    /// Shown once; each signs in once in place of a TOTP code.
    pub recovery_codes: Vec<String>,
}

#[derive(Clone)]
pub struct StaffService {
    db: Db,
    vault: Arc<Vault>,
    passwords: PasswordPool,
    clock: Arc<dyn Clock>,
    base_url: String,
}

fn ctx<'a>(row: &'a StaffId, column: &'static str, key_id: &'a str) -> FieldContext<'a> {
    FieldContext { table: "staff_members", column, row_id: row.as_str(), data_key_id: key_id }
}

const LINK_GONE: &str = "this enrolment link has expired or was already used; ask an administrator for a new one";

impl StaffService {
    /// The written data requests still open, for the DPO, deadline first.
    pub async fn open_privacy_requests(
        &self,
        principal: &coffer_domain::Principal,
    ) -> Result<Vec<coffer_store::PrivacyRequestRow>, AppError> {
        crate::checkout::require(principal, coffer_domain::Permission::ReadPrivacyRequests)?;
        Ok(self.db.open_privacy_requests().await?)
    }
}

impl StaffService {
    pub fn new(db: Db, vault: Arc<Vault>, passwords: PasswordPool, clock: Arc<dyn Clock>, base_url: String) -> Self {
        StaffService { db, vault, passwords, clock, base_url }
    }

    /// Adds a staff member (or, for one not yet enrolled, issues a new
    /// enrolment link); returns the one-time enrolment link. Audited.
    pub async fn add(&self, email: &str, role: StaffRole, actor: &Actor) -> Result<SecretString, AppError> {
        let email = coffer_domain::staff_email(email)?;
        let index = self.vault.blind_index().email(&email);
        let id = match self.db.staff_member_by_email_index(&index).await? {
            Some(existing) if existing.enrolled_at.is_some() => {
                return Err(AppError::Refused("a staff member with this address is already enrolled".into()));
            }
            Some(existing) if existing.role != role => {
                return Err(AppError::Refused(format!(
                    "this address was added as {} and has not enrolled yet; add it with that role for a new link",
                    existing.role.as_str()
                )));
            }
            Some(existing) => existing.id,
            None => {
                let id = StaffId::generate();
                let key_id = DataKeyId::generate();
                let key = self.vault.new_data_key(&key_id).await?;
                let sealed = seal_field(&key, &ctx(&id, "email", key_id.as_str()), email.as_bytes())?;
                let member = NewStaffMember {
                    id: id.clone(),
                    role,
                    email_index: index,
                    email: sealed,
                    data_key_id: key_id.to_string(),
                    at: self.clock.now(),
                };
                self.db
                    .write(move |tx| {
                        Box::pin(
                            async move { coffer_store::insert_staff_member(tx, &member).await.map_err(AppError::from) },
                        )
                    })
                    .await?;
                id
            }
        };
        let (token, hash) = new_token()?;
        let now = self.clock.now();
        let entry = AuditEntry::new(now, actor, AuditAction::StaffAdded, Some(format!("{id} {}", role.as_str())));
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    coffer_store::insert_staff_link(
                        tx,
                        &hash,
                        &id,
                        StaffLinkPurpose::Enrolment,
                        now,
                        Millis(now.0 + ENROLMENT_TTL_MS),
                    )
                    .await?;
                    tx.append_audit(&entry).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(SecretString::from(format!("{}/staff/enrol/{token}", self.base_url.trim_end_matches('/'))))
    }

    async fn key_of(&self, row: &StaffRow) -> Result<DataKey, AppError> {
        let key_id = DataKeyId::parse(&row.data_key_id)
            .map_err(|_| AppError::Keys("a staff data key id is not valid".into()))?;
        self.vault.data_key(&key_id).await?.ok_or(AppError::Erased)
    }

    async fn open(
        &self,
        row: &StaffRow,
        column: &'static str,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let key = self.key_of(row).await?;
        Ok(open_field(&key, &ctx(&row.id, column, &row.data_key_id), sealed)?)
    }

    /// The staff member's address (for the console's header).
    pub async fn email_of(&self, id: &StaffId) -> Result<String, AppError> {
        let row = self.db.staff_member(id).await?.ok_or(AppError::NotFound)?;
        let plain = self.open(&row, "email", &row.email).await?;
        String::from_utf8(plain.to_vec()).map_err(|_| AppError::Keys("a staff address is not text".into()))
    }

    /// The TOTP secret for the enrolment page, if the link is live: a fresh
    /// one, or `keep` again when the form comes back with an error. Nothing
    /// is stored until [`Self::enrol`].
    pub async fn start_enrolment(&self, token: &str, keep: Option<&str>) -> Result<StaffTotpSetup, AppError> {
        let owner = self.db.staff_link_owner(&token_hash(token), StaffLinkPurpose::Enrolment, self.clock.now()).await?;
        let id = owner.ok_or(AppError::LinkGone(LINK_GONE))?;
        let email = self.email_of(&id).await?;
        let secret = match keep.and_then(coffer_crypto::totp_secret_from_base32) {
            Some(kept) => kept,
            None => coffer_crypto::new_totp_secret()?.to_vec(),
        };
        Ok(StaffTotpSetup {
            secret: SecretString::from(coffer_crypto::totp_base32(&secret)),
            uri: SecretString::from(coffer_crypto::totp_uri(&secret, &email)?),
        })
    }

    /// Finishes enrolment: the link (once), a password that passes the
    /// rule, and a code from the authenticator for the secret shown. Signs
    /// the member in and returns the recovery codes, shown once. Audited.
    pub async fn enrol(
        &self,
        token: &str,
        password: SecretString,
        secret_base32: &str,
        code: &str,
    ) -> Result<Enrolled, AppError> {
        let hash = token_hash(token);
        let now = self.clock.now();
        let id = self
            .db
            .staff_link_owner(&hash, StaffLinkPurpose::Enrolment, now)
            .await?
            .ok_or(AppError::LinkGone(LINK_GONE))?;
        let row = self.db.staff_member(&id).await?.ok_or(AppError::NotFound)?;
        let email = self.email_of(&id).await?;
        check_new_password(password.expose_secret(), &[&email]).map_err(|e| AppError::Refused(e.to_string()))?;
        let secret = coffer_crypto::totp_secret_from_base32(secret_base32)
            .ok_or_else(|| AppError::Refused("the secret is not valid; open the link again".into()))?;
        let seconds = u64::try_from(now.0 / 1000).unwrap_or(0);
        let step = coffer_crypto::check_totp(&secret, code, seconds)
            .ok_or_else(|| AppError::Refused("that code does not match; check the time on your device".into()))?;
        let key = self.key_of(&row).await?;
        let phc = self.passwords.hash(password).await?;
        let codes = coffer_crypto::new_recovery_codes()?;
        let enrolment = StaffEnrolment {
            password_hash: seal_field(&key, &ctx(&id, "password_hash", &row.data_key_id), phc.as_bytes())?,
            totp_secret: seal_field(&key, &ctx(&id, "totp_secret", &row.data_key_id), &secret)?,
            totp_step: i64::try_from(step).unwrap_or(i64::MAX),
            recovery_code_hashes: codes.iter().map(|c| token_hash(c)).collect(),
        };
        let (session, session_hash) = new_token()?;
        let now = self.clock.now();
        let actor = Actor::Staff(id.to_string());
        let entry = AuditEntry::new(now, &actor, AuditAction::StaffEnrolled, Some(id.to_string()));
        let staff = id.clone();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    if coffer_store::use_staff_link(tx, &hash, StaffLinkPurpose::Enrolment, now).await?.is_none() {
                        return Err(AppError::LinkGone(LINK_GONE));
                    }
                    coffer_store::enrol_staff_member(tx, &staff, &enrolment, now).await?;
                    use coffer_store::AccountWriter;
                    tx.revoke_sessions_of("staff", staff.as_str(), now).await?;
                    tx.insert_session(&session_hash, "staff", staff.as_str(), now).await?;
                    tx.append_audit(&entry).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(Enrolled {
            session: StaffSession { token: SecretString::from(session), member: StaffMember { id, role: row.role } },
            recovery_codes: codes,
        })
    }

    /// The first step: email and password. A right password always leads
    /// to the code step (staff have no sign-in without TOTP). Unknown
    /// addresses, and members not yet enrolled, run the same argon2id
    /// verification against a dummy and get the same answer.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Result<SecretString, SignInError>, AppError> {
        // Apart from the customer throttle: a customer's failures under the
        // same address never lock a staff member out, nor the reverse.
        let throttle = token_hash(&format!("staff:{}", hex::encode(self.vault.blind_index().email(email))));
        if let Some(locked) = common::locked(&self.db, &throttle, self.clock.now()).await? {
            return Ok(Err(locked));
        }
        let index = self.vault.blind_index().email(email);
        let row = self.db.staff_member_by_email_index(&index).await?.filter(|r| r.enrolled_at.is_some());
        let stored = match &row {
            Some(row) => match &row.password_hash {
                Some(sealed) => String::from_utf8(self.open(row, "password_hash", sealed).await?.to_vec()).ok(),
                None => None,
            },
            None => None,
        };
        let ok = self.passwords.verify(password, stored).await?;
        let Some(row) = row.filter(|_| ok) else {
            return Ok(Err(common::failed(&self.db, throttle, self.clock.as_ref()).await?));
        };
        self.db.clear_sign_in_failures(throttle).await?;
        let (ticket, hash) = new_token()?;
        let now = self.clock.now();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    coffer_store::insert_staff_link(
                        tx,
                        &hash,
                        &row.id,
                        StaffLinkPurpose::SecondFactor,
                        now,
                        Millis(now.0 + SECOND_FACTOR_TTL_MS),
                    )
                    .await
                    .map_err(AppError::from)
                })
            })
            .await?;
        Ok(Ok(SecretString::from(ticket)))
    }

    /// The second step: a TOTP code (each step accepted once) or an unused
    /// recovery code, with the ticket of the first step.
    pub async fn complete_sign_in(
        &self,
        ticket: &str,
        code: &str,
    ) -> Result<Result<StaffSession, SignInError>, AppError> {
        let hash = token_hash(ticket);
        let now = self.clock.now();
        let Some(id) = self.db.staff_link_owner(&hash, StaffLinkPurpose::SecondFactor, now).await? else {
            return Ok(Err(SignInError::Invalid));
        };
        let throttle = token_hash(&format!("staff-second-factor:{id}"));
        if let Some(locked) = common::locked(&self.db, &throttle, now).await? {
            return Ok(Err(locked));
        }
        let row = self.db.staff_member(&id).await?.ok_or(AppError::NotFound)?;
        let accepted = match &row.totp_secret {
            Some(sealed) => {
                let secret = self.open(&row, "totp_secret", sealed).await?;
                let seconds = u64::try_from(now.0 / 1000).unwrap_or(0);
                match coffer_crypto::check_totp(&secret, code, seconds) {
                    Some(step) => self.db.accept_staff_totp_step(&id, i64::try_from(step).unwrap_or(i64::MAX)).await?,
                    None => self.db.use_staff_recovery_code(&id, token_hash(&normalise_code(code)), now).await?,
                }
            }
            None => false,
        };
        if !accepted {
            return Ok(Err(common::failed(&self.db, throttle, self.clock.as_ref()).await?));
        }
        self.db.clear_sign_in_failures(throttle).await?;
        let spent = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    coffer_store::use_staff_link(tx, &hash, StaffLinkPurpose::SecondFactor, now)
                        .await
                        .map_err(AppError::from)
                })
            })
            .await?;
        if spent.is_none() {
            return Ok(Err(SignInError::Invalid));
        }
        let token = common::open_session(&self.db, self.clock.as_ref(), "staff", id.as_str()).await?;
        Ok(Ok(StaffSession { token, member: StaffMember { id, role: row.role } }))
    }

    /// The staff member a session cookie belongs to, if the session is live.
    pub async fn session(&self, token: &str) -> Result<Option<StaffMember>, AppError> {
        let Some(subject) = common::live_subject(&self.db, self.clock.as_ref(), "staff", token).await? else {
            return Ok(None);
        };
        let Ok(id) = StaffId::parse(&subject) else { return Ok(None) };
        Ok(self.db.staff_member(&id).await?.map(|row| StaffMember { id: row.id, role: row.role }))
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        Ok(self.db.revoke_session(token_hash(token), self.clock.now()).await?)
    }

    /// Every staff member with their address and whether they enrolled
    /// (for administrators).
    pub async fn list(&self) -> Result<Vec<(StaffId, StaffRole, String, bool)>, AppError> {
        let mut out = Vec::new();
        for row in self.db.staff_members().await? {
            let email = String::from_utf8(self.open(&row, "email", &row.email).await?.to_vec()).unwrap_or_default();
            out.push((row.id.clone(), row.role, email, row.enrolled_at.is_some()));
        }
        Ok(out)
    }

    /// Demo only: adds and enrols a staff member with a known password and
    /// a fresh TOTP secret, unless the address exists. Returns nothing; the
    /// secret is read back by [`Self::demo_totp_secret`].
    pub async fn seed_demo_member(&self, email: &str, role: StaffRole, password: &str) -> Result<(), AppError> {
        if self.db.staff_member_by_email_index(&self.vault.blind_index().email(email)).await?.is_some() {
            return Ok(());
        }
        let link = self.add(email, role, &Actor::System).await?;
        let token = link.expose_secret().rsplit('/').next().unwrap_or_default().to_owned();
        let setup = self.start_enrolment(&token, None).await?;
        let secret = coffer_crypto::totp_secret_from_base32(setup.secret.expose_secret())
            .ok_or_else(|| AppError::Keys("a fresh TOTP secret did not decode".into()))?;
        let seconds = u64::try_from(self.clock.now().0 / 1000).unwrap_or(0);
        // A code one step back, so the demo person's first sign-in (this
        // step's code) is still accepted.
        let code = coffer_crypto::totp_code(&secret, seconds.saturating_sub(30))
            .ok_or_else(|| AppError::Keys("a TOTP code could not be computed".into()))?;
        self.enrol(&token, SecretString::from(password.to_owned()), setup.secret.expose_secret(), &code).await?;
        Ok(())
    }

    /// Demo only: the TOTP secret (base32) of a demo staff member.
    pub async fn demo_totp_secret(&self, email: &str) -> Result<Option<String>, AppError> {
        let Some(row) = self.db.staff_member_by_email_index(&self.vault.blind_index().email(email)).await? else {
            return Ok(None);
        };
        let Some(sealed) = &row.totp_secret else { return Ok(None) };
        let secret = self.open(&row, "totp_secret", sealed).await?;
        Ok(Some(coffer_crypto::totp_base32(&secret)))
    }
}

/// Recovery codes are matched lowercased, with the dash, without spaces.
pub(super) fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()
}
