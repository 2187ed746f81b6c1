//! The staff realm: members added by an operator on the command line,
//! enrolled by a one-time link that sets the password and the TOTP secret
//! together, signed in by the shared [`SignIn`] with the second factor
//! every time (the realm's policy makes it mandatory).

use super::errors::AccountError;
use super::passwords::PasswordPool;
use super::signin::{Directory, RealmPolicy, STAFF, SignIn, SignInError, Step, TotpSetup, link_gone};
use crate::AppError;
use crate::privacy::Vault;
use crate::request::RequestContext;
use coffer_crypto::{DataKey, FieldContext, open_field, seal_field};
use coffer_domain::{Actor, AuditAction, Clock, DataKeyId, Permission, Realm, StaffId, StaffRole};
use coffer_store::prelude::*;
use coffer_store::{Db, LinkPurpose, LinkUse, NewStaffMember, StaffRow, UnitFuture, WriteTx};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use zeroize::Zeroizing;

/// An enrolment link printed by `coffer staff add`.
pub const ENROLMENT_TTL_MS: i64 = STAFF.invitation_ttl_ms;

/// What enrolment shows once: the secret to type into an authenticator.
pub type StaffTotpSetup = TotpSetup;

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

/// The outcome of a finished enrolment.
#[derive(Debug)]
pub struct Enrolled {
    pub session: StaffSession,
    /// Shown once; each signs in once in place of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// Staff members, as the sign-in finds them: by the address's blind
/// index, once enrolled.
#[derive(Clone)]
pub struct StaffDirectory {
    db: Db,
    vault: Arc<Vault>,
}

impl Directory for StaffDirectory {
    const POLICY: &'static RealmPolicy = &STAFF;

    async fn find(&self, email: &str) -> Result<Option<String>, AppError> {
        let row = self.db.staff_member_by_email_index(&self.vault.blind_index().email(email)).await?;
        Ok(row.filter(|r| r.enrolled_at.is_some()).map(|r| r.id.to_string()))
    }

    async fn data_key(&self, id: &str) -> Result<Option<(DataKeyId, DataKey)>, AppError> {
        let Ok(id) = StaffId::parse(id) else { return Ok(None) };
        let Some(row) = self.db.staff_member(&id).await? else { return Ok(None) };
        let key_id = data_key_id(&row)?;
        Ok(self.vault.data_key(&key_id).await?.map(|key| (key_id, key)))
    }
}

fn data_key_id(row: &StaffRow) -> Result<DataKeyId, AppError> {
    DataKeyId::parse(&row.data_key_id).map_err(|_| AppError::Keys("a staff data key id is not valid".into()))
}

#[derive(Clone)]
pub struct StaffService {
    db: Db,
    vault: Arc<Vault>,
    sign_in: SignIn<StaffDirectory>,
    clock: Arc<dyn Clock>,
    base_url: String,
}

/// The staff member's address is sealed in their row, under their own key.
fn email_ctx<'a>(row: &'a StaffId, key_id: &'a str) -> FieldContext<'a> {
    FieldContext { table: "staff_members", column: "email", row_id: row.as_str(), data_key_id: key_id }
}

/// The rest of an enrolment's unit: the member can sign in from now on,
/// and the audit says so.
fn enrolled(tx: &mut WriteTx, id: String, now: coffer_domain::Millis) -> UnitFuture<'_, (), AppError> {
    Box::pin(async move {
        let staff = staff_id(&id)?;
        coffer_store::mark_staff_enrolled(tx, &staff, now).await?;
        let entry = crate::request::audit_entry(now, &Actor::Staff(id.clone()), AuditAction::StaffEnrolled, Some(id));
        tx.append_audit(&entry).await?;
        Ok(())
    })
}

/// A staff id from a subject id the sign-in stored for the realm.
fn staff_id(id: &str) -> Result<StaffId, AppError> {
    StaffId::parse(id).map_err(|_| AppError::Store(coffer_store::StoreError::corrupt_public("accounts.subject_id")))
}

