//! The vault: the master key versions a server has loaded, and everything
//! that is wrapped under them (customers' data keys, the blind-index key,
//! the audit signing key). Wrapped forms live in the key store only.

use super::keys::KeyProvider;
use crate::AppError;
use coffer_crypto::{AuditSigningKey, BlindIndexKey, DataKey, MasterKey, unwrap_secret, wrap_secret, wrapped_version};
use coffer_domain::{Clock, DataKeyId};
use coffer_store::{KeyStore, MasterKeyState, WrapKind, WrappedSecret};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

const DATA_KEY: &str = "data-key";
const SECRET: &str = "secret";
const BLIND_INDEX_SECRET: &str = "blind-index-v1";
const AUDIT_SIGNING_SECRET: &str = "audit-signing-v1";
const CSRF_SECRET: &str = "csrf-hmac-v1";

struct Loaded {
    keks: BTreeMap<u32, Arc<MasterKey>>,
    active: u32,
}

pub struct Vault {
    provider: Arc<dyn KeyProvider>,
    store: KeyStore,
    clock: Arc<dyn Clock>,
    loaded: RwLock<Loaded>,
    blind_index: BlindIndexKey,
    audit_signer: AuditSigningKey,
    csrf_key: secrecy::SecretBox<[u8; 32]>,
    /// Named secrets once opened: their value never changes (a re-wrap
    /// changes only how they are stored), and some are used on every order.
    named: std::sync::Mutex<std::collections::HashMap<String, Arc<Zeroizing<Vec<u8>>>>>,
    spares: Arc<SpareKeys>,
}

/// How many spare customer keys one key store commit makes.
pub const SPARE_BATCH: usize = 64;
/// Below this many spares left, a refill starts in the background.
const SPARE_LOW_WATER: usize = 24;
/// How long a spare key may be handed out after it is made.
pub const SPARE_HAND_OUT_MS: i64 = 10 * 60 * 1000;
/// After the hand-out window, how long before the sweep may delete an
/// unused spare: far longer than any unit that seals under a key takes
/// between taking it and committing (a placement's gateway calls are cut
/// off after 20 s), so a key a customer row is about to name is never swept.
pub const SPARE_GRACE_MS: i64 = 50 * 60 * 1000;

/// A customer data key made ahead of demand: stored (committed) in the key
/// store before it was put here, so sealing under it needs no key store
/// write. Usable until `usable_until`; see [`Vault::spare_customer_key`].
pub struct SpareKey {
    pub id: DataKeyId,
    pub key: DataKey,
    pub usable_until: coffer_domain::Millis,
}

#[derive(Default)]
struct SpareKeys {
    queue: std::sync::Mutex<std::collections::VecDeque<SpareKey>>,
    /// One batch is made at a time; others wait for it and take from it.
    making: tokio::sync::Mutex<()>,
    refilling: std::sync::atomic::AtomicBool,
}

fn poisoned() -> AppError {
    AppError::Keys("the key cache is unusable after a panic; restart the server".into())
}

impl Vault {
    /// Loads every live master key version (creating version 1 on first
    /// run) and the secrets sealed under them.
    pub async fn open(
        provider: Arc<dyn KeyProvider>,
        store: KeyStore,
        clock: Arc<dyn Clock>,
    ) -> Result<Vault, AppError> {
        if store.master_keys().await?.is_empty() {
            provider.create(1)?;
            store.add_master_key(1, clock.now()).await?;
        }
        let loaded = load_keys(provider.as_ref(), &store).await?;
        let blind = secret_once(&store, &loaded, BLIND_INDEX_SECRET, clock.as_ref()).await.map_err(|e| match e {
            AppError::Crypto(coffer_crypto::CryptoError::DoesNotOpen { .. }) => AppError::Keys(
                "the master key files do not open this key store's secrets: wrong --key-dir or a replaced key file"
                    .into(),
            ),
            other => other,
        })?;
        let blind_index = BlindIndexKey::from_bytes(1, &blind)?;
        let signer = secret_once(&store, &loaded, AUDIT_SIGNING_SECRET, clock.as_ref()).await?;
        let audit_signer = AuditSigningKey::from_bytes(&signer)?;
        let csrf = secret_once(&store, &loaded, CSRF_SECRET, clock.as_ref()).await?;
        let csrf: [u8; 32] = csrf.as_slice().try_into().map_err(|_| {
            AppError::Crypto(coffer_crypto::CryptoError::BadLength { what: "the CSRF key", expected: 32 })
        })?;
        let csrf_key = secrecy::SecretBox::new(Box::new(csrf));
        let loaded = RwLock::new(loaded);
        let named = std::sync::Mutex::default();
        let spares = Arc::default();
        let vault = Vault { provider, store, clock, loaded, blind_index, audit_signer, csrf_key, named, spares };
        Ok(vault)
    }

