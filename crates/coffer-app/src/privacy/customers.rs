//! The customer record service: create, read, update, find by email,
//! erase (crypto-shredding) and export, all through the vault so personal
//! fields exist in plaintext only in memory.

use super::vault::Vault;
use crate::AppError;
use crate::request::RequestContext;
use coffer_crypto::{DataKey, FieldContext, Sealed, open_field, seal_field};
use coffer_domain::inventory;
use coffer_domain::{
    Actor, AuditAction, Clock, CustomerDetails, CustomerId, DataKeyId, MailingAddress, Millis, OrderId, Permission,
    Principal, ProductId,
};
use coffer_store::prelude::*;
use coffer_store::{
    AuditWriter, CustomerReader, CustomerWriter, Db, Erasure, NewSealedCustomer, SealedFields, StoredCustomer,
};
use serde_json::json;
use std::sync::Arc;

const TABLE: &str = "customers";

/// A customer with their fields open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRecord {
    pub id: CustomerId,
    pub details: CustomerDetails,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Everything held about one customer (the access export): the JSON
/// download as serialised, and what [`crate::privacy::export_html`] renders.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccessExport {
    pub customer_id: CustomerId,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub personal_data: Vec<PersonalDataRecord>,
    pub orders: Vec<OrderRecord>,
    pub account: AccountRecord,
    pub messages: Vec<MessageRecord>,
    pub privacy_requests: Vec<PrivacyRequestRecord>,
    pub disclosures: Vec<DisclosureRecord>,
}

/// One personal field of the customer row, opened, with what the data
/// inventory says of it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PersonalDataRecord {
    /// `table.column`.
    pub field: String,
    pub label: &'static str,
    /// Text, an object for a structured field (the address), or null when
    /// not given.
    pub value: serde_json::Value,
    pub category: inventory::Category,
    pub purpose: &'static str,
    pub legal_basis: inventory::LegalBasis,
    pub recipients: &'static [inventory::Recipient],
    pub retention: inventory::Retention,
}

/// How the customer signs in (never the secrets themselves).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct AccountRecord {
    pub password_set: bool,
    pub second_factor: bool,
}

/// A message kept for the customer, opened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MessageRecord {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub created_at_ms: i64,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
}

/// A written data request and where it stands.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PrivacyRequestRecord {
    pub id: String,
    pub kind: String,
    pub jurisdiction: String,
    pub status: String,
    pub received_at_ms: i64,
    pub deadline_at_ms: Option<i64>,
}

/// Who outside Coffer received the customer's data, what and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DisclosureRecord {
    pub id: String,
    /// `vendor`, `payment_gateway` or `authority`.
    pub recipient_kind: String,
    pub recipient: String,
    /// A vendor's name (for a vendor recipient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_name: Option<String>,
    /// Whom to ask about what the recipient does with the data: a vendor's
    /// privacy contact (its DPO, by default its owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy_contact: Option<String>,
    /// Inventory names, e.g. `customers.name`.
    pub fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub disclosed_at_ms: i64,
}

