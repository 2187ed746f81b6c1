//! The key store: a database of its own (a SQLite file in the key directory,
//! or a separate PostgreSQL database), never the data database. It holds
//! wrapped keys, the master key versions' states, the erasure ledger and the
//! signed audit heads. It stores only ciphertext of keys: the master key
//! itself is in a file of the key directory (or a KMS), never here.

use crate::customers::{Erasure, erasure_from_row, record_in_ledger};
use crate::db::{Database, Keys};
use crate::{Backend, DbOptions, StoreError, unit};
use coffer_domain::Millis;
use sqlx::Row;
use sqlx::any::AnyRow;

/// The life of a master key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKeyState {
    /// Loaded and able to unwrap, not used for new wraps.
    Standby,
    /// The one version new wraps use.
    Active,
    /// No wrap uses it; destroyed after the backup-retention window.
    Retired,
    Destroyed,
}

impl MasterKeyState {
    fn as_str(self) -> &'static str {
        match self {
            MasterKeyState::Standby => "added",
            MasterKeyState::Active => "active",
            MasterKeyState::Retired => "retired",
            MasterKeyState::Destroyed => "destroyed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "added" => Ok(MasterKeyState::Standby),
            "active" => Ok(MasterKeyState::Active),
            "retired" => Ok(MasterKeyState::Retired),
            "destroyed" => Ok(MasterKeyState::Destroyed),
            _ => Err(StoreError::corrupt("master_keys.state")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub version: u32,
    pub state: MasterKeyState,
    pub added_at: Millis,
    pub activated_at: Option<Millis>,
    pub retired_at: Option<Millis>,
    pub destroy_after: Option<Millis>,
}

/// A wrapped secret and the master key version that wrapped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedSecret {
    pub id: String,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

/// PostgreSQL: the data keys a re-wrap takes next (`$1` the active
/// version, `$2` the last id done, `$3` the batch size), walking the primary
/// key (no index on the version, so re-wrapped rows are updated in place).
const NEXT_DATA_KEYS: &str =
    "SELECT id, kek_version, wrapped FROM data_keys WHERE id > $2 AND kek_version <> $1 ORDER BY id LIMIT $3";

/// PostgreSQL: rows of [`NEXT_DATA_KEYS`] as one `id:version:hex,…` string,
/// in id order.
const JOINED_DATA_KEYS: &str = "string_agg(id || ':' || kek_version || ':' || encode(wrapped, 'hex'), ',' ORDER BY id)";

/// The wraps in a string of [`JOINED_DATA_KEYS`]; none for NULL (no rows).
fn split_joined_wraps(joined: Option<&str>) -> Result<Vec<WrappedSecret>, StoreError> {
    let corrupt = || StoreError::corrupt("key store (joined wraps)");
    let Some(joined) = joined else { return Ok(Vec::new()) };
    joined
        .split(',')
        .map(|entry| {
            let mut parts = entry.split(':');
            let (Some(id), Some(version), Some(wrapped), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt());
            };
            Ok(WrappedSecret {
                id: id.to_owned(),
                kek_version: version.parse().map_err(|_| corrupt())?,
                wrapped: hex::decode(wrapped).map_err(|_| corrupt())?,
            })
        })
        .collect()
}

/// Which table a wrapped secret lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapKind {
    DataKey,
    Secret,
}

/// A signed point of the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAuditHead {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: Millis,
    pub signature: Vec<u8>,
}

/// The key store's database: its own type, so none of the data
/// database's traits (orders, customers…) reach it.
#[derive(Clone)]
pub struct KeyStore {
    db: Database<Keys>,
}

fn version_of(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(row.try_get::<i64, _>(column)?).map_err(|_| StoreError::corrupt(column))
}

fn record_from_row(row: &AnyRow) -> Result<MasterKeyRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(MasterKeyRecord {
        version: version_of(row, "version")?,
        state: MasterKeyState::parse(&state)?,
        added_at: Millis(row.try_get("added_at")?),
        activated_at: row.try_get::<Option<i64>, _>("activated_at")?.map(Millis),
        retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(Millis),
        destroy_after: row.try_get::<Option<i64>, _>("destroy_after")?.map(Millis),
    })
}