impl StaffService {
    /// The written data requests still open, for the DPO, deadline first.
    pub async fn open_privacy_requests(
        &self,
        ctx: &crate::request::RequestContext,
    ) -> Result<Vec<coffer_store::PrivacyRequestRow>, AppError> {
        ctx.require(coffer_domain::Permission::ReadPrivacyRequests)?;
        Ok(self.db.open_privacy_requests().await?)
    }
}

impl StaffService {
    pub fn new(db: Db, vault: Arc<Vault>, passwords: PasswordPool, clock: Arc<dyn Clock>, base_url: String) -> Self {
        let directory = StaffDirectory { db: db.clone(), vault: vault.clone() };
        let sign_in = SignIn::new(db.clone(), vault.clone(), passwords, clock.clone(), directory);
        StaffService { db, vault, sign_in, clock, base_url }
    }

    /// Adds a staff member (or, for one not yet enrolled, issues a new
    /// enrolment link); returns the one-time enrolment link. Needs
    /// [`Permission::AddStaff`]; audited.
    pub async fn add(&self, email: &str, role: StaffRole, ctx: &RequestContext) -> Result<SecretString, AppError> {
        ctx.require(Permission::AddStaff)?;
        let actor = &ctx.actor();
        let email = coffer_domain::staff_email(email)?;
        let index = self.vault.blind_index().email(&email);
        let id = match self.db.staff_member_by_email_index(&index).await? {
            Some(existing) if existing.enrolled_at.is_some() => return Err(AccountError::AlreadyEnrolled.into()),
            Some(existing) if existing.role != role => {
                return Err(AccountError::RoleMismatch(existing.role.as_str()).into());
            }
            Some(existing) => existing.id,
            None => {
                let id = StaffId::generate();
                let key_id = DataKeyId::generate();
                let key = self.vault.new_data_key(&key_id).await?;
                let sealed = seal_field(&key, &email_ctx(&id, key_id.as_str()), email.as_bytes())?;
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
        let (token, link) = self.sign_in.new_link(id.as_str(), LinkPurpose::Enrolment)?;
        let entry = crate::request::audit_entry(
            self.clock.now(),
            actor,
            AuditAction::StaffAdded,
            Some(format!("{id} {}", role.as_str())),
        );
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    link.insert(tx).await?;
                    tx.append_audit(&entry).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(SecretString::from(format!("{}/staff/enrol/{}", self.base_url.trim_end_matches('/'), token.expose_secret())))
    }

    async fn open_email(&self, row: &StaffRow) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let key_id = data_key_id(row)?;
        let key = self.vault.data_key(&key_id).await?.ok_or(AppError::Erased)?;
        Ok(open_field(&key, &email_ctx(&row.id, &row.data_key_id), &row.email)?)
    }

    /// The realm's sign-in (the pages of every realm drive it the same way).
    pub fn sign_in_service(&self) -> &SignIn<StaffDirectory> {
        &self.sign_in
    }

    /// The staff member's address (for the console's header).
    pub async fn email_of(&self, id: &StaffId) -> Result<String, AppError> {
        let row = self.db.staff_member(id).await?.ok_or(AppError::NotFound)?;
        let plain = self.open_email(&row).await?;
        String::from_utf8(plain.to_vec()).map_err(|_| AppError::Keys("a staff address is not text".into()))
    }

    /// The TOTP secret for the enrolment page, if the link is live: a fresh
    /// one, or `keep` again when the form comes back with an error. Nothing
    /// is stored until [`Self::enrol`].
    pub async fn start_enrolment(&self, token: &str, keep: Option<&str>) -> Result<StaffTotpSetup, AppError> {
        let id = self.enrolling(token).await?;
        SignIn::<StaffDirectory>::enrolment_setup(keep, &self.email_of(&id).await?)
    }

    /// Whose a live enrolment link is.
    async fn enrolling(&self, token: &str) -> Result<StaffId, AppError> {
        let owner = self.sign_in.link_owner(token, LinkUse::Enrol).await?;
        staff_id(&owner.ok_or(AppError::LinkGone(link_gone(Realm::Staff)))?)
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
        let id = self.enrolling(token).await?;
        let row = self.db.staff_member(&id).await?.ok_or(AppError::NotFound)?;
        let email = self.email_of(&id).await?;
        let (token, _, recovery_codes) =
            self.sign_in.enrol(token, id.as_str(), &email, password, secret_base32, code, enrolled).await?;
        Ok(Enrolled { session: StaffSession { token, member: StaffMember { id, role: row.role } }, recovery_codes })
    }

    /// The first step: email and password. A right password always leads
    /// to the code step (the realm's second factor is mandatory). Unknown
    /// addresses, and members not yet enrolled, run the same argon2id
    /// verification against a dummy and get the same answer.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Result<SecretString, SignInError>, AppError> {
        Ok(match self.sign_in.sign_in(email, password).await? {
            Ok(Step::NeedsCode { ticket }) => Ok(ticket),
            // The policy never lets a staff password alone open a session.
            Ok(Step::Session { .. }) => return Err(AppError::Keys("staff sign-in skipped the second factor".into())),
            Err(refused) => Err(refused),
        })
    }