/// One of a customer's orders with its own copy of their details opened:
/// what the account page, the invoice and the access export show.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderRecord {
    pub id: OrderId,
    pub status: &'static str,
    pub placed_at_ms: i64,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub payment_method: String,
    pub payment_reference: Option<String>,
    pub lines: Vec<OrderRecordLine>,
    pub license_keys: Vec<LicenseKeyRecord>,
    pub details: OrderRecordDetails,
    pub consent: ConsentRecord,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderRecordLine {
    pub line_no: i64,
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LicenseKeyRecord {
    pub product_id: ProductId,
    pub key: String,
}

/// The details typed at checkout, as the order keeps them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderRecordDetails {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<OrderAddress>,
    /// Brand, last four digits and expiry; never the gateway's token.
    pub card: Option<CardRecord>,
    pub guardian_name: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OrderAddress {
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CardRecord {
    pub brand: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ConsentRecord {
    pub privacy_policy_version: String,
    pub at_ms: i64,
    pub channel: String,
}

/// Who is reading: the customer's own reads are not audited; anyone
/// else's are.
#[derive(Clone, Debug)]
pub enum Reader {
    TheCustomer,
    Other(Actor),
}

/// What replaying the erasure ledgers did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Erasures in the key store's ledger re-applied to the data side.
    pub data_side: usize,
    /// Erasures in the data ledger whose data key was still present.
    pub key_side: usize,
}

#[derive(Clone)]
pub struct CustomerService {
    db: Db,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    /// Files an erasure deletes besides shredding the key: the file
    /// transport's copies of the customer's mail, and their identity
    /// documents in the file store.
    mail_folder: Option<std::path::PathBuf>,
    files: Option<Arc<dyn crate::files::FileStore>>,
}

/// A customer made but not yet written: see [`CustomerService::new_customer`].
pub struct NewCustomer {
    pub record: CustomerRecord,
    pub row: NewSealedCustomer,
    pub audit: coffer_domain::AuditEntry,
    pub key: DataKey,
    /// The row must be committed before this time (its key's hand-out window).
    pub usable_until: Millis,
}

fn ctx<'a>(id: &'a CustomerId, column: &'a str, key: &'a DataKeyId) -> FieldContext<'a> {
    FieldContext { table: TABLE, column, row_id: id.as_str(), data_key_id: key.as_str() }
}

fn seal_details(
    key: &DataKey,
    id: &CustomerId,
    key_id: &DataKeyId,
    details: &CustomerDetails,
) -> Result<SealedFields, AppError> {
    let seal = |column: &str, plain: &[u8]| seal_field(key, &ctx(id, column, key_id), plain);
    let address = details
        .address
        .as_ref()
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|_| AppError::Internal("an address could not be encoded"))?;
    Ok(SealedFields {
        name: Some(seal("name", details.name.as_bytes())?),
        email: Some(seal("email", details.email.as_bytes())?),
        phone: details.phone.as_ref().map(|p| seal("phone", p.as_bytes())).transpose()?,
        address: address.map(|a| seal("address", &a)).transpose()?,
    })
}

fn open_text(key: &DataKey, ctx: &FieldContext<'_>, sealed: &Sealed) -> Result<String, AppError> {
    let plain = open_field(key, ctx, sealed)?;
    String::from_utf8(plain.to_vec())
        .map_err(|_| AppError::Crypto(coffer_crypto::CryptoError::UnknownFormat { what: "a sealed field" }))
}

impl CustomerService {
    pub fn new(db: Db, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        CustomerService { db, vault, clock, mail_folder: None, files: None }
    }

