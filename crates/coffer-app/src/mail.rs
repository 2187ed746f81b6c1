//! Outgoing email through the outbox. A service seals a message with a data
//! key ([`Outbox::seal`]) before its unit of work and enqueues it inside
//! (`OutboxWriter::enqueue_email`, which also enqueues its delivery job), so
//! the message exists exactly when the change it reports does.
//! [`Outbox::deliver_due`] (the `mail` loop of the server's supervisor) runs
//! the due email jobs: it sends their messages with retries and backoff.

use crate::AppError;
use crate::config::{MailConfig, MailTransport};
use crate::privacy::Vault;
use coffer_crypto::{DataKey, FieldContext, Sealed, open_field, seal_field};
use coffer_domain::{Clock, DataKeyId, Millis};
use coffer_store::{ClaimedEmail, Db, Delivery, NewEmail};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::sync::Arc;

const TABLE: &str = "outbox_emails";
/// How long a claimed message is reserved for the worker that claimed it.
const LEASE_MS: i64 = 60_000;
/// How long one delivery may take (the SMTP exchange, the file's fsync).
const SEND_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
/// A claim's deliveries all end within this, well inside the lease, so no
/// other worker takes a message over while it is being sent.
const CLAIM_WITHIN: std::time::Duration = std::time::Duration::from_secs(40);
/// Messages claimed at once.
const CLAIM_BATCH: i64 = 20;
/// How long a send under way may go on once the server is stopping.
const SEND_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(3);
/// Recipients served at once: enough to hide an SMTP round trip, few enough
/// not to crowd the disk the database commits to (each mail file is synced).
const SENDING_AT_ONCE: usize = 4;
/// Attempts before a message is given up.
pub const MAX_ATTEMPTS: i64 = 10;

/// Delay before attempt `attempts + 1`: 5 s doubling, at most an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    (5_000i64.saturating_mul(1i64 << doublings)).min(3_600_000)
}

/// A message before sealing. `kind` names what it is about (no personal data).
#[derive(Clone, Copy, Debug)]
pub struct Letter<'a> {
    pub kind: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

enum Transport {
    Files(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

#[derive(Clone)]
pub struct Outbox {
    db: Db,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    transport: Arc<Transport>,
    from: Mailbox,
    /// See [`Outbox::sweep_mail_folder`].
    orphans_checked_through: Arc<std::sync::atomic::AtomicI64>,
}

pub(crate) fn ctx<'a>(id: &'a str, column: &'a str, key: &'a DataKeyId) -> FieldContext<'a> {
    FieldContext { table: TABLE, column, row_id: id, data_key_id: key.as_str() }
}