    /// The second step: a TOTP code (each step accepted once) or an unused
    /// recovery code, with the ticket of the first step.
    pub async fn complete_sign_in(
        &self,
        ticket: &str,
        code: &str,
    ) -> Result<Result<StaffSession, SignInError>, AppError> {
        let (token, id) = match self.sign_in.complete_second_factor(ticket, code).await? {
            Ok(done) => done,
            Err(refused) => return Ok(Err(refused)),
        };
        let id = staff_id(&id)?;
        let row = self.db.staff_member(&id).await?.ok_or(AppError::NotFound)?;
        Ok(Ok(StaffSession { token, member: StaffMember { id, role: row.role } }))
    }

    /// The staff member a session cookie belongs to, if the session is live.
    pub async fn session(&self, token: &str) -> Result<Option<StaffMember>, AppError> {
        let Some(subject) = self.sign_in.session(token).await? else { return Ok(None) };
        let Ok(id) = StaffId::parse(&subject) else { return Ok(None) };
        Ok(self.db.staff_member(&id).await?.map(|row| StaffMember { id: row.id, role: row.role }))
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        self.sign_in.sign_out(token).await
    }

    /// Every staff member with their address and whether they enrolled
    /// (for administrators).
    pub async fn list(&self) -> Result<Vec<(StaffId, StaffRole, String, bool)>, AppError> {
        let mut out = Vec::new();
        for row in self.db.staff_members().await? {
            let email = String::from_utf8(self.open_email(&row).await?.to_vec()).unwrap_or_default();
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
        // Seeded by the operator who starts a demo (`serve --demo`, `seed --demo`).
        let link = self.add(email, role, &RequestContext::cli("demo")).await?;
        let token = link.expose_secret().rsplit('/').next().unwrap_or_default().to_owned();
        let setup = self.start_enrolment(&token, None).await?;
        let code = self.sign_in.demo_code(&setup)?;
        self.enrol(&token, SecretString::from(password.to_owned()), setup.secret.expose_secret(), &code).await?;
        Ok(())
    }

    /// Demo only: the TOTP secret (base32) of a demo staff member.
    pub async fn demo_totp_secret(&self, email: &str) -> Result<Option<String>, AppError> {
        let Some(row) = self.db.staff_member_by_email_index(&self.vault.blind_index().email(email)).await? else {
            return Ok(None);
        };
        let Some(secret) = self.sign_in.totp_secret(row.id.as_str()).await? else { return Ok(None) };
        Ok(Some(coffer_crypto::totp_base32(&secret)))
    }
}
