//! Vendor API keys: made by an owner and shown once, stored only as a
//! SHA-256 of the key (a key is 256 random bits, so no slow hash is needed)
//! with its visible start, revocable, with the time of last use. A key of a
//! suspended vendor, a revoked key and an unknown one all fail the check
//! alike.

use super::{VendorError, VendorService};
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use base64::Engine;
use coffer_domain::{AuditAction, Permission, Principal, VendorApiKeyId, VendorId};
use coffer_store::prelude::*;
use coffer_store::{NewVendorApiKey, VendorApiKeyRow};
use secrecy::SecretString;

/// What every key starts with, so a leaked one is recognisable.
pub const KEY_PREFIX: &str = "cvk_";
/// How much of a key is kept and shown to tell keys apart.
const VISIBLE_CHARS: usize = 12;
/// A key's last use is written at most this often.
const LAST_USE_EVERY_MS: i64 = 60_000;

/// A key just made: shown once, never stored.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub id: VendorApiKeyId,
    pub key: SecretString,
    pub prefix: String,
}

/// A presented key that passed: who acts, and which key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyCheck {
    pub vendor: VendorId,
    pub key: VendorApiKeyId,
}

impl ApiKeyCheck {
    pub fn ctx(&self) -> RequestContext {
        RequestContext::new(Principal::VendorKey(self.vendor.to_string()))
    }
}

fn new_key() -> Result<String, AppError> {
    let raw = coffer_crypto::random_bytes::<32>()?;
    Ok(format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)))
}

fn visible(key: &str) -> String {
    key.chars().take(VISIBLE_CHARS).collect()
}

fn label(text: &str) -> Result<String, VendorError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 60 || text.chars().any(char::is_control) {
        return Err(VendorError::InvalidLabel);
    }
    Ok(text.to_owned())
}

impl VendorService {
    /// The vendor and key a presented API key belongs to, if it is live
    /// and its vendor active; notes its use (at most once a minute).
    pub async fn check_api_key(&self, presented: &str) -> Result<Option<ApiKeyCheck>, AppError> {
        if presented.len() > 200 || !presented.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let Some(live) = self.db.live_api_key(&coffer_crypto::token_hash(presented)).await? else { return Ok(None) };
        let now = self.clock.now();
        if live.last_used_at.is_none_or(|at| now.0 - at.0 >= LAST_USE_EVERY_MS) {
            // Off the request's path: a slow write never delays an answer.
            let (db, id) = (self.db.clone(), live.id.clone());
            crate::request::spawn_for_request(async move {
                if let Err(e) = db.touch_api_key(id, now).await {
                    tracing::warn!(error = %e, "an API key's last use was not written");
                }
            });
        }
        Ok(Some(ApiKeyCheck { vendor: live.vendor_id, key: live.id }))
    }

    /// Makes a key for the owner's vendor, shown once. Audited.
    pub async fn create_api_key(&self, ctx: &RequestContext, label_text: &str) -> Result<CreatedApiKey, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnApiKeys)?;
        let label = label(label_text)?;
        let key = new_key()?;
        let created = CreatedApiKey { id: VendorApiKeyId::generate(), prefix: visible(&key), key: key.into() };
        self.store_key(&vendor, &created, label, ctx).await?;
        Ok(created)
    }

    async fn store_key(
        &self,
        vendor: &VendorId,
        created: &CreatedApiKey,
        label: String,
        ctx: &RequestContext,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let record = NewVendorApiKey {
            id: created.id.clone(),
            vendor_id: vendor.clone(),
            key_hash: coffer_crypto::token_hash(secrecy::ExposeSecret::expose_secret(&created.key)),
            prefix: created.prefix.clone(),
            label,
            created_by: Some(ctx.actor().render()),
            at: now,
        };
        let entry = ctx.audit_entry(now, AuditAction::VendorApiKeyCreated, Some(format!("{} {vendor}", created.id)));
        self.db
            .write(unit!(|tx| {
                tx.insert_api_key(&record).await?;
                tx.append_audit(&entry).await?;
                Ok::<_, AppError>(())
            }))
            .await
    }

    /// The vendor's keys (never the keys themselves), newest first.
    pub async fn api_keys(&self, ctx: &RequestContext) -> Result<Vec<VendorApiKeyRow>, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnApiKeys)?;
        Ok(self.db.vendor_api_keys(&vendor).await?)
    }

    /// Revokes a key of the owner's vendor: it answers 401 from now on.
    /// Another vendor's key, or one already revoked, is `NotFound`. Audited.
    pub async fn revoke_api_key(&self, ctx: &RequestContext, id: &VendorApiKeyId) -> Result<(), AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnApiKeys)?;
        let (id, now) = (id.clone(), self.clock.now());
        let entry = ctx.audit_entry(now, AuditAction::VendorApiKeyRevoked, Some(format!("{id} {vendor}")));
        let revoked = self
            .db
            .write(unit!(|tx| {
                let revoked = tx.revoke_api_key(&vendor, &id, now).await?;
                if revoked {
                    tx.append_audit(&entry).await?;
                }
                Ok::<_, AppError>(revoked)
            }))
            .await?;
        if revoked { Ok(()) } else { Err(AppError::NotFound) }
    }

    /// Demo only: a vendor's API key, the same on every start (derived from
    /// a secret in the key store), registered by its hash.
    pub async fn demo_api_key(&self, vendor: &VendorId) -> Result<String, AppError> {
        let secret = self.vault.named_secret("demo-vendor-api-keys").await?;
        let raw = coffer_crypto::keyed_hash(&secret, "demo-api-key", vendor.as_str().as_bytes());
        let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        let created = CreatedApiKey { id: VendorApiKeyId::generate(), prefix: visible(&key), key: key.clone().into() };
        let hash = coffer_crypto::token_hash(&key);
        if self.db.live_api_key(&hash).await?.is_none() && !self.demo_key_known(vendor, &created.prefix).await? {
            self.store_key(vendor, &created, "Demo key".into(), &RequestContext::cli("demo")).await?;
        }
        Ok(key)
    }

    async fn demo_key_known(&self, vendor: &VendorId, prefix: &str) -> Result<bool, AppError> {
        Ok(self.db.vendor_api_keys(vendor).await?.iter().any(|k| k.prefix == prefix))
    }
}