impl Outbox {
    /// `data_dir` holds the `mail` folder of the file transport.
    pub fn new(
        config: &MailConfig,
        data_dir: &std::path::Path,
        db: Db,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
    ) -> Result<Outbox, AppError> {
        let from = config.from.parse::<Mailbox>().map_err(|_| AppError::Config("mail.from is not an address"))?;
        let transport = match (config.transport, &config.smtp_url) {
            (MailTransport::Smtp, Some(url)) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    // The URL may hold a password: never repeat it.
                    .map_err(|_| AppError::Config("mail.smtp_url is not a valid smtp:// or smtps:// URL"))?
                    .timeout(Some(SEND_WITHIN))
                    .build(),
            ),
            (MailTransport::Smtp, None) => return Err(AppError::Config("mail.smtp_url is required")),
            (MailTransport::File, _) => Transport::Files(data_dir.join("mail")),
        };
        Ok(Outbox {
            db,
            vault,
            clock,
            transport: Arc::new(transport),
            from,
            orphans_checked_through: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
        })
    }

    /// The folder of the file transport; `None` with SMTP.
    pub fn mail_folder(&self) -> Option<PathBuf> {
        match self.transport.as_ref() {
            Transport::Files(dir) => Some(dir.clone()),
            Transport::Smtp(_) => None,
        }
    }

    /// Retention of the file transport's folder: a file goes with its
    /// message (90 days), or as soon as its data key is destroyed (an
    /// erasure another process made, a message delivered while the erasure
    /// ran); the last message under a one-off key stays 10 minutes for the
    /// person trying Coffer out to read. Returns how many files went.
    ///
    /// An erasure deletes the files it finds itself (`forget_mail_files`),
    /// so after this process's first sweep, which looks up the key of every
    /// file, a sweep looks up only the keys of files written since the last
    /// one (and of last messages whose 10 minutes ended since): with a
    /// million files in the folder, every key each minute was a million
    /// key store reads, and the list of files held a hundred MiB.
    pub async fn sweep_mail_folder(&self, now: Millis) -> Result<u64, AppError> {
        let Some(dir) = self.mail_folder() else { return Ok(0) };
        let checked_through = self.orphans_checked_through.load(std::sync::atomic::Ordering::Relaxed);
        let window = OrphanWindow { now, checked_through };
        let (expired, to_check) = tokio::task::spawn_blocking(move || sweep_expired(&dir, &window))
            .await
            .map_err(|_| AppError::Internal("the mail folder sweep stopped"))?
            .map_err(|e| AppError::Files(format!("sweeping the mail folder: {}", e.kind())))?;
        let mut deleted = expired;
        // A customer has many files: each key is looked up once per sweep.
        let mut gone: std::collections::HashMap<DataKeyId, bool> = std::collections::HashMap::new();
        for (path, key) in to_check {
            let orphan = match gone.get(&key) {
                Some(known) => *known,
                None => {
                    let missing = self.vault.key_store().data_key(key.as_str()).await?.is_none();
                    gone.insert(key, missing);
                    missing
                }
            };
            if orphan {
                remove(&path).map_err(|e| AppError::Files(format!("deleting a mail file: {}", e.kind())))?;
                deleted += 1;
            }
        }
        // A file is named when its delivery starts and written at most
        // SEND_WITHIN later: the next sweep looks back that far and more.
        let margin = i64::try_from(ORPHAN_LOOK_BACK.as_millis()).unwrap_or(i64::MAX);
        self.orphans_checked_through.store(now.0.saturating_sub(margin), std::sync::atomic::Ordering::Relaxed);
        Ok(deleted)
    }

    /// Seals a message under `key` (whose id is `key_id`), for enqueueing
    /// inside the caller's unit of work.
    pub fn seal(
        &self,
        letter: &Letter<'_>,
        key: &DataKey,
        key_id: &DataKeyId,
        one_off_key: bool,
    ) -> Result<NewEmail, AppError> {
        let Letter { kind, to, subject, body } = *letter;
        let id = coffer_domain::EmailId::generate().to_string();
        let seal = |column: &str, text: &str| -> Result<Sealed, AppError> {
            Ok(seal_field(key, &ctx(&id, column, key_id), text.as_bytes())?)
        };
        Ok(NewEmail {
            recipient: seal("recipient", to)?,
            subject: seal("subject", subject)?,
            body: seal("body", body)?,
            attachment: None,
            id: id.clone(),
            kind: kind.to_owned(),
            data_key_id: key_id.clone(),
            one_off_key,
            at: self.clock.now(),
        })
    }

    /// As [`Outbox::seal`], with one file attached: (its name, its bytes),
    /// sealed like the body.
    pub fn seal_with_attachment(
        &self,
        letter: &Letter<'_>,
        key: &DataKey,
        key_id: &DataKeyId,
        (name, file): &(String, Vec<u8>),
    ) -> Result<NewEmail, AppError> {
        let mut email = self.seal(letter, key, key_id, false)?;
        let sealed = seal_field(key, &ctx(&email.id, "attachment", key_id), file)?;
        email.attachment = Some((name.clone(), sealed));
        Ok(email)
    }

    /// Sends every due message once; returns how many were sent.
    pub async fn deliver_due(&self) -> Result<usize, AppError> {
        self.deliver_due_until(&crate::supervisor::CancellationToken::new()).await
    }

    /// As [`Outbox::deliver_due`], ending after the claim under way (its
    /// messages sent and recorded) once `stop` fires. The messages of a
    /// claim go [`SENDING_AT_ONCE`] recipients at a time, one recipient's
    /// (one data key's) in order; each within [`SEND_WITHIN`], all within
    /// [`CLAIM_WITHIN`] (what is left then waits for the next claim).
    pub async fn deliver_due_until(&self, stop: &crate::supervisor::CancellationToken) -> Result<usize, AppError> {
        use futures::StreamExt;
        let mut sent = 0;
        loop {
            if stop.is_cancelled() {
                return Ok(sent);
            }
            let claimed = self.db.claim_emails(self.clock.now(), LEASE_MS, CLAIM_BATCH).await?;
            if claimed.is_empty() {
                return Ok(sent);
            }
            // A claim short of the batch took everything due: messages that
            // come meanwhile wait for the next run (a second at most)
            // instead of a claim and a record each, two commits that
            // checkouts would queue behind.
            let backlog = i64::try_from(claimed.len()).is_ok_and(|n| n >= CLAIM_BATCH);
            let until = tokio::time::Instant::now() + CLAIM_WITHIN;
            let runs = by_recipient(claimed).into_iter().map(|messages| async move {
                let mut outcomes = Vec::with_capacity(messages.len());
                for email in messages {
                    outcomes.push((email.claim(), self.deliver_within(&email, until, stop).await));
                }
                outcomes
            });
            let outcomes: Vec<_> = futures::stream::iter(runs)
                .buffer_unordered(SENDING_AT_ONCE)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .flatten()
                .collect();
            sent += outcomes.iter().filter(|(_, outcome)| *outcome == Delivery::Sent).count();
            // Recorded together once this claim's messages are out; one
            // not recorded (a crash) is sent again when its lease ends.
            self.db.record_deliveries(outcomes, self.clock.now()).await?;
            if !backlog {
                return Ok(sent);
            }
        }
    }

    /// Delivers one message by `until` (unless `stop` fired), then forgets its one-off key. A
    /// message whose one-off key outlives it is not recorded as sent: it
    /// goes again, and the deletion is retried.
    async fn deliver_within(
        &self,
        email: &ClaimedEmail,
        until: tokio::time::Instant,
        stop: &crate::supervisor::CancellationToken,
    ) -> Delivery {
        let now = tokio::time::Instant::now();
        if now >= until || stop.is_cancelled() {
            // Not tried (the claim's time is up, or the server is stopping):
            // due again at once, for this server or another.
            return Delivery::Untried;
        }
        // A stop cuts a slow send short, so the claim's outcomes are recorded
        // before the shutdown's grace ends (a message cut short may go twice).
        let stopping = async {
            stop.cancelled().await;
            tokio::time::sleep(SEND_AFTER_STOP).await;
        };
        let outcome = tokio::select! {
            sent = tokio::time::timeout_at(until.min(now + SEND_WITHIN), self.deliver(email)) => match sent {
                Ok(outcome) => outcome,
                Err(_) => self.retry(email, "timed_out"),
            },
            () = stopping => self.retry(email, "stopped"),
        };
        if outcome == Delivery::Sent
            && email.one_off_key
            && self.vault.key_store().delete_data_key(email.data_key_id.as_str()).await.is_err()
        {
            return self.retry(email, "one_off_key_kept");
        }
        if let Delivery::Failed { error } | Delivery::Retry { error, .. } = &outcome {
            tracing::warn!(email = %email.id, kind = %email.kind, attempts = email.attempts, error = %error, "email not delivered");
        }
        outcome
    }

    async fn deliver(&self, email: &ClaimedEmail) -> Delivery {
        let key = match self.vault.data_key(&email.data_key_id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Delivery::Shredded,
            Err(_) => return self.retry(email, "key_unavailable"),
        };
        let open = |column: &str, sealed: &Option<Sealed>| -> Option<String> {
            let sealed = sealed.as_ref()?;
            let plain = open_field(&key, &ctx(&email.id, column, &email.data_key_id), sealed).ok()?;
            String::from_utf8(plain.to_vec()).ok()
        };
        let (Some(to), Some(subject), Some(body)) =
            (open("recipient", &email.recipient), open("subject", &email.subject), open("body", &email.body))
        else {
            return Delivery::Failed { error: "does_not_open".into() };
        };
        let Ok(to) = to.parse::<Mailbox>() else { return Delivery::Failed { error: "bad_recipient".into() } };
        let text = lettre::message::MultiPart::alternative_plain_html(body.clone(), html_of(&body));
        let parts = match &email.attachment {
            None => text,
            Some((name, sealed)) => {
                let Ok(file) = open_field(&key, &ctx(&email.id, "attachment", &email.data_key_id), sealed) else {
                    return Delivery::Failed { error: "does_not_open".into() };
                };
                let pdf = lettre::message::header::ContentType::parse("application/pdf")
                    .unwrap_or(lettre::message::header::ContentType::TEXT_PLAIN);
                lettre::message::MultiPart::mixed()
                    .multipart(text)
                    .singlepart(lettre::message::Attachment::new(name.clone()).body(file.to_vec(), pdf))
            }
        };
        let message = match Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@coffer>", email.id)))
            .multipart(parts)
        {
            Ok(message) => message,
            Err(_) => return Delivery::Failed { error: "bad_message".into() },
        };
        match self.transport.as_ref() {
            Transport::Files(dir) => {
                // Off the async workers: the write ends with an fsync.
                let name = eml_name(&email.data_key_id, self.clock.now(), &email.id, email.one_off_key);
                let (dir, bytes) = (dir.clone(), message.formatted());
                match tokio::task::spawn_blocking(move || write_eml(&dir, &name, &bytes)).await {
                    Ok(Ok(())) => Delivery::Sent,
                    _ => self.retry(email, "file_write_failed"),
                }
            }
            // SMTP replies can quote the address; only their class is kept.
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Delivery::Sent,
                Err(e) if e.is_permanent() => Delivery::Failed { error: "smtp_permanent".into() },
                Err(e) if e.is_transient() => self.retry(email, "smtp_transient"),
                Err(_) => self.retry(email, "smtp_unreachable"),
            },
        }
    }

    fn retry(&self, email: &ClaimedEmail, error: &str) -> Delivery {
        if email.attempts >= MAX_ATTEMPTS {
            return Delivery::Failed { error: error.to_owned() };
        }
        Delivery::Retry {
            at: Millis(self.clock.now().0.saturating_add(backoff_ms(email.attempts))),
            error: error.to_owned(),
        }
    }
}

