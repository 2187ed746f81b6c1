//! Staff moves on an order (review, bank transfer, refunds) and the
//! staff view of one.

use super::*;
use crate::request::RequestContext;
use coffer_domain::{Permission, Principal};

/// What a staff member does to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaffAction {
    /// Reviewer: the held order proceeds and is delivered.
    Approve,
    /// Reviewer: the held order is refused and its payment voided.
    Reject,
    /// Support: the bank transfer arrived; the order is delivered.
    TransferReceived,
    /// Support: the whole order is refunded.
    Refund,
    /// The retention job: a held order nobody decided within
    /// [`HOLD_EXPIRY_MS`] is cancelled and its payment voided.
    ExpireHold,
    /// The retention job: an order whose bank transfer did not arrive in
    /// the configured time is cancelled.
    ExpireTransfer,
}

/// How long an order may wait on hold for a reviewer before it is
/// cancelled (and its identity document, if any, scheduled for deletion).
pub const HOLD_EXPIRY_MS: i64 = 14 * 24 * 60 * 60 * 1000;

impl StaffAction {
    /// The permission the move needs.
    pub fn permission(self) -> Permission {
        match self {
            StaffAction::Approve => Permission::ApproveOrder,
            StaffAction::Reject => Permission::RejectOrder,
            StaffAction::TransferReceived => Permission::MarkTransferReceived,
            StaffAction::Refund => Permission::RefundOrder,
            StaffAction::ExpireHold | StaffAction::ExpireTransfer => Permission::ExpireOrders,
        }
    }

    /// The kind of move recorded while it is being made.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffAction::Approve => "approve",
            StaffAction::Reject => "reject",
            StaffAction::TransferReceived => "transfer_received",
            StaffAction::Refund => "refund",
            StaffAction::ExpireHold => "expire_hold",
            StaffAction::ExpireTransfer => "expire_transfer",
        }
    }
}

/// An order for the staff console: the stored order, the buyer as staff
/// may see them (empty once erased), the lines by name and the events.
pub struct StaffOrderView {
    pub order: coffer_store::StoredOrder,
    /// The customer was erased: the page says so in place of the person.
    pub erased: bool,
    pub name: String,
    pub email: String,
    pub country: String,
    pub lines: Vec<StaffLine>,
    pub events: Vec<coffer_store::OrderEvent>,
    /// The moves this principal may make on the order now (its permissions
    /// and the order's status decide; an erased customer's order is never
    /// delivered).
    pub allowed: Vec<StaffAction>,
    /// Whether this principal may refund single lines of it now.
    pub may_refund_lines: bool,
}

/// A line as staff see it.
pub struct StaffLine {
    pub line_no: i64,
    /// The product and its vendor.
    pub name: String,
    pub quantity: i64,
    pub total: i64,
    /// Minor units refunded (0 when not).
    pub refunded: i64,
}

/// Order operations by staff: review decisions, bank transfers, refunds,
/// the queues and the staff view of an order.
#[derive(Clone)]
pub struct StaffOrders {
    pub(super) ctx: CheckoutContext,
    pub(super) gateway: Arc<dyn PaymentGateway>,
    pub(super) outbox: Outbox,
    /// The seller, named in the order email.
    pub(super) operator_name: Arc<str>,
    /// Delivers an order a reviewer approves or whose transfer arrived.
    pub(super) fulfilment: Fulfilment,
    /// How long an order waits for its bank transfer.
    pub(super) transfer_expiry_ms: i64,
}

/// What one unit of work records for a staff move.
struct RecordedMove {
    id: OrderId,
    from: OrderStatus,
    steps: Vec<OrderStatus>,
    /// For a held order: how long its identity document is kept from now.
    document_kept_ms: Option<i64>,
    now: coffer_domain::Millis,
    actor: String,
    reason: String,
    lines: Vec<OrderLine>,
    sealed_keys: Vec<coffer_store::IssuedKey>,
    /// A refund: the order's license keys are revoked with it.
    revoke_keys: bool,
    entry: AuditEntry,
    mail: Option<coffer_store::NewEmail>,
    give_back: Option<coffer_store::NewJob>,
    /// A refund's credit note: (net, tax) of what is given back.
    credit_note: Option<(i64, i64)>,
    /// The claim on the order's money this move was made under.
    claim: coffer_domain::Millis,
}

