//! The audit log: entries are appended unsealed inside the unit of work they
//! record; one sealer at a time gives them sequence numbers and links them
//! into the SHA-256 chain (on PostgreSQL it holds the head row `FOR UPDATE`;
//! on SQLite it runs as a unit on the single writer).

use crate::{Backend, Db, StoreError, WriteTx};
use coffer_crypto::audit_link_hash;
use coffer_domain::{AuditEntry, AuditEntryId, Millis};
use sqlx::Row;
use sqlx::any::AnyRow;

pub trait AuditWriter {
    fn append_audit(&mut self, entry: &AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl AuditWriter for WriteTx {
    async fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut statements = crate::batch::Statements::default();
        let (sql, values) = append_statement(entry);
        statements.push(sql, values);
        statements.execute(self).await
    }
}

/// The statement that appends an entry (unsealed: the sealer links it later).
pub(crate) fn append_statement(entry: &AuditEntry) -> (&'static str, Vec<crate::batch::Val>) {
    use crate::batch::Val;
    (
        "INSERT INTO audit_log (id, at, actor, action, subject, request_id) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            Val::Text(entry.id.as_str().to_owned()),
            Val::Int(entry.at.0),
            Val::Text(entry.actor.as_str().to_owned()),
            Val::Text(entry.action.as_str().to_owned()),
            Val::OptText(entry.subject.clone()),
            Val::OptText(entry.request_id.clone()),
        ],
    )
}

/// A sealed entry as read back for verification.
#[derive(Clone, Debug)]
pub struct SealedAuditEntry {
    pub seq: i64,
    pub entry: AuditEntry,
    pub link_hash: Vec<u8>,
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(AuditEntry {
        id: AuditEntryId::parse(&id).map_err(StoreError::corrupt)?,
        at: Millis(row.try_get("at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        request_id: row.try_get("request_id")?,
    })
}

fn sealed_from_row(row: &AnyRow) -> Result<SealedAuditEntry, StoreError> {
    Ok(SealedAuditEntry {
        seq: row.try_get("seq")?,
        entry: entry_from_row(row)?,
        link_hash: row.try_get::<Option<Vec<u8>>, _>("link_hash")?.unwrap_or_default(),
    })
}

const UNSEALED_POSTGRES: &str = "SELECT COALESCE(json_agg(json_build_array(id, at, actor, action, subject, \
     request_id) ORDER BY id), '[]')::text FROM (SELECT id, at, actor, action, subject, request_id FROM audit_log \
     WHERE seq IS NULL ORDER BY id LIMIT $1) AS unsealed";
const UNSEALED_SQLITE: &str = "SELECT json_group_array(json_array(id, at, actor, action, subject, request_id) \
     ORDER BY id) FROM (SELECT id, at, actor, action, subject, request_id FROM audit_log WHERE seq IS NULL \
     ORDER BY id LIMIT $1)";

/// Links the packed unsealed entries to the chain head (seq, hash) in id
/// order: the updates that seal them, and how many.
fn seal_plan(head: (i64, Vec<u8>), packed: Option<String>) -> Result<(crate::batch::Statements, usize), StoreError> {
    use crate::batch::Val;
    let (mut seq, hash) = head;
    let mut hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::corrupt("audit_chain_head.hash"))?;
    type Packed = (String, i64, String, String, Option<String>, Option<String>);
    let rows: Vec<Packed> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
        .map_err(|_| StoreError::corrupt("audit_log (packed unsealed entries)"))?;
    let mut updates = crate::batch::Statements::default();
    let sealed = rows.len();
    for (id, at, actor, action, subject, request_id) in rows {
        let entry = AuditEntry {
            id: AuditEntryId::parse(&id).map_err(StoreError::corrupt)?,
            at: Millis(at),
            actor,
            action,
            subject,
            request_id,
        };
        seq += 1;
        hash = audit_link_hash(&hash, seq, &entry.canonical_bytes());
        updates.push(
            "UPDATE audit_log SET seq = $2, link_hash = $3 WHERE id = $1",
            vec![Val::Text(id), Val::Int(seq), Val::Bytes(hash.to_vec())],
        );
    }
    if sealed > 0 {
        updates.push(
            "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1",
            vec![Val::Int(seq), Val::Bytes(hash.to_vec())],
        );
    }
    Ok((updates, sealed))
}

impl Db {
    /// Seals up to `batch` unsealed entries; returns how many.
    pub async fn seal_audit(&self, batch: i64) -> Result<usize, StoreError> {
        const HEAD: &str = "SELECT seq, hash FROM audit_chain_head WHERE id = 1";
        // One packed row: through sqlx every row is a hand-off.
        if self.backend() == Backend::Sqlite {
            // On the writer's own connection: no hand-off at all, and the
            // updates are prepared once, not parsed again every time.
            return self
                .write_direct(move |conn| {
                    use crate::batch::Val;
                    let head = crate::direct::query_one(conn, HEAD, &[], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    let packed = crate::direct::query_one(conn, UNSEALED_SQLITE, &[Val::Int(batch)], |r| r.get(0))?;
                    let (updates, sealed) = seal_plan(head, packed)?;
                    updates.run_on(conn)?;
                    Ok(sealed)
                })
                .await;
        }
        self.write(move |tx| {
            Box::pin(async move {
                let head = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
                    .fetch_one(tx.conn())
                    .await?;
                let head = (head.try_get("seq")?, head.try_get("hash")?);
                let packed: Option<String> =
                    sqlx::query_scalar(UNSEALED_POSTGRES).bind(batch).fetch_one(tx.conn()).await?;
                let (updates, sealed) = seal_plan(head, packed)?;
                updates.execute(tx).await?;
                Ok::<_, StoreError>(sealed)
            })
        })
        .await
    }

    /// Seals until nothing is left unsealed.
    pub async fn seal_all_audit(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            // Small units, so checkouts queued behind one wait little.
            let sealed = self.seal_audit(200).await?;
            total += sealed;
            if sealed == 0 {
                return Ok(total);
            }
        }
    }

