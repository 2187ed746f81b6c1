//! Vendors and products.

use crate::db::{Db, WriteTx};
use crate::error::StoreError;
use coffer_domain::{
    Currency, Delivery, Millis, Money, NewProduct, Prices, Product, ProductId, Vendor, VendorId, VendorSlug,
};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::future::Future;

/// Which products to list: a page of at most `limit`, after a product id
/// (ids are time-ordered), optionally of one vendor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProductQuery {
    pub vendor: Option<VendorSlug>,
    pub after: Option<ProductId>,
    pub limit: u32,
}

/// A page of products and the cursor for the next one.
#[derive(Clone, Debug)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub next_after: Option<ProductId>,
}

/// Reading the catalog.
pub trait CatalogReader: Send + Sync {
    fn vendors(&self) -> impl Future<Output = Result<Vec<Vendor>, StoreError>> + Send;
    fn vendor_by_slug(&self, slug: &VendorSlug) -> impl Future<Output = Result<Option<Vendor>, StoreError>> + Send;
    fn products(&self, query: &ProductQuery) -> impl Future<Output = Result<ProductPage, StoreError>> + Send;
    fn product(&self, id: &ProductId) -> impl Future<Output = Result<Option<Product>, StoreError>> + Send;
}

/// Writing the catalog, inside a unit of work.
pub trait CatalogWriter {
    fn insert_vendor(&mut self, vendor: &Vendor) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn insert_product(&mut self, product: &NewProduct) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces a product's name, description, delivery and prices.
    fn update_product(
        &mut self,
        product: &NewProduct,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Publishes or withdraws a product; whether a product of this vendor
    /// was there to change.
    fn set_product_published(
        &mut self,
        vendor: &VendorId,
        product: &ProductId,
        published: bool,
        at: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

// Macros rather than consts so `concat!` builds each query as a `&'static str`.
macro_rules! vendor_columns {
    () => {
        "SELECT id, slug, name, created_at FROM vendors"
    };
}

fn vendor_from_row(row: &AnyRow) -> Result<Vendor, StoreError> {
    Ok(Vendor {
        id: VendorId::parse(row.try_get("id")?).map_err(StoreError::corrupt)?,
        slug: VendorSlug::parse(row.try_get("slug")?).map_err(StoreError::corrupt)?,
        name: row.try_get("name")?,
        created_at: Millis(row.try_get("created_at")?),
    })
}

/// Whether buyers see a product (`p`, its vendor `v`): published, the
/// vendor active, and the file of a download uploaded.
macro_rules! listed {
    () => {
        "(p.published = 1 AND v.status = 'active' AND (p.delivery = 'license_key' \
          OR EXISTS (SELECT 1 FROM product_files f WHERE f.product_id = p.id)))"
    };
}

/// One row per (product, price); rows of a product are adjacent.
macro_rules! product_rows {
    () => {
        concat!(
            "SELECT p.id, p.vendor_id, v.slug AS vendor_slug, v.name AS vendor_name, \
             p.name, p.description, p.delivery, p.created_at, p.published, pp.currency, pp.amount_minor, \
             CASE WHEN ",
            listed!(),
            " THEN 1 ELSE 0 END AS listed \
             FROM products p \
             JOIN vendors v ON v.id = p.vendor_id \
             JOIN product_prices pp ON pp.product_id = p.id"
        )
    };
}

/// Folds price rows into products, keeping row order.
fn products_from_rows(rows: &[AnyRow]) -> Result<Vec<Product>, StoreError> {
    let mut products: Vec<(Product, Vec<Money>)> = Vec::new();
    for row in rows {
        let id: &str = row.try_get("id")?;
        let currency = Currency::parse(row.try_get("currency")?).map_err(StoreError::corrupt)?;
        let price = Money::new(row.try_get("amount_minor")?, currency).map_err(StoreError::corrupt)?;
        if let Some((product, prices)) = products.last_mut()
            && product.id.as_str() == id
        {
            prices.push(price);
            continue;
        }
        let product = Product {
            id: ProductId::parse(id).map_err(StoreError::corrupt)?,
            vendor_id: VendorId::parse(row.try_get("vendor_id")?).map_err(StoreError::corrupt)?,
            vendor_slug: VendorSlug::parse(row.try_get("vendor_slug")?).map_err(StoreError::corrupt)?,
            vendor_name: row.try_get("vendor_name")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            prices: Prices::new([price]).map_err(StoreError::corrupt)?,
            delivery: Delivery::parse(row.try_get("delivery")?).map_err(StoreError::corrupt)?,
            created_at: Millis(row.try_get("created_at")?),
            published: row.try_get::<i64, _>("published")? == 1,
            listed: row.try_get::<i64, _>("listed")? == 1,
        };
        products.push((product, vec![price]));
    }
    products
        .into_iter()
        .map(|(mut product, prices)| {
            product.prices = Prices::new(prices).map_err(StoreError::corrupt)?;
            Ok(product)
        })
        .collect()
}

pub const MAX_PAGE: u32 = 100;

impl CatalogReader for Db {
    async fn vendors(&self) -> Result<Vec<Vendor>, StoreError> {
        let rows = sqlx::query(concat!(vendor_columns!(), " ORDER BY name, id")).fetch_all(self.readers()).await?;
        rows.iter().map(vendor_from_row).collect()
    }

    async fn vendor_by_slug(&self, slug: &VendorSlug) -> Result<Option<Vendor>, StoreError> {
        let row = sqlx::query(concat!(vendor_columns!(), " WHERE slug = $1"))
            .bind(slug.as_str())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(vendor_from_row).transpose()
    }

    async fn products(&self, query: &ProductQuery) -> Result<ProductPage, StoreError> {
        // The page is chosen on products, then joined, so LIMIT counts
        // products, not price rows. Empty strings mean "no filter". Only
        // what buyers may see.
        let sql = concat!(
            product_rows!(),
            " WHERE p.id IN (\
                 SELECT p.id FROM products p JOIN vendors v ON v.id = p.vendor_id \
                 WHERE ($1 = '' OR v.slug = $1) AND p.id > $2 AND ",
            listed!(),
            " ORDER BY p.id LIMIT $3) \
             ORDER BY p.id, pp.currency"
        );
        let vendor = query.vendor.as_ref().map_or("", VendorSlug::as_str);
        self.product_page(sql, vendor, query.after.as_ref(), query.limit).await
    }

    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError> {
        let sql = concat!(product_rows!(), " WHERE p.id = $1 ORDER BY pp.currency");
        let rows = sqlx::query(sql).bind(id.as_str()).fetch_all(self.readers()).await?;
        Ok(products_from_rows(&rows)?.into_iter().next())
    }
}

impl Db {
    /// A page of one vendor's products, listed or not, for the vendor
    /// itself (its portal and API).
    pub async fn vendor_products(
        &self,
        vendor: &VendorId,
        after: Option<&ProductId>,
        limit: u32,
    ) -> Result<ProductPage, StoreError> {
        let sql = concat!(
            product_rows!(),
            " WHERE p.id IN (\
                 SELECT p2.id FROM products p2 WHERE p2.vendor_id = $1 AND p2.id > $2 ORDER BY p2.id LIMIT $3) \
             ORDER BY p.id, pp.currency"
        );
        self.product_page(sql, vendor.as_str(), after, limit).await
    }

    async fn product_page(
        &self,
        sql: &'static str,
        filter: &str,
        after: Option<&ProductId>,
        limit: u32,
    ) -> Result<ProductPage, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let rows = sqlx::query(sql)
            .bind(filter.to_owned())
            .bind(after.map_or("", ProductId::as_str).to_owned())
            .bind(limit)
            .fetch_all(self.readers())
            .await?;
        let products = products_from_rows(&rows)?;
        let full = i64::try_from(products.len()).unwrap_or(i64::MAX) == limit;
        let next_after = if full { products.last().map(|p| p.id.clone()) } else { None };
        Ok(ProductPage { products, next_after })
    }
}

impl CatalogWriter for WriteTx {
    async fn insert_vendor(&mut self, vendor: &Vendor) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO vendors (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(vendor.id.as_str())
            .bind(vendor.slug.as_str())
            .bind(vendor.name.as_str())
            .bind(vendor.created_at.0)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn insert_product(&mut self, product: &NewProduct) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO products (id, vendor_id, name, description, delivery, created_at, published, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
        )
        .bind(product.id.as_str())
        .bind(product.vendor_id.as_str())
        .bind(product.name.as_str())
        .bind(product.description.as_str())
        .bind(product.delivery.as_str())
        .bind(product.created_at.0)
        .bind(i64::from(product.published))
        .execute(self.conn())
        .await?;
        self.insert_prices(product).await
    }

    async fn update_product(&mut self, product: &NewProduct, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE products SET name = $3, description = $4, delivery = $5, updated_at = $6 \
             WHERE id = $1 AND vendor_id = $2",
        )
        .bind(product.id.as_str())
        .bind(product.vendor_id.as_str())
        .bind(product.name.as_str())
        .bind(product.description.as_str())
        .bind(product.delivery.as_str())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        sqlx::query("DELETE FROM product_prices WHERE product_id = $1")
            .bind(product.id.as_str())
            .execute(self.conn())
            .await?;
        self.insert_prices(product).await
    }

    async fn set_product_published(
        &mut self,
        vendor: &VendorId,
        product: &ProductId,
        published: bool,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE products SET published = $3, updated_at = $4 WHERE id = $1 AND vendor_id = $2")
            .bind(product.as_str())
            .bind(vendor.as_str())
            .bind(i64::from(published))
            .bind(at.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl WriteTx {
    async fn insert_prices(&mut self, product: &NewProduct) -> Result<(), StoreError> {
        for price in product.prices.iter() {
            sqlx::query("INSERT INTO product_prices (product_id, currency, amount_minor) VALUES ($1, $2, $3)")
                .bind(product.id.as_str())
                .bind(price.currency().code())
                .bind(price.minor())
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}
