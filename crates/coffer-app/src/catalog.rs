//! Browsing and building the catalog.

use crate::cache::TtlCache;
use crate::error::AppError;
use coffer_domain::{Clock, Currency, Delivery, NewProduct, NewVendor, Prices, Product, ProductId, Vendor, VendorId};
use coffer_store::Db;
use coffer_store::prelude::*;
/// The catalog's query and page types, as the store defines them.
pub use coffer_store::{ProductPage, ProductQuery};
use std::sync::Arc;

/// How many distinct catalog queries the read cache keeps.
const CACHED_QUERIES: usize = 1_024;

/// The currency a cart is priced in, of those all its products are sold
/// in: the one asked for, else USD, else the first.
/// The currency prices are shown in when the buyer has not picked one: the
/// storefront's and the checkout's are the same.
pub fn preferred_currency(currencies: &[Currency]) -> Option<Currency> {
    cart_currency(currencies, "")
}

fn cart_currency(currencies: &[Currency], wanted: &str) -> Option<Currency> {
    Currency::parse(wanted)
        .ok()
        .filter(|c| currencies.contains(c))
        .or_else(|| currencies.iter().copied().find(|c| c.code() == "USD"))
        .or_else(|| currencies.first().copied())
}

/// A cart priced for the checkout (see [`CatalogService::cart`]).
#[derive(Clone, Debug)]
pub struct CartView {
    pub lines: Vec<(Product, i64)>,
    /// The currencies every product of the cart is sold in.
    pub currencies: Vec<Currency>,
    /// The currency the cart is priced in; `None` when the products share none.
    pub currency: Option<Currency>,
}

impl CartView {
    /// A line's price in the cart's currency, if it is sold in it.
    pub fn price(&self, product: &Product) -> Option<coffer_domain::Money> {
        self.currency.and_then(|c| product.prices.get(c))
    }
}

