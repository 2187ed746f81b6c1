//! The vendor realm: the users of a vendor's portal. An owner is added
//! with the vendor (`coffer vendors add`); owners invite members. Each
//! enrols by a one-time link that sets the password and the TOTP secret
//! together, and signs in through the shared [`SignIn`] with the second
//! factor every time (they see buyers' details). A session lives only while
//! the user is not removed and the vendor is not suspended.

use super::passwords::PasswordPool;
use super::signin::{Directory, RealmPolicy, SignIn, SignInError, Step, TotpSetup, VENDOR_USERS, link_gone};
use crate::AppError;
use crate::privacy::Vault;
use crate::request::RequestContext;
use crate::vendors::VendorError;
use coffer_crypto::{DataKey, FieldContext, open_field, seal_field};
use coffer_domain::{
    Actor, AuditAction, Clock, DataKeyId, Permission, Principal, Realm, VendorId, VendorRole, VendorStatus,
    VendorUserId,
};
use coffer_store::prelude::*;
use coffer_store::{Db, LinkPurpose, LinkUse, NewVendorUser, Subject, UnitFuture, VendorUserRow, WriteTx};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// A signed-in portal user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorUser {
    pub id: VendorUserId,
    pub vendor: VendorId,
    pub role: VendorRole,
}

impl VendorUser {
    /// Who acts, in this request: what the services check and audit.
    pub fn ctx(&self) -> RequestContext {
        RequestContext::new(Principal::VendorUser {
            id: self.id.to_string(),
            vendor: self.vendor.to_string(),
            role: self.role,
        })
    }
}

/// A new portal session: the cookie value and whose it is.
#[derive(Debug)]
pub struct VendorUserSession {
    pub token: SecretString,
    pub user: VendorUser,
}

/// A finished enrolment.
#[derive(Debug)]
pub struct VendorEnrolled {
    pub session: VendorUserSession,
    /// Shown once; each signs in once in place of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// A user as the owners' members page lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorUserListing {
    pub id: VendorUserId,
    pub role: VendorRole,
    pub email: String,
    pub enrolled: bool,
}

/// Portal users, as the sign-in finds them: by the address's blind index,
/// once enrolled, while their vendor is active.
#[derive(Clone)]
pub struct VendorUserDirectory {
    db: Db,
    vault: Arc<Vault>,
}

impl Directory for VendorUserDirectory {
    const POLICY: &'static RealmPolicy = &VENDOR_USERS;

    async fn find(&self, email: &str) -> Result<Option<String>, AppError> {
        let Some(row) = self.db.vendor_user_by_email_index(&self.vault.blind_index().email(email)).await? else {
            return Ok(None);
        };
        let active = self.db.vendor_record(&row.vendor_id).await?.is_some_and(|v| v.status == VendorStatus::Active);
        Ok((row.enrolled_at.is_some() && active).then(|| row.id.to_string()))
    }

    async fn data_key(&self, id: &str) -> Result<Option<(DataKeyId, DataKey)>, AppError> {
        let Ok(id) = VendorUserId::parse(id) else { return Ok(None) };
        let Some(row) = self.db.vendor_user(&id).await? else { return Ok(None) };
        let key_id = data_key_id(&row)?;
        Ok(self.vault.data_key(&key_id).await?.map(|key| (key_id, key)))
    }
}

fn data_key_id(row: &VendorUserRow) -> Result<DataKeyId, AppError> {
    DataKeyId::parse(&row.data_key_id).map_err(|_| AppError::Keys("a vendor user's data key id is not valid".into()))
}

/// The address is sealed in the user's row, under their own key.
fn email_ctx<'a>(row: &'a VendorUserId, key_id: &'a str) -> FieldContext<'a> {
    FieldContext { table: "vendor_users", column: "email", row_id: row.as_str(), data_key_id: key_id }
}

fn user_id(id: &str) -> Result<VendorUserId, AppError> {
    VendorUserId::parse(id)
        .map_err(|_| AppError::Store(coffer_store::StoreError::corrupt_public("accounts.subject_id")))
}

