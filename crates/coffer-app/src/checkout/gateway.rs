//! The payment gateway seam and the built-in simulated gateway of
//! CONTRACT.md's test cards.

use super::*;

/// What the gateway says about a card payment.
#[derive(Debug, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// Approved; `review` asks for a fraud review before delivery.
    Approved {
        token: String,
        review: bool,
    },
    Declined,
}

/// A card payment for the gateway: the only place the number and CVC go.
pub struct CardPayment<'a> {
    pub digits: &'a str,
    pub exp_month: u8,
    pub exp_year: u16,
    pub cvc: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
}

pub type GatewayFuture<'a> = Pin<Box<dyn Future<Output = Result<GatewayAnswer, AppError>> + Send + 'a>>;

pub type GiveBackFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AppError>> + Send + 'a>>;

/// A payment processor. Implementations must not log or store the card.
pub trait PaymentGateway: Send + Sync {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a>;
    /// Voids an authorisation or refunds a capture, by the gateway's token.
    /// Calls with one `idempotency_key` give back once, however often they
    /// are made (a job run again after a crash).
    fn give_back<'a>(
        &'a self,
        token: &'a str,
        amount_minor: i64,
        currency: &'a str,
        idempotency_key: &'a str,
    ) -> GiveBackFuture<'a>;
}

/// The built-in simulated processor of CONTRACT.md's test cards:
/// 4000 0000 0000 0002 is declined, 4000 0000 0000 9235 approved but
/// flagged for review, every other (Luhn-valid) number approved.
pub struct SimulatedGateway;

pub const DECLINED_TEST_CARD: &str = "4000000000000002";
pub const REVIEW_TEST_CARD: &str = "4000000000009235";
/// CONTRACT.md's test cards: the fraud screen leaves them alone, so they
/// always behave as documented.
pub const DOCUMENTED_TEST_CARDS: [&str; 3] = ["4242424242424242", DECLINED_TEST_CARD, REVIEW_TEST_CARD];

impl PaymentGateway for SimulatedGateway {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a> {
        Box::pin(async move {
            if payment.digits == DECLINED_TEST_CARD {
                return Ok(GatewayAnswer::Declined);
            }
            let token = format!("sim_{}", hex::encode(coffer_crypto::random_bytes::<12>()?));
            Ok(GatewayAnswer::Approved { token, review: payment.digits == REVIEW_TEST_CARD })
        })
    }

    fn give_back<'a>(
        &'a self,
        token: &'a str,
        _amount_minor: i64,
        _currency: &'a str,
        _idempotency_key: &'a str,
    ) -> GiveBackFuture<'a> {
        Box::pin(async move {
            if token.starts_with("sim_") {
                Ok(())
            } else {
                Err(AppError::Gateway("the payment gateway does not know this payment".into()))
            }
        })
    }
}