/// Where refunded money goes and when, in words that match what happens:
/// a card refund goes through the processor (a job committed with the
/// refund); a transfer is paid back by the operator's bank.
fn money_back(payment_method: &str, amount: &str) -> String {
    if payment_method == "bank_transfer" {
        format!(
            "We transfer {amount} back to the bank account your payment came from within 5 business days; you \
             need not do anything."
        )
    } else {
        format!(
            "{amount} goes back to the card you paid with; depending on your bank it shows on your statement within \
             5 to 10 days."
        )
    }
}

/// A transfer reference as orders store it (`CF-` and ten hex digits), from
/// what a bank statement shows (`cf 1a2b3c4d5e`, `CF1A2B3C4D5E`).
fn normalise_reference(text: &str) -> Option<String> {
    let compact: String =
        text.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).take(40).collect();
    let digits = compact.strip_prefix("CF").unwrap_or(&compact);
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("CF-{digits}"))
}

/// The move's claim on the order was taken over (it stood so long that it
/// counted as abandoned): the move is not recorded; the staff member tries again.
fn claim_lost() -> AppError {
    bad("move_in_progress", "status", "this took too long and another move took the order over; try again")
}

impl StaffOrders {
    /// A staff member moves an order on: a reviewer approves (delivered at
    /// once) or rejects (payment voided) a held order; support marks a bank
    /// transfer received (delivered at once) or refunds a paid order. The
    /// order is claimed first, so two moves never both count the same money;
    /// then the move, its event, the audit entry, the customer's email and
    /// the job that gives the money back through the gateway
    /// (`give_back.rs`) are one unit that also ends the claim. Works on
    /// orders of an erased customer too (nobody is emailed; nothing is
    /// delivered).
    pub async fn staff_action(
        &self,
        order_id: &OrderId,
        action: StaffAction,
        ctx: &RequestContext,
        reason: &str,
    ) -> Result<OrderStatus, AppError> {
        ctx.require(action.permission())?;
        let reason = reason.trim();
        if reason.chars().count() > 500 || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("invalid_reason", "reason", "the reason must be at most 500 characters"));
        }
        if matches!(
            action,
            StaffAction::Reject | StaffAction::Refund | StaffAction::ExpireHold | StaffAction::ExpireTransfer
        ) && reason.is_empty()
        {
            return Err(bad("reason_required", "reason", "say why; the customer is told"));
        }
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        Self::moves_for(&order, action)?;
        let claim = self.claim_move(&order.id, action.as_str()).await?;
        let moved = self.staff_action_claimed(order_id, action, ctx, reason, claim).await;
        if moved.is_err() {
            self.release_move(order_id, claim).await?;
        }
        moved
    }

    /// The moves `principal` may make on `order` now: those its permissions
    /// allow and the order's status admits; none that delivers to an erased
    /// customer.
    pub fn allowed_moves(order: &coffer_store::StoredOrder, principal: &Principal, erased: bool) -> Vec<StaffAction> {
        [StaffAction::Approve, StaffAction::Reject, StaffAction::TransferReceived, StaffAction::Refund]
            .into_iter()
            .filter(|action| principal.may(action.permission()))
            .filter(|action| !(erased && matches!(action, StaffAction::Approve | StaffAction::TransferReceived)))
            .filter(|action| Self::moves_for(order, *action).is_ok())
            .collect()
    }

    /// The status an action starts from and the steps it takes; refused
    /// when the order is not there.
    fn moves_for(
        order: &coffer_store::StoredOrder,
        action: StaffAction,
    ) -> Result<(OrderStatus, &'static [OrderStatus]), AppError> {
        let (from, steps): (OrderStatus, &'static [OrderStatus]) = match action {
            StaffAction::Approve => (OrderStatus::OnHold, &[OrderStatus::Paid, OrderStatus::Fulfilled]),
            StaffAction::Reject => (OrderStatus::OnHold, &[OrderStatus::Rejected]),
            StaffAction::TransferReceived => (OrderStatus::Pending, &[OrderStatus::Paid, OrderStatus::Fulfilled]),
            StaffAction::Refund => (order.status, &[OrderStatus::Refunded]),
            StaffAction::ExpireHold => (OrderStatus::OnHold, &[OrderStatus::Cancelled]),
            StaffAction::ExpireTransfer => (OrderStatus::Pending, &[OrderStatus::Cancelled]),
        };
        if order.status != from || !from.can_become(steps[0]) {
            return Err(bad(
                "wrong_status",
                "status",
                format!("this order is {}", order.status.as_str().replace('_', " ")),
            ));
        }
        if matches!(action, StaffAction::TransferReceived | StaffAction::ExpireTransfer)
            && order.payment_method != "bank_transfer"
        {
            return Err(bad("wrong_status", "status", "this order is not paid by bank transfer"));
        }
        Ok((from, steps))
    }

    async fn staff_action_claimed(
        &self,
        order_id: &OrderId,
        action: StaffAction,
        ctx: &RequestContext,
        reason: &str,
        claim: coffer_domain::Millis,
    ) -> Result<OrderStatus, AppError> {
        // Read again under the claim: a move finished a moment ago shows now.
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let (from, steps) = Self::moves_for(&order, action)?;
        let last = *steps.last().unwrap_or(&from);
        // `None` once the customer is erased.
        let key = self.vault.data_key(&order.data_key_id).await?;
        if key.is_none() && last == OrderStatus::Fulfilled {
            return Err(bad(
                "customer_erased",
                "status",
                "the customer was erased, so there is nobody to deliver to; reject or refund the order instead",
            ));
        }
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(key.as_ref(), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let (name, email) = (open("name", &order.name)?, open("email", &order.email)?);
        // What is still to give back: the total, less lines refunded before;
        // the gateway is called by a job committed with the move.
        let refunded_before: i64 = order.lines.iter().map(|l| l.refunded_amount).sum();
        let amount = order.total - refunded_before;
        let give_back = match action {
            StaffAction::Reject | StaffAction::Refund => {
                self.check_money_can_go_back(&order, key.as_ref()).await?;
                give_back::give_back_job(&order, amount, self.clock.now())
            }
            // A hold expires after 14 days, when the processor has let the
            // authorisation lapse: voided when the token is still here,
            // cancelled all the same when it went with the customer.
            StaffAction::ExpireHold if self.payment_token(&order, key.as_ref()).await?.is_some() => {
                give_back::give_back_job(&order, amount, self.clock.now())
            }
            _ => None,
        };
        let lines = self.priced_lines(&order).await?;
        let delivery = match (&key, last) {
            (Some(key), OrderStatus::Fulfilled) => {
                self.fulfilment.deliver(&order.id, &order.customer_id, &order.data_key_id, key, &lines).await?
            }
            _ => Delivery::default(),
        };
        let (subject, body) = self.status_letter(&order, last, &name, reason, amount, &lines, &delivery)?;
        let letter = Letter { kind: "order_status", to: &email, subject: &subject, body: &body };
        // An erased customer is told nothing: there is nobody to tell.
        let mail = key.as_ref().map(|key| self.outbox.seal(&letter, key, &order.data_key_id, false)).transpose()?;
        let now = self.clock.now();
        let entry = ctx.audit_entry(
            now,
            AuditAction::OrderStatusChanged,
            Some(format!("{} {}>{}", order.id, from.as_str(), last.as_str())),
        );
        let recorded = RecordedMove {
            id: order.id.clone(),
            from,
            steps: steps.to_vec(),
            // Kept 30 days after a reviewer's decision (disputes); a hold
            // that expired unreviewed has no use for it.
            document_kept_ms: (from == OrderStatus::OnHold).then(|| {
                if action == StaffAction::ExpireHold { 0 } else { crate::retention::id_document_retention_ms() }
            }),
            now,
            actor: ctx.actor().render(),
            reason: reason.to_owned(),
            lines: order.lines.clone(),
            sealed_keys: delivery.sealed_keys,
            revoke_keys: action == StaffAction::Refund,
            entry,
            mail,
            give_back,
            // A refund of a paid order: the invoice's rest is credited.
            credit_note: (action == StaffAction::Refund).then(|| {
                let net_refunded: i64 =
                    order.lines.iter().filter(|l| l.refunded_amount > 0).map(|l| l.line_total).sum();
                let net = order.subtotal - net_refunded;
                (net, amount - net)
            }),
            claim,
        };
        self.record_move(recorded).await?;
        Ok(last)
    }

    /// The order's lines with their products' names and what they deliver.
    async fn priced_lines(&self, order: &coffer_store::StoredOrder) -> Result<Vec<PricedLine>, AppError> {
        let mut lines = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            let product = self.db.product(&line.product_id).await?;
            lines.push(PricedLine {
                name: product.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                license_key: product.as_ref().is_some_and(|p| p.delivery.has_license_key()),
                download: product.as_ref().is_some_and(|p| p.delivery.has_download()),
                line: line.clone(),
            });
        }
        Ok(lines)
    }

    /// The subject and text of the email telling the customer of a move.
    #[allow(clippy::too_many_arguments)]
    fn status_letter(
        &self,
        order: &coffer_store::StoredOrder,
        last: OrderStatus,
        name: &str,
        reason: &str,
        amount: i64,
        lines: &[PricedLine],
        delivery: &Delivery,
    ) -> Result<(String, String), AppError> {
        let currency = Currency::parse(&order.currency)?;
        let id = &order.id;
        Ok(match last {
            OrderStatus::Fulfilled => (
                format!("Your order {id}: your software is ready"),
                order_email_body(&OrderEmail {
                    name,
                    id,
                    status: last,
                    currency,
                    lines,
                    totals: &coffer_domain::Totals { subtotal: order.subtotal, tax: order.tax, total: order.total },
                    license_keys: &delivery.license_keys,
                    downloads: &delivery.downloads,
                    payment_reference: None,
                    bank: None,
                    invitation: None,
                    identity: None,
                    operator: &self.operator_name,
                }),
            ),
            OrderStatus::Cancelled if order.payment_method == "bank_transfer" => (
                format!("Your order {id} is cancelled"),
                format!(
                    "Hello {name},\n\nYour order {id} is cancelled: {reason}.\n\nNothing is owed. If you sent the \
                     transfer after all, we pay it back in full to the account it came from within 5 business days; \
                     you need not do anything. You are welcome to order again.\n\nCoffer\n"
                ),
            ),
            OrderStatus::Cancelled => (
                format!("Your order {id} is cancelled"),
                format!(
                    "Hello {name},\n\nYour order {id} is cancelled: {reason}.\n\nThe payment was voided; nothing \
                     was charged. You are welcome to order again.\n\nCoffer\n"
                ),
            ),
            OrderStatus::Rejected => (
                format!("Your order {id} could not be accepted"),
                format!(
                    "Hello {name},\n\nWe could not accept your order {id}: {reason}.\n\nThe payment was voided; \
                     nothing was charged.\n\nCoffer\n"
                ),
            ),
            _ => (
                format!("Your order {id} is refunded"),
                format!(
                    "Hello {name},\n\nYour order {id} is refunded ({reason}). {} License keys and downloads of \
                     the order stop working.\n\nCoffer\n",
                    money_back(&order.payment_method, &currency.amount(amount))
                ),
            ),
        })
    }

    /// Writes a move in one unit: each status step (refused when someone
    /// moved the order first), license keys (issued, or revoked by a
    /// refund), the identity document's
    /// deletion date, the audit entry, the email, the give-back job, and the
    /// end of the claim.
    async fn record_move(&self, m: RecordedMove) -> Result<(), AppError> {
        self.db
            .write(unit!(|tx| {
                let mut at = m.from;
                for step in &m.steps {
                    if !tx.transition_order(&m.id, at, *step, m.now, &m.actor, &m.reason).await? {
                        return Err(bad("wrong_status", "status", "someone else moved this order first"));
                    }
                    at = *step;
                }
                tx.insert_license_keys(&m.id, &m.lines, &m.sealed_keys, m.now).await?;
                if m.revoke_keys {
                    tx.revoke_order_licenses(&m.id, m.now).await?;
                }
                if let Some(keep) = m.document_kept_ms {
                    tx.schedule_id_document_deletion(&m.id, coffer_domain::Millis(m.now.0 + keep)).await?;
                }
                tx.append_audit(&m.entry).await?;
                if let Some(mail) = &m.mail {
                    tx.enqueue_email(mail).await?;
                }
                if let Some(job) = &m.give_back {
                    tx.enqueue_job(job).await?;
                }
                if let Some((net, tax)) = m.credit_note {
                    tx.queue_credit_note(&m.id, None, net, tax, m.now).await?;
                }
                if !tx.release_payment_move(&m.id, m.claim).await? {
                    return Err(claim_lost());
                }
                Ok::<_, AppError>(())
            }))
            .await
    }

    /// An order as staff see it, with the buyer's name, email and country.
    /// The read is audited before the data is handed out.
    pub async fn staff_view(&self, order_id: &OrderId, ctx: &RequestContext) -> Result<StaffOrderView, AppError> {
        ctx.require(Permission::ReadOrderForStaff)?;
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let key = self.vault.data_key(&order.data_key_id).await?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(key.as_ref(), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let entry = ctx.audit_entry(self.clock.now(), AuditAction::CustomerRead, Some(order.customer_id.to_string()));
        self.db.write(move |tx| Box::pin(async move { tx.append_audit(&entry).await.map_err(AppError::from) })).await?;
        let mut lines = Vec::new();
        for line in &order.lines {
            let name = self.db.product(&line.product_id).await?.map(|p| format!("{} ({})", p.name, p.vendor_name));
            lines.push(StaffLine {
                line_no: line.line_no,
                name: name.unwrap_or_default(),
                quantity: line.quantity,
                total: line.line_total,
                refunded: line.refunded_amount,
            });
        }
        let address: serde_json::Value = serde_json::from_str(&open("address", &order.address)?).unwrap_or_default();
        let erased = key.is_none();
        Ok(StaffOrderView {
            allowed: Self::allowed_moves(&order, ctx.principal(), erased),
            may_refund_lines: ctx.principal().may(Permission::RefundOrder)
                && matches!(order.status, OrderStatus::Paid | OrderStatus::Fulfilled),
            erased,
            name: open("name", &order.name)?,
            email: open("email", &order.email)?,
            country: address["country"].as_str().unwrap_or_default().to_owned(),
            events: self.db.order_events(&order.id).await?,
            lines,
            order,
        })
    }

    /// Support refunds one line of a paid order: its price and its share of
    /// the tax go back through the gateway, the line's downloads stop and its
    /// license key is revoked, the customer is told. When every line is refunded the order is
    /// `refunded`. Claimed first and recorded in one unit, like every
    /// other move.
    pub async fn refund_line(
        &self,
        order_id: &OrderId,
        line_no: i64,
        ctx: &RequestContext,
        reason: &str,
    ) -> Result<OrderStatus, AppError> {
        ctx.require(Permission::RefundOrder)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(bad("reason_required", "reason", "say why; the customer is told"));
        }
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(bad("invalid_reason", "reason", "the reason must be at most 500 characters"));
        }
        if self.db.order(order_id).await?.is_none() {
            return Err(AppError::NotFound);
        }
        let claim = self.claim_move(order_id, "refund_line").await?;
        let refunded = self.refund_line_claimed(order_id, line_no, ctx, reason, claim).await;
        if refunded.is_err() {
            self.release_move(order_id, claim).await?;
        }
        refunded
    }

    async fn refund_line_claimed(
        &self,
        order_id: &OrderId,
        line_no: i64,
        ctx: &RequestContext,
        reason: &str,
        claim: coffer_domain::Millis,
    ) -> Result<OrderStatus, AppError> {
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let (index, amount, last) = Self::line_refund_of(&order, line_no)?;
        let line = &order.lines[index];
        // `None` once the customer is erased: the refund goes on, untold.
        let key = self.vault.data_key(&order.data_key_id).await?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(key.as_ref(), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        self.check_money_can_go_back(&order, key.as_ref()).await?;
        let give_back = give_back::give_back_job(&order, amount, self.clock.now());
        let currency = Currency::parse(&order.currency)?;
        let product = self.db.product(&line.product_id).await?.map(|p| p.name).unwrap_or_default();
        let money = |minor: i64| currency.amount(minor);
        let body = format!(
            "Hello {},\n\nWe refunded {} × {product} from your order {} ({reason}). {} That item's license key \
             and download stop working.\n\nCoffer\n",
            open("name", &order.name)?,
            line.quantity,
            order.id,
            money_back(&order.payment_method, &money(amount))
        );
        let email = open("email", &order.email)?;
        let subject = format!("Part of your order {} is refunded", order.id);
        let letter = Letter { kind: "order_status", to: &email, subject: &subject, body: &body };
        let mail = key.as_ref().map(|key| self.outbox.seal(&letter, key, &order.data_key_id, false)).transpose()?;
        let now = self.clock.now();
        let status = order.status;
        let next = if last { OrderStatus::Refunded } else { status };
        let entry = ctx.audit_entry(
            now,
            AuditAction::OrderStatusChanged,
            Some(format!("{} line {line_no} refunded", order.id)),
        );
        let line_total = line.line_total;
        let refund = coffer_store::LineRefund {
            order: order.id.clone(),
            line_no,
            amount,
            status,
            at: now,
            actor: ctx.actor().render(),
            reason: reason.to_owned(),
        };
        self.db
            .write(unit!(|tx| {
                if !tx.refund_line(&refund).await? {
                    return Err(bad("wrong_status", "line", "this line is refunded already"));
                }
                tx.queue_credit_note(&refund.order, Some(line_no), line_total, amount - line_total, now).await?;
                // The line's license key stops working with the refund.
                tx.revoke_line_license(&refund.order, line_no, now).await?;
                let (id, actor, reason) = (&refund.order, &refund.actor, &refund.reason);
                if last && !tx.transition_order(id, status, next, now, actor, reason).await? {
                    return Err(bad("wrong_status", "status", "someone else moved this order first"));
                }
                tx.append_audit(&entry).await?;
                if let Some(mail) = &mail {
                    tx.enqueue_email(mail).await?;
                }
                if let Some(job) = &give_back {
                    tx.enqueue_job(job).await?;
                }
                if !tx.release_payment_move(&refund.order, claim).await? {
                    return Err(claim_lost());
                }
                Ok::<_, AppError>(())
            }))
            .await?;
        Ok(next)
    }

    /// Which line `line_no` is, what refunding it gives back (its price and
    /// its share of the tax, from the domain) and whether it is the last
    /// line not yet refunded; refused for an order not paid or a line
    /// refunded already.
    fn line_refund_of(order: &coffer_store::StoredOrder, line_no: i64) -> Result<(usize, i64, bool), AppError> {
        if !matches!(order.status, OrderStatus::Paid | OrderStatus::Fulfilled) {
            return Err(bad(
                "wrong_status",
                "status",
                format!("this order is {}", order.status.as_str().replace('_', " ")),
            ));
        }
        let Some(index) = order.lines.iter().position(|l| l.line_no == line_no) else {
            return Err(bad("unknown_line", "line", "the order has no such line"));
        };
        let refundable: Vec<coffer_domain::order::RefundableLine> = order
            .lines
            .iter()
            .map(|l| coffer_domain::order::RefundableLine { line_total: l.line_total, refunded: l.refunded_amount })
            .collect();
        let Some(amount) = coffer_domain::order::line_refund(&refundable, index, order.subtotal, order.tax) else {
            return Err(bad("wrong_status", "line", "this line is refunded already"));
        };
        let last = refundable.iter().filter(|l| l.refunded == 0).count() == 1;
        Ok((index, amount, last))
    }
}