/// The rest of an enrolment's unit: the user can sign in from now on.
fn enrolled(tx: &mut WriteTx, id: String, now: coffer_domain::Millis) -> UnitFuture<'_, (), AppError> {
    Box::pin(async move {
        tx.mark_vendor_user_enrolled(&user_id(&id)?, now).await?;
        let actor = Actor::VendorUser(id.clone());
        tx.append_audit(&crate::request::audit_entry(now, &actor, AuditAction::VendorUserEnrolled, Some(id))).await?;
        Ok(())
    })
}

#[derive(Clone)]
pub struct VendorUserService {
    db: Db,
    vault: Arc<Vault>,
    sign_in: SignIn<VendorUserDirectory>,
    clock: Arc<dyn Clock>,
    base_url: String,
}

impl VendorUserService {
    pub fn new(db: Db, vault: Arc<Vault>, passwords: PasswordPool, clock: Arc<dyn Clock>, base_url: String) -> Self {
        let directory = VendorUserDirectory { db: db.clone(), vault: vault.clone() };
        let sign_in = SignIn::new(db.clone(), vault.clone(), passwords, clock.clone(), directory);
        VendorUserService { db, vault, sign_in, clock, base_url }
    }

    /// The realm's sign-in (the pages of every realm drive it the same way).
    pub fn sign_in_service(&self) -> &SignIn<VendorUserDirectory> {
        &self.sign_in
    }

    /// Adds a user to a vendor (or, for one not yet enrolled, issues a new
    /// link) in the caller's checks' name; the one-time enrolment link.
    /// `ctx` must be an owner of this vendor, or an admin (the owner at
    /// onboarding). Audited.
    pub async fn invite(
        &self,
        vendor: &VendorId,
        email: &str,
        role: VendorRole,
        ctx: &RequestContext,
    ) -> Result<SecretString, AppError> {
        let by_owner = ctx.principal().vendor(Permission::ManageOwnMembers) == Some(vendor.as_str());
        if !by_owner {
            ctx.require(Permission::ManageVendors)?;
        }
        let email = coffer_domain::vendor_user_email(email)?;
        let index = self.vault.blind_index().email(&email);
        let id = match self.db.vendor_user_by_email_index(&index).await? {
            Some(existing) if existing.vendor_id != *vendor || existing.enrolled_at.is_some() => {
                return Err(VendorError::EmailTaken.into());
            }
            Some(existing) if existing.role != role => return Err(VendorError::EmailTaken.into()),
            Some(existing) => existing.id,
            None => {
                let id = VendorUserId::generate();
                let key_id = DataKeyId::generate();
                let key = self.vault.new_data_key(&key_id).await?;
                let sealed = seal_field(&key, &email_ctx(&id, key_id.as_str()), email.as_bytes())?;
                let user = NewVendorUser {
                    id: id.clone(),
                    vendor_id: vendor.clone(),
                    role,
                    email_index: index,
                    email: sealed,
                    data_key_id: key_id.to_string(),
                    invited_by: Some(ctx.actor().render()),
                    at: self.clock.now(),
                };
                self.db.write(unit!(|tx| tx.insert_vendor_user(&user).await.map_err(AppError::from))).await?;
                id
            }
        };
        let (token, link) = self.sign_in.new_link(id.as_str(), LinkPurpose::Enrolment)?;
        let entry = ctx.audit_entry(
            self.clock.now(),
            AuditAction::VendorUserInvited,
            Some(format!("{id} {vendor} {}", role.as_str())),
        );
        self.db
            .write(unit!(|tx| {
                link.insert(tx).await?;
                tx.append_audit(&entry).await?;
                Ok::<_, AppError>(())
            }))
            .await?;
        Ok(SecretString::from(format!(
            "{}/vendor/enrol/{}",
            self.base_url.trim_end_matches('/'),
            token.expose_secret()
        )))
    }

    async fn open_email(&self, row: &VendorUserRow) -> Result<String, AppError> {
        let key = self.vault.data_key(&data_key_id(row)?).await?.ok_or(AppError::Erased)?;
        let plain = open_field(&key, &email_ctx(&row.id, &row.data_key_id), &row.email)?;
        String::from_utf8(plain.to_vec()).map_err(|_| AppError::Keys("a vendor user's address is not text".into()))
    }

