//! Browsing and building the catalog.

use crate::error::AppError;
use coffer_domain::{Clock, Delivery, NewProduct, NewVendor, Prices, Product, ProductId, Vendor, VendorId};
use coffer_store::{CatalogReader, CatalogWriter, Db, ProductPage, ProductQuery};
use std::sync::Arc;

#[derive(Clone)]
pub struct CatalogService {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl CatalogService {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        CatalogService { db, clock }
    }

    pub async fn products(&self, query: &ProductQuery) -> Result<ProductPage, AppError> {
        Ok(self.db.products(query).await?)
    }

    pub async fn product(&self, id: &ProductId) -> Result<Product, AppError> {
        self.db.product(id).await?.ok_or(AppError::NotFound)
    }

    pub async fn vendors(&self) -> Result<Vec<Vendor>, AppError> {
        Ok(self.db.vendors().await?)
    }

    pub async fn create_vendor(&self, slug: &str, name: &str) -> Result<Vendor, AppError> {
        let vendor = NewVendor::new(slug, name, self.clock.now())?.vendor().clone();
        let stored = vendor.clone();
        self.db
            .write(move |tx| Box::pin(async move { tx.insert_vendor(&stored).await.map_err(AppError::from) }))
            .await?;
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
        self.db
            .write(move |tx| Box::pin(async move { tx.insert_product(&product).await.map_err(AppError::from) }))
            .await?;
        Ok(id)
    }
}