    pub fn key_store(&self) -> &KeyStore {
        &self.store
    }

    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    pub fn blind_index(&self) -> &BlindIndexKey {
        &self.blind_index
    }

    pub fn audit_signer(&self) -> &AuditSigningKey {
        &self.audit_signer
    }

    /// The key that makes session CSRF tokens.
    pub fn csrf_key(&self) -> &[u8; 32] {
        secrecy::ExposeSecret::expose_secret(&self.csrf_key)
    }

    /// The version new wraps use.
    pub fn active_version(&self) -> Result<u32, AppError> {
        Ok(self.loaded.read().map_err(|_| poisoned())?.active)
    }

    /// Re-reads the key store's versions (after `keys add` or `keys
    /// activate` by another process) and loads any new key files.
    pub async fn reload(&self) -> Result<(), AppError> {
        let fresh = load_keys(self.provider.as_ref(), &self.store).await?;
        *self.loaded.write().map_err(|_| poisoned())? = fresh;
        Ok(())
    }

    fn kek(&self, version: u32) -> Result<Arc<MasterKey>, AppError> {
        let loaded = self.loaded.read().map_err(|_| poisoned())?;
        loaded
            .keks
            .get(&version)
            .cloned()
            .ok_or(AppError::Crypto(coffer_crypto::CryptoError::MissingKeyVersion(version)))
    }

    fn active_kek(&self) -> Result<Arc<MasterKey>, AppError> {
        let active = self.active_version()?;
        self.kek(active)
    }

    /// Creates, wraps and stores a new data key.
    pub async fn new_data_key(&self, id: &DataKeyId) -> Result<DataKey, AppError> {
        let key = DataKey::generate()?;
        let kek = self.active_kek()?;
        let wrapped = wrap_secret(&kek, DATA_KEY, id.as_str(), key.expose())?;
        let record = WrappedSecret { id: id.as_str().to_owned(), kek_version: kek.version(), wrapped };
        self.store.put_data_key(record, self.clock.now()).await?;
        Ok(key)
    }

    /// A data key for a new customer row, taken from the spares made
    /// ahead of demand, so the caller's unit is the only commit it waits
    /// for. Only for a key a `customers` row will name: the sweep
    /// ([`crate::retention::sweep_spare_keys`]) deletes spares no customer
    /// row names. The caller commits before `usable_until` or takes another.
    pub async fn spare_customer_key(&self) -> Result<SpareKey, AppError> {
        loop {
            if let Some(spare) = self.take_spare()? {
                return Ok(spare);
            }
            // None left: make a batch, or wait for the one being made.
            let _making = self.spares.making.lock().await;
            if let Some(spare) = self.take_spare()? {
                return Ok(spare);
            }
            let kek = self.active_kek()?;
            make_spares(&self.spares, &self.store, self.clock.as_ref(), &kek).await?;
        }
    }