    /// The last sealed link: (seq, hash).
    pub async fn audit_chain_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1").fetch_one(self.readers()).await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    /// The highest sequence number in the log (0 when nothing is sealed).
    pub async fn max_audit_seq(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(self.readers()).await?;
        Ok(max.unwrap_or(0))
    }

    /// Sealed entries with `from <= seq <= to`, in chain order.
    ///
    /// The database packs the page into one JSON array, so a page of ten
    /// thousand entries is one row: through sqlx each row costs a hand-over
    /// between threads, which made verification row-bound on SQLite.
    pub async fn sealed_audit_range(&self, from: i64, to: i64) -> Result<Vec<SealedAuditEntry>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT json_group_array(json_array(seq, id, at, actor, action, subject, request_id, hex(link_hash)) \
                 ORDER BY seq) FROM audit_log WHERE seq >= $1 AND seq <= $2"
            }
            Backend::Postgres => {
                "SELECT COALESCE(json_agg(json_build_array(seq, id, at, actor, action, subject, request_id, \
                 encode(link_hash, 'hex')) ORDER BY seq), '[]')::text FROM audit_log WHERE seq >= $1 AND seq <= $2"
            }
        };
        let packed: Option<String> = sqlx::query_scalar(sql).bind(from).bind(to).fetch_one(self.readers()).await?;
        type Packed = (i64, String, i64, String, String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Packed> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
            .map_err(|_| StoreError::corrupt("audit_log (packed page)"))?;
        rows.into_iter()
            .map(|(seq, id, at, actor, action, subject, request_id, link_hash)| {
                Ok(SealedAuditEntry {
                    seq,
                    entry: AuditEntry {
                        id: AuditEntryId::parse(&id).map_err(StoreError::corrupt)?,
                        at: Millis(at),
                        actor,
                        action,
                        subject,
                        request_id,
                    },
                    link_hash: link_hash
                        .map(|h| hex::decode(h).map_err(|_| StoreError::corrupt("audit_log.link_hash")))
                        .transpose()?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Sealed entries with `seq > after`, in chain order, at most `limit`.
    pub async fn sealed_audit_entries(&self, after: i64, limit: i64) -> Result<Vec<SealedAuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, request_id, seq, link_hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(sealed_from_row).collect()
    }

    /// Entries in the log, sealed or not.
    pub async fn audit_entries_for_subject(&self, subject: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, request_id FROM audit_log WHERE subject = $1 ORDER BY id",
        )
        .bind(subject.to_owned())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
