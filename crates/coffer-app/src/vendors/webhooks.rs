//! Webhooks and the ledger, both following the order events.
//!
//! The relay ([`VendorService::relay_events`]) reads each order event once
//! and, in one unit, adds the ledger entries it implies (a sale and its fee
//! per line paid, a refund and the fee given back per line refunded) and a
//! delivery with its job for each endpoint that asked for the event. The
//! sender ([`VendorService::run_webhooks`]) runs those jobs: it builds the
//! body at each attempt from the order as it is then (so an erased buyer is
//! never sent), signs it with the endpoint's secret, and retries with
//! exponential backoff for up to 3 days. Checkout never waits for either.
//!
//! An event reaches an endpoint once in normal operation: the delivery is
//! unique per (event, endpoint), and a job is made only with a new delivery.
//! A receiver that answered but whose answer was lost (a timeout) gets the
//! event again with the same `Coffer-Event-Id`.

use super::{VendorError, VendorService};
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use crate::webhooks::sender::{AttemptOutcome, UrlProblem, check_webhook_url};
use coffer_domain::{
    JobId, Millis, OrderId, OrderStatus, Permission, Principal, VendorId, VendorStatus, WebhookDeliveryId,
    WebhookEndpointId,
};
use coffer_store::prelude::*;
use coffer_store::{
    ClaimedJob, DeliveryAttempt, JobClaim, JobOutcome, NewDelivery, NewJob, NewLedgerEntry, RelayEvent, RelayOrder,
    WebhookDelivery, WebhookEndpoint,
};
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The job kind of a delivery.
pub const WEBHOOK_JOB: &str = "webhook";
/// The events an endpoint may ask for.
pub const EVENTS: [&str; 6] =
    ["order.paid", "order.fulfilled", "order.on_hold", "order.refunded", "order.cancelled", "license.revoked"];
/// Endpoints a vendor may have.
pub const MAX_ENDPOINTS: usize = 10;
/// How long a delivery is retried.
pub const RETRY_FOR_MS: i64 = 3 * 24 * 60 * 60 * 1000;
/// Events relayed in one unit: small, so a checkout behind it waits little.
const RELAY_BATCH: i64 = 100;
/// Deliveries sent side by side.
const SEND_BATCH: i64 = 256;
/// A claimed delivery's lease: longer than any attempt.
const LEASE_MS: i64 = 120_000;

/// Delay before attempt `attempts + 1`: 30 s doubling, at most 6 hours
/// (about 20 attempts in 3 days).
pub fn retry_delay_ms(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    30_000i64.saturating_mul(1i64 << doublings).min(6 * 60 * 60 * 1000)
}

/// An endpoint just made, with its signing secret shown once.
#[derive(Debug)]
pub struct CreatedEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: SecretString,
}

impl From<UrlProblem> for VendorError {
    fn from(problem: UrlProblem) -> Self {
        VendorError::WebhookUrl(problem)
    }
}

/// The events an order event means for its vendors: the payment and
/// delivery moves, holds and cancellations (refunds are found per line).
fn moves(from: Option<&str>, to: &str) -> Vec<&'static str> {
    let paid_before = matches!(from, Some("paid" | "fulfilled" | "refunded"));
    match to {
        _ if from == Some(to) => Vec::new(),
        "fulfilled" if paid_before => vec!["order.fulfilled"],
        "fulfilled" => vec!["order.paid", "order.fulfilled"],
        "paid" => vec!["order.paid"],
        "on_hold" => vec!["order.on_hold"],
        "cancelled" | "rejected" => vec!["order.cancelled"],
        _ => Vec::new(),
    }
}

/// The fee on a net amount, rounded half up.
pub fn fee_of(net: i64, basis_points: u32) -> i64 {
    let bp = i128::from(basis_points);
    i64::try_from((i128::from(net) * bp + 5_000) / 10_000).unwrap_or(i64::MAX)
}

/// What the relay adds for one event.
#[derive(Default)]
struct Relayed {
    ledger: Vec<NewLedgerEntry>,
    /// Per vendor, the events to send.
    events: BTreeMap<VendorId, BTreeSet<&'static str>>,
}

impl VendorService {
    // ---- endpoints ----