    /// The oldest spare still usable (older ones are dropped: the sweep
    /// deletes them); starts a refill when few are left.
    fn take_spare(&self) -> Result<Option<SpareKey>, AppError> {
        let now = self.clock.now();
        let (spare, left) = {
            let mut queue = self.spares.queue.lock().map_err(|_| poisoned())?;
            let mut spare = None;
            while let Some(next) = queue.pop_front() {
                if next.usable_until.0 > now.0 {
                    spare = Some(next);
                    break;
                }
            }
            (spare, queue.len())
        };
        if spare.is_some() && left < SPARE_LOW_WATER {
            self.refill_in_background()?;
        }
        Ok(spare)
    }

    fn refill_in_background(&self) -> Result<(), AppError> {
        use std::sync::atomic::Ordering;
        // The key first: a failure here must not leave the flag set.
        let kek = self.active_kek()?;
        if self.spares.refilling.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (spares, store, clock) = (self.spares.clone(), self.store.clone(), self.clock.clone());
        tokio::spawn(async move {
            let making = spares.making.lock().await;
            let low = spares.queue.lock().map(|q| q.len() < SPARE_LOW_WATER).unwrap_or(false);
            if low && let Err(e) = make_spares(&spares, &store, clock.as_ref(), &kek).await {
                // Checkout then makes a batch itself; nothing is lost.
                tracing::warn!(error = %e, "making spare customer keys failed");
            }
            drop(making);
            spares.refilling.store(false, Ordering::Release);
        });
        Ok(())
    }

    /// A named secret sealed under the master key (a vendor's license
    /// signing seed, say), created on first use; several servers creating
    /// it at once end up with the one stored first.
    pub async fn named_secret(&self, name: &str) -> Result<Arc<Zeroizing<Vec<u8>>>, AppError> {
        if let Some(known) = self.named.lock().map_err(|_| poisoned())?.get(name) {
            return Ok(known.clone());
        }
        let record = match self.store.secret(name).await? {
            Some(record) => record,
            None => {
                let kek = self.active_kek()?;
                let fresh = Zeroizing::new(coffer_crypto::random_bytes::<{ coffer_crypto::KEY_LEN }>()?);
                let wrapped = wrap_secret(&kek, SECRET, name, fresh.as_slice())?;
                let record = WrappedSecret { id: name.to_owned(), kek_version: kek.version(), wrapped };
                self.store.put_secret_once(record, self.clock.now()).await?
            }
        };
        let secret = Arc::new(self.unwrap(SECRET, &record).await?);
        self.named.lock().map_err(|_| poisoned())?.insert(name.to_owned(), secret.clone());
        Ok(secret)
    }

    /// The data key, or `None` once it has been destroyed (erasure).
    pub async fn data_key(&self, id: &DataKeyId) -> Result<Option<DataKey>, AppError> {
        let Some(record) = self.store.data_key(id.as_str()).await? else { return Ok(None) };
        let bytes = self.unwrap(DATA_KEY, &record).await?;
        Ok(Some(DataKey::from_bytes(&bytes)?))
    }

