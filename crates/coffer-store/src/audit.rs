//! The audit log: entries are appended unsealed inside the unit of work they
//! record; one sealer at a time gives them sequence numbers and links them
//! into the SHA-256 chain (on PostgreSQL it holds the head row `FOR UPDATE`;
//! on SQLite it runs as a unit on the single writer).

use crate::{Backend, Db, StoreError, WriteTx, unit};
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

/// An entry from the fields of a packed row (see `SealPlan::new`, `verify`).
fn unpacked_entry(
    id: String,
    at: i64,
    actor: String,
    action: String,
    subject: Option<String>,
    request_id: Option<String>,
) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: AuditEntryId::parse(&id).map_err(StoreError::corrupt)?,
        at: Millis(at),
        actor,
        action,
        subject,
        request_id,
    })
}

/// The links that seal a run of entries: (entry id, seq, link hash) in
/// chain order, the last being the new head.
struct SealPlan {
    links: Vec<(String, i64, [u8; 32])>,
}

impl SealPlan {
    /// Links the packed unsealed entries to the chain head (seq, hash) in
    /// id order.
    fn new(head: (i64, Vec<u8>), packed: Option<String>) -> Result<SealPlan, StoreError> {
        let (mut seq, hash) = head;
        let mut hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::corrupt("audit_chain_head.hash"))?;
        type Packed = (String, i64, String, String, Option<String>, Option<String>);
        let rows: Vec<Packed> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
            .map_err(|_| StoreError::corrupt("audit_log (packed unsealed entries)"))?;
        let mut links = Vec::with_capacity(rows.len());
        for (id, at, actor, action, subject, request_id) in rows {
            let entry = unpacked_entry(id.clone(), at, actor, action, subject, request_id)?;
            seq += 1;
            hash = audit_link_hash(&hash, seq, &entry.canonical_bytes());
            links.push((id, seq, hash));
        }
        Ok(SealPlan { links })
    }

    /// SQLite: one prepared update per entry, then the head.
    fn statements(&self) -> crate::batch::Statements {
        use crate::batch::Val;
        let mut updates = crate::batch::Statements::default();
        for (id, seq, hash) in &self.links {
            updates.push(
                "UPDATE audit_log SET seq = $2, link_hash = $3 WHERE id = $1",
                vec![Val::Text(id.clone()), Val::Int(*seq), Val::Bytes(hash.to_vec())],
            );
        }
        if let Some((_, seq, hash)) = self.links.last() {
            updates.push(
                "UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE id = 1",
                vec![Val::Int(*seq), Val::Bytes(hash.to_vec())],
            );
        }
        updates
    }

    /// PostgreSQL: the whole run as one statement of constant text (so it
    /// is prepared once), the links passed as one JSON parameter.
    async fn run_on_postgres(&self, tx: &mut crate::WriteTx) -> Result<(), StoreError> {
        let Some((_, seq, hash)) = self.links.last() else { return Ok(()) };
        let links: Vec<serde_json::Value> = self
            .links
            .iter()
            .map(|(id, seq, hash)| serde_json::json!({"id": id, "seq": seq, "hash": hex::encode(hash)}))
            .collect();
        sqlx::query(
            "WITH v AS (SELECT * FROM json_to_recordset($1::json) AS v(id text, seq bigint, hash text)), \
             s AS (UPDATE audit_log AS a SET seq = v.seq, link_hash = decode(v.hash, 'hex') FROM v WHERE a.id = v.id) \
             UPDATE audit_chain_head SET seq = $2, hash = $3 WHERE id = 1",
        )
        .bind(serde_json::Value::Array(links).to_string())
        .bind(*seq)
        .bind(hash.to_vec())
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

/// The audit chain on the database: reads, and sealing (units of work of\n/// their own, on SQLite on the writer's direct connection).
pub trait AuditStore: Send + Sync {
    /// Seals up to `batch` unsealed entries; returns how many.
    fn seal_audit(&self, batch: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Seals until nothing is left unsealed.
    fn seal_all_audit(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The last sealed link: (seq, hash).
    fn audit_chain_head(&self) -> impl Future<Output = Result<(i64, Vec<u8>), StoreError>> + Send;

    /// The highest sequence number in the log (0 when nothing is sealed).
    fn max_audit_seq(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Sealed entries with `from <= seq <= to`, in chain order.
    ///
    /// The database packs the page into one JSON array, so a page of ten
    /// thousand entries is one row: through sqlx each row costs a hand-over
    /// between threads, which made verification row-bound on SQLite.
    fn sealed_audit_range(
        &self,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<SealedAuditEntry>, StoreError>> + Send;

    /// Sealed entries with `seq > after`, in chain order, at most `limit`.
    fn sealed_audit_entries(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<SealedAuditEntry>, StoreError>> + Send;

    /// Entries in the log, sealed or not.
    fn audit_entries_for_subject(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

impl AuditStore for Db {
    async fn seal_audit(&self, batch: i64) -> Result<usize, StoreError> {
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
                    let plan = SealPlan::new(head, packed)?;
                    plan.statements().run_on(conn)?;
                    Ok(plan.links.len())
                })
                .await;
        }
        self.write(unit!(|tx| {
            let head = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
                .fetch_one(tx.conn())
                .await?;
            let head = (head.try_get("seq")?, head.try_get("hash")?);
            let packed: Option<String> = sqlx::query_scalar(UNSEALED_POSTGRES).bind(batch).fetch_one(tx.conn()).await?;
            let plan = SealPlan::new(head, packed)?;
            plan.run_on_postgres(tx).await?;
            Ok::<_, StoreError>(plan.links.len())
        }))
        .await
    }

    async fn seal_all_audit(&self) -> Result<usize, StoreError> {
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

    async fn audit_chain_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_chain_head WHERE id = 1").fetch_one(self.readers()).await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    async fn max_audit_seq(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(self.readers()).await?;
        Ok(max.unwrap_or(0))
    }

    async fn sealed_audit_range(&self, from: i64, to: i64) -> Result<Vec<SealedAuditEntry>, StoreError> {
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
                    entry: unpacked_entry(id, at, actor, action, subject, request_id)?,
                    link_hash: link_hash
                        .map(|h| hex::decode(h).map_err(|_| StoreError::corrupt("audit_log.link_hash")))
                        .transpose()?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn sealed_audit_entries(&self, after: i64, limit: i64) -> Result<Vec<SealedAuditEntry>, StoreError> {
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

    async fn audit_entries_for_subject(&self, subject: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, request_id FROM audit_log WHERE subject = $1 ORDER BY id",
        )
        .bind(subject.to_owned())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