impl StaffOrders {
    /// A staff queue: orders in `status`, oldest first (at most 200).
    pub async fn queue(
        &self,
        status: OrderStatus,
        ctx: &RequestContext,
    ) -> Result<Vec<coffer_store::QueuedOrder>, AppError> {
        let needed = match status {
            OrderStatus::OnHold => Permission::ReadReviewQueue,
            OrderStatus::Pending => Permission::ReadTransferQueue,
            _ => Permission::ReadOrderForStaff,
        };
        ctx.require(needed)?;
        Ok(self.db.orders_in(status, 200).await?)
    }

    /// Support finds the orders a bank transfer's reference names, as the
    /// bank passed it on: case, spaces and a lost dash do not matter.
    pub async fn find_by_reference(
        &self,
        reference: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<coffer_store::QueuedOrder>, AppError> {
        ctx.require(Permission::ReadTransferQueue)?;
        let Some(reference) = normalise_reference(reference) else { return Ok(Vec::new()) };
        Ok(self.db.orders_with_payment_reference(&reference).await?)
    }

    /// Cancels the held orders nobody decided within [`HOLD_EXPIRY_MS`]
    /// (payment voided, buyer told); returns how many.
    /// Ends before the next order once `stop` fires.
    pub async fn expire_holds(&self, stop: &crate::supervisor::CancellationToken) -> Result<u64, AppError> {
        let before = coffer_domain::Millis(self.clock.now().0 - HOLD_EXPIRY_MS);
        let mut cancelled = 0;
        for id in self.db.orders_in_status_before(OrderStatus::OnHold, before, 100).await? {
            if stop.is_cancelled() {
                break;
            }
            let reason = "it could not be checked within 14 days";
            match self.staff_action(&id, StaffAction::ExpireHold, &RequestContext::system(), reason).await {
                Ok(_) => cancelled += 1,
                // Decided or claimed by a reviewer a moment ago: theirs.
                Err(AppError::Order(e)) if matches!(e.code, "wrong_status" | "move_in_progress") => {}
                // Not cancelled (the database, or a token erased with the
                // customer): tried again next run; the rest of retention
                // goes on (its document still goes 30 days after the upload).
                Err(e) => tracing::warn!(order = %id, error = %e, "an expired hold could not be cancelled"),
            }
        }
        Ok(cancelled)
    }

    /// Cancels the orders whose bank transfer did not arrive within the
    /// configured time (buyer told); returns how many. Ends before the next
    /// order once `stop` fires.
    pub async fn expire_transfers(&self, stop: &crate::supervisor::CancellationToken) -> Result<u64, AppError> {
        let before = coffer_domain::Millis(self.clock.now().0 - self.transfer_expiry_ms);
        let days = self.transfer_expiry_ms / (24 * 60 * 60 * 1000);
        let reason = format!("your bank transfer had not arrived within {days} days");
        let mut cancelled = 0;
        for id in self.db.orders_in_status_before(OrderStatus::Pending, before, 100).await? {
            if stop.is_cancelled() {
                break;
            }
            match self.staff_action(&id, StaffAction::ExpireTransfer, &RequestContext::system(), &reason).await {
                Ok(_) => cancelled += 1,
                // Marked received (or being marked) a moment ago: support's.
                Err(AppError::Order(e)) if matches!(e.code, "wrong_status" | "move_in_progress") => {}
                Err(e) => tracing::warn!(order = %id, error = %e, "an expired transfer could not be cancelled"),
            }
        }
        Ok(cancelled)
    }

    /// Claims the order for one staff move; refused while another is made.
    /// Returns the claim, which the move's unit ends (and checks it still holds).
    async fn claim_move(&self, order: &OrderId, kind: &'static str) -> Result<coffer_domain::Millis, AppError> {
        let (id, now) = (order.clone(), self.clock.now());
        let claimed =
            self.db.write(unit!(|tx| tx.claim_payment_move(&id, kind, now).await.map_err(AppError::from))).await?;
        claimed
            .ok_or_else(|| bad("move_in_progress", "status", "another staff member is acting on this order right now"))
    }

    async fn release_move(&self, order: &OrderId, claim: coffer_domain::Millis) -> Result<(), AppError> {
        let id = order.clone();
        self.db.write(unit!(|tx| tx.release_payment_move(&id, claim).await.map(drop).map_err(AppError::from))).await
    }
}

#[cfg(test)]
mod tests {
    use super::{money_back, normalise_reference};

    #[test]
    fn refund_wording_says_where_the_money_goes() {
        let card = money_back("card", "23.79 EUR");
        assert!(card.starts_with("23.79 EUR goes back to the card you paid with"), "{card}");
        let transfer = money_back("bank_transfer", "23.79 EUR");
        assert!(transfer.contains("transfer 23.79 EUR back to the bank account your payment came from"), "{transfer}");
        assert!(!transfer.contains("card"), "{transfer}");
    }

    #[test]
    fn a_reference_is_found_as_the_bank_wrote_it() {
        for written in ["CF-1A2B3C4D5E", "cf 1a2b 3c4d 5e", "CF1A2B3C4D5E", " 1a2b3c4d5e "] {
            assert_eq!(normalise_reference(written).as_deref(), Some("CF-1A2B3C4D5E"), "{written}");
        }
        for wrong in ["", "CF-1A2B", "CF-1A2B3C4D5EFF", "CF-1A2B3C4D5G", "ord_123"] {
            assert_eq!(normalise_reference(wrong), None, "{wrong}");
        }
    }
}