    /// Where erasure also deletes the customer's files: the mail folder of
    /// the file transport (if it is used) and the file store.
    pub fn with_files(
        mut self,
        mail_folder: Option<std::path::PathBuf>,
        files: Arc<dyn crate::files::FileStore>,
    ) -> Self {
        self.mail_folder = mail_folder;
        self.files = Some(files);
        self
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Creates a customer. The email must not belong to another customer.
    pub async fn create(&self, details: &CustomerDetails, actor: &Actor) -> Result<CustomerRecord, AppError> {
        let details = details.validated()?;
        let index = self.vault.blind_index().email(&details.email);
        if self.db.customer_by_email_index(&index).await?.is_some() {
            return Err(AppError::Conflict);
        }
        let NewCustomer { record, row, audit, .. } = self.new_customer(&details, actor).await?;
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_customer(&row).await?;
                    tx.append_audit(&audit).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(record)
    }

    /// A new customer's row, sealed under a spare data key (already durable
    /// in the key store, see [`Vault::spare_customer_key`]), and its audit
    /// entry, for the caller to write in a unit of its own choosing (a first
    /// order writes it in the order's unit) before `usable_until`.
    pub async fn new_customer(&self, details: &CustomerDetails, actor: &Actor) -> Result<NewCustomer, AppError> {
        let details = details.validated()?;
        let index = self.vault.blind_index().email(&details.email);
        let id = CustomerId::generate();
        let spare = self.vault.spare_customer_key().await?;
        let fields = seal_details(&spare.key, &id, &spare.id, &details)?;
        let now = self.clock.now();
        let row = NewSealedCustomer {
            id: id.clone(),
            data_key_id: spare.id,
            email_index: index,
            email_index_version: self.vault.blind_index().version(),
            fields,
            at: now,
        };
        let audit = crate::request::audit_entry(now, actor, AuditAction::CustomerCreated, Some(id.to_string()));
        Ok(NewCustomer {
            record: CustomerRecord { id, details, created_at: now, updated_at: now },
            row,
            audit,
            key: spare.key,
            usable_until: spare.usable_until,
        })
    }

    /// Opens a stored row. `Erased` when its key is gone.
    async fn open(&self, stored: &StoredCustomer) -> Result<CustomerRecord, AppError> {
        Ok(self.open_with_key(stored).await?.0)
    }

    /// Opens a stored row and hands back the data key it used.
    async fn open_with_key(&self, stored: &StoredCustomer) -> Result<(CustomerRecord, DataKey), AppError> {
        if stored.erased_at.is_some() {
            return Err(AppError::Erased);
        }
        let key = self.vault.data_key(&stored.data_key_id).await?.ok_or(AppError::Erased)?;
        let record = open_details(stored, &key)?;
        Ok((record, key))
    }

    /// The customer's own record with their data key and its id, for a
    /// service that seals more of their data: one read, one unwrap. Not
    /// audited (the customer's own read).
    pub async fn own_record_and_key(&self, id: &CustomerId) -> Result<(CustomerRecord, DataKeyId, DataKey), AppError> {
        let stored = self.db.customer(id).await?.ok_or(AppError::NotFound)?;
        let (record, key) = self.open_with_key(&stored).await?;
        Ok((record, stored.data_key_id, key))
    }
}

/// The personal fields of a stored row, opened with its data key.
fn open_details(stored: &StoredCustomer, key: &DataKey) -> Result<CustomerRecord, AppError> {
    let id = &stored.id;
    let key_id = &stored.data_key_id;
    let required = |s: &Option<Sealed>| {
        s.clone().ok_or_else(|| {
            AppError::Store(coffer_store::StoreError::Corrupt("customers: a required field is empty".into()))
        })
    };
    let name = open_text(key, &ctx(id, "name", key_id), &required(&stored.fields.name)?)?;
    let email = open_text(key, &ctx(id, "email", key_id), &required(&stored.fields.email)?)?;
    let phone = stored.fields.phone.as_ref().map(|s| open_text(key, &ctx(id, "phone", key_id), s)).transpose()?;
    let address =
        match &stored.fields.address {
            Some(s) => {
                let plain = open_field(key, &ctx(id, "address", key_id), s)?;
                Some(serde_json::from_slice::<MailingAddress>(&plain).map_err(|_| {
                    AppError::Crypto(coffer_crypto::CryptoError::UnknownFormat { what: "a sealed field" })
                })?)
            }
            None => None,
        };
    Ok(CustomerRecord {
        id: id.clone(),
        details: CustomerDetails { name, email, phone, address },
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

impl CustomerService {
    async fn audit(&self, actor: &Actor, action: AuditAction, subject: &CustomerId) -> Result<(), AppError> {
        let entry = crate::request::audit_entry(self.clock.now(), actor, action, Some(subject.to_string()));
        self.db.write(move |tx| Box::pin(async move { tx.append_audit(&entry).await.map_err(AppError::from) })).await
    }

    /// Reads a customer; a read by anyone but the customer is audited
    /// before the data is handed out.
    pub async fn get(&self, id: &CustomerId, reader: &Reader) -> Result<CustomerRecord, AppError> {
        let stored = self.db.customer(id).await?.ok_or(AppError::NotFound)?;
        let record = self.open(&stored).await?;
        if let Reader::Other(actor) = reader {
            self.audit(actor, AuditAction::CustomerRead, id).await?;
        }
        Ok(record)
    }

    /// The customer holding this email address, found through the blind index.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<CustomerId>, AppError> {
        let index = self.vault.blind_index().email(email);
        Ok(self.db.customer_by_email_index(&index).await?.map(|c| c.id))
    }

    pub async fn update(
        &self,
        id: &CustomerId,
        details: &CustomerDetails,
        actor: &Actor,
    ) -> Result<CustomerRecord, AppError> {
        let details = details.validated()?;
        let stored = self.db.customer(id).await?.ok_or(AppError::NotFound)?;
        if stored.erased_at.is_some() {
            return Err(AppError::Erased);
        }
        let index = self.vault.blind_index().email(&details.email);
        if let Some(holder) = self.db.customer_by_email_index(&index).await?
            && holder.id != *id
        {
            return Err(AppError::Conflict);
        }
        let key = self.vault.data_key(&stored.data_key_id).await?.ok_or(AppError::Erased)?;
        let fields = seal_details(&key, id, &stored.data_key_id, &details)?;
        let now = self.clock.now();
        let version = self.vault.blind_index().version();
        let audit = crate::request::audit_entry(now, actor, AuditAction::CustomerUpdated, Some(id.to_string()));
        let target = id.clone();
        let updated = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let updated = tx.update_customer(&target, &fields, &index, version, now).await?;
                    if updated {
                        tx.append_audit(&audit).await?;
                    }
                    Ok::<_, AppError>(updated)
                })
            })
            .await?;
        if !updated {
            return Err(AppError::NotFound);
        }
        Ok(CustomerRecord { id: id.clone(), details, created_at: stored.created_at, updated_at: now })
    }

    /// Erases a customer by crypto-shredding: the data key is destroyed and
    /// the erasure recorded in the key store first (from that moment no copy
    /// of the data opens, backups included); then the row is cleared, the
    /// data-side ledger written and the erasure audited in one unit. A crash
    /// between the two is finished by [`Self::replay_erasures`] at start.
    ///
    /// The customer themselves, or a principal with
    /// [`Permission::EraseCustomer`] (the DPO, an admin, the command line).
    pub async fn erase(&self, id: &CustomerId, ctx: &RequestContext) -> Result<(), AppError> {
        self.erase_with_message(id, ctx, None).await
    }

    /// As [`Self::erase`]; `last_message` (sealed under a one-off key) is
    /// enqueued in the same unit as the erasure, so it goes out exactly
    /// when the erasure happened.
    pub async fn erase_with_message(
        &self,
        id: &CustomerId,
        ctx: &RequestContext,
        last_message: Option<coffer_store::NewEmail>,
    ) -> Result<(), AppError> {
        if !matches!(ctx.principal(), Principal::Customer(own) if own == id.as_str()) {
            ctx.require(Permission::EraseCustomer)?;
        }
        let actor = &ctx.actor();
        let stored = self.db.customer(id).await?.ok_or(AppError::NotFound)?;
        let documents = self.db.id_document_files_of(id).await?;
        let erasure =
            Erasure { customer_id: id.clone(), data_key_id: stored.data_key_id.clone(), erased_at: self.clock.now() };
        self.vault.key_store().shred(erasure.clone()).await?;
        self.erase_row(erasure, actor, AuditAction::CustomerErased, last_message).await?;
        // The shredded key already makes these unreadable; they go as well.
        if let Some(files) = &self.files {
            for file_key in &documents {
                files.delete(file_key).await?;
            }
        }
        if let Some(dir) = self.mail_folder.clone() {
            let key = stored.data_key_id.clone();
            tokio::task::spawn_blocking(move || crate::mail::forget_mail_files(&dir, &key))
                .await
                .map_err(|_| AppError::Files("deleting mail files stopped".into()))?
                .map_err(|e| AppError::Files(format!("deleting mail files: {}", e.kind())))?;
        }
        // Old pages are zeroed (secure_delete); the checkpoint moves them
        // out of the -wal files too.
        self.db.checkpoint().await?;
        self.vault.key_store().checkpoint().await?;
        Ok(())
    }

    /// Clears the row, writes the data-side ledger and the audit entry, in
    /// one unit.
    async fn erase_row(
        &self,
        erasure: Erasure,
        actor: &Actor,
        action: AuditAction,
        last_message: Option<coffer_store::NewEmail>,
    ) -> Result<(), AppError> {
        let audit = crate::request::audit_entry(self.clock.now(), actor, action, Some(erasure.customer_id.to_string()));
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.erase_customer(&erasure).await?;
                    tx.append_audit(&audit).await?;
                    if let Some(message) = &last_message {
                        coffer_store::OutboxWriter::enqueue_email(tx, message).await?;
                    }
                    Ok::<_, AppError>(())
                })
            })
            .await
    }

    /// Makes both ledgers agree: an erasure recorded on one side only (after
    /// a restore of the other side, or a crash mid-erasure) is applied to
    /// the other. Run before serving.
    pub async fn replay_erasures(&self, actor: &Actor) -> Result<ReplayReport, AppError> {
        let key_side = self.vault.key_store().erasures().await?;
        let data_side = self.db.erasures().await?;
        let mut report = ReplayReport::default();
        let data_ids: std::collections::HashSet<_> = data_side.iter().map(|e| e.customer_id.clone()).collect();
        for erasure in key_side.iter().filter(|e| !data_ids.contains(&e.customer_id)) {
            let erasure = erasure.clone();
            let audit = crate::request::audit_entry(
                self.clock.now(),
                actor,
                AuditAction::ErasureReplayed,
                Some(erasure.customer_id.to_string()),
            );
            self.db
                .write(move |tx| {
                    Box::pin(async move {
                        tx.erase_customer(&erasure).await?;
                        tx.append_audit(&audit).await?;
                        Ok::<_, AppError>(())
                    })
                })
                .await?;
            report.data_side += 1;
        }
        let key_ids: std::collections::HashSet<_> = key_side.iter().map(|e| e.customer_id.clone()).collect();
        for erasure in data_side.into_iter().filter(|e| !key_ids.contains(&e.customer_id)) {
            let subject = erasure.customer_id.clone();
            self.vault.key_store().shred(erasure).await?;
            self.audit(actor, AuditAction::ErasureReplayed, &subject).await?;
            report.key_side += 1;
        }
        if report != ReplayReport::default() {
            self.db.checkpoint().await?;
            self.vault.key_store().checkpoint().await?;
        }
        Ok(report)
    }

    /// The customer's orders, newest first, opened with their key: what was
    /// bought, the details the order keeps, the consent given and the
    /// license keys issued.
    pub(crate) async fn orders_with_key(&self, id: &CustomerId, key: &DataKey) -> Result<Vec<OrderRecord>, AppError> {
        // Three queries for all the orders, their lines and their keys.
        let mut keys_of: std::collections::HashMap<OrderId, Vec<(i64, ProductId, Sealed)>> =
            std::collections::HashMap::new();
        for (order, line_no, product, sealed) in self.db.license_keys_of_customer(id).await? {
            keys_of.entry(order).or_default().push((line_no, product, sealed));
        }
        let mut out = Vec::new();
        for order in self.db.orders_of(id).await? {
            let open = |column: &'static str, sealed: &Option<Sealed>| -> Result<Option<Vec<u8>>, AppError> {
                let Some(sealed) = sealed else { return Ok(None) };
                let ctx = FieldContext {
                    table: "orders",
                    column,
                    row_id: order.id.as_str(),
                    data_key_id: order.data_key_id.as_str(),
                };
                Ok(Some(open_field(key, &ctx, sealed)?.to_vec()))
            };
            let text = |column: &'static str, sealed: &Option<Sealed>| -> Result<Option<String>, AppError> {
                Ok(open(column, sealed)?.map(|plain| String::from_utf8_lossy(&plain).into_owned()))
            };
            let json = |column: &'static str, sealed: &Option<Sealed>| -> Result<Option<serde_json::Value>, AppError> {
                Ok(open(column, sealed)?.and_then(|plain| serde_json::from_slice(&plain).ok()))
            };
            let mut license_keys = Vec::new();
            for (line_no, product, sealed) in keys_of.remove(&order.id).unwrap_or_default() {
                let row = format!("{}:{line_no}", order.id);
                let ctx = FieldContext {
                    table: "license_keys",
                    column: "license_key",
                    row_id: &row,
                    data_key_id: order.data_key_id.as_str(),
                };
                let plain = open_field(key, &ctx, &sealed)?;
                license_keys
                    .push(LicenseKeyRecord { product_id: product, key: String::from_utf8_lossy(&plain).into() });
            }
            let details = OrderRecordDetails {
                name: text("name", &order.name)?,
                email: text("email", &order.email)?,
                phone: text("phone", &order.phone)?,
                address: json("address", &order.address)?.and_then(|a| serde_json::from_value(a).ok()),
                // The gateway's token is for refunds, not for reading.
                card: json("card", &order.card)?.and_then(|c| serde_json::from_value(c).ok()),
                guardian_name: text("guardian_name", &order.guardian_name)?,
            };
            out.push(OrderRecord {
                status: order.status.as_str(),
                placed_at_ms: order.created_at.0,
                currency: order.currency.clone(),
                subtotal: order.subtotal,
                tax: order.tax,
                total: order.total,
                payment_method: order.payment_method.clone(),
                payment_reference: order.payment_reference.clone(),
                lines: order
                    .lines
                    .iter()
                    .map(|l| OrderRecordLine {
                        line_no: l.line_no,
                        product_id: l.product_id.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        line_total: l.line_total,
                    })
                    .collect(),
                license_keys,
                details,
                consent: ConsentRecord {
                    privacy_policy_version: order.policy_version.clone(),
                    at_ms: order.consent_at.0,
                    channel: order.consent_channel.clone(),
                },
                id: order.id,
            });
        }
        Ok(out)
    }

    /// Everything the inventory says is held about the customer with this
    /// email, as JSON. Needs [`Permission::ExportCustomerData`]; audited as
    /// an export by the principal.
    pub async fn export(&self, email: &str, ctx: &RequestContext) -> Result<AccessExport, AppError> {
        ctx.require(Permission::ExportCustomerData)?;
        let id = self.find_by_email(email).await?.ok_or(AppError::NotFound)?;
        self.export_by_id(&id, &Reader::Other(ctx.actor())).await
    }

    /// The export of one customer; audited unless the customer asks.
    pub async fn export_by_id(&self, id: &CustomerId, reader: &Reader) -> Result<AccessExport, AppError> {
        let id = id.clone();
        let stored = self.db.customer(&id).await?.ok_or(AppError::NotFound)?;
        let key = self.vault.data_key(&stored.data_key_id).await?.ok_or(AppError::Erased)?;
        let fields = personal_data(&stored, &key)?;
        let messages = self.messages_export(&stored.data_key_id, &key).await?;
        let requests = self.requests_export(&id).await?;
        let disclosures = self.disclosures_export(&id).await?;
        let orders = self.orders_with_key(&id, &key).await?;
        let credentials =
            self.db.credentials(&coffer_store::Subject::new(coffer_domain::Realm::Customer, id.as_str())).await?;
        let account = AccountRecord {
            password_set: credentials.password_hash.is_some(),
            second_factor: credentials.totp_secret.is_some(),
        };
        if let Reader::Other(actor) = reader {
            self.audit(actor, AuditAction::CustomerExported, &id).await?;
        }
        Ok(AccessExport {
            customer_id: id,
            created_at_ms: stored.created_at.0,
            updated_at_ms: stored.updated_at.0,
            personal_data: fields,
            orders,
            account,
            messages,
            privacy_requests: requests,
            disclosures,
        })
    }
}