    async fn unwrap(&self, purpose: &str, record: &WrappedSecret) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let kek = self.kek_of(record).await?;
        Ok(unwrap_secret(&kek, purpose, &record.id, &record.wrapped)?)
    }

    /// The master key a wrap needs, checked against the version stored
    /// beside it; loaded first if another server activated a version this
    /// one has not loaded yet.
    async fn kek_of(&self, record: &WrappedSecret) -> Result<Arc<MasterKey>, AppError> {
        let version = wrapped_version(&record.wrapped)?;
        if version != record.kek_version {
            return Err(AppError::Crypto(coffer_crypto::CryptoError::DoesNotOpen { what: "a wrapped key" }));
        }
        match self.kek(version) {
            Ok(kek) => Ok(kek),
            Err(_) => {
                self.reload().await?;
                self.kek(version)
            }
        }
    }

    /// Re-wraps everything not under the active version, in one pass over
    /// the key store in id order, batch by batch, resting after each batch
    /// for `rest` times as long as it took: a server re-wrapping in the
    /// background keeps most of its CPU for requests. `rest` 0 runs flat out
    /// (a one-server `keys rotate`). Safe to stop and run again: each wrap is
    /// replaced only if unchanged since read, and keys made during the pass
    /// are wrapped under the active version already. Returns how many changed.
    pub async fn rewrap_all(&self, batch: i64, rest: f64) -> Result<u64, AppError> {
        self.rewrap_until(batch, rest, &crate::supervisor::CancellationToken::new()).await
    }

    /// As [`Vault::rewrap_all`], ending after the batch under way once
    /// `stop` fires (a server shutting down); the rest waits for the next run.
    pub async fn rewrap_until(
        &self,
        batch: i64,
        rest: f64,
        stop: &crate::supervisor::CancellationToken,
    ) -> Result<u64, AppError> {
        let target = self.active_kek()?;
        let version = target.version();
        let (mut total, mut unopenable) = (0, Vec::new());
        let mut wraps = self.store.wraps_to_rewrap(WrapKind::DataKey, version, "", batch).await?;
        while let Some(after) = wraps.iter().map(|w| w.id.clone()).max() {
            if stop.is_cancelled() {
                return Ok(total);
            }
            let started = std::time::Instant::now();
            let replacements = self.rewrapped(&target, DATA_KEY, wraps, &mut unopenable).await?;
            let (changed, next) = self
                .store
                .replace_wraps_and_fetch_next(WrapKind::DataKey, replacements, &after, version, batch)
                .await?;
            total += changed;
            wraps = next;
            if rest > 0.0 && !wraps.is_empty() {
                tokio::time::sleep(started.elapsed().mul_f64(rest)).await;
            }
        }
        // The few named secrets, in one go.
        let secrets = self.store.wraps_to_rewrap(WrapKind::Secret, version, "", i64::MAX).await?;
        let replacements = self.rewrapped(&target, SECRET, secrets, &mut unopenable).await?;
        total += self.store.replace_wraps(WrapKind::Secret, replacements).await?;
        if let Some(first) = unopenable.first() {
            // The rest is done; these stay under their old version (so it
            // cannot be retired) until the operator looks at them.
            return Err(AppError::Keys(format!(
                "{} wrapped key(s) do not open under their master key version and were left as they are \
                 (first: {first}); everything else was re-wrapped ({total})",
                unopenable.len()
            )));
        }
        Ok(total)
    }

    /// The same secrets wrapped under `target`: each old wrap with its
    /// replacement. A wrap that does not open (damaged, or not made with
    /// its stated version) is left out and its id added to `unopenable`,
    /// so one bad row does not hold up every other.
    async fn rewrapped(
        &self,
        target: &Arc<MasterKey>,
        purpose: &str,
        wraps: Vec<WrappedSecret>,
        unopenable: &mut Vec<String>,
    ) -> Result<Vec<(WrappedSecret, WrappedSecret)>, AppError> {
        if wraps.is_empty() {
            return Ok(Vec::new());
        }
        // Every version the batch needs, checked and loaded.
        let mut keks = BTreeMap::new();
        let mut openable = Vec::with_capacity(wraps.len());
        for old in wraps {
            match self.kek_of(&old).await {
                Ok(kek) => {
                    keks.entry(old.kek_version).or_insert(kek);
                    openable.push(old);
                }
                Err(AppError::Crypto(e)) if damaged(&e) => unopenable.push(old.id),
                Err(e) => return Err(e),
            }
        }
        // Thousands of AES-GCM opens and seals: on a blocking thread, so
        // the async workers keep answering requests meanwhile.
        let (target, purpose) = (target.clone(), purpose.to_owned());
        let (replacements, damaged_ids) = tokio::task::spawn_blocking(move || {
            let (mut replacements, mut damaged_ids) = (Vec::with_capacity(openable.len()), Vec::new());
            for old in openable {
                let kek = keks
                    .get(&old.kek_version)
                    .ok_or(AppError::Crypto(coffer_crypto::CryptoError::MissingKeyVersion(old.kek_version)))?;
                let secret = match unwrap_secret(kek, &purpose, &old.id, &old.wrapped) {
                    Ok(secret) => secret,
                    Err(e) if damaged(&e) => {
                        damaged_ids.push(old.id);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let wrapped = wrap_secret(&target, &purpose, &old.id, &secret)?;
                let new = WrappedSecret { id: old.id.clone(), kek_version: target.version(), wrapped };
                replacements.push((old, new));
            }
            Ok::<_, AppError>((replacements, damaged_ids))
        })
        .await
        .map_err(|_| AppError::Keys("the re-wrap worker stopped".into()))??;
        unopenable.extend(damaged_ids);
        Ok(replacements)
    }
}

/// A wrap that cannot be opened because of its own bytes (not because a
/// master key version is missing).
fn damaged(e: &coffer_crypto::CryptoError) -> bool {
    use coffer_crypto::CryptoError::{BadLength, DoesNotOpen, UnknownFormat};
    matches!(e, DoesNotOpen { .. } | UnknownFormat { .. } | BadLength { .. })
}

async fn load_keys(provider: &dyn KeyProvider, store: &KeyStore) -> Result<Loaded, AppError> {
    let mut keks = BTreeMap::new();
    let mut active = None;
    for record in store.master_keys().await? {
        if matches!(record.state, MasterKeyState::Destroyed) {
            continue;
        }
        keks.insert(record.version, Arc::new(provider.load(record.version)?));
        if record.state == MasterKeyState::Active {
            active = Some(record.version);
        }
    }
    let active = active.ok_or_else(|| AppError::Keys("the key store names no active master key".into()))?;
    Ok(Loaded { keks, active })
}

/// A named secret sealed under the master key, created on first use under
/// the active version; opened with whichever loaded version wrapped it.
async fn secret_once(
    store: &KeyStore,
    loaded: &Loaded,
    name: &str,
    clock: &dyn Clock,
) -> Result<Zeroizing<Vec<u8>>, AppError> {
    let record = match store.secret(name).await? {
        Some(record) => record,
        None => {
            let kek = loaded.keks.get(&loaded.active).ok_or_else(|| AppError::Keys("no active master key".into()))?;
            let fresh = Zeroizing::new(coffer_crypto::random_bytes::<{ coffer_crypto::KEY_LEN }>()?);
            let wrapped = wrap_secret(kek, SECRET, name, fresh.as_slice())?;
            let record = WrappedSecret { id: name.to_owned(), kek_version: kek.version(), wrapped };
            store.put_secret_once(record, clock.now()).await?
        }
    };
    let kek = loaded
        .keks
        .get(&record.kek_version)
        .ok_or(AppError::Crypto(coffer_crypto::CryptoError::MissingKeyVersion(record.kek_version)))?;
    Ok(unwrap_secret(kek, SECRET, name, &record.wrapped)?)
}

/// Makes [`SPARE_BATCH`] customer keys, wraps them under `kek` and commits
/// them to the key store in one transaction; only then are they handed out.
async fn make_spares(spares: &SpareKeys, store: &KeyStore, clock: &dyn Clock, kek: &MasterKey) -> Result<(), AppError> {
    let now = clock.now();
    let usable_until = coffer_domain::Millis(now.0 + SPARE_HAND_OUT_MS);
    let mut made = Vec::with_capacity(SPARE_BATCH);
    let mut records = Vec::with_capacity(SPARE_BATCH);
    for _ in 0..SPARE_BATCH {
        let id = DataKeyId::generate();
        let key = DataKey::generate()?;
        let wrapped = wrap_secret(kek, DATA_KEY, id.as_str(), key.expose())?;
        records.push(WrappedSecret { id: id.as_str().to_owned(), kek_version: kek.version(), wrapped });
        made.push(SpareKey { id, key, usable_until });
    }
    store.put_spare_data_keys(records, now, usable_until).await?;
    spares.queue.lock().map_err(|_| poisoned())?.extend(made);
    Ok(())
}