/// Claimed messages grouped by their data key (one recipient's messages,
/// in the order they were claimed).
fn by_recipient(claimed: Vec<ClaimedEmail>) -> Vec<Vec<ClaimedEmail>> {
    let mut groups: Vec<Vec<ClaimedEmail>> = Vec::new();
    let mut at: std::collections::HashMap<DataKeyId, usize> = std::collections::HashMap::new();
    for email in claimed {
        match at.get(&email.data_key_id) {
            Some(&group) => groups[group].push(email),
            None => {
                at.insert(email.data_key_id.clone(), groups.len());
                groups.push(vec![email]);
            }
        }
    }
    groups
}

/// The HTML part of a message, made from its text: paragraphs, line
/// breaks and links, in a plain shop layout. One text is stored; both
/// parts say the same.
fn html_of(text: &str) -> String {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let lines: Vec<String> = p
                .lines()
                .map(|line| {
                    let line = line.trim_end();
                    if (line.starts_with("https://") || line.starts_with("http://")) && !line.contains(' ') {
                        format!("<a href=\"{0}\" style=\"color:#0b5cad\">{0}</a>", escape(line))
                    } else if line.len() >= 32 && !line.contains(char::is_whitespace) {
                        // A long token on its own line (a license key) is
                        // meant to be copied: monospace, selected whole.
                        format!(
                            "<code style=\"display:block;font-family:ui-monospace,Menlo,Consolas,monospace;\
                             font-size:.9em;background:#f1f3f5;padding:.5em;border-radius:4px;\
                             word-break:break-all;user-select:all\">{}</code>",
                            escape(line)
                        )
                    } else {
                        escape(line)
                    }
                })
                .collect();
            format!("<p style=\"margin:0 0 1em\">{}</p>", lines.join("<br>"))
        })
        .collect();
    format!(
        "<!doctype html><html><body style=\"margin:0;background:#f7f8fa\">\
         <div style=\"max-width:36rem;margin:0 auto;padding:1.5rem;font:16px/1.5 system-ui,sans-serif;color:#1c2024\">\
         <p style=\"font-weight:700;font-size:1.2rem;margin:0 0 1rem\">Coffer</p>\
         <div style=\"background:#fff;border:1px solid #dde1e5;border-radius:8px;padding:1.25rem 1.5rem;word-break:break-word\">{}</div>\
         </div></body></html>",
        paragraphs.join("")
    )
}