impl CustomerService {
    /// The messages kept for the customer (sealed under their key), opened.
    async fn messages_export(&self, key_id: &DataKeyId, key: &DataKey) -> Result<Vec<MessageRecord>, AppError> {
        let open_text = |email: &coffer_store::StoredEmail, column: &'static str, sealed: &Option<Sealed>| {
            sealed
                .as_ref()
                .map(|s| {
                    open_field(key, &crate::mail::ctx(&email.id, column, key_id), s)
                        .map(|plain| String::from_utf8_lossy(&plain).into_owned())
                })
                .transpose()
        };
        let mut messages = Vec::new();
        for email in self.db.emails_sealed_with(key_id).await? {
            messages.push(MessageRecord {
                to: open_text(&email, "recipient", &email.recipient)?,
                subject: open_text(&email, "subject", &email.subject)?,
                body: open_text(&email, "body", &email.body)?,
                id: email.id,
                kind: email.kind,
                status: email.status,
                created_at_ms: email.created_at.0,
            });
        }
        Ok(messages)
    }

    /// The customer's written data requests and where they stand.
    async fn requests_export(&self, id: &CustomerId) -> Result<Vec<PrivacyRequestRecord>, AppError> {
        Ok(self
            .db
            .privacy_requests_of(id)
            .await?
            .into_iter()
            .map(|r| PrivacyRequestRecord {
                id: r.id,
                kind: r.kind,
                jurisdiction: r.jurisdiction,
                status: r.status,
                received_at_ms: r.received_at.0,
                deadline_at_ms: r.deadline_at.map(|d| d.0),
            })
            .collect())
    }

    /// Who outside Coffer received the customer's data, what and why.
    /// Each vendor that received it is named with its privacy contact
    /// (P7), as it is now.
    async fn disclosures_export(&self, id: &CustomerId) -> Result<Vec<DisclosureRecord>, AppError> {
        let mut out = Vec::new();
        for d in self.db.disclosures_about(id).await? {
            let vendor =
                (d.recipient_kind == "vendor").then(|| coffer_domain::VendorId::parse(&d.recipient).ok()).flatten();
            let (recipient_name, privacy_contact) = match &vendor {
                Some(vendor) => (
                    self.db.vendor_record(vendor).await?.map(|v| v.name),
                    crate::accounts::vendor_users::privacy_contact_of(&self.db, &self.vault, vendor)
                        .await?
                        .map(|(contact, _)| contact),
                ),
                None => (None, None),
            };
            out.push(DisclosureRecord {
                id: d.id,
                recipient_kind: d.recipient_kind,
                recipient: d.recipient,
                recipient_name,
                privacy_contact,
                fields: d.fields,
                purpose: d.purpose,
                legal_basis: d.legal_basis,
                disclosed_at_ms: d.disclosed_at.0,
            });
        }
        Ok(out)
    }
}

/// Each personal field the inventory lists for a customer row, opened,
/// with what the inventory says of it (purpose, legal basis, recipients,
/// retention).
fn personal_data(stored: &StoredCustomer, key: &DataKey) -> Result<Vec<PersonalDataRecord>, AppError> {
    let mut fields = Vec::new();
    for field in inventory::fields_of(TABLE) {
        let value = match stored.fields.column(field.column) {
            Some(sealed) => {
                let plain = open_field(key, &ctx(&stored.id, field.column, &stored.data_key_id), sealed)?;
                // Structured fields are stored as JSON; the rest as text.
                serde_json::from_slice::<serde_json::Value>(&plain)
                    .ok()
                    .filter(|v| v.is_object())
                    .unwrap_or_else(|| json!(String::from_utf8_lossy(&plain)))
            }
            None => serde_json::Value::Null,
        };
        fields.push(PersonalDataRecord {
            field: format!("{}.{}", field.table, field.column),
            label: field.label,
            value,
            category: field.category,
            purpose: field.purpose,
            legal_basis: field.legal_basis,
            recipients: field.recipients,
            retention: field.retention,
        });
    }
    Ok(fields)
}