    /// Adds an endpoint for the vendor; its secret is shown once.
    pub async fn create_endpoint(
        &self,
        ctx: &RequestContext,
        url: &str,
        events: &[String],
    ) -> Result<CreatedEndpoint, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnWebhooks)?;
        let url = check_webhook_url(url.trim(), self.settings.sender.settings().allow_private)
            .map_err(VendorError::from)?
            .to_string();
        let mut chosen: Vec<String> = Vec::new();
        for event in events {
            if !EVENTS.contains(&event.as_str()) {
                return Err(VendorError::UnknownEvent.into());
            }
            if !chosen.contains(event) {
                chosen.push(event.clone());
            }
        }
        if chosen.is_empty() {
            return Err(VendorError::UnknownEvent.into());
        }
        if self.db.webhook_endpoints(&vendor).await?.len() >= MAX_ENDPOINTS {
            return Err(VendorError::TooManyEndpoints.into());
        }
        let endpoint = WebhookEndpoint {
            id: WebhookEndpointId::generate(),
            vendor_id: vendor,
            url,
            events: chosen,
            created_at: self.clock.now(),
        };
        let secret = self.endpoint_secret(&endpoint.id).await?;
        let stored = endpoint.clone();
        self.db.write(unit!(|tx| tx.insert_webhook_endpoint(&stored).await.map_err(AppError::from))).await?;
        Ok(CreatedEndpoint { endpoint, secret: SecretString::from(secret) })
    }

    /// An endpoint's signing secret: `whsec_` and the base64url of a
    /// secret sealed under the master key in the key store.
    async fn endpoint_secret(&self, id: &WebhookEndpointId) -> Result<String, AppError> {
        use base64::Engine;
        let raw = self.vault.named_secret(&format!("webhook-endpoint:{id}")).await?;
        Ok(format!(
            "{}{}",
            coffer_crypto::WEBHOOK_SECRET_PREFIX,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())
        ))
    }

    pub async fn endpoints(&self, ctx: &RequestContext) -> Result<Vec<WebhookEndpoint>, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnWebhooks)?;
        Ok(self.db.webhook_endpoints(&vendor).await?)
    }

    /// One of the vendor's endpoints; another vendor's is `NotFound`.
    pub async fn own_endpoint(
        &self,
        ctx: &RequestContext,
        id: &WebhookEndpointId,
    ) -> Result<WebhookEndpoint, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnWebhooks)?;
        self.db.webhook_endpoint(id).await?.filter(|e| e.vendor_id == vendor).ok_or(AppError::NotFound)
    }

    /// Deletes one of the vendor's endpoints: nothing more is sent to it.
    pub async fn delete_endpoint(&self, ctx: &RequestContext, id: &WebhookEndpointId) -> Result<(), AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnWebhooks)?;
        let (id, now) = (id.clone(), self.clock.now());
        let deleted = self
            .db
            .write(unit!(|tx| tx.delete_webhook_endpoint(&vendor, &id, now).await.map_err(AppError::from)))
            .await?;
        if deleted { Ok(()) } else { Err(AppError::NotFound) }
    }

    /// An endpoint's deliveries, newest first (a page before `before`).
    pub async fn deliveries(
        &self,
        ctx: &RequestContext,
        endpoint: &WebhookEndpointId,
        before: Option<&WebhookDeliveryId>,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, AppError> {
        let endpoint = self.own_endpoint(ctx, endpoint).await?;
        Ok(self.db.webhook_deliveries(&endpoint.id, before, limit.clamp(1, 100)).await?)
    }

    /// A delivery's attempts (attempt, time, status code, error, ms).
    pub async fn attempts(
        &self,
        ctx: &RequestContext,
        endpoint: &WebhookEndpointId,
        delivery: &WebhookDeliveryId,
    ) -> Result<(WebhookDelivery, Vec<(i64, Millis, Option<i64>, Option<String>, i64)>), AppError> {
        let endpoint = self.own_endpoint(ctx, endpoint).await?;
        let found = self.db.webhook_delivery(delivery).await?.filter(|d| d.endpoint_id == endpoint.id);
        let found = found.ok_or(AppError::NotFound)?;
        let attempts = self.db.webhook_attempts(&found.id).await?;
        Ok((found, attempts))
    }

    /// Sends a delivery again at once (a vendor asked), whatever its state.
    pub async fn replay(
        &self,
        ctx: &RequestContext,
        endpoint: &WebhookEndpointId,
        delivery: &WebhookDeliveryId,
    ) -> Result<WebhookDelivery, AppError> {
        let endpoint = self.own_endpoint(ctx, endpoint).await?;
        let found = self.db.webhook_delivery(delivery).await?.filter(|d| d.endpoint_id == endpoint.id);
        let found = found.ok_or(AppError::NotFound)?;
        let job = delivery_job(&found.id, self.clock.now());
        let id = found.id.clone();
        self.db.write(unit!(|tx| tx.replay_delivery(&id, &job).await.map_err(AppError::from))).await?;
        self.db.webhook_delivery(&found.id).await?.ok_or(AppError::NotFound)
    }

    // ---- the relay ----

    /// Relays the order events not yet relayed: ledger entries and
    /// deliveries, one unit per batch. Returns how many events.
    ///
    /// It goes on only while batches are full: after a part batch the
    /// events that come next wait for the next round (a quarter second).
    /// Chasing them at once would relay a busy checkout an order at a time,
    /// a commit and a vendor email each (measured: 0.6 vendor emails and
    /// 0.7 commits more per order at one client).
    pub async fn relay_events(&self) -> Result<usize, AppError> {
        let mut relayed = 0;
        loop {
            // The batch's events with their orders, in one read.
            let events = self.db.events_to_relay(RELAY_BATCH).await?;
            if events.is_empty() {
                return Ok(relayed);
            }
            let full = events.len() as i64 >= RELAY_BATCH;
            relayed += events.len();
            let mut ledger = Vec::new();
            let mut deliveries = Vec::new();
            // Paid orders per vendor: one email per vendor and batch.
            let mut paid: BTreeMap<VendorId, Vec<&RelayOrder>> = BTreeMap::new();
            let mut endpoints: HashMap<VendorId, Vec<WebhookEndpoint>> = HashMap::new();
            // Each order's ledger entries, those of this batch included.
            let mut entries: HashMap<OrderId, BTreeSet<(i64, String)>> = HashMap::new();
            for event in &events {
                let Some(order) = &event.order else { continue };
                // Read once per order and batch; an order's first event (its
                // placement) finds no entries yet.
                if !entries.contains_key(&order.id) && event.seq > 1 {
                    entries.insert(order.id.clone(), self.db.ledger_of_order(&order.id).await?.into_iter().collect());
                }
                let found = self.follow(event, order, entries.entry(order.id.clone()).or_default()).await?;
                ledger.extend(found.ledger);
                for (vendor, types) in &found.events {
                    if types.contains("order.paid") {
                        paid.entry(vendor.clone()).or_default().push(order);
                    }
                }
                for (vendor, types) in found.events {
                    if !endpoints.contains_key(&vendor) {
                        let active =
                            self.db.vendor_record(&vendor).await?.is_some_and(|v| v.status == VendorStatus::Active);
                        let list = if active { self.db.webhook_endpoints(&vendor).await? } else { Vec::new() };
                        endpoints.insert(vendor.clone(), list);
                    }
                    for endpoint in endpoints.get(&vendor).into_iter().flatten() {
                        for kind in types.iter().filter(|t| endpoint.events.iter().any(|e| e == *t)) {
                            let id = WebhookDeliveryId::generate();
                            deliveries.push(NewDelivery {
                                job: delivery_job(&id, self.clock.now()),
                                id,
                                endpoint_id: endpoint.id.clone(),
                                vendor_id: vendor.clone(),
                                event_key: format!("{}:{}:{kind}", event.order_id, event.seq),
                                event_type: kind,
                                order_id: event.order_id.clone(),
                                at: event.at,
                            });
                        }
                    }
                }
            }
            let mut letters = Vec::new();
            for (vendor, orders) in &paid {
                letters.extend(self.new_order_letters(vendor, orders).await?);
            }
            let marks: Vec<(OrderId, i64)> = events.iter().map(|e| (e.order_id.clone(), e.seq)).collect();
            let unit = coffer_store::relay_batch(&ledger, &deliveries, &letters, &marks, self.clock.now());
            self.db.write_commands(unit).await?;
            if !full {
                return Ok(relayed);
            }
        }
    }

    /// What one event means: the ledger entries it adds (and adds to
    /// `have`, the order's entries so far) and the events for each vendor
    /// of the order.
    async fn follow(
        &self,
        event: &RelayEvent,
        order: &RelayOrder,
        have: &mut BTreeSet<(i64, String)>,
    ) -> Result<Relayed, AppError> {
        let mut out = Relayed::default();
        let paid_now = matches!(event.to_status.as_str(), "paid" | "fulfilled");
        for kind in moves(event.from_status.as_deref(), &event.to_status) {
            for line in &order.lines {
                out.events.entry(line.vendor_id.clone()).or_default().insert(kind);
            }
        }
        let whole_refund = order.status == OrderStatus::Refunded;
        for line in &order.lines {
            let fee_bp = self.fee_basis_points(&line.vendor_id).await?;
            let fee = fee_of(line.line_total, fee_bp);
            let was_sold = have.contains(&(line.line_no, "sale".to_owned()));
            let was_refunded = have.contains(&(line.line_no, "refund".to_owned()));
            let mut adds: Vec<(&'static str, i64)> = Vec::new();
            if paid_now && !was_sold {
                adds.extend([("sale", line.line_total), ("fee", -fee)]);
            }
            let sold = was_sold || paid_now;
            let refunded = whole_refund || line.refunded_amount > 0;
            if sold && refunded && !was_refunded {
                adds.extend([("refund", -line.line_total), ("fee_refund", fee)]);
                let events = out.events.entry(line.vendor_id.clone()).or_default();
                events.insert("order.refunded");
                if self.catalog.product(&line.product_id).await.is_ok_and(|p| p.delivery.has_license_key()) {
                    events.insert("license.revoked");
                }
            }
            for (kind, amount) in adds {
                have.insert((line.line_no, kind.to_owned()));
                out.ledger.push(NewLedgerEntry {
                    id: coffer_domain::LedgerEntryId::generate().to_string(),
                    vendor_id: line.vendor_id.clone(),
                    order_id: order.id.clone(),
                    line_no: line.line_no,
                    kind,
                    currency: order.currency.clone(),
                    amount,
                    at: event.at,
                });
            }
        }
        Ok(out)
    }

    /// The email each enrolled user of the vendor gets for its new paid
    /// orders of one relay batch (a quarter second's at most): each order,
    /// its products and the vendor's amount, a link to it in the portal;
    /// never the buyer. One email a batch, not one an order: a busy shop's
    /// vendor gets a few emails a second at most.
    async fn new_order_letters(
        &self,
        vendor: &VendorId,
        orders: &[&RelayOrder],
    ) -> Result<Vec<coffer_store::NewEmail>, AppError> {
        let base = self.settings.base_url.trim_end_matches('/');
        let mut parts = Vec::new();
        for order in orders {
            let currency = coffer_domain::Currency::parse(&order.currency)?;
            let mut lines = Vec::new();
            let mut amount = 0;
            for line in order.lines.iter().filter(|l| &l.vendor_id == vendor) {
                // Through the catalog's cache: a burst names few products.
                let name = self
                    .catalog
                    .product(&line.product_id)
                    .await
                    .map_or_else(|_| line.product_id.to_string(), |p| p.name);
                lines.push(format!("  {} × {name}: {}", line.quantity, currency.amount(line.line_total)));
                amount += line.line_total;
            }
            parts.push(format!(
                "Order: {}\n{}\nYour amount (net of tax): {}\nIn the vendor portal: {base}/vendor/orders/{}\n",
                order.id,
                lines.join("\n"),
                currency.amount(amount),
                order.id,
            ));
        }
        let subject = match orders {
            [one] => format!("New order {}", one.id),
            many => format!("{} new orders", many.len()),
        };
        let intro = if orders.len() == 1 {
            "A new order of your products was paid."
        } else {
            "New orders of your products were paid."
        };
        let body = format!(
            "{intro}\n\n{}\nThe buyers' details are in the portal only, where each view is recorded.\n",
            parts.join("\n")
        );
        let mut out = Vec::new();
        for (to, key_id, key) in self.users.mail_recipients(vendor).await? {
            let letter = crate::mail::Letter { kind: "vendor_new_order", to: &to, subject: &subject, body: &body };
            out.push(self.settings.outbox.seal(&letter, &key, &key_id, false)?);
        }
        Ok(out)
    }

    async fn fee_basis_points(&self, vendor: &VendorId) -> Result<u32, AppError> {
        if self.settings.fees.fee_overrides.is_empty() {
            return Ok(self.settings.fees.fee_basis_points);
        }
        let slug = self.db.vendor_record(vendor).await?.map(|v| v.slug.to_string()).unwrap_or_default();
        Ok(self.settings.fees.fee_of(&slug))
    }

    // ---- the sender ----

    /// Sends the due deliveries until none is due or `stop` fires; how
    /// many were delivered. (No new ones come while it runs: the relay
    /// makes them in the same loop, before it.)
    pub async fn run_webhooks(&self, stop: &crate::supervisor::CancellationToken) -> Result<usize, AppError> {
        let mut delivered = 0;
        while !stop.is_cancelled() {
            let claimed = self.db.claim_jobs(WEBHOOK_JOB, self.clock.now(), LEASE_MS, SEND_BATCH).await?;
            if claimed.is_empty() {
                break;
            }
            let runs = claimed.iter().map(|job| self.deliver_once(job));
            let results: Vec<(JobClaim, JobOutcome, Option<DeliveryAttempt>)> = futures::future::join_all(runs).await;
            delivered += results.iter().filter(|(_, o, _)| *o == JobOutcome::Done).count();
            let attempts: Vec<DeliveryAttempt> = results.iter().filter_map(|(_, _, a)| a.clone()).collect();
            let outcomes = results.into_iter().map(|(claim, outcome, _)| (claim, outcome)).collect();
            // One unit, decided in full: no hand-off per statement.
            self.db.write_commands(coffer_store::delivery_outcomes(&attempts, outcomes, self.clock.now())).await?;
        }
        Ok(delivered)
    }

    async fn deliver_once(&self, job: &ClaimedJob) -> (JobClaim, JobOutcome, Option<DeliveryAttempt>) {
        let claim = job.claim();
        let retry_later = |error: &str| JobOutcome::Retry {
            at: Millis(self.clock.now().0 + retry_delay_ms(job.attempts)),
            error: error.to_owned(),
        };
        let Some(id) = delivery_of(&job.payload) else {
            return (claim, JobOutcome::Failed { error: "bad_payload".into() }, None);
        };
        let delivery = match self.db.webhook_delivery(&id).await {
            Ok(Some(d)) => d,
            Ok(None) => return (claim, JobOutcome::Failed { error: "delivery_gone".into() }, None),
            Err(_) => return (claim, retry_later("database_unavailable"), None),
        };
        let now = self.clock.now();
        let stopped = |error: &str| {
            let attempt = DeliveryAttempt {
                delivery: delivery.id.clone(),
                at: now,
                status_code: None,
                error: Some(error.to_owned()),
                elapsed_ms: 0,
                state: "failed",
            };
            (claim.clone(), JobOutcome::Failed { error: error.to_owned() }, Some(attempt))
        };
        let endpoint = match self.db.webhook_endpoint(&delivery.endpoint_id).await {
            Ok(Some(e)) => e,
            Ok(None) => return stopped("endpoint_deleted"),
            Err(_) => return (claim, retry_later("database_unavailable"), None),
        };
        // Suspension stops webhooks at once, the ones under way too.
        match self.db.vendor_record(&endpoint.vendor_id).await {
            Ok(Some(v)) if v.status == VendorStatus::Active => {}
            Ok(_) => return stopped("vendor_suspended"),
            Err(_) => return (claim, retry_later("database_unavailable"), None),
        }
        let body = match self.event_body(&delivery).await {
            Ok(body) => body,
            Err(_) => return (claim, retry_later("body_unavailable"), None),
        };
        let secret = match self.endpoint_secret(&endpoint.id).await {
            Ok(secret) => secret,
            Err(_) => return (claim, retry_later("key_unavailable"), None),
        };
        let outcome: AttemptOutcome = self
            .settings
            .sender
            .send(&endpoint.url, &secret, &event_id(&delivery.event_key), &delivery.event_type, &body, now.0 / 1000)
            .await;
        let error = outcome
            .error
            .map(|e| e.as_str().to_owned())
            .or_else(|| (!outcome.succeeded()).then(|| format!("answered {}", outcome.status.unwrap_or_default())));
        let given_up = now.0 + retry_delay_ms(job.attempts) > delivery.created_at.0 + RETRY_FOR_MS;
        let (state, job_outcome) = if outcome.succeeded() {
            ("delivered", JobOutcome::Done)
        } else if given_up {
            ("failed", JobOutcome::Failed { error: error.clone().unwrap_or_default() })
        } else {
            ("pending", retry_later(error.as_deref().unwrap_or("failed")))
        };
        let attempt = DeliveryAttempt {
            delivery: delivery.id.clone(),
            at: now,
            status_code: outcome.status.map(i64::from),
            error,
            elapsed_ms: outcome.elapsed_ms,
            state,
        };
        (claim, job_outcome, Some(attempt))
    }

    /// The event as the endpoint receives it: the order as its vendor sees
    /// it now (the buyer only where the vendor may have it, and that read
    /// audited and recorded as a disclosure).
    async fn event_body(&self, delivery: &WebhookDelivery) -> Result<Vec<u8>, AppError> {
        let order_id = OrderId::parse(&delivery.order_id)?;
        // The vendor receives it: its principal reads, within its rights.
        let ctx = RequestContext::new(Principal::VendorKey(delivery.vendor_id.to_string()));
        let order = self.order(&ctx, &order_id).await?.ok_or(AppError::NotFound)?;
        let body = serde_json::json!({
            "id": event_id(&delivery.event_key),
            "type": delivery.event_type,
            "created_at": coffer_domain::order::rfc3339_utc(delivery.created_at),
            "data": { "order": order },
        });
        serde_json::to_vec(&body).map_err(|_| AppError::Internal("an event would not encode"))
    }
}

fn delivery_job(id: &WebhookDeliveryId, at: Millis) -> NewJob {
    NewJob {
        id: JobId::generate().to_string(),
        kind: WEBHOOK_JOB,
        payload: serde_json::json!({ "delivery": id.to_string() }).to_string(),
        at,
    }
}

fn delivery_of(payload: &str) -> Option<WebhookDeliveryId> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    WebhookDeliveryId::parse(value.get("delivery")?.as_str()?).ok()
}