/// How long the file of a message under a one-off key (the deletion
/// confirmation) stays in the mail folder once its key is destroyed.
pub const LAST_MESSAGE_FILE_MS: i64 = 10 * 60 * 1000;

/// The file of a message: `<data key id>.<delivered at, ms>.<message id>.eml`
/// (`.last.eml` under a one-off key). Erasure finds a customer's files by
/// their key and retention by their age, without reading them.
fn eml_name(key: &DataKeyId, at: Millis, id: &str, one_off_key: bool) -> String {
    let last = if one_off_key { ".last" } else { "" };
    format!("{key}.{}.{id}{last}.eml", at.0)
}

/// What a mail file's name says: its key, when it was written, whether it
/// is a last message. `None` for files that are not ours.
fn parse_eml_name(name: &str) -> Option<(DataKeyId, Millis, bool)> {
    let stem = name.strip_suffix(".eml")?;
    let (stem, last) = match stem.strip_suffix(".last") {
        Some(stem) => (stem, true),
        None => (stem, false),
    };
    let mut parts = stem.splitn(3, '.');
    let key = DataKeyId::parse(parts.next()?).ok()?;
    let at = Millis(parts.next()?.parse().ok()?);
    parts.next()?;
    Some((key, at, last))
}

/// Writes `<dir>/<name>`, readable by the owner only, atomically.
fn write_eml(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let partial = dir.join(format!("{name}.partial"));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, dir.join(name))
}