/// A page query and the name of the rendering kept for it.
type RenderedKey = (ProductQuery, &'static str);

#[derive(Clone)]
pub struct CatalogService {
    db: Db,
    clock: Arc<dyn Clock>,
    pages: Arc<TtlCache<ProductQuery, ProductPage>>,
    /// Pages as a caller rendered them (keyed by the renderer's name too).
    rendered: Arc<TtlCache<RenderedKey, Arc<[u8]>>>,
    products: Arc<TtlCache<ProductId, Option<Product>>>,
}

impl CatalogService {
    /// `cache_ttl_ms`: how old a catalog answer may be (0: always read the
    /// database). See [`crate::cache`].
    pub fn new(db: Db, clock: Arc<dyn Clock>, cache_ttl_ms: u64) -> Self {
        CatalogService {
            db,
            pages: Arc::new(TtlCache::new(cache_ttl_ms, CACHED_QUERIES, clock.clone())),
            rendered: Arc::new(TtlCache::new(cache_ttl_ms, CACHED_QUERIES, clock.clone())),
            products: Arc::new(TtlCache::new(cache_ttl_ms, CACHED_QUERIES, clock.clone())),
            clock,
        }
    }

    pub async fn products(&self, query: &ProductQuery) -> Result<ProductPage, AppError> {
        if let Some(page) = self.pages.get(query) {
            return Ok(page);
        }
        let generation = self.pages.generation();
        let page = self.db.products(query).await?;
        self.pages.put_if_current(generation, query.clone(), page.clone());
        Ok(page)
    }

    /// A page as `render` turns it into bytes (the API's JSON, say), kept
    /// for as long as the page itself: a busy catalog is rendered once per
    /// cache period, not once per request. `renderer` names the rendering.
    pub async fn rendered_products(
        &self,
        query: &ProductQuery,
        renderer: &'static str,
        render: impl FnOnce(&ProductPage) -> Result<Vec<u8>, AppError>,
    ) -> Result<Arc<[u8]>, AppError> {
        let key = (query.clone(), renderer);
        if let Some(bytes) = self.rendered.get(&key) {
            return Ok(bytes);
        }
        let generation = self.rendered.generation();
        let bytes: Arc<[u8]> = render(&self.products(query).await?)?.into();
        self.rendered.put_if_current(generation, key, bytes.clone());
        Ok(bytes)
    }

    pub async fn product(&self, id: &ProductId) -> Result<Product, AppError> {
        let found = match self.products.get(id) {
            Some(found) => found,
            None => {
                let generation = self.products.generation();
                let found = self.db.product(id).await?;
                self.products.put_if_current(generation, id.clone(), found.clone());
                found
            }
        };
        found.ok_or(AppError::NotFound)
    }

    /// A product buyers may see and order: one unpublished, of a
    /// suspended vendor or with its download missing is `NotFound`, exactly
    /// as one that does not exist.
    pub async fn listed_product(&self, id: &ProductId) -> Result<Product, AppError> {
        self.product(id).await.and_then(|p| if p.listed { Ok(p) } else { Err(AppError::NotFound) })
    }

    /// The cart as the checkout shows it: the products still in the
    /// catalog (one gone since it was added is left out) with their
    /// quantities, the currencies every one of them is sold in, and the
    /// currency the cart is priced in: `wanted` when all are sold in it,
    /// else USD when they are, else the first they share (none when they
    /// share none).
    pub async fn cart(&self, items: &[(ProductId, i64)], wanted: &str) -> Result<CartView, AppError> {
        let mut lines = Vec::with_capacity(items.len());
        let mut currencies: Option<Vec<Currency>> = None;
        for (id, quantity) in items {
            let product = match self.listed_product(id).await {
                Ok(product) => product,
                Err(AppError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let offered: Vec<Currency> = product.prices.iter().map(|m| m.currency()).collect();
            currencies = Some(match currencies {
                None => offered,
                Some(common) => common.into_iter().filter(|c| offered.contains(c)).collect(),
            });
            lines.push((product, *quantity));
        }
        let currencies = currencies.unwrap_or_default();
        let currency = cart_currency(&currencies, wanted);
        Ok(CartView { lines, currencies, currency })
    }

    /// Drops every cached answer: after any change buyers must see at
    /// once (a product added or withdrawn, a vendor suspended).
    pub fn forget_cached(&self) {
        self.pages.clear();
        self.rendered.clear();
        self.products.clear();
    }

    pub async fn vendors(&self) -> Result<Vec<Vendor>, AppError> {
        Ok(self.db.vendors().await?)
    }

    pub async fn create_vendor(&self, slug: &str, name: &str) -> Result<Vendor, AppError> {
        let vendor = NewVendor::new(slug, name, self.clock.now())?.vendor().clone();
        let stored = vendor.clone();
        self.db.write(unit!(|tx| tx.insert_vendor(&stored).await.map_err(AppError::from))).await?;
        self.forget_cached();
        Ok(vendor)
    }

    pub async fn create_product(
        &self,
        vendor: &VendorId,
        name: &str,
        description: &str,
        prices: Prices,
        delivery: Delivery,
    ) -> Result<ProductId, AppError> {
        let product = NewProduct::new(vendor.clone(), name, description, prices, delivery, self.clock.now())?;
        self.insert_product(product).await
    }

    /// Stores a checked new product.
    pub async fn insert_product(&self, product: NewProduct) -> Result<ProductId, AppError> {
        let id = product.id.clone();
        self.db.write(unit!(|tx| tx.insert_product(&product).await.map_err(AppError::from))).await?;
        self.forget_cached();
        Ok(id)
    }
}

#[cfg(test)]
mod cart_tests {
    use super::*;

    #[test]
    fn a_cart_is_priced_in_the_currency_asked_for_else_usd_else_the_first_shared() {
        let c = |code: &str| Currency::parse(code).unwrap();
        let shared = [c("EUR"), c("USD"), c("BRL")];
        assert_eq!(cart_currency(&shared, "BRL"), Some(c("BRL")));
        assert_eq!(cart_currency(&shared, "GBP"), Some(c("USD")), "not sold in GBP");
        assert_eq!(cart_currency(&shared, "no such"), Some(c("USD")));
        assert_eq!(cart_currency(&[c("EUR"), c("BRL")], ""), Some(c("EUR")));
        assert_eq!(cart_currency(&[], "EUR"), None, "products that share no currency");
    }
}