    /// A user's address (for the portal's header and the vendor's DPO).
    pub async fn email_of(&self, id: &VendorUserId) -> Result<String, AppError> {
        let row = self.db.vendor_user(id).await?.ok_or(AppError::NotFound)?;
        self.open_email(&row).await
    }

    /// The vendor's enrolled users as an email reaches them: address, and
    /// the data key a message to them is sealed under.
    pub async fn mail_recipients(&self, vendor: &VendorId) -> Result<Vec<(String, DataKeyId, DataKey)>, AppError> {
        let mut out = Vec::new();
        for row in self.db.vendor_users(vendor).await?.into_iter().filter(|r| r.enrolled_at.is_some()) {
            let key_id = data_key_id(&row)?;
            let Some(key) = self.vault.data_key(&key_id).await? else { continue };
            let plain = open_field(&key, &email_ctx(&row.id, &row.data_key_id), &row.email)?;
            let Ok(email) = String::from_utf8(plain.to_vec()) else { continue };
            out.push((email, key_id, key));
        }
        Ok(out)
    }

    /// Whose a live enrolment link is.
    async fn enrolling(&self, token: &str) -> Result<VendorUserRow, AppError> {
        let gone = || AppError::LinkGone(link_gone(Realm::Vendor));
        let owner = self.sign_in.link_owner(token, LinkUse::Enrol).await?.ok_or_else(gone)?;
        self.db.vendor_user(&user_id(&owner)?).await?.ok_or_else(gone)
    }

    /// The enrolment page's TOTP secret and whether the user is an owner
    /// (who accepts the vendor's terms there), if the link is live.
    pub async fn start_enrolment(&self, token: &str, keep: Option<&str>) -> Result<(TotpSetup, VendorRole), AppError> {
        let row = self.enrolling(token).await?;
        let setup = SignIn::<VendorUserDirectory>::enrolment_setup(keep, &self.open_email(&row).await?)?;
        Ok((setup, row.role))
    }

    /// Finishes enrolment: the link (once), a password that passes the
    /// rule and a code for the secret shown. Signs the user in; the
    /// recovery codes are shown once. Audited.
    pub async fn enrol(
        &self,
        token: &str,
        password: SecretString,
        secret_base32: &str,
        code: &str,
    ) -> Result<VendorEnrolled, AppError> {
        let row = self.enrolling(token).await?;
        let email = self.open_email(&row).await?;
        let (token, _, recovery_codes) =
            self.sign_in.enrol(token, row.id.as_str(), &email, password, secret_base32, code, enrolled).await?;
        let user = VendorUser { id: row.id, vendor: row.vendor_id, role: row.role };
        Ok(VendorEnrolled { session: VendorUserSession { token, user }, recovery_codes })
    }

