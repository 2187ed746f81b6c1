//! A vendor's own products: listed with drafts, created, edited, published
//! and withdrawn, by its portal users and its API keys alike. Another
//! vendor's product is `NotFound`. Every change clears the catalog's
//! cache, so buyers see it at once.

use super::VendorService;
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use coffer_domain::{Currency, Delivery, Money, MoneyError, NewProduct, Permission, Prices, Product, ProductId};
use coffer_store::ProductPage;
use coffer_store::prelude::*;

/// What a vendor sends to create or edit a product (prices apart, checked
/// by [`parse_prices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductInput {
    pub name: String,
    pub description: String,
    pub delivery: Delivery,
}

/// Prices as typed: each code an ISO 4217 currency, each amount ≥ 0, at
/// least one; the first bad one names its field (`prices.XXX`).
pub fn parse_prices(typed: &[(String, i64)]) -> Result<Prices, (String, MoneyError)> {
    let mut prices = Vec::with_capacity(typed.len());
    for (code, minor) in typed {
        let field = || format!("prices.{code}");
        let currency = Currency::parse(code).map_err(|e| (field(), e))?;
        prices.push(Money::new(*minor, currency).map_err(|e| (field(), e))?);
    }
    Prices::new(prices).map_err(|e| ("prices".to_owned(), e))
}

impl VendorService {
    /// A page of the vendor's products, drafts and withdrawn ones too.
    pub async fn own_products(
        &self,
        ctx: &RequestContext,
        after: Option<&ProductId>,
        limit: u32,
    ) -> Result<ProductPage, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        Ok(self.db.vendor_products(&vendor, after, limit).await?)
    }

    /// One of the vendor's products; another vendor's is `NotFound`.
    pub async fn own_product(&self, ctx: &RequestContext, id: &ProductId) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        self.db.product(id).await?.filter(|p| p.vendor_id == vendor).ok_or(AppError::NotFound)
    }

    /// Creates a product of the vendor, published or as a draft.
    pub async fn create_own_product(
        &self,
        ctx: &RequestContext,
        input: &ProductInput,
        prices: Prices,
        published: bool,
    ) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        let mut product =
            NewProduct::new(vendor, &input.name, &input.description, prices, input.delivery, self.clock.now())?;
        product.published = published;
        let id = self.catalog.insert_product(product).await?;
        self.own_product(ctx, &id).await
    }

    /// Replaces a product's name, description, prices and delivery.
    pub async fn edit_own_product(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        input: &ProductInput,
        prices: Prices,
    ) -> Result<Product, AppError> {
        let current = self.own_product(ctx, id).await?;
        let edited = NewProduct::edited(&current, &input.name, &input.description, prices, input.delivery)?;
        let now = self.clock.now();
        self.db.write(unit!(|tx| tx.update_product(&edited, now).await.map_err(AppError::from))).await?;
        self.catalog.forget_cached();
        self.own_product(ctx, id).await
    }

    /// Publishes or withdraws one of the vendor's products.
    pub async fn publish_own_product(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        published: bool,
    ) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        let (product, now) = (id.clone(), self.clock.now());
        let changed = self
            .db
            .write(unit!(|tx| tx
                .set_product_published(&vendor, &product, published, now)
                .await
                .map_err(AppError::from)))
            .await?;
        if !changed {
            return Err(AppError::NotFound);
        }
        self.catalog.forget_cached();
        self.own_product(ctx, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_name_the_first_bad_currency() {
        let typed = |pairs: &[(&str, i64)]| pairs.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect::<Vec<_>>();
        assert!(parse_prices(&typed(&[("USD", 1999), ("EUR", 1899)])).is_ok());
        assert_eq!(parse_prices(&typed(&[("USD", 1), ("XXQ", 1)])).unwrap_err().0, "prices.XXQ");
        assert_eq!(parse_prices(&typed(&[("usd", 1)])).unwrap_err().0, "prices.usd");
        assert_eq!(
            parse_prices(&typed(&[("USD", -1)])).unwrap_err(),
            ("prices.USD".into(), MoneyError::NegativeAmount)
        );
        assert_eq!(parse_prices(&[]).unwrap_err(), ("prices".into(), MoneyError::NoPrice));
    }
}
