//! Gateway tokens of card orders, sealed under the operator's payments key
//! rather than the customer's, so a refund still works after an erasure.

use super::*;

/// The name of the operator's key for gateway tokens (a named secret
/// under the master key, re-wrapped at rotation like the others).
const PAYMENT_TOKEN_KEY: &str = "payment-tokens";

fn payment_token_context(order: &OrderId) -> FieldContext<'_> {
    FieldContext { table: "orders", column: "payment_token", row_id: order.as_str(), data_key_id: PAYMENT_TOKEN_KEY }
}

impl CheckoutContext {
    async fn payments_key(&self) -> Result<coffer_crypto::DataKey, AppError> {
        let secret = self.vault.named_secret(PAYMENT_TOKEN_KEY).await?;
        Ok(coffer_crypto::DataKey::from_bytes(&secret)?)
    }

    /// Seals a card payment's gateway token under the operator's payments key.
    pub(super) async fn seal_payment_token(
        &self,
        order: &OrderId,
        token: &str,
    ) -> Result<coffer_crypto::Sealed, AppError> {
        Ok(seal_field(&self.payments_key().await?, &payment_token_context(order), token.as_bytes())?)
    }

    /// The gateway token of a card order: from the operator-held column, or
    /// for orders placed before it existed, from the card details while the
    /// customer's key exists. `None` when neither is left.
    pub(super) async fn payment_token(
        &self,
        order: &coffer_store::StoredOrder,
        customer_key: Option<&coffer_crypto::DataKey>,
    ) -> Result<Option<String>, AppError> {
        if let Some(sealed) = &order.payment_token {
            let token =
                coffer_crypto::open_field(&self.payments_key().await?, &payment_token_context(&order.id), sealed)?;
            return Ok(String::from_utf8(token.to_vec()).ok());
        }
        let Some(card) = open_order_field(customer_key, order, "card", order.card.as_ref())? else { return Ok(None) };
        let card: serde_json::Value = serde_json::from_str(&card).unwrap_or_default();
        Ok(card["token"].as_str().map(str::to_owned))
    }
}