/// How far back a sweep looks past the previous one for files whose key
/// may be gone: more than a delivery may take between naming its file
/// and writing it.
const ORPHAN_LOOK_BACK: std::time::Duration = std::time::Duration::from_secs(60);

/// Which files a sweep at `now` looks at the key of.
struct OrphanWindow {
    now: Millis,
    /// Files named before this had their key looked up by an earlier
    /// sweep of this process (`i64::MIN`: none yet).
    checked_through: i64,
}

impl OrphanWindow {
    /// Whether the key of a file named at `at` is looked up now.
    fn includes(&self, at: Millis, last: bool) -> bool {
        if last {
            // Kept 10 minutes whatever its key: looked at once they end.
            let ends = at.0.saturating_add(LAST_MESSAGE_FILE_MS);
            ends <= self.now.0 && ends > self.checked_through
        } else {
            at.0 > self.checked_through
        }
    }
}

/// Walks the mail folder once, deleting files past the messages' keeping
/// period; returns how many went and the files whose key is to be looked
/// up. Nothing else of the folder is held.
fn sweep_expired(dir: &std::path::Path, window: &OrphanWindow) -> std::io::Result<(u64, Vec<(PathBuf, DataKeyId)>)> {
    let keep_until = window.now.0 - crate::retention::message_retention_ms();
    let (mut expired, mut to_check) = (0, Vec::new());
    for file in mail_files(dir)? {
        let (entry, (key, at, last)) = file?;
        if at.0 <= keep_until {
            remove(&entry.path())?;
            expired += 1;
        } else if window.includes(at, last) {
            to_check.push((entry.path(), key));
        }
    }
    Ok((expired, to_check))
}

fn remove(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes every message file sealed under `key` from the mail folder (at
/// erasure); returns how many.
pub fn forget_mail_files(dir: &std::path::Path, key: &DataKeyId) -> std::io::Result<u64> {
    let mut deleted = 0;
    for file in mail_files(dir)? {
        let (entry, (k, _, _)) = file?;
        if &k == key {
            remove(&entry.path())?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A message file and what its name says (see [`parse_eml_name`]).
type MailFile = (std::fs::DirEntry, (DataKeyId, Millis, bool));

/// The message files of the mail folder as it is read; nothing when there
/// is no folder yet.
fn mail_files(dir: &std::path::Path) -> std::io::Result<impl Iterator<Item = std::io::Result<MailFile>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(entries.into_iter().flatten().filter_map(|entry| match entry {
        Ok(entry) => entry.file_name().to_str().and_then(parse_eml_name).map(|named| Ok((entry, named))),
        Err(e) => Some(Err(e)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_license_key_in_the_html_part_is_monospace_and_selected_whole() {
        let key = "eyJvcmRlcl9pZCI6Im9yZF8xIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2Nzg5MA";
        let html = html_of(&format!("Your license key for Notes:\n{key}\n\nTotal: 23.79 EUR\n"));
        let code = html.find("<code").expect("the key in a code element");
        assert!(html[code..].starts_with("<code style=\"display:block;font-family:ui-monospace"), "{html}");
        assert!(html[code..].contains("user-select:all") && html[code..].contains(key), "{html}");
        assert_eq!(html.matches("<code").count(), 1, "only the key: {html}");
    }

    #[test]
    fn the_html_part_says_what_the_text_says_with_links() {
        let html = html_of("Hello <Dana>,\n\nOpen this:\nhttps://shop.example/a?b=1&c=2\n");
        assert!(html.contains("Hello &lt;Dana&gt;,"));
        assert!(html.contains("<a href=\"https://shop.example/a?b=1&amp;c=2\""));
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(3), 20_000);
        assert_eq!(backoff_ms(30), 3_600_000);
        assert_eq!(backoff_ms(0), 5_000);
    }
}
