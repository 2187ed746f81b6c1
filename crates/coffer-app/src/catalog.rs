//! Browsing and building the catalog.

use crate::cache::TtlCache;
use crate::error::AppError;
use coffer_domain::{Clock, Delivery, NewProduct, NewVendor, Prices, Product, ProductId, Vendor, VendorId};
use coffer_store::Db;
use coffer_store::prelude::*;
/// The catalog's query and page types, as the store defines them.
pub use coffer_store::{ProductPage, ProductQuery};
use std::sync::Arc;

/// How many distinct catalog queries the read cache keeps.
const CACHED_QUERIES: usize = 1_024;

#[derive(Clone)]
pub struct CatalogService {
    db: Db,
    clock: Arc<dyn Clock>,
    pages: Arc<TtlCache<ProductQuery, ProductPage>>,
    products: Arc<TtlCache<ProductId, Option<Product>>>,
}

impl CatalogService {
    /// `cache_ttl_ms`: how old a catalog answer may be (0: always read the
    /// database). See [`crate::cache`].
    pub fn new(db: Db, clock: Arc<dyn Clock>, cache_ttl_ms: u64) -> Self {
        CatalogService {
            db,
            pages: Arc::new(TtlCache::new(cache_ttl_ms, CACHED_QUERIES, clock.clone())),
            products: Arc::new(TtlCache::new(cache_ttl_ms, CACHED_QUERIES, clock.clone())),
            clock,
        }
    }

    pub async fn products(&self, query: &ProductQuery) -> Result<ProductPage, AppError> {
        if let Some(page) = self.pages.get(query) {
            return Ok(page);
        }
        let page = self.db.products(query).await?;
        self.pages.put(query.clone(), page.clone());
        Ok(page)
    }

    pub async fn product(&self, id: &ProductId) -> Result<Product, AppError> {
        let found = match self.products.get(id) {
            Some(found) => found,
            None => {
                let found = self.db.product(id).await?;
                self.products.put(id.clone(), found.clone());
                found
            }
        };
        found.ok_or(AppError::NotFound)
    }

    fn forget_cached(&self) {
        self.pages.clear();
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
        let id = product.id.clone();
        self.db.write(unit!(|tx| tx.insert_product(&product).await.map_err(AppError::from))).await?;
        self.forget_cached();
        Ok(id)
    }
}