/// The id receivers de-duplicate by: the same for every attempt and replay.
pub fn event_id(event_key: &str) -> String {
    format!("evt_{}", &hex::encode(coffer_crypto::digest(event_key.as_bytes()))[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_six_hours_and_stop_within_three_days() {
        assert_eq!(retry_delay_ms(1), 30_000);
        assert_eq!(retry_delay_ms(2), 60_000);
        assert_eq!(retry_delay_ms(30), 6 * 60 * 60 * 1000);
        let mut total = 0;
        let mut attempts = 0;
        while total + retry_delay_ms(attempts + 1) <= RETRY_FOR_MS {
            attempts += 1;
            total += retry_delay_ms(attempts);
        }
        assert!((15..=25).contains(&attempts), "{attempts} attempts in 3 days");
    }

    #[test]
    fn moves_name_the_events_of_each_status_change() {
        assert_eq!(moves(None, "fulfilled"), ["order.paid", "order.fulfilled"]);
        assert_eq!(moves(Some("on_hold"), "fulfilled"), ["order.paid", "order.fulfilled"]);
        assert_eq!(moves(Some("paid"), "fulfilled"), ["order.fulfilled"]);
        assert_eq!(moves(None, "on_hold"), ["order.on_hold"]);
        assert_eq!(moves(Some("on_hold"), "rejected"), ["order.cancelled"]);
        assert_eq!(moves(Some("pending"), "cancelled"), ["order.cancelled"]);
        assert!(moves(None, "pending").is_empty());
        assert!(moves(Some("fulfilled"), "fulfilled").is_empty(), "a line refund is found per line");
        assert!(moves(Some("fulfilled"), "refunded").is_empty(), "refunds are found per line");
    }

    #[test]
    fn fees_round_half_up() {
        assert_eq!(fee_of(1999, 1000), 200);
        assert_eq!(fee_of(1994, 1000), 199);
        assert_eq!(fee_of(0, 1000), 0);
        assert_eq!(fee_of(1000, 0), 0);
        assert_eq!(fee_of(1000, 10_000), 1000);
        assert_eq!(event_id("ord_1:1:order.paid"), event_id("ord_1:1:order.paid"));
        assert_ne!(event_id("ord_1:1:order.paid"), event_id("ord_1:1:order.fulfilled"));
    }
}