fn wrapped_from_row(row: &AnyRow) -> Result<WrappedSecret, StoreError> {
    Ok(WrappedSecret {
        id: row.try_get("id")?,
        kek_version: version_of(row, "kek_version")?,
        wrapped: row.try_get("wrapped")?,
    })
}

impl KeyStore {
    /// Opens (and migrates) the key store at `url`.
    pub async fn open(url: &str, options: &DbOptions) -> Result<KeyStore, StoreError> {
        Ok(KeyStore { db: Database::open_key_store(url, options).await? })
    }

    /// SQLite: moves the WAL into the file and truncates it, so a shredded
    /// key no longer sits in the `-wal` file (see [`crate::Db::checkpoint`]).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.db.checkpoint().await
    }

    pub async fn ping(&self) -> bool {
        self.db.ping().await
    }

    // ---- master key versions ----

    pub async fn master_keys(&self) -> Result<Vec<MasterKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, state, added_at, activated_at, retired_at, destroy_after FROM master_keys ORDER BY version",
        )
        .fetch_all(self.db.readers())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Records a new version; the first one ever is active at once.
    pub async fn add_master_key(&self, version: u32, at: Millis) -> Result<MasterKeyState, StoreError> {
        self.db
            .write(unit!(|tx| {
                let any: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM master_keys").fetch_one(tx.conn()).await?;
                let state = if any == 0 { MasterKeyState::Active } else { MasterKeyState::Standby };
                sqlx::query("INSERT INTO master_keys (version, state, added_at, activated_at) VALUES ($1, $2, $3, $4)")
                    .bind(i64::from(version))
                    .bind(state.as_str())
                    .bind(at.0)
                    .bind((state == MasterKeyState::Active).then_some(at.0))
                    .execute(tx.conn())
                    .await?;
                Ok(state)
            }))
            .await
    }

    /// Makes `version` the one new wraps use; the previous one goes to
    /// standby (still able to unwrap until everything is re-wrapped).
    pub async fn activate_master_key(&self, version: u32, at: Millis) -> Result<bool, StoreError> {
        self.db
            .write(unit!(|tx| {
                let target = sqlx::query("SELECT state FROM master_keys WHERE version = $1")
                    .bind(i64::from(version))
                    .fetch_optional(tx.conn())
                    .await?;
                let Some(target) = target else { return Ok(false) };
                let state = MasterKeyState::parse(&target.try_get::<String, _>("state")?)?;
                if !matches!(state, MasterKeyState::Standby | MasterKeyState::Active) {
                    return Ok(false);
                }
                sqlx::query("UPDATE master_keys SET state = 'added' WHERE state = 'active' AND version <> $1")
                    .bind(i64::from(version))
                    .execute(tx.conn())
                    .await?;
                sqlx::query(
                    "UPDATE master_keys SET state = 'active', activated_at = COALESCE(activated_at, $2) \
                     WHERE version = $1",
                )
                .bind(i64::from(version))
                .bind(at.0)
                .execute(tx.conn())
                .await?;
                Ok(true)
            }))
            .await
    }

    /// Retires a standby version; the caller has checked that no wrap uses it.
    pub async fn retire_master_key(&self, version: u32, at: Millis, destroy_after: Millis) -> Result<bool, StoreError> {
        self.db
            .write(unit!(|tx| {
                let in_use: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM data_keys WHERE kek_version = $1) + \
                     (SELECT COUNT(*) FROM sealed_secrets WHERE kek_version = $1)",
                )
                .bind(i64::from(version))
                .fetch_one(tx.conn())
                .await?;
                if in_use > 0 {
                    return Ok(false);
                }
                let done = sqlx::query(
                    "UPDATE master_keys SET state = 'retired', retired_at = $2, destroy_after = $3 \
                     WHERE version = $1 AND state = 'added'",
                )
                .bind(i64::from(version))
                .bind(at.0)
                .bind(destroy_after.0)
                .execute(tx.conn())
                .await?;
                Ok(done.rows_affected() == 1)
            }))
            .await
    }

    pub async fn mark_master_key_destroyed(&self, version: u32) -> Result<(), StoreError> {
        self.db
            .write(unit!(|tx| {
                sqlx::query("UPDATE master_keys SET state = 'destroyed' WHERE version = $1 AND state = 'retired'")
                    .bind(i64::from(version))
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }))
            .await
    }

    /// How many wraps (data keys and other secrets) use `version`.
    pub async fn wraps_under(&self, version: u32) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM data_keys WHERE kek_version = $1) + \
             (SELECT COUNT(*) FROM sealed_secrets WHERE kek_version = $1)",
        )
        .bind(i64::from(version))
        .fetch_one(self.db.readers())
        .await?)
    }

    // ---- wrapped secrets ----

    pub async fn put_data_key(&self, key: WrappedSecret, at: Millis) -> Result<(), StoreError> {
        self.db
            .write(unit!(|tx| {
                sqlx::query("INSERT INTO data_keys (id, kek_version, wrapped, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(key.id)
                    .bind(i64::from(key.kek_version))
                    .bind(key.wrapped)
                    .bind(at.0)
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }))
            .await
    }

    /// Stores spare data keys, all in one transaction (one commit for the
    /// batch): none is handed out before this returns, and none after
    /// `spare_until` (see [`Self::expired_spare_keys`]).
    pub async fn put_spare_data_keys(
        &self,
        keys: Vec<WrappedSecret>,
        at: Millis,
        spare_until: Millis,
    ) -> Result<(), StoreError> {
        self.db
            .write(unit!(|tx| {
                for key in keys {
                    sqlx::query(
                        "INSERT INTO data_keys (id, kek_version, wrapped, created_at, spare_until) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(key.id)
                    .bind(i64::from(key.kek_version))
                    .bind(key.wrapped)
                    .bind(at.0)
                    .bind(spare_until.0)
                    .execute(tx.conn())
                    .await?;
                }
                Ok(())
            }))
            .await
    }

    /// Up to `limit` spare keys whose time to be handed out ended before
    /// `before`: each is either used by a customer row by now, or never will be.
    pub async fn expired_spare_keys(&self, before: Millis, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM data_keys WHERE spare_until IS NOT NULL AND spare_until < $1 ORDER BY spare_until LIMIT $2",
        )
        .bind(before.0)
        .bind(limit)
        .fetch_all(self.db.readers())
        .await?)
    }

    /// Settles expired spare keys in one transaction: those a customer row
    /// uses become ordinary keys, the rest are deleted (never used, so
    /// nothing is sealed under them). Returns how many were deleted.
    pub async fn settle_spare_keys(&self, used: Vec<String>, unused: Vec<String>) -> Result<u64, StoreError> {
        self.db
            .write(unit!(|tx| {
                for id in used {
                    sqlx::query("UPDATE data_keys SET spare_until = NULL WHERE id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                }
                let mut deleted = 0;
                for id in unused {
                    let done = sqlx::query("DELETE FROM data_keys WHERE id = $1 AND spare_until IS NOT NULL")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    deleted += done.rows_affected();
                }
                Ok(deleted)
            }))
            .await
    }

    /// Destroys a data key that belongs to no customer (a one-off key).
    pub async fn delete_data_key(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.db
            .write(unit!(|tx| {
                sqlx::query("DELETE FROM data_keys WHERE id = $1").bind(id).execute(tx.conn()).await?;
                Ok(())
            }))
            .await
    }

    pub async fn data_key(&self, id: &str) -> Result<Option<WrappedSecret>, StoreError> {
        const SQL: &str = "SELECT id, kek_version, wrapped FROM data_keys WHERE id = $1";
        if let Some(direct) = self.db.direct_readers() {
            let row = direct
                .read_row(SQL, vec![crate::batch::Val::Text(id.to_owned())], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
                })
                .await?;
            return row
                .map(|(id, kek_version, wrapped)| {
                    let kek_version = u32::try_from(kek_version).map_err(|_| StoreError::corrupt("kek_version"))?;
                    Ok(WrappedSecret { id, kek_version, wrapped })
                })
                .transpose();
        }
        let row = sqlx::query(SQL).bind(id.to_owned()).fetch_optional(self.db.readers()).await?;
        row.as_ref().map(wrapped_from_row).transpose()
    }

    /// Inserts a named secret unless one exists; returns the stored one.
    pub async fn put_secret_once(&self, secret: WrappedSecret, at: Millis) -> Result<WrappedSecret, StoreError> {
        let name = secret.id.clone();
        self.db
            .write(unit!(|tx| {
                sqlx::query(
                    "INSERT INTO sealed_secrets (name, kek_version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(secret.id)
                .bind(i64::from(secret.kek_version))
                .bind(secret.wrapped)
                .bind(at.0)
                .execute(tx.conn())
                .await?;
                Ok(())
            }))
            .await?;
        self.secret(&name).await?.ok_or_else(|| StoreError::corrupt("sealed_secrets"))
    }

    pub async fn secret(&self, name: &str) -> Result<Option<WrappedSecret>, StoreError> {
        let row = sqlx::query("SELECT name AS id, kek_version, wrapped FROM sealed_secrets WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(self.db.readers())
            .await?;
        row.as_ref().map(wrapped_from_row).transpose()
    }

    /// Up to `limit` wraps not under `active`, with ids after `after`, in id
    /// order: one re-wrap pass walks the primary key once (no index on the
    /// version, so re-wrapped rows can be updated in place).
    pub async fn wraps_to_rewrap(
        &self,
        kind: WrapKind,
        active: u32,
        after: &str,
        limit: i64,
    ) -> Result<Vec<WrappedSecret>, StoreError> {
        // One packed row per batch: through sqlx every row and parameter has
        // a cost, and re-wrapping runs beside live traffic.
        let sql = match (self.db.backend(), kind) {
            (Backend::Sqlite, WrapKind::DataKey) => {
                "SELECT json_group_array(json_array(id, kek_version, hex(wrapped))) FROM \
                 (SELECT id, kek_version, wrapped FROM data_keys WHERE id > $3 AND kek_version <> $1 ORDER BY id LIMIT $2)"
            }
            (Backend::Sqlite, WrapKind::Secret) => {
                "SELECT json_group_array(json_array(name, kek_version, hex(wrapped))) FROM \
                 (SELECT name, kek_version, wrapped FROM sealed_secrets WHERE name > $3 AND kek_version <> $1 \
                 ORDER BY name LIMIT $2)"
            }
            (Backend::Postgres, WrapKind::DataKey) => {
                return self.data_keys_to_rewrap_postgres(active, after, limit).await;
            }
            (Backend::Postgres, WrapKind::Secret) => {
                "SELECT COALESCE(json_agg(json_build_array(name, kek_version, encode(wrapped, 'hex'))), '[]')::text \
                 FROM (SELECT name, kek_version, wrapped FROM sealed_secrets WHERE name > $3 AND kek_version <> $1 \
                 ORDER BY name LIMIT $2) AS w"
            }
        };
        let packed: Option<String> = sqlx::query_scalar(sql)
            .bind(i64::from(active))
            .bind(limit)
            .bind(after.to_owned())
            .fetch_one(self.db.readers())
            .await?;
        let rows: Vec<(String, i64, String)> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
            .map_err(|_| StoreError::corrupt("key store (packed wraps)"))?;
        rows.into_iter()
            .map(|(id, kek_version, wrapped)| {
                Ok(WrappedSecret {
                    id,
                    kek_version: u32::try_from(kek_version).map_err(|_| StoreError::corrupt("kek_version"))?,
                    wrapped: hex::decode(wrapped).map_err(|_| StoreError::corrupt("wrapped"))?,
                })
            })
            .collect()
    }

    /// PostgreSQL's data keys to re-wrap, as one string of `id:version:hex`
    /// entries joined by commas: cheaper for the server to build and to
    /// read than rows or JSON (data key ids hold neither separator), and
    /// re-wrapping shares the server with live traffic.
    async fn data_keys_to_rewrap_postgres(
        &self,
        active: u32,
        after: &str,
        limit: i64,
    ) -> Result<Vec<WrappedSecret>, StoreError> {
        let joined: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {JOINED_DATA_KEYS} FROM ({NEXT_DATA_KEYS}) AS w")))
                .bind(i64::from(active))
                .bind(after.to_owned())
                .bind(limit)
                .fetch_one(self.db.readers())
                .await?;
        split_joined_wraps(joined.as_deref())
    }

    /// Replaces one batch of re-wrapped wraps (as [`KeyStore::replace_wraps`])
    /// and fetches the next batch to re-wrap: up to `limit` wraps not under
    /// `active` with ids after `after` (the highest id of the batch read,
    /// whether or not each of its wraps could be re-wrapped). Returns how
    /// many changed and the next batch. On PostgreSQL both happen in one
    /// statement, one round trip and one commit per batch, so each stint of
    /// the server's work stays short beside live traffic.
    pub async fn replace_wraps_and_fetch_next(
        &self,
        kind: WrapKind,
        replacements: Vec<(WrappedSecret, WrappedSecret)>,
        after: &str,
        active: u32,
        limit: i64,
    ) -> Result<(u64, Vec<WrappedSecret>), StoreError> {
        if (self.db.backend(), kind) != (Backend::Postgres, WrapKind::DataKey) {
            let changed = self.replace_wraps(kind, replacements).await?;
            return Ok((changed, self.wraps_to_rewrap(kind, active, after, limit).await?));
        }
        self.replace_data_keys_postgres(replacements, active, after, limit).await
    }

    /// PostgreSQL's side of [`KeyStore::replace_wraps_and_fetch_next`] for
    /// data keys: the batch travels as one string of `id:old version:new
    /// wrap in hex` entries, which PostgreSQL splits faster than it parses
    /// JSON.
    async fn replace_data_keys_postgres(
        &self,
        replacements: Vec<(WrappedSecret, WrappedSecret)>,
        active: u32,
        after: &str,
        limit: i64,
    ) -> Result<(u64, Vec<WrappedSecret>), StoreError> {
        let mut joined = String::with_capacity(replacements.len() * 180);
        for (i, (old, new)) in replacements.iter().enumerate() {
            if old.id.contains([',', ':']) {
                return Err(StoreError::corrupt("data_keys.id"));
            }
            if new.kek_version != active {
                return Err(StoreError::Config("a re-wrap batch mixes master key versions".into()));
            }
            if i > 0 {
                joined.push(',');
            }
            joined.push_str(&old.id);
            joined.push(':');
            joined.push_str(&old.kek_version.to_string());
            joined.push(':');
            joined.push_str(&hex::encode(&new.wrapped));
        }
        // One statement is atomic without BEGIN and COMMIT (on PostgreSQL
        // one pool serves reads and writes); the next batch is read from
        // the statement's snapshot, all of it after `after`.
        let (changed, next): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH replaced AS (UPDATE data_keys AS d SET kek_version = $1, \
             wrapped = decode(split_part(u.e, ':', 3), 'hex') FROM unnest(string_to_array($4, ',')) AS u(e) \
             WHERE d.id = split_part(u.e, ':', 1) AND d.kek_version = split_part(u.e, ':', 2)::bigint RETURNING 1) \
             SELECT (SELECT count(*) FROM replaced), (SELECT {JOINED_DATA_KEYS} FROM ({NEXT_DATA_KEYS}) AS w)"
        )))
        .bind(i64::from(active))
        .bind(after.to_owned())
        .bind(limit)
        .bind(joined)
        .fetch_one(self.db.readers())
        .await?;
        let changed = u64::try_from(changed).map_err(|_| StoreError::corrupt("re-wrap count"))?;
        Ok((changed, split_joined_wraps(next.as_deref())?))
    }

    /// Replaces wraps, each only if it is still under the version it was
    /// read with (wraps change only by a re-wrap, so a concurrent re-wrap or
    /// an erasure wins). Returns how many changed. The batch travels as one
    /// JSON parameter (ids, old versions, hex-encoded new wraps).
    pub async fn replace_wraps(
        &self,
        kind: WrapKind,
        replacements: Vec<(WrappedSecret, WrappedSecret)>,
    ) -> Result<u64, StoreError> {
        let Some(version) = replacements.first().map(|(_, new)| new.kek_version) else { return Ok(0) };
        let sql = match (self.db.backend(), kind) {
            (Backend::Sqlite, WrapKind::DataKey) => {
                "UPDATE data_keys SET kek_version = $1, wrapped = unhex(json_extract(v.value, '$.new')) \
                 FROM json_each($2) AS v WHERE data_keys.id = json_extract(v.value, '$.id') \
                 AND data_keys.kek_version = json_extract(v.value, '$.old')"
            }
            (Backend::Sqlite, WrapKind::Secret) => {
                "UPDATE sealed_secrets SET kek_version = $1, wrapped = unhex(json_extract(v.value, '$.new')) \
                 FROM json_each($2) AS v WHERE sealed_secrets.name = json_extract(v.value, '$.id') \
                 AND sealed_secrets.kek_version = json_extract(v.value, '$.old')"
            }
            (Backend::Postgres, WrapKind::DataKey) => {
                return Ok(self.replace_data_keys_postgres(replacements, version, "", 0).await?.0);
            }
            (Backend::Postgres, WrapKind::Secret) => {
                "UPDATE sealed_secrets AS d SET kek_version = $1, wrapped = decode(v.new, 'hex') \
                 FROM json_to_recordset($2::json) AS v(id text, old bigint, new text) \
                 WHERE d.name = v.id AND d.kek_version = v.old"
            }
        };
        let batch: Vec<serde_json::Value> = replacements
            .iter()
            .map(|(old, new)| serde_json::json!({"id": old.id, "old": old.kek_version, "new": hex::encode(&new.wrapped)}))
            .collect();
        let batch = serde_json::Value::Array(batch).to_string();
        self.db
            .write(unit!(|tx| {
                let done = sqlx::query(sql).bind(i64::from(version)).bind(batch).execute(tx.conn()).await?;
                Ok(done.rows_affected())
            }))
            .await
    }

    // ---- erasure ----

    /// Destroys a data key and records the erasure in the ledger, in one
    /// transaction. Idempotent.
    pub async fn shred(&self, erasure: Erasure) -> Result<(), StoreError> {
        self.db
            .write(unit!(|tx| {
                sqlx::query("DELETE FROM data_keys WHERE id = $1")
                    .bind(erasure.data_key_id.as_str())
                    .execute(tx.conn())
                    .await?;
                record_in_ledger(tx.conn(), &erasure).await
            }))
            .await
    }

    pub async fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(
            "SELECT customer_id, data_key_id, erased_at FROM erasure_ledger ORDER BY erased_at, customer_id",
        )
        .fetch_all(self.db.readers())
        .await?;
        rows.iter().map(erasure_from_row).collect()
    }

    // ---- audit heads ----

    pub async fn put_audit_head(&self, head: SignedAuditHead) -> Result<(), StoreError> {
        self.db
            .write(unit!(|tx| {
                sqlx::query(
                    "INSERT INTO audit_heads (seq, hash, signed_at, signature) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (signed_at, seq) DO NOTHING",
                )
                .bind(head.seq)
                .bind(head.hash)
                .bind(head.signed_at.0)
                .bind(head.signature)
                .execute(tx.conn())
                .await?;
                Ok(())
            }))
            .await
    }

    pub async fn latest_audit_head(&self) -> Result<Option<SignedAuditHead>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash, signed_at, signature FROM audit_heads ORDER BY signed_at DESC, seq DESC LIMIT 1",
        )
        .fetch_optional(self.db.readers())
        .await?;
        row.map(|row| {
            Ok(SignedAuditHead {
                seq: row.try_get("seq")?,
                hash: row.try_get("hash")?,
                signed_at: Millis(row.try_get("signed_at")?),
                signature: row.try_get("signature")?,
            })
        })
        .transpose()
    }
}