    /// The first step: a right password always leads to the code step.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<Result<SecretString, SignInError>, AppError> {
        Ok(match self.sign_in.sign_in(email, password).await? {
            Ok(Step::NeedsCode { ticket }) => Ok(ticket),
            Ok(Step::Session { .. }) => {
                return Err(AppError::Keys("vendor sign-in skipped the second factor".into()));
            }
            Err(refused) => Err(refused),
        })
    }

    /// The user a session cookie belongs to, while the session, the user
    /// and the vendor's standing all hold.
    pub async fn session(&self, token: &str) -> Result<Option<VendorUser>, AppError> {
        let Some(subject) = self.sign_in.session(token).await? else { return Ok(None) };
        let Ok(id) = VendorUserId::parse(&subject) else { return Ok(None) };
        let Some(row) = self.db.vendor_user(&id).await? else { return Ok(None) };
        let active = self.db.vendor_record(&row.vendor_id).await?.is_some_and(|v| v.status == VendorStatus::Active);
        Ok(active.then_some(VendorUser { id: row.id, vendor: row.vendor_id, role: row.role }))
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        self.sign_in.sign_out(token).await
    }

    /// The vendor's users with their addresses (owners manage them).
    pub async fn list(&self, ctx: &RequestContext) -> Result<Vec<VendorUserListing>, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnMembers)?;
        let mut out = Vec::new();
        for row in self.db.vendor_users(&vendor).await? {
            let email = self.open_email(&row).await.unwrap_or_default();
            out.push(VendorUserListing { id: row.id, role: row.role, email, enrolled: row.enrolled_at.is_some() });
        }
        Ok(out)
    }

    /// Removes a user of the owner's vendor: their sessions and links end
    /// at once. The last owner stays (someone must hold the vendor's
    /// duties). Another vendor's user is `NotFound`. Audited.
    pub async fn remove(&self, id: &VendorUserId, ctx: &RequestContext) -> Result<(), AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnMembers)?;
        let users = self.db.vendor_users(&vendor).await?;
        let target = users.iter().find(|u| &u.id == id).ok_or(AppError::NotFound)?;
        if target.role == VendorRole::Owner && users.iter().filter(|u| u.role == VendorRole::Owner).count() == 1 {
            return Err(VendorError::LastOwner.into());
        }
        let (id, now) = (id.clone(), self.clock.now());
        let entry = ctx.audit_entry(now, AuditAction::VendorUserRemoved, Some(id.to_string()));
        self.db
            .write(unit!(|tx| {
                if tx.remove_vendor_user(&vendor, &id, now).await? {
                    let subject = Subject::new(Realm::Vendor, id.to_string());
                    tx.spend_links_of(&subject, now).await?;
                    tx.revoke_sessions_of(&subject, now).await?;
                    tx.append_audit(&entry).await?;
                }
                Ok::<_, AppError>(())
            }))
            .await
    }

    /// Demo only: adds and enrols a vendor's owner with a known password,
    /// unless the address exists; its TOTP secret (base32).
    pub async fn seed_demo_owner(&self, vendor: &VendorId, email: &str, password: &str) -> Result<String, AppError> {
        let index = self.vault.blind_index().email(email);
        if self.db.vendor_user_by_email_index(&index).await?.is_none() {
            let link = self.invite(vendor, email, VendorRole::Owner, &RequestContext::cli("demo")).await?;
            let token = link.expose_secret().rsplit('/').next().unwrap_or_default().to_owned();
            let (setup, _) = self.start_enrolment(&token, None).await?;
            let code = self.sign_in.demo_code(&setup)?;
            self.enrol(&token, SecretString::from(password.to_owned()), setup.secret.expose_secret(), &code).await?;
        }
        let row = self.db.vendor_user_by_email_index(&index).await?.ok_or(AppError::NotFound)?;
        let secret = self.sign_in.totp_secret(row.id.as_str()).await?.ok_or(AppError::NotFound)?;
        Ok(coffer_crypto::totp_base32(&secret))
    }
}

/// A vendor's privacy contact (its DPO, P7): the one it names, else its
/// first owner's address; with whether it is the owner's. `None` for a
/// vendor that does not exist or has no owner yet.
pub async fn privacy_contact_of(db: &Db, vault: &Vault, vendor: &VendorId) -> Result<Option<(String, bool)>, AppError> {
    let Some(record) = db.vendor_record(vendor).await? else { return Ok(None) };
    if let Some(contact) = record.privacy_contact {
        return Ok(Some((contact, false)));
    }
    for row in db.vendor_users(vendor).await? {
        if row.role == VendorRole::Owner {
            let key = vault.data_key(&data_key_id(&row)?).await?.ok_or(AppError::Erased)?;
            let plain = open_field(&key, &email_ctx(&row.id, &row.data_key_id), &row.email)?;
            let email = String::from_utf8(plain.to_vec())
                .map_err(|_| AppError::Keys("a vendor user's address is not text".into()))?;
            return Ok(Some((email, true)));
        }
    }
    Ok(None)
}

/// The vendor a vendor principal acts for with `permission`, or refused.
pub fn own_vendor(ctx: &RequestContext, permission: Permission) -> Result<VendorId, AppError> {
    let vendor = ctx.principal().vendor(permission).ok_or(AppError::Forbidden(permission))?;
    VendorId::parse(vendor).map_err(|_| AppError::Forbidden(permission))
}
